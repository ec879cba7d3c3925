from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session", autouse=True)
def _terraform_available() -> None:
    if shutil.which("terraform") is None:
        pytest.fail("terraform is not on PATH: run the tests through `make test` (it sets up the toolchain)")

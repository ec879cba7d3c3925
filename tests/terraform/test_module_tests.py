"""Runs each module's `terraform test` suite (mock providers, no AWS needed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

MODULES = Path(__file__).resolve().parents[2] / "terraform" / "modules"
MODULES_WITH_TESTS = sorted(p.parent.parent.name for p in MODULES.glob("*/tests/*.tftest.hcl"))


def test_every_module_has_tests() -> None:
    assert set(MODULES_WITH_TESTS) >= {
        "network",
        "security",
        "compute",
        "storage",
        "iam",
        "emr",
        "peering",
        "snapshots",
    }


@pytest.mark.parametrize("module", sorted(set(MODULES_WITH_TESTS)))
def test_terraform_test(module: str, tmp_path: Path) -> None:
    env = {**os.environ, "TF_DATA_DIR": str(tmp_path / ".terraform"), "TF_IN_AUTOMATION": "1"}
    chdir = f"-chdir={MODULES / module}"
    init = subprocess.run(
        ["terraform", chdir, "init", "-backend=false", "-input=false", "-no-color"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    result = subprocess.run(
        ["terraform", chdir, "test", "-no-color"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "0 failed" in result.stdout

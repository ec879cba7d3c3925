"""Fixtures for the lab tests (marker `lab`).

`lab` brings up a primary lab from emulator instances created by the apply
step `lab_support.APPLY` (boto3 standing in for Terraform for now).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from lab import orchestrate
from lab_support import APPLY


@pytest.fixture(scope="session")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab-state")


@pytest.fixture(scope="module")
def lab(lab_dir: Path):
    """A primary lab brought up from emulator instances; torn down (asserted elsewhere) at the end."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (systemd-nspawn, bridges, iptables); run `make test-lab` as root")
    from fmsops.emulator import free_port

    mp = pytest.MonkeyPatch()
    mp.setenv("FMS_LAB_DIR", str(lab_dir))
    mp.setenv("FMS_EMULATOR_PORT", str(free_port()))
    started = time.monotonic()
    try:
        hosts = orchestrate.up("primary", "minimal", apply=APPLY)
        print(f"\nlab up: {len(hosts)} hosts in {time.monotonic() - started:.1f}s")
        yield hosts
    finally:
        try:
            orchestrate.down()
        finally:
            mp.undo()

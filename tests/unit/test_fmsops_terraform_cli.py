"""fms-terraform runs Terraform in the lab's staged stack, never in the source tree (a fake `terraform`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fms_tools.fmsops import terraform, terraform_cli

URL = "http://127.0.0.1:5999"


def fake_terraform(tmp_path: Path) -> Path:
    """A `terraform` that records its working directory, arguments and endpoint, one line per call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "terraform"
    script.write_text(f'#!/bin/sh\necho "$* | endpoint=${{AWS_ENDPOINT_URL:-none}}" >> {tmp_path}/calls\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PATH", f"{fake_terraform(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FMS_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return tmp_path / "calls"


def test_state_reads_run_in_the_staged_stack_without_an_endpoint(calls: Path, tmp_path: Path) -> None:
    assert terraform_cli.main(["state", "list"]) == 0
    staged = tmp_path / "lab" / "terraform" / "primary" / "terraform" / "envs" / "primary"
    assert (staged / "zz_local_backend_override.tf").is_file()  # local backend, not the S3 one
    init, state = calls.read_text().splitlines()
    assert init.startswith(f"-chdir={staged} init ")
    assert state == f"-chdir={staged} state list | endpoint=none"


def test_plan_gets_the_lab_variables_and_the_emulator(calls: Path, tmp_path: Path) -> None:
    assert terraform_cli.main(["--env", "dr", "--emulator-url", URL, "plan", "-no-color"]) == 0
    plan = calls.read_text().splitlines()[-1]
    files = " ".join(f"-var-file={f.resolve()}" for f in terraform.lab_var_files("dr"))
    assert plan.endswith(f"plan {files} -var=aws_endpoint_url={URL} -no-color | endpoint={URL}")


def test_apply_without_an_emulator_url_is_refused(calls: Path) -> None:
    with pytest.raises(SystemExit, match="no emulator URL"):
        terraform_cli.main(["apply"])
    assert not calls.exists()

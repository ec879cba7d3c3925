"""Stack.apply retries a known emulator failure once and nothing else (a fake `terraform` on PATH)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fms_tools.fmsops.terraform import Stack, TerraformError, emulator_transient

DEFAULT_SG_FAILURE = """\
Error: updating Default Security Group (sg-0a1b2c): revoking egress rules: operation error EC2:
RevokeSecurityGroupEgress, https response error StatusCode: 400, RequestID: x,
api error InvalidPermission.NotFound: The specified rule does not exist in this security group
  with module.network.aws_default_security_group.this,
"""
CONFIG_FAILURE = 'Error: Invalid value for variable\n  on lab.tfvars line 3: var.region "mars-1"\n'


def fake_terraform(tmp_path: Path, failures: list[str]) -> Path:
    """A `terraform` that prints and fails with failures[i] on its i-th apply, then succeeds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for i, text in enumerate(failures):
        (tmp_path / f"failure-{i}.txt").write_text(text)
    script = bin_dir / "terraform"
    script.write_text(
        f"""#!/bin/sh
n=$(cat {tmp_path}/count 2>/dev/null || echo 0)
echo $((n + 1)) > {tmp_path}/count
if [ -f {tmp_path}/failure-$n.txt ]; then cat {tmp_path}/failure-$n.txt; exit 1; fi
echo "Apply complete!"
"""
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def run_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failures: list[str]) -> tuple[int, list[str]]:
    monkeypatch.setenv("PATH", f"{fake_terraform(tmp_path, failures)}{os.pathsep}{os.environ['PATH']}")
    logged: list[str] = []
    stack = Stack("primary", tmp_path / "work", log=logged.append)
    try:
        stack.apply()
    finally:
        calls = int((tmp_path / "count").read_text())
    return calls, logged


def test_known_emulator_failure_is_applied_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls, logged = run_apply(tmp_path, monkeypatch, [DEFAULT_SG_FAILURE])
    assert calls == 2
    assert any("known emulator failure" in m and "InvalidPermission.NotFound" in m for m in logged)


def test_known_emulator_failure_twice_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TerraformError, match=r"InvalidPermission\.NotFound"):
        run_apply(tmp_path, monkeypatch, [DEFAULT_SG_FAILURE, DEFAULT_SG_FAILURE])
    assert (tmp_path / "count").read_text().strip() == "2"


def test_configuration_errors_are_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TerraformError, match="Invalid value for variable"):
        run_apply(tmp_path, monkeypatch, [CONFIG_FAILURE])
    assert (tmp_path / "count").read_text().strip() == "1"


def test_only_the_revoke_not_found_pattern_is_transient() -> None:
    assert emulator_transient(DEFAULT_SG_FAILURE)
    assert not emulator_transient(CONFIG_FAILURE)
    assert not emulator_transient("api error InvalidPermission.NotFound on AuthorizeSecurityGroupIngress")

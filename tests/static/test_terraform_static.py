"""terraform fmt / validate for both stacks, and checkov with zero failures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"


def _tf(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["terraform", *args], capture_output=True, text=True, env=env, check=False)


def test_terraform_fmt() -> None:
    result = _tf("fmt", "-check", "-recursive", "-diff", str(TERRAFORM))
    assert result.returncode == 0, f"run `make fmt`:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("env", ["primary", "dr"])
def test_terraform_validate(env: str, tmp_path: Path) -> None:
    tf_env = {**os.environ, "TF_DATA_DIR": str(tmp_path / ".terraform"), "TF_IN_AUTOMATION": "1"}
    chdir = f"-chdir={TERRAFORM / 'envs' / env}"
    init = _tf(chdir, "init", "-backend=false", "-input=false", "-no-color", env=tf_env)
    assert init.returncode == 0, init.stdout + init.stderr
    result = _tf(chdir, "validate", "-no-color", env=tf_env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_envs_share_one_configuration() -> None:
    """DR is the primary configuration with other tfvars, never a drifting copy."""
    for name in ("main.tf", "variables.tf", "outputs.tf", "providers.tf", "versions.tf"):
        link = TERRAFORM / "envs" / "dr" / name
        assert link.is_symlink() and link.resolve() == (TERRAFORM / "envs" / "primary" / name).resolve()


def test_checkov_has_no_failures() -> None:
    checkov = Path(sys.executable).with_name("checkov")
    result = subprocess.run(
        [str(checkov), "-d", str(TERRAFORM), "--framework", "terraform", "--quiet", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for report in reports
        for c in report["results"]["failed_checks"]
    ]
    assert failed == [], "checkov failures:\n" + "\n".join(failed)
    passed = sum(r["summary"]["passed"] for r in reports)
    assert passed > 200


SKIP = re.compile(r"#\s*checkov:skip=(?P<id>[A-Z0-9_]+)(?::(?P<reason>.*))?")


def test_every_checkov_skip_is_inline_with_a_reason() -> None:
    skips = []
    for tf in TERRAFORM.rglob("*.tf"):
        if ".terraform" in tf.parts or tf.is_symlink():
            continue
        for lineno, line in enumerate(tf.read_text().splitlines(), 1):
            match = SKIP.search(line)
            if match:
                skips.append(
                    (f"{tf.relative_to(REPO)}:{lineno}", match["id"], (match["reason"] or "").strip())
                )
    assert skips, "expected the documented skips to be found"
    unexplained = [s for s in skips if len(s[2]) < 30]
    assert unexplained == [], f"skips need a reason a reviewer accepts: {unexplained}"
    config = REPO / ".checkov.yaml"
    assert not config.exists() or "skip-check" not in config.read_text(), "no global skips"

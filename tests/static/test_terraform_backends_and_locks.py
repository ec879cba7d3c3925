"""What the root stacks need before `terraform init`: backend examples and provider lock files.

- Each env's ``backend.hcl.example`` keeps the state in the env's own region (read from the
  env's ``terraform.tfvars`` through ``fmsops.terraform.env_region``, the loader the lab uses;
  ``platform.yml`` holds no environments yet), and DR's state is not in primary's bucket: a
  DR stack must not depend on the region it replaces.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fmsops.terraform import env_region

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
ENVS = sorted(p.parent.name for p in (TERRAFORM / "envs").glob("*/terraform.tfvars"))


def _hcl_assignments(path: Path) -> dict[str, str]:
    """`key = "value"` / `key = true` lines of a flat HCL file (comments stripped)."""
    values = {}
    for line in path.read_text().splitlines():
        match = re.match(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("(?P<s>[^"]*)"|(?P<b>\S+))', line)
        if match:
            values[match[1]] = match["s"] if match["s"] is not None else match["b"]
    return values


def test_both_envs_are_checked() -> None:
    assert {"primary", "dr"} <= set(ENVS)


@pytest.mark.parametrize("env", ENVS)
def test_backend_example_keeps_state_in_the_envs_own_region(env: str) -> None:
    backend = _hcl_assignments(TERRAFORM / "envs" / env / "backend.hcl.example")
    assert backend["region"] == env_region(env), (
        f"envs/{env}/backend.hcl.example puts the state in {backend['region']}, "
        f"but the stack runs in {env_region(env)} (terraform.tfvars)"
    )
    assert backend["use_lockfile"] == "true", "the lock is a file beside the state, not a table elsewhere"
    assert "dynamodb_table" not in backend
    assert f"/{env}/" in backend["key"]


def test_dr_state_is_not_in_the_primary_bucket() -> None:
    primary = _hcl_assignments(TERRAFORM / "envs" / "primary" / "backend.hcl.example")
    dr = _hcl_assignments(TERRAFORM / "envs" / "dr" / "backend.hcl.example")
    assert env_region("dr") != env_region("primary")
    assert dr["bucket"] != primary["bucket"], "an S3 bucket lives in one region: DR needs its own"

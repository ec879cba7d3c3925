"""What the root stacks need before `terraform init`: backend examples and provider lock files.

- Each env's ``backend.hcl.example`` keeps the state in the env's own region (its stack in
  ``platform.yml``, read through ``fmsops.terraform.env_region`` as the lab reads it; Terraform
  takes the provider's region from the same entry), and DR's state is not in primary's bucket:
  a DR stack must not depend on the region it replaces.
- The ``.terraform.lock.hcl`` files are committed, as the README says: one per env root and per
  module with a ``terraform test`` suite (which inits it as a root), all pinning the version of
  ``versions.tf`` with the same hashes - every platform archive's ``zh:`` hash (as many as the
  README states) and the offline mirror's ``h1:`` - and an init (from the mirror under
  ``make test``, from the registry elsewhere) leaves them unchanged.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fms_tools.fmsops.platform_contract import load as load_platform
from fms_tools.fmsops.terraform import env_region

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
    """One env root per stack of platform.yml, and no other."""
    assert set(ENVS) == set(load_platform().stacks) >= {"primary", "dr"}


@pytest.mark.parametrize("env", ENVS)
def test_backend_example_keeps_state_in_the_envs_own_region(env: str) -> None:
    backend = _hcl_assignments(TERRAFORM / "envs" / env / "backend.hcl.example")
    assert backend["region"] == env_region(env), (
        f"envs/{env}/backend.hcl.example puts the state in {backend['region']}, "
        f"but the stack runs in {env_region(env)} (platform.yml stacks.{env}.region)"
    )
    assert backend["use_lockfile"] == "true", "the lock is a file beside the state, not a table elsewhere"
    assert "dynamodb_table" not in backend
    assert f"/{env}/" in backend["key"]


def test_dr_state_is_not_in_the_primary_bucket() -> None:
    primary = _hcl_assignments(TERRAFORM / "envs" / "primary" / "backend.hcl.example")
    dr = _hcl_assignments(TERRAFORM / "envs" / "dr" / "backend.hcl.example")
    assert env_region("dr") != env_region("primary")
    assert dr["bucket"] != primary["bucket"], "an S3 bucket lives in one region: DR needs its own"


# ------------------------------------------------------------------------- provider lock files

LOCK = ".terraform.lock.hcl"
# Every directory Terraform runs in as a root: the envs, and the modules with `terraform test` suites.
STACK_DIRS = sorted(
    [p for p in (TERRAFORM / "envs").iterdir() if any(p.glob("*.tf"))]
    + [p.parent.parent for p in (TERRAFORM / "modules").glob("*/tests/*.tftest.hcl")]
)


def _lock(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """provider address -> (version, hashes) of a lock file."""
    blocks = re.findall(
        r'provider "(?P<addr>[^"]+)" \{\s*version\s*=\s*"(?P<version>[^"]+)".*?hashes = \[(?P<hashes>.*?)\]',
        path.read_text(),
        re.S,
    )
    return {addr: (version, frozenset(re.findall(r'"([^"]+)"', hashes))) for addr, version, hashes in blocks}


def _pinned_aws_version() -> str:
    text = (TERRAFORM / "envs" / "primary" / "versions.tf").read_text()
    match = re.search(r'source\s*=\s*"hashicorp/aws"\s*\n\s*version\s*=\s*"([0-9.]+)"', text)
    assert match, "envs/primary/versions.tf pins no exact hashicorp/aws version"
    return match[1]


def test_every_root_and_module_has_a_committed_lock_file() -> None:
    assert {"envs/primary", "envs/dr", "modules/emr"} <= {f"{p.parent.name}/{p.name}" for p in STACK_DIRS}
    missing = [str(d.relative_to(REPO)) for d in STACK_DIRS if not (d / LOCK).is_file()]
    assert missing == [], f"no {LOCK} in {missing}: run terraform init there and commit it"
    ignored = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "--no-index", *(str(d / LOCK) for d in STACK_DIRS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ignored.stdout == "", f".gitignore hides lock files: {ignored.stdout}"


def test_readme_says_what_the_repository_does_with_lock_files() -> None:
    readme = (REPO / "README.md").read_text()
    assert "not committed" not in readme
    assert re.search(r"`\.terraform\.lock\.hcl` files are committed", readme)
    stated = re.search(r"\((\d+) archives", readme)
    assert stated, "the README states how many platform archives the zh: hashes cover"
    version, hashes = _lock(TERRAFORM / "envs" / "primary" / LOCK)["registry.terraform.io/hashicorp/aws"]
    assert f"hashicorp/aws {version}" in readme
    assert len([h for h in hashes if h.startswith("zh:")]) == int(stated[1])


def test_lock_files_pin_versions_tf_with_the_same_hashes_everywhere() -> None:
    version = _pinned_aws_version()
    locks = {str(d.relative_to(REPO)): _lock(d / LOCK) for d in STACK_DIRS}
    for where, lock in locks.items():
        assert set(lock) == {"registry.terraform.io/hashicorp/aws"}, f"{where}: {sorted(lock)}"
        assert lock["registry.terraform.io/hashicorp/aws"][0] == version, where
    hash_sets = {lock["registry.terraform.io/hashicorp/aws"][1] for lock in locks.values()}
    assert len(hash_sets) == 1, "the lock files disagree on the provider's hashes"
    (hashes,) = hash_sets
    # zh: = the registry's archive checksums (one per platform, what registry installs check);
    # h1: = an unpacked package (the offline mirror's linux_amd64, what air-gapped installs check).
    assert any(h.startswith("h1:") for h in hashes)
    assert len([h for h in hashes if h.startswith("zh:")]) > 1, "zh: hashes for one platform only"


@pytest.mark.parametrize("env", ENVS)
def test_init_leaves_the_committed_lock_file_unchanged(env: str, tmp_path: Path) -> None:
    """The committed hashes already cover the package this machine installs (under `make test`
    the offline mirror's): init neither fails nor has anything to add."""
    assert shutil.which("terraform"), "terraform is not on PATH: run through `make test-static`"
    shutil.copytree(TERRAFORM, tmp_path / "terraform", ignore=shutil.ignore_patterns(".terraform"))
    shutil.copy2(REPO / "platform.yml", tmp_path / "platform.yml")
    lock = tmp_path / "terraform" / "envs" / env / LOCK
    before = lock.read_bytes()
    result = subprocess.run(
        ["terraform", f"-chdir={lock.parent}", "init", "-backend=false", "-input=false", "-no-color"],
        env={**os.environ, "TF_DATA_DIR": str(tmp_path / ".tfdata"), "TF_IN_AUTOMATION": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert lock.read_bytes() == before, f"init changed envs/{env}/{LOCK}:\n{result.stdout}"

"""A thin wrapper around the Terraform CLI.

python-terraform (0.10.x) predates Terraform 1.x: it builds flags the 1.x CLI
no longer accepts (e.g. `-state` on init) and exposes no `test` command, so
the project drives the CLI directly: a few functions, JSON output, and
errors that carry Terraform's own message.

Lab and test runs never touch the source tree's state: the stacks are staged
(copied, they are a few kilobytes) into a work directory together with a
`*_override.tf` that swaps the S3 backend for a local one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fms_tools import REPO

TERRAFORM_DIR = REPO / "terraform"
# The platform contract the env roots read as ../../../platform.yml (see platform_contract.py).
PLATFORM_FILE = REPO / "platform.yml"

LOCAL_BACKEND_OVERRIDE = """\
# Written by scripts/fms_tools/fmsops/terraform.py for lab and test runs only: state stays
# in this work directory instead of the S3 backend production uses.
terraform {
  backend "local" {
    path = "terraform.tfstate"
  }
}
"""


# Failures of the AWS emulator, not of the configuration: moto serves Terraform's parallel requests
# from threads, and now and then the default security group's egress rule is gone by the time the
# provider revokes it (RevokeSecurityGroupEgress -> InvalidPermission.NotFound on
# aws_default_security_group; seen once in ~10 applies of the DR stack). A second apply starts from
# the recorded state and converges; the tests then prove the plan is empty.
EMULATOR_TRANSIENT_ERRORS = (
    re.compile(r"RevokeSecurityGroup(Egress|Ingress).*InvalidPermission\.NotFound", re.DOTALL),
)


def emulator_transient(output: str) -> bool:
    return any(p.search(output) for p in EMULATOR_TRANSIENT_ERRORS)


class TerraformError(RuntimeError):
    def __init__(self, args: Sequence[str], returncode: int, output: str) -> None:
        tail = "\n".join(output.strip().splitlines()[-40:])
        super().__init__(f"terraform {' '.join(args)} failed ({returncode}):\n{tail}")
        self.returncode = returncode
        self.output = output


@dataclass
class Stack:
    """One root stack (terraform/envs/<env>) staged in its own work directory."""

    env: str
    workdir: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    log: Callable[[str], None] | None = None

    @property
    def chdir(self) -> Path:
        return self.workdir / "terraform" / "envs" / self.env

    def stage(self) -> Stack:
        """Copy terraform/ and the platform contract into the work dir (refreshing sources, keeping state).

        The contract lands beside the staged terraform/ as it sits beside the
        source one, so the env roots' relative path to it holds in both places.
        """
        dest = self.workdir / "terraform"
        for src in TERRAFORM_DIR.rglob("*"):
            rel = src.relative_to(TERRAFORM_DIR)
            if any(p in {".terraform", "terraform.tfstate.d"} for p in rel.parts) or src.name.endswith(
                (".tfstate", ".tfstate.backup")
            ):
                continue
            target = dest / rel
            if src.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
        shutil.copy2(PLATFORM_FILE, self.workdir / PLATFORM_FILE.name)
        (self.chdir / "zz_local_backend_override.tf").write_text(LOCAL_BACKEND_OVERRIDE)
        return self

    def run(self, *args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", **self.extra_env}
        started = time.monotonic()
        proc = subprocess.run(
            ["terraform", f"-chdir={self.chdir}", *args],
            env=env,
            text=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None,
            check=False,
        )
        if self.log:
            self.log(f"terraform {args[0]} ({self.env}) finished in {time.monotonic() - started:.1f}s")
        if check and proc.returncode != 0:
            raise TerraformError(args, proc.returncode, proc.stdout or "")
        return proc

    def init(self) -> None:
        self.run("init", "-input=false", "-no-color")

    def apply(
        self,
        var_files: Sequence[Path] = (),
        variables: Mapping[str, str] | None = None,
        transient_retries: int = 1,
        refresh: bool = True,
    ) -> None:
        """`apply`; against the emulator, a known emulator failure is retried (logged) before it fails.

        refresh=False skips reading back every resource first: for a small change
        right after an apply or a plan of the same stack, whose state is current.
        """
        flags = () if refresh else ("-refresh=false",)
        args = (
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            *flags,
            *var_args(var_files, variables),
        )
        for attempt in range(transient_retries + 1):
            try:
                self.run(*args)
                return
            except TerraformError as e:
                if attempt == transient_retries or not emulator_transient(e.output):
                    raise
                say = self.log or (lambda m: print(m, file=sys.stderr, flush=True))
                say(
                    f"terraform apply ({self.env}) hit a known emulator failure, applying again:\n"
                    + "\n".join(e.output.strip().splitlines()[-6:])
                )

    def plan_exit_code(
        self, var_files: Sequence[Path] = (), variables: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`plan -detailed-exitcode`: 0 no changes, 2 changes, 1 error."""
        return self.run(
            "plan",
            "-detailed-exitcode",
            "-input=false",
            "-no-color",
            *var_args(var_files, variables),
            check=False,
        )

    def destroy(self, var_files: Sequence[Path] = (), variables: Mapping[str, str] | None = None) -> None:
        self.run("destroy", "-auto-approve", "-input=false", "-no-color", *var_args(var_files, variables))

    def outputs(self) -> dict[str, object]:
        raw = json.loads(self.run("output", "-json").stdout or "{}")
        return {name: item["value"] for name, item in raw.items()}


def var_args(var_files: Sequence[Path], variables: Mapping[str, str] | None) -> list[str]:
    args = [f"-var-file={Path(f).resolve()}" for f in var_files]
    for key, value in (variables or {}).items():
        args.append(f"-var={key}={value}")
    return args


def lab_var_file(env: str) -> Path:
    return TERRAFORM_DIR / "envs" / env / "lab.tfvars"


def env_region(env: str) -> str:
    """The region of stack `env` (terraform/envs/<env>), as platform.yml's stacks write it.

    Terraform defaults the provider's region from the same entry, so the lab
    registers its image where the stack looks for it.
    """
    from fms_tools.fmsops.platform_contract import load  # local: PyYAML only when asked

    return load().stack(env).region


def lab_var_files(env: str, profile: str = "lab") -> list[Path]:
    files = [lab_var_file(env)]
    if profile != "lab":
        extra = TERRAFORM_DIR / "envs" / env / f"lab-{profile}.tfvars"
        if not extra.exists():
            raise ValueError(f"unknown lab profile {profile!r}: {extra} does not exist")
        files.append(extra)
    return files


def lab_stack(
    env: str, emulator_url: str, workdir: Path | None = None, log: Callable[[str], None] | None = None
) -> Stack:
    from fms_tools.fmsops.emulator import EMULATOR_ENV  # local: keeps this module importable alone

    if workdir is None:
        workdir = Path(os.environ.get("FMS_LAB_DIR") or REPO / ".lab") / "terraform" / env
    return Stack(env, workdir, extra_env={**EMULATOR_ENV, "AWS_ENDPOINT_URL": emulator_url}, log=log)


def apply_env(
    env: str,
    emulator_url: str,
    profile: str = "lab",
    log: Callable[[str], None] | None = None,
    variables: dict[str, str] | None = None,
) -> dict[str, object]:
    """Apply terraform/envs/<env> with the lab variables to the emulator; return the outputs.

    `variables`: -var overrides on top of the lab's var files (e.g. enable_peering=false).

    The staged state survives between runs (a second `lab up` is a no-op plan),
    but state left from an emulator that has since stopped is discarded: its
    resources died with that emulator.
    """
    from fms_tools.fmsops.emulator import register_lab_image

    stack = lab_stack(env, emulator_url, log=log).stage()
    state_file = stack.chdir / "terraform.tfstate"
    if state_file.exists() and not _state_matches_emulator(state_file, emulator_url, env_region(env)):
        state_file.rename(state_file.with_suffix(".tfstate.stale"))
    register_lab_image(emulator_url, env_region(env))
    stack.init()
    stack.apply(lab_var_files(env, profile), {**(variables or {}), "aws_endpoint_url": emulator_url})
    return stack.outputs()


def _state_matches_emulator(state_file: Path, emulator_url: str, region: str) -> bool:
    import boto3

    from fms_tools.fmsops.emulator import boto_credentials

    try:
        vpc_id = json.loads(state_file.read_text())["outputs"]["vpc_id"]["value"]
    except (KeyError, ValueError):
        return False
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=emulator_url, **boto_credentials())
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Vpcs"]
    return bool(vpcs)

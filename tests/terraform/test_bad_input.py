"""Operator mistakes fail at plan time, with a message saying what to change,
before anything exists in the (emulated) account; and the active stack plans no
secrets backup bucket (the standby's bucket is checked on test_emulator_apply.py's apply).

Every plan here runs on one staged, initialised primary stack that never holds state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from emulator_support import client, start_emulator
from fms_tools.fmsops.emulator import Emulator, register_lab_image
from fms_tools.fmsops.platform_contract import load as load_platform
from fms_tools.fmsops.terraform import Stack, env_region, lab_stack, lab_var_file, var_args

pytestmark = pytest.mark.terraform

PRODUCTION_GROUPS = """
environment = "production"
instance_groups = {
  kafka_controller = { count = %d, instance_type = "m6i.large" }
  kafka            = { count = 3, instance_type = "r6i.xlarge" }
}
"""


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emu = start_emulator(tmp_path_factory.mktemp("emulator"))
    register_lab_image(emu.url, env_region("primary"))
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def stack(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    st = lab_stack("primary", emulator.url, workdir=tmp_path_factory.mktemp("tf-bad-input")).stage()
    st.init()
    return st


CASES = {
    # Environment and stack names are platform.yml's; the message lists the allowed ones.
    "unknown_environment": (
        {"environment": "prod"},
        None,
        "environment must be one of the environments in platform.yml: dev, lab, production, staging, "
        'test (got "prod")',
    ),
    "unknown_stack_role": (
        {"stack_role": "secondary"},
        None,
        'stack_role must be one of the stacks in platform.yml: dr, primary (got "secondary")',
    ),
    "overlapping_peer_cidr": (
        {"peer_vpc_cidr": "198.18.128.0/17"},
        None,
        "vpc_cidr overlaps one of non_overlapping_cidrs",
    ),
    # The standby stack peers with the active one's VPC: applied first, it says what to do.
    "standby_before_its_peer": (
        {"stack_role": "dr", "availability_zones": f'["{env_region("dr")}a", "{env_region("dr")}c"]'},
        None,
        "Apply terraform/envs/primary first, set peer_vpc_id, or set enable_peering = false",
    ),
    "single_az": (
        {"availability_zones": f'["{env_region("primary")}a"]'},
        None,
        "availability_zones must list at least 2",
    ),
    "even_controllers_in_production": (
        {},
        PRODUCTION_GROUPS % 4,
        "needs an odd number of controllers (found 4)",
    ),
    "two_few_controllers_in_production": (
        {},
        PRODUCTION_GROUPS % 1,
        "Production needs at least 3 KRaft controllers",
    ),
    "world_open_admin_cidr": (
        {"admin_cidrs": '["0.0.0.0/0"]'},
        None,
        "Use your office or VPN range",
    ),
    # The secrets backups must outlive the active region: only the standby stack holds their bucket.
    "secrets_backup_bucket_on_the_active_stack": (
        {"enable_secrets_backup_bucket": "true"},
        None,
        "the secrets backups belong to the standby stack",
    ),
    "emr_without_in_transit_certificates": (
        {"enable_emr": "true"},
        None,
        "set in_transit_certificate_zip (env root: emr_in_transit_certificate_zip)",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_rejects_bad_input(case: str, stack: Stack, emulator: Emulator, tmp_path: Path) -> None:
    variables, extra_tfvars, message = CASES[case]
    var_files = [lab_var_file("primary")]
    if extra_tfvars:
        extra = tmp_path / "bad.tfvars"
        extra.write_text(extra_tfvars)
        var_files.append(extra)
    result = stack.run(
        "plan",
        "-input=false",
        "-no-color",
        *[f"-var-file={f}" for f in var_files],
        f"-var=aws_endpoint_url={emulator.url}",
        *[f"-var={k}={v}" for k, v in variables.items()],
        check=False,
    )
    output = " ".join((result.stdout or "").split())  # Terraform wraps long messages
    assert result.returncode == 1, output[-3000:]
    assert message in output, output[-3000:]
    # Nothing was created: validation failed before any resource.
    assert (
        client("ec2", emulator, env_region("primary")).describe_vpcs(
            Filters=[{"Name": "tag:Project", "Values": ["fms"]}]
        )["Vpcs"]
        == []
    )
    assert not (stack.chdir / "terraform.tfstate").exists()


def test_active_stack_makes_none(stack: Stack, emulator: Emulator) -> None:
    """The secrets backups belong to the standby stack: the active one plans no bucket for them."""
    assert load_platform().stack(stack.env).role == "active"
    variables = var_args([lab_var_file(stack.env)], {"aws_endpoint_url": emulator.url})
    plan = stack.run(
        "plan",
        "-detailed-exitcode",
        "-input=false",
        "-no-color",
        "-target=module.secrets_backup_bucket",
        *variables,
        check=False,
    )
    # 2: the target's inputs (the access-log bucket) would be created, the backup bucket not.
    assert plan.returncode in (0, 2), plan.stdout[-3000:]
    assert "module.secrets_backup_bucket" not in plan.stdout, plan.stdout[-3000:]
    assert not (stack.chdir / "terraform.tfstate").exists()

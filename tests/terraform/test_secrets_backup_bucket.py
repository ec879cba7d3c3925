"""The DR stack's secrets backup bucket, applied for real to the AWS emulator, and the playbooks on it.

Only the bucket and what it needs (the stack's KMS key, the access-log bucket) are applied
(-target): the whole DR stack is test_emulator_apply.py's job. The active stack makes no such
bucket, and asking it to is refused at plan time (test_bad_input.py).

The playbooks' round trip runs in tests/integration/test_secrets_backup.py on a bucket made
with boto3: this one, like every s3_bucket, denies requests without TLS (DenyInsecureTransport),
and the emulator serves plain HTTP, so moto answers the playbooks' object calls 403 - as AWS
would answer an http client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from emulator_support import client, start_emulator
from fms_tools.fmsops.emulator import Emulator
from fms_tools.fmsops.platform_contract import load as load_platform
from fms_tools.fmsops.terraform import Stack, env_region, lab_stack, lab_var_file, var_args

pytestmark = [pytest.mark.terraform, pytest.mark.slow]
STANDBY = next(name for name, s in load_platform().stacks.items() if s.role == "standby")
ACTIVE = next(name for name, s in load_platform().stacks.items() if s.role == "active")
TARGET = "-target=module.secrets_backup_bucket"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emu = start_emulator(tmp_path_factory.mktemp("emulator"))
    yield emu
    emu.stop()


def _stack(env: str, emulator: Emulator, workdir: Path) -> Stack:
    stack = lab_stack(env, emulator.url, workdir=workdir).stage()
    stack.init()
    return stack


@pytest.fixture(scope="module")
def applied(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    stack = _stack(STANDBY, emulator, tmp_path_factory.mktemp("tf-dr"))
    variables = var_args([lab_var_file(STANDBY)], {"aws_endpoint_url": emulator.url})
    stack.run("apply", "-auto-approve", "-input=false", "-no-color", TARGET, *variables)
    return stack.outputs()


def test_standby_stack_makes_a_private_versioned_kms_encrypted_bucket(
    applied: dict[str, Any], emulator: Emulator
) -> None:
    bucket = applied["secrets_backup_bucket"]
    assert bucket.endswith("-secrets-backup") and env_region(STANDBY) in bucket
    s3 = client("s3", emulator, env_region(STANDBY))
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == env_region(STANDBY)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": applied["kms_key_arn"],
    }
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    deny = [st for st in policy["Statement"] if st.get("Sid") == "DenyInsecureTransport"]
    assert deny and deny[0]["Condition"]["Bool"]["aws:SecureTransport"] == "false"
    assert s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"]["TargetPrefix"] == "secrets-backup/"


def test_active_stack_makes_none(emulator: Emulator, tmp_path: Path) -> None:
    stack = _stack(ACTIVE, emulator, tmp_path)
    variables = var_args([lab_var_file(ACTIVE)], {"aws_endpoint_url": emulator.url})
    plan = stack.run(
        "plan", "-detailed-exitcode", "-input=false", "-no-color", TARGET, *variables, check=False
    )
    # 2: the target's inputs (the access-log bucket) would be created, the backup bucket not.
    assert plan.returncode in (0, 2), plan.stdout[-3000:]
    assert "module.secrets_backup_bucket" not in plan.stdout, plan.stdout[-3000:]

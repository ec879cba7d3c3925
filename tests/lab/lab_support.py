"""Helpers for the lab tests: emulator instances standing in for Terraform, CLI calls.

`provision_env` creates with boto3 what Terraform will create (VPC, subnets in
2 AZs, tagged instances, plus decoys the lab must ignore). It is the lab's
apply step in the tests (`APPLY`) until `fmsops.terraform.apply_env` exists;
switching the tests to the real stacks is one change: `APPLY = True`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from lab import discovery  # noqa: E402
from lab.envs import ENVS  # noqa: E402

# What the fake "apply" creates per env: subnets (cidr, az suffix) and instances (name, roles, subnet).
LAYOUT = {
    "primary": {
        "subnets": {
            "private-a": ("198.18.1.0/24", "a"),
            "private-b": ("198.18.2.0/24", "b"),
            "data-a": ("198.18.11.0/24", "a"),
            "data-b": ("198.18.12.0/24", "b"),
        },
        "instances": [
            ("fms-lab-kafka-1", "kafka,kafka_controller", "private-a"),
            ("fms-lab-kafka-2", "kafka,kafka_controller", "private-b"),
            ("fms-lab-monitoring-1", "monitoring", "private-a"),
        ],
    },
    "dr": {
        "subnets": {"private-a": ("198.19.1.0/24", "a"), "private-c": ("198.19.2.0/24", "c")},
        "instances": [("fms-dr-kafka-1", "kafka,kafka_controller", "private-a")],
    },
}


def provision_env(env_name: str, url: str, profile: str = "minimal") -> None:
    """Create the env's VPC, subnets and instances in the emulator (idempotent)."""
    env = ENVS[env_name]
    ec2 = discovery.ec2_client(env.region, url)
    if ec2.describe_vpcs(Filters=[{"Name": "tag:Project", "Values": ["fms"]}])["Vpcs"]:
        return
    tags = [{"Key": "Project", "Value": "fms"}, {"Key": "Env", "Value": "lab"}]
    vpc = ec2.create_vpc(CidrBlock=env.cidr, TagSpecifications=[{"ResourceType": "vpc", "Tags": tags}])
    vpc_id = vpc["Vpc"]["VpcId"]
    layout = LAYOUT[env_name]
    subnets = {
        name: ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=f"{env.region}{az}")["Subnet"][
            "SubnetId"
        ]
        for name, (cidr, az) in layout["subnets"].items()
    }
    ami = ec2.describe_images()["Images"][0]["ImageId"]

    def run(name: str, roles: str, subnet: str, extra: list[dict] | None = None) -> str:
        itags = [
            {"Key": "Name", "Value": name},
            {"Key": "Role", "Value": roles.split(",")[0]},
            {"Key": "Roles", "Value": roles},
            *(extra if extra is not None else tags),
        ]
        res = ec2.run_instances(
            ImageId=ami,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.small",
            SubnetId=subnets[subnet],
            TagSpecifications=[{"ResourceType": "instance", "Tags": itags}],
        )
        return res["Instances"][0]["InstanceId"]

    for name, roles, subnet in layout["instances"]:
        run(name, roles, subnet)
    # Decoys the lab must ignore: a stopped instance and one of another project.
    first = next(iter(layout["subnets"]))
    stopped = run(f"{env_name}-stopped-1", "bastion", first)
    ec2.stop_instances(InstanceIds=[stopped])
    run(f"{env_name}-other-1", "bastion", first, extra=[{"Key": "Project", "Value": "other"}])


# Stand-in for the repository's inventory/aws_ec2.yml until it exists.
AWS_EC2_INVENTORY = """\
plugin: amazon.aws.aws_ec2
regions: [ap-northeast-2]
filters:
  tag:Project: fms
  instance-state-name: running
hostnames: [tag:Name]
compose:
  ansible_host: private_ip_address
"""


def aws_ec2_inventory(tmp: Path) -> Path:
    """The aws_ec2 plugin configuration the lab's Ansible runs use (the repository's, when present)."""
    repo_config = REPO / "inventory" / "aws_ec2.yml"
    if repo_config.exists():
        return repo_config
    path = tmp / "aws_ec2.yml"
    path.write_text(AWS_EC2_INVENTORY)
    return path


# The lab's apply step in the tests: see the module docstring.
APPLY = provision_env


def cli_env(lab_dir: Path) -> dict[str, str]:
    return {**os.environ, "FMS_LAB_DIR": str(lab_dir)}


def lab_cli() -> list[str]:
    return [sys.executable, str(REPO / "scripts" / "lab.py")]

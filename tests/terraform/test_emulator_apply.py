"""Both stacks applied for real to the AWS emulator (moto, loopback), in two
regions: apply -> empty plan -> what exists is what was designed -> the
inventory plugin sees it -> the peering removed leaves no route -> destroy
leaves nothing.

The order is the operator's (README): primary, then DR (its VPC peering needs
the primary's VPC), then primary again with lake replication into DR's buckets.

The standby stack's secrets backup bucket is checked on the same apply (it used to get an
emulator, an init and a targeted apply of its own); the active stack's refusal of it is in
test_bad_input.py, on that module's empty stack. The playbooks' round trip runs in
tests/integration/test_secrets_backup.py on a bucket made with boto3: this one, like every
s3_bucket, denies requests without TLS (DenyInsecureTransport), and the emulator serves plain
HTTP, so moto answers the playbooks' object calls 403 - as AWS would answer an http client.

Timings land in build/reports/terraform-emulator.json.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from emulator_support import client, hcl, start_emulator
from fms_tools.fmsops.emulator import EMULATOR_ENV, Emulator, register_lab_image
from fms_tools.fmsops.platform_contract import load as load_platform
from fms_tools.fmsops.terraform import REPO, Stack, env_region, lab_stack, lab_var_file

pytestmark = [pytest.mark.terraform, pytest.mark.slow]
REPORT = REPO / "build" / "reports" / "terraform-emulator.json"
ENVS = ("primary", "dr")  # DR after primary: DR requests the peering to the primary's VPC
STANDBY = next(name for name, s in load_platform().stacks.items() if s.role == "standby")
ACTIVE = next(name for name, s in load_platform().stacks.items() if s.role == "active")


class Applied:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.stacks: dict[str, Stack] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.variables: dict[str, dict[str, str]] = {}
        self.timings: dict[str, float] = {}
        self.destroyed: set[str] = set()

    def region(self, env: str) -> str:
        return env_region(env)

    def ec2(self, env: str):
        return client("ec2", self.emulator, self.region(env))

    def s3(self, env: str):
        return client("s3", self.emulator, self.region(env))

    def timed(self, label: str, fn, *args, **kwargs):
        started = time.monotonic()
        result = fn(*args, **kwargs)
        self.timings[label] = round(time.monotonic() - started, 1)
        return result


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Applied]:
    workdir = tmp_path_factory.mktemp("tf-emulator")
    emulator = start_emulator(workdir)
    state = Applied(emulator)
    try:
        for env in ENVS:
            register_lab_image(emulator.url, env_region(env))
            stack = lab_stack(env, emulator.url, workdir=workdir / env).stage()
            stack.init()
            variables = {"aws_endpoint_url": emulator.url}
            state.stacks[env] = stack
            state.variables[env] = variables
            state.timed(f"apply_{env}_s", stack.apply, [lab_var_file(env)], variables)
            state.outputs[env] = stack.outputs()
        # The primary's lake replicates into the DR buckets that exist now: a second, small apply
        # without reading back what the first just created (the empty-plan tests then refresh all).
        dr = state.outputs["dr"]
        state.variables["primary"]["lake_replication"] = hcl(
            {
                "enabled": True,
                "destination_bucket_arns": dr["lake_bucket_arns"],
                "destination_kms_key_arn": dr["kms_key_arn"],
            }
        )
        state.timed(
            "apply_primary_replication_s",
            state.stacks["primary"].apply,
            [lab_var_file("primary")],
            state.variables["primary"],
            refresh=False,
        )
        state.outputs["primary"] = state.stacks["primary"].outputs()
        yield state
    finally:
        for env in reversed(ENVS):
            if env in state.stacks and env not in state.destroyed:
                state.stacks[env].run(
                    "destroy",
                    "-auto-approve",
                    "-input=false",
                    "-no-color",
                    f"-var-file={lab_var_file(env)}",
                    *[f"-var={k}={v}" for k, v in state.variables[env].items()],
                    check=False,
                )
        emulator.stop()
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps(state.timings, indent=2) + "\n")


def _instances(applied: Applied, env: str) -> list[dict[str, Any]]:
    reservations = applied.ec2(env).describe_instances(
        Filters=[
            {"Name": "tag:Project", "Values": ["fms"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


@pytest.mark.parametrize("env", ENVS)
def test_plan_after_apply_is_empty(applied: Applied, env: str) -> None:
    stack = applied.stacks[env]
    result = applied.timed(f"plan_{env}_s", stack.plan_exit_code, [lab_var_file(env)], applied.variables[env])
    changes = [
        line for line in result.stdout.splitlines() if line.strip().startswith(("#", "~", "+", "-", "Error"))
    ]
    assert result.returncode == 0, "plan shows drift or failed:\n" + "\n".join(changes[:200])


@pytest.mark.parametrize("env", ENVS)
def test_instances_per_role_spread_over_azs(applied: Applied, env: str) -> None:
    instances = _instances(applied, env)
    expected = applied.outputs[env]["instances"]
    assert {_tags(i)["Name"] for i in instances} == set(expected)
    by_role: dict[str, set[str]] = {}
    for inst in instances:
        tags = _tags(inst)
        assert tags["Role"] == expected[tags["Name"]]["role"]
        assert tags["Stack"] == env and tags["Env"] == "lab" and tags["Project"] == "fms"
        by_role.setdefault(tags["Role"], set()).add(inst["Placement"]["AvailabilityZone"])
    counts = Counter(_tags(i)["Role"] for i in instances)
    for role, zones in by_role.items():
        if counts[role] >= 2:
            assert len(zones) >= 2, f"{role}: {counts[role]} instances all in {zones}"
    assert counts["kafka"] == 3 and len(by_role["kafka"]) == 2


@pytest.mark.parametrize("env", ENVS)
def test_imdsv2_required_and_no_public_addresses_but_bastion(applied: Applied, env: str) -> None:
    for inst in _instances(applied, env):
        assert inst["MetadataOptions"]["HttpTokens"] == "required", _tags(inst)["Name"]
        assert inst["MetadataOptions"]["HttpPutResponseHopLimit"] == 1


@pytest.mark.parametrize("env", ENVS)
def test_volumes_encrypted_gp3_with_platform_key(applied: Applied, env: str) -> None:
    ids = [i["InstanceId"] for i in _instances(applied, env)]
    volumes = applied.ec2(env).describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": ids}])[
        "Volumes"
    ]
    data_volumes = [v for v in volumes if _tags(v).get("Name", "").endswith("-data")]
    assert len(data_volumes) == 6, [_tags(v) for v in volumes]  # kafka x3, namenode, datanode x2
    key = applied.outputs[env]["kms_key_arn"]
    for vol in volumes:
        assert vol["Encrypted"], vol["VolumeId"]
        assert vol["VolumeType"] == "gp3", vol["VolumeId"]
    for vol in data_volumes:
        assert vol["KmsKeyId"] == key


def _source_name(pair_or_range: dict[str, Any], group_roles: dict[str, str]) -> str:
    if "GroupId" in pair_or_range:
        return group_roles[pair_or_range["GroupId"]]
    return pair_or_range["CidrIp"]


@pytest.mark.parametrize("env", ENVS)
def test_security_group_ingress_exactly_as_designed(applied: Applied, env: str) -> None:
    sg_ids = applied.outputs[env]["security_group_ids"]
    group_roles = {gid: role for role, gid in sg_ids.items()}
    groups = applied.ec2(env).describe_security_groups(GroupIds=list(sg_ids.values()))["SecurityGroups"]
    actual = set()
    for group in groups:
        for perm in group["IpPermissions"]:
            for source in perm.get("UserIdGroupPairs", []) + perm.get("IpRanges", []):
                actual.add(
                    (
                        group_roles[group["GroupId"]],
                        _source_name(source, group_roles),
                        perm["IpProtocol"],
                        perm["FromPort"],
                        perm["ToPort"],
                    )
                )
                assert source.get("Description"), f"undescribed rule on {group['GroupName']}"
    designed = {
        (r["to"], r["source"], r["protocol"], r["from_port"], r["to_port"])
        for r in applied.outputs[env]["security_ingress_design"]
    }
    assert actual == designed
    assert not any(src in ("0.0.0.0/0", "::/0") for _, src, _, _, _ in actual)
    # What exists is the platform contract (platform.yml): its rules between groups,
    # and the peer region (MirrorMaker 2) reaching only Kafka's client listener.
    contract = load_platform()
    between_groups = {r for r in actual if r[1] in sg_ids}
    assert between_groups == {
        (r.to, r.source, r.protocol, r.from_port, r.to_port)
        for r in contract.rules()
        if r.source in contract.security_groups
    }
    peer_stack = contract.stack(env).peer
    assert peer_stack, f"stack {env} has no peer in platform.yml"
    peer = contract.stack(peer_stack).lab_vpc_cidr  # the lab environment's address of the peer VPC
    client = contract.port("kafka_client")
    assert {r for r in actual if r[1] == peer} == {("kafka", peer, "tcp", client, client)}


@pytest.mark.parametrize("env", ENVS)
def test_lake_buckets_encrypted_versioned_private_and_tiered(applied: Applied, env: str) -> None:
    s3 = applied.s3(env)
    key = applied.outputs[env]["kms_key_arn"]
    for tier, bucket in applied.outputs[env]["lake_bucket_names"].items():
        enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert enc["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(block.values()) and len(block) == 4
        rule = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]
        assert {(t["StorageClass"], t["Days"]) for t in rule["Transitions"]} == {
            ("STANDARD_IA", 30),
            ("GLACIER", 365),
        }
        assert ("Expiration" in rule) == (tier != "archive")
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        deny = [s for s in policy["Statement"] if s.get("Sid") == "DenyInsecureTransport"]
        assert deny and deny[0]["Condition"]["Bool"]["aws:SecureTransport"] == "false"
        assert s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"]["TargetPrefix"] == f"{tier}/"


def test_primary_lake_replicates_to_dr(applied: Applied) -> None:
    s3 = applied.s3("primary")
    dr_arns = applied.outputs["dr"]["lake_bucket_arns"]
    for tier, bucket in applied.outputs["primary"]["lake_bucket_names"].items():
        rules = s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]["Rules"]
        assert rules[0]["Status"] == "Enabled"
        assert rules[0]["Destination"]["Bucket"] == dr_arns[tier]


def test_standby_stack_makes_a_private_versioned_kms_encrypted_bucket(applied: Applied) -> None:
    """The secrets backups' bucket: on the standby stack only (its region outlives the active one)."""
    assert {STANDBY, ACTIVE} == set(ENVS)
    # `terraform output` leaves out a null output: the active stack makes no such bucket.
    assert applied.outputs[ACTIVE].get("secrets_backup_bucket") is None
    bucket = applied.outputs[STANDBY]["secrets_backup_bucket"]
    assert bucket.endswith("-secrets-backup") and env_region(STANDBY) in bucket
    s3 = applied.s3(STANDBY)
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == env_region(STANDBY)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": applied.outputs[STANDBY]["kms_key_arn"],
    }
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    deny = [st for st in policy["Statement"] if st.get("Sid") == "DenyInsecureTransport"]
    assert deny and deny[0]["Condition"]["Bool"]["aws:SecureTransport"] == "false"
    assert s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"]["TargetPrefix"] == "secrets-backup/"


@pytest.mark.parametrize(("env", "inventory"), [("primary", "aws_ec2.yml"), ("dr", "dr.aws_ec2.yml")])
def test_inventory_plugin_groups_every_instance(applied: Applied, env: str, inventory: str) -> None:
    env_vars = {
        **os.environ,
        **EMULATOR_ENV,
        "AWS_URL": applied.emulator.url,
        "ANSIBLE_INVENTORY_CACHE": "False",
    }
    venv_bin = Path(os.sys.executable).parent
    result = subprocess.run(
        [str(venv_bin / "ansible-inventory"), "-i", str(REPO / "inventory" / inventory), "--list"],
        env=env_vars,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    listed = json.loads(result.stdout)
    expected = applied.outputs[env]["inventory_groups"]
    for group in load_platform().inventory_groups:
        assert sorted(listed.get(group, {}).get("hosts", [])) == sorted(expected.get(group, [])), group
    hostvars = listed["_meta"]["hostvars"]

    def plain(value: Any) -> Any:  # ansible-core 2.19 marks templated values unsafe in --list output
        return value.get("__ansible_unsafe") if isinstance(value, dict) else value

    jump_hosts = {h for g in load_platform().jump_groups for h in expected.get(g, [])}
    assert jump_hosts, "every stack has a bastion"
    for name, inst in applied.outputs[env]["instances"].items():
        host = plain(hostvars[name]["ansible_host"])
        # Peers reach every host at its private address; Ansible the bastion at its public one
        # (one of the stack's Elastic IPs) and every other host privately, through the bastion.
        assert plain(hostvars[name]["fms_node_address"]) == inst["private_ip"]
        if name in jump_hosts:
            assert host == plain(hostvars[name]["public_ip_address"]) != inst["private_ip"]
            assert host in applied.outputs[env]["bastion_public_ips"]
        else:
            assert host == inst["private_ip"]
    graph = subprocess.run(
        [str(venv_bin / "ansible-inventory"), "-i", str(REPO / "inventory" / inventory), "--graph"],
        env=env_vars,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert "@kafka_controller:" in graph.stdout


def test_standby_finds_peer_brokers_in_the_peers_inventory(applied: Applied, tmp_path: Path) -> None:
    """ansible/kafka_mirror_source.yml, run against the DR inventory as site.yml runs it, finds the
    primary's brokers in the primary's own inventory: names as their certificates carry them,
    private addresses - what MirrorMaker 2 bootstraps from and /etc/hosts maps. No host is touched."""
    found = tmp_path / "peer_kafka_hosts.json"
    wrapper = tmp_path / "discover.yml"
    wrapper.write_text(
        f"""- name: Discovery as site.yml runs it
  ansible.builtin.import_playbook: {REPO / "ansible" / "kafka_mirror_source.yml"}
- name: Write what the standby found
  hosts: kafka_mirror
  gather_facts: false
  tasks:
    - name: Write fms_peer_kafka_hosts
      ansible.builtin.copy:
        content: "{{{{ fms_peer_kafka_hosts | to_json }}}}"
        dest: {found}
        mode: "0600"
      delegate_to: localhost
      run_once: true
""",
        encoding="utf-8",
    )
    venv_bin = Path(os.sys.executable).parent
    result = subprocess.run(
        [
            str(venv_bin / "ansible-playbook"),
            "-i",
            str(REPO / load_platform().stack("dr").inventory),
            str(wrapper),
        ],
        env={
            **os.environ,
            **EMULATOR_ENV,
            "AWS_URL": applied.emulator.url,
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
            "ANSIBLE_INVENTORY_CACHE": "False",
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    brokers = applied.outputs["primary"]["inventory_groups"]["kafka"]
    instances = applied.outputs["primary"]["instances"]
    expected = [
        {"name": re.sub(r"[^a-z0-9.-]", "-", host.lower()), "address": instances[host]["private_ip"]}
        for host in sorted(brokers)
    ]
    assert expected and json.loads(found.read_text(encoding="utf-8")) == expected


def _peering_routes(applied: Applied, env: str) -> dict[str, list[dict[str, Any]]]:
    """Route table id -> its routes through a VPC peering, for every table of the env's VPC."""
    ec2 = applied.ec2(env)
    tables = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [applied.outputs[env]["vpc_id"]]}]
    )
    return {
        t["RouteTableId"]: [r for r in t["Routes"] if r.get("VpcPeeringConnectionId")]
        for t in tables["RouteTables"]
    }


def _private_tables(applied: Applied, env: str) -> set[str]:
    """The route tables the env's private and data subnets use (the public one carries the bastion only)."""
    ec2 = applied.ec2(env)
    vpc = applied.outputs[env]["vpc_id"]
    subnets = ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "tag:Tier", "Values": ["private", "data"]}]
    )["Subnets"]
    tables = ec2.describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": [s["SubnetId"] for s in subnets]}]
    )["RouteTables"]
    assert len(subnets) == 4 and tables, "lab.tfvars: private and data subnets in two zones"
    return {t["RouteTableId"] for t in tables}


def test_dr_peers_with_primary_routed_both_ways(applied: Applied) -> None:
    """DR requested the peering, the primary region accepted it, each private table routes the other VPC."""
    peering = applied.outputs["dr"]["peering"]
    primary_cidr, dr_cidr = applied.outputs["primary"]["vpc_cidr"], applied.outputs["dr"]["vpc_cidr"]
    contract = load_platform()
    assert primary_cidr == contract.stack("primary").lab_vpc_cidr  # one home: platform.yml
    # `terraform output` leaves out a null output: the active stack holds nothing of the peering.
    assert applied.outputs["primary"].get("peering") is None
    assert peering["peer_cidr"] == primary_cidr and peering["vpc_cidr"] == dr_cidr
    assert peering["status"] == "active" and peering["peer_vpc_id"] == applied.outputs["primary"]["vpc_id"]
    for env in ENVS:  # the same connection, seen from either region
        (pcx,) = applied.ec2(env).describe_vpc_peering_connections(VpcPeeringConnectionIds=[peering["id"]])[
            "VpcPeeringConnections"
        ]
        assert pcx["Status"]["Code"] == "active", pcx["Status"]
        assert (pcx["RequesterVpcInfo"]["VpcId"], pcx["RequesterVpcInfo"]["Region"]) == (
            applied.outputs["dr"]["vpc_id"],
            applied.region("dr"),
        )
        assert (pcx["AccepterVpcInfo"]["VpcId"], pcx["AccepterVpcInfo"]["Region"]) == (
            applied.outputs["primary"]["vpc_id"],
            applied.region("primary"),
        )
        assert pcx["RequesterVpcInfo"]["PeeringOptions"]["AllowDnsResolutionFromRemoteVpc"] is True
        assert pcx["AccepterVpcInfo"]["PeeringOptions"]["AllowDnsResolutionFromRemoteVpc"] is True
    for env, other_cidr in (("dr", primary_cidr), ("primary", dr_cidr)):
        routes = _peering_routes(applied, env)
        private = _private_tables(applied, env)
        for table, through in routes.items():
            want = [(other_cidr, peering["id"])] if table in private else []
            assert [(r["DestinationCidrBlock"], r["VpcPeeringConnectionId"]) for r in through] == want, (
                env,
                table,
            )


def test_removing_the_peering_leaves_no_route(applied: Applied) -> None:
    """enable_peering=false on DR: the connection is deleted and no table of either VPC routes through it."""
    pcx_id = applied.outputs["dr"]["peering"]["id"]
    applied.variables["dr"]["enable_peering"] = "false"
    # The empty-plan tests have just refreshed DR's state: only the peering's removal is applied.
    applied.timed(
        "apply_dr_without_peering_s",
        applied.stacks["dr"].apply,
        [lab_var_file("dr")],
        applied.variables["dr"],
        refresh=False,
    )
    assert applied.stacks["dr"].outputs().get("peering") is None
    for env in ENVS:
        assert all(routes == [] for routes in _peering_routes(applied, env).values()), env
        (pcx,) = applied.ec2(env).describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx_id])[
            "VpcPeeringConnections"
        ]
        assert pcx["Status"]["Code"] == "deleted"


def test_destroy_leaves_nothing(applied: Applied) -> None:
    for env in reversed(ENVS):
        applied.timed(
            f"destroy_{env}_s", applied.stacks[env].destroy, [lab_var_file(env)], applied.variables[env]
        )
        applied.destroyed.add(env)
    for env in ENVS:
        assert _instances(applied, env) == []
        vpcs = applied.ec2(env).describe_vpcs(Filters=[{"Name": "tag:Project", "Values": ["fms"]}])["Vpcs"]
        assert vpcs == []
        buckets = [b["Name"] for b in applied.s3(env).list_buckets()["Buckets"]]
        assert not [b for b in buckets if b.startswith("fms-lab")]
        volumes = applied.ec2(env).describe_volumes(Filters=[{"Name": "tag:Project", "Values": ["fms"]}])
        assert volumes["Volumes"] == []

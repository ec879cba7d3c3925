"""`lab up`'s firewall step reads the groups the emulator really returns (moto, in process) and hands
the per-host policies to lab.firewall: discovery's group ids, DescribeSecurityGroups' JSON (the
default egress Terraform revokes, group references, ranges) and the DNS exemption, end to end
short of iptables (stubbed: the netns test in tests/lab applies real rules)."""

from __future__ import annotations

from typing import Any

import pytest
from fms_tools.fmsops.emulator import EMULATOR_ENV
from fms_tools.fmsops.platform_contract import load
from fms_tools.lab import discovery, firewall, orchestrate, preflight
from fms_tools.lab.envs import ENVS

CONTRACT = load()
KAFKA_CLIENT = CONTRACT.port("kafka_client")
SPARK_RPC = CONTRACT.ports["spark_rpc"]
ENV = ENVS["primary"]


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """One emulated VPC for the module (moto's start-up is most of the cost)."""
    moto = pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    with pytest.MonkeyPatch.context() as mp, moto.mock_aws():
        for key, value in EMULATOR_ENV.items():
            mp.setenv(key, value)
        mp.setenv("FMS_LAB_DIR", str(tmp_path_factory.mktemp("lab")))
        ec2 = boto3.client("ec2", region_name=ENV.region)
        vpc = ec2.create_vpc(CidrBlock=ENV.cidr)["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="198.18.64.0/24")["Subnet"]["SubnetId"]
        sg = {
            name: ec2.create_security_group(GroupName=f"fms-lab-{name}", Description=name, VpcId=vpc)[
                "GroupId"
            ]
            for name in ("kafka", "spark", "collector")
        }
        for gid in sg.values():  # as the Terraform AWS provider does for every group it creates
            ec2.revoke_security_group_egress(
                GroupId=gid, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
            )
            ec2.authorize_security_group_egress(
                GroupId=gid, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": ENV.cidr}]}]
            )
        ec2.authorize_security_group_ingress(
            GroupId=sg["kafka"],
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": KAFKA_CLIENT,
                    "ToPort": KAFKA_CLIENT,
                    "UserIdGroupPairs": [{"GroupId": sg["collector"]}, {"GroupId": sg["spark"]}],
                }
            ],
        )
        ec2.authorize_security_group_ingress(
            GroupId=sg["spark"],
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": SPARK_RPC.port,
                    "ToPort": SPARK_RPC.port_to,
                    "UserIdGroupPairs": [{"GroupId": sg["spark"]}],
                }
            ],
        )
        ami = ec2.describe_images()["Images"][0]["ImageId"]
        for name, group in (("kafka-1", "kafka"), ("spark-1", "spark"), ("collector-1", "collector")):
            tags = [
                {"Key": "Name", "Value": name},
                {"Key": "Project", "Value": "fms"},
                {"Key": "Roles", "Value": group},
            ]
            ec2.run_instances(
                ImageId=ami,
                MinCount=1,
                MaxCount=1,
                SubnetId=subnet,
                SecurityGroupIds=[sg[group]],
                TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
            )
        yield sg


def test_up_enforces_the_groups_the_emulator_returns(emulated, monkeypatch):
    calls: dict[str, Any] = {}

    def fake_enforce(env, hosts, resolvers, saved, ns=firewall.HOST):
        calls.update(env=env, hosts={h.name: h for h in hosts}, resolvers=resolvers)
        saved["net.bridge.bridge-nf-call-iptables"] = "0"
        return firewall.sg_iptables.render(env.name, env.bridge, env.rule_tag, hosts, resolvers), []

    monkeypatch.setattr(firewall, "enforce", fake_enforce)
    monkeypatch.setattr(firewall, "host_veth", lambda name, ns=firewall.HOST: f"vb-{name}")
    monkeypatch.setattr(preflight, "host_nameservers", lambda: ["10.255.255.53"])
    found = discovery.discover(ENV, None)
    assert {i.name: len(i.security_groups) for i in found.instances} == {
        "kafka-1": 1,
        "spark-1": 1,
        "collector-1": 1,
    }
    ip = {i.name: i.private_ip for i in found.instances}
    lab: dict[str, Any] = {"envs": {}}
    orchestrate.enforce_security_groups(ENV, found, None, lab)

    kafka = calls["hosts"]["kafka-1"].policy
    assert {(r.protocol, r.ports, r.peer) for r in kafka.ingress} == {
        ("tcp", (KAFKA_CLIENT, KAFKA_CLIENT), f"{ip['collector-1']}/32"),
        ("tcp", (KAFKA_CLIENT, KAFKA_CLIENT), f"{ip['spark-1']}/32"),
    }
    # Terraform's provider revoked the default egress: only the VPC is left (no 0.0.0.0/0)
    assert {(r.protocol, r.peer) for r in kafka.egress} == {("all", ENV.cidr)}
    spark = calls["hosts"]["spark-1"].policy
    assert {(r.ports, r.peer) for r in spark.ingress} == {
        ((SPARK_RPC.port, SPARK_RPC.port_to), f"{ip['spark-1']}/32")
    }
    assert calls["hosts"]["collector-1"].policy.ingress == []
    # the lab machine, standing in for a collector as the benchmark's producer, may reach the
    # brokers' client port; nothing else (no office CIDR in these groups)
    assert {(r.protocol, r.ports) for r in calls["hosts"]["kafka-1"].from_lab_machine} == {
        ("tcp", (KAFKA_CLIENT, KAFKA_CLIENT))
    }
    assert calls["hosts"]["spark-1"].from_lab_machine == ()
    assert calls["hosts"]["collector-1"].veth == "vb-collector-1"
    assert calls["resolvers"] == ["10.255.255.53"]
    assert lab["saved_sysctls"] == {"net.bridge.bridge-nf-call-iptables": "0"}  # kept for `down`


def test_enforcement_off_removes_the_envs_chains_and_says_so(emulated, monkeypatch, capsys):
    removed = []
    monkeypatch.setenv(firewall.DISABLE_ENV, "off")
    monkeypatch.setattr(firewall, "teardown", lambda env, ns=firewall.HOST: removed.append(env.name))
    orchestrate.enforce_security_groups(ENV, discovery.discover(ENV, None), None, {"envs": {}})
    assert removed == ["primary"]
    assert "NOT enforced" in capsys.readouterr().err


def test_firewall_report_lists_each_hosts_rules_and_drops(tmp_path, monkeypatch, capsys):
    """`fms-lab firewall`: one line per host; exit 1 when a host has no chains (not enforced)."""
    from fms_tools.lab import state

    monkeypatch.setenv("FMS_LAB_DIR", str(tmp_path))
    state.save_hosts(
        {
            "kafka-1": {"name": "kafka-1", "env": "primary", "ip": "198.18.128.4"},
            "collector-1": {"name": "collector-1", "env": "primary", "ip": "198.18.64.7"},
        }
    )
    counts = {
        "198.18.128.4": firewall.HostCounts("198.18.128.4", True, 9, 4, 12, 0),
        "198.18.64.7": firewall.HostCounts("198.18.64.7", False, 0, 0, 0, 0),
    }
    monkeypatch.setattr(firewall, "counts", lambda env, ips, ns=firewall.HOST: {ip: counts[ip] for ip in ips})
    assert orchestrate.print_firewall() == 1
    out = capsys.readouterr().out
    assert next(line for line in out.splitlines() if line.startswith("kafka-1")).split() == [
        "kafka-1",
        "primary",
        "198.18.128.4",
        "9",
        "4",
        "12",
        "0",
    ]
    assert "NOT enforced on ['collector-1']" in out
    assert orchestrate._fw_cell(counts["198.18.128.4"]) == "9/4"
    assert orchestrate._fw_cell(counts["198.18.64.7"]) == "OFF"
    assert orchestrate._fw_cell(None) == "-"

"""fmsops.platform_contract: the one Python reader of platform.yml refuses what Terraform would refuse."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from fms_tools.fmsops.platform_contract import PLATFORM_FILE, ContractError, load, parse


def _contract() -> dict[str, Any]:
    return yaml.safe_load(PLATFORM_FILE.read_text(encoding="utf-8"))


def test_the_shipped_contract_loads() -> None:
    platform = load()
    assert platform.security_group_of("kafka_controller") == "kafka"
    assert platform.ports["spark_rpc"].covers(platform.port("spark_stream_driver"))
    assert all(r.key.count("<-") == 1 for r in platform.rules())


def _break_on(c: dict[str, Any]) -> None:
    entry = c["ports"]["ssh"]["ingress"][0]
    entry[True] = entry.pop("to")  # what a bare `on:` key becomes in YAML 1.1


def _move(c: dict[str, Any]) -> None:
    c["ports"]["spark_stream_driver"]["port"] = c["ports"]["spark_rpc"]["port_to"] + 1


@pytest.mark.parametrize(
    ("breaks", "message"),
    [
        (lambda c: c["ports"]["ssh"]["ingress"][0].update(to=["kafak"]), "must be security groups"),
        (lambda c: c["ports"]["ssh"]["ingress"][0].update({"from": ["internet"]}), "must be among"),
        (_break_on, "exactly to, from and description"),
        (_move, "must lie inside ports.spark_rpc"),
        (lambda c: c["security_groups"]["hdfs"]["inventory_groups"].append("kafka"), "is in both"),
        (lambda c: c["ports"]["grafana"].update(port_to=1), "not a port range"),
        (lambda c: c["ports"]["grafana"].update(protocols=["icmp"]), "protocols"),
        (lambda c: c["ports"]["grafana"]["ingress"][0].update(description="Grafana's UI"), "AWS refuses"),
        (lambda c: c["security_groups"]["spark"].update(subnet_tier="dmz"), "subnet_tier"),
        (lambda c: c["cidr_classes"]["admin"].update(variable="office_cidrs"), "variable must be one of"),
        (lambda c: c["environments"]["staging"].pop("production"), "production .* must be true or false"),
        (lambda c: c["environments"].update({"Prod-1": c["environments"]["dev"]}), "lower-case name"),
        (lambda c: c["stacks"]["dr"].update(region="tokyo"), "not an AWS region code"),
        (lambda c: c["stacks"]["dr"].update(vpc_cidr="10.20.1.0/16"), "not an IPv4 network address"),
        (lambda c: c["stacks"]["dr"].update(vpc_cidr="10.10.0.0/16"), "overlaps its peer"),
        (lambda c: c["stacks"]["dr"].update(peer="dr"), "must be another stack naming it"),
        (lambda c: c["stacks"]["primary"].pop("lab_vpc_cidr"), "exactly"),
        (lambda c: c["stacks"]["dr"].update(role="passive"), "must be one of active, standby"),
        (lambda c: c["stacks"]["dr"].update(role="active"), "one must be active, one standby"),
        (
            lambda c: c["stacks"]["primary"].update(peer=None) or c["stacks"]["dr"].update(peer=None),
            "without a peer must be active",
        ),
        (lambda c: c["topics"]["raw"].update(name="fms sensor raw"), "Kafka refuses the topic name"),
        (lambda c: c["topics"]["dlq"].update(name=".."), "Kafka refuses the topic name"),
        (lambda c: c["topics"]["dlq"].update(name="fms_sensor_raw"), "collides with topics.raw"),
        (lambda c: c["topics"]["raw"].update(created_by="terraform"), "created_by: must be one of"),
        (lambda c: c["topics"]["raw"].update(producers=[]), "producers: .* non-empty list"),
        (lambda c: c["topics"]["raw"].update(consumers=["spark", "spark"]), "consumers: .* distinct names"),
        (lambda c: c["topics"]["raw"].update(consumers=["User:spark"]), "consumers: .* matching"),
        (lambda c: c["topics"]["dlq"].update(consumer_groups=["fms-"]), "without consumers has no consumer"),
        (lambda c: c["topics"]["raw"].pop("description"), r"topics.raw: needs .*description"),
        (lambda c: c["topics"]["raw"].update(partitions=12), r"topics.raw: needs"),
        (lambda c: c.pop("topics"), "non-empty mapping 'topics'"),
    ],
)
def test_a_broken_contract_is_refused_with_the_entry(breaks: Callable[[dict], Any], message: str) -> None:
    contract = copy.deepcopy(_contract())
    breaks(contract)
    with pytest.raises(ContractError, match=message):
        parse(contract)


def test_two_rules_with_one_terraform_key_are_refused() -> None:
    contract = _contract()
    contract["ports"]["grafana_again"] = copy.deepcopy(contract["ports"]["grafana"])
    with pytest.raises(ContractError, match="share a Terraform key"):
        parse(contract)


def test_environments_and_stacks_come_from_the_contract() -> None:
    platform = load()
    assert platform.environment("production").production and not platform.environment("lab").production
    primary, dr = platform.stack("primary"), platform.stack("dr")
    assert (primary.peer, dr.peer) == ("dr", "primary") and primary.region != dr.region
    assert (primary.role, dr.role) == ("active", "standby")
    assert primary.cidr(platform.environment("lab")) == primary.lab_vpc_cidr
    assert primary.cidr(platform.environment("dev")) == primary.vpc_cidr


def test_an_unknown_environment_or_stack_names_the_allowed_ones() -> None:
    platform = load()
    with pytest.raises(ContractError, match=r"unknown environment 'prod'; platform.yml allows production, "):
        platform.environment("prod")
    with pytest.raises(ContractError, match=r"unknown stack .secondary.; platform.yml allows primary, dr"):
        platform.stack("secondary")


def test_the_lab_envs_are_the_contract_stacks() -> None:
    """fms_tools.lab builds one env per stack from the contract: its region and its lab CIDR."""
    from fms_tools.lab.envs import ENVS, LAB_RANGE

    platform = load()
    assert {name: (e.region, e.cidr) for name, e in ENVS.items()} == {
        s.name: (s.region, s.lab_vpc_cidr) for s in platform.stacks.values()
    }
    assert all(e.network.subnet_of(LAB_RANGE) for e in ENVS.values())


def test_topics_come_from_the_contract() -> None:
    """contract.topic(key): the names the kafka role creates, the stream reads and the bench measures."""
    platform = load()
    raw, dlq = platform.topic("raw"), platform.topic("dlq")
    assert raw.name != dlq.name and {raw.created_by, dlq.created_by} == {"kafka"}
    assert raw.producers == ("collector",) and raw.consumers == ("spark",) and dlq.producers == ("spark",)
    assert "spark-kafka-" in raw.consumer_groups  # what Spark's Kafka source calls its groups
    assert platform.topic("bench_ceiling").created_by == "bench"
    with pytest.raises(ContractError, match=r"unknown topic 'sensor'; platform.yml allows raw, dlq"):
        platform.topic("sensor")

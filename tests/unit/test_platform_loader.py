"""fmsops.platform_contract: the one Python reader of platform.yml refuses what Terraform would refuse."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from fmsops.platform_contract import PLATFORM_FILE, ContractError, load, parse


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

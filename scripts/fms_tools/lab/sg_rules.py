"""EC2 security groups -> the allow rules of each instance (pure: no iptables, no AWS calls).

Why a separate module: the translation is where AWS semantics live (group references mean
"the group's members", protocol -1 means everything, a port range is inclusive, ICMP puts
type/code in the port fields), and it must be testable without root or an emulator.
`lab.sg_iptables` renders the result; `lab.firewall` applies it.

Input is what boto3's DescribeSecurityGroups returns (`IpPermissions`,
`IpPermissionsEgress`, each with `IpRanges` and `UserIdGroupPairs`) and, per instance, its
private IP and group ids. Output, per instance IP: ingress and egress `Rule`s whose peers are
CIDRs only (a group reference is resolved to its members' /32s).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["ingress", "egress"]

# IpProtocol as AWS writes it (name or IANA number) -> the name iptables uses.
_PROTOCOL_NAMES = {"-1": "all", "all": "all", "6": "tcp", "17": "udp", "1": "icmp"}
_PORTED = ("tcp", "udp")


class TranslationError(ValueError):
    pass


@dataclass(frozen=True, order=True)
class Rule:
    """One allow rule of one instance: traffic of `protocol` on `ports` to/from `peer`.

    `ports` is an inclusive (first, last) range for tcp/udp, (type, code) for ICMP with
    -1 meaning any, None when the rule covers every port. `peer` is a CIDR: the source of
    an ingress rule, the destination of an egress rule.
    """

    direction: Direction
    protocol: str  # "all", "tcp", "udp", "icmp" or an IANA protocol number
    ports: tuple[int, int] | None
    peer: str
    why: str = field(default="", compare=False)  # group and rule, for comments and reports


@dataclass
class HostPolicy:
    """Everything one instance may send and receive (as new connections)."""

    ip: str
    groups: tuple[str, ...]
    ingress: list[Rule] = field(default_factory=list)
    egress: list[Rule] = field(default_factory=list)
    # referenced group id -> how many of this instance's permissions name it while no known
    # instance holds it (e.g. the bastion's group in a profile without a bastion)
    unresolved: dict[str, int] = field(default_factory=dict)

    @property
    def rule_count(self) -> int:
        return len(self.ingress) + len(self.egress)


def lab_machine_rules(policy: HostPolicy, inside: str, harness_ips: Iterable[str] = ()) -> list[Rule]:
    """What the lab machine may open to this instance: an outside operator's rights plus the harness's.

    The lab machine is two things AWS keeps apart. It is the operator outside the VPCs: it gets
    every ingress rule whose source CIDR is not inside `inside` (the lab's whole address range),
    i.e. what admin_cidrs and dashboard_cidrs opened (the bastion's SSH, the dashboards) and
    nothing more, so SSH straight to a broker is dropped as on AWS. It is also the test harness
    (the benchmark's load generator, the metric probes), which on AWS would be an instance in
    the VPC: it gets the rules naming `harness_ips`, the members of the groups it stands in for.
    One rule per (protocol, ports), the first reason kept.
    """
    lab_range = ipaddress.ip_network(inside)
    harness = {f"{ip}/32" for ip in harness_ips}
    out: dict[tuple[str, tuple[int, int] | None], Rule] = {}
    for rule in policy.ingress:
        outside = not ipaddress.ip_network(rule.peer).subnet_of(lab_range)  # type: ignore[arg-type]
        if outside or rule.peer in harness:
            role = "operator" if outside else "harness"
            granted = Rule("ingress", rule.protocol, rule.ports, rule.peer, f"{role}: {rule.why}")
            out.setdefault((rule.protocol, rule.ports), granted)
    return sorted(out.values())


def protocol_name(ip_protocol: str | int) -> str:
    value = str(ip_protocol).lower()
    return _PROTOCOL_NAMES.get(value, value)


def _ports(protocol: str, perm: Mapping[str, Any]) -> tuple[int, int] | None:
    if protocol == "all":
        return None  # AWS ignores the ports of protocol -1
    first, last = perm.get("FromPort"), perm.get("ToPort")
    if protocol in _PORTED:
        if first is None or last is None or first == -1 or (first, last) == (0, 65535):
            return None
        if not 0 <= first <= last <= 65535:
            raise TranslationError(f"bad {protocol} port range {first}-{last}")
        return (int(first), int(last))
    if protocol == "icmp":
        icmp_type = -1 if first is None else int(first)
        code = -1 if last is None else int(last)
        return None if icmp_type == -1 else (icmp_type, code)
    return None  # other protocols (e.g. 47/GRE) have no ports


def _cidr(value: str) -> str:
    return str(ipaddress.ip_network(value, strict=False))


def members_by_group(instances: Iterable[tuple[str, Iterable[str]]]) -> dict[str, list[str]]:
    """group id -> the private IPs of its member instances (sorted), from (ip, group ids) pairs."""
    members: dict[str, set[str]] = {}
    for ip, groups in instances:
        for group in groups:
            members.setdefault(group, set()).add(ip)
    return {g: sorted(ips, key=ipaddress.ip_address) for g, ips in members.items()}


def _perm_rules(
    direction: Direction, group: Mapping[str, Any], perm: Mapping[str, Any], members: Mapping[str, list[str]]
) -> tuple[list[Rule], list[str]]:
    """The rules of one IpPermission (every peer it names), and the group references nobody is in."""
    protocol = protocol_name(perm["IpProtocol"])
    ports = _ports(protocol, perm)
    name = group.get("GroupName") or group["GroupId"]
    rules: list[Rule] = []
    unresolved: list[str] = []
    for rng in perm.get("IpRanges", []):
        why = f"{name}: {rng.get('Description') or rng['CidrIp']}"
        rules.append(Rule(direction, protocol, ports, _cidr(rng["CidrIp"]), why))
    for pair in perm.get("UserIdGroupPairs", []):
        ref = pair["GroupId"]
        ips = members.get(ref, [])
        if not ips:
            unresolved.append(ref)
        why = f"{name}: {pair.get('Description') or ref}"
        rules.extend(Rule(direction, protocol, ports, f"{ip}/32", why) for ip in ips)
    # IPv6 ranges and prefix lists: the lab's VPCs have no IPv6 and no prefix lists, and the
    # lab drops IPv6 between hosts (lab.firewall), so they have nothing to allow here.
    return rules, unresolved


def translate(
    groups: Iterable[Mapping[str, Any]], instances: Iterable[tuple[str, Iterable[str]]]
) -> dict[str, HostPolicy]:
    """Per instance IP, the union of the rules of its groups (AWS: a packet allowed by any group passes).

    `groups`: DescribeSecurityGroups' `SecurityGroups`; `instances`: (private IP, group ids).
    A group reference is resolved to the members among `instances`; a reference to a group
    nobody in `instances` holds allows nothing (and is listed in `unresolved`).
    """
    instances = [(ip, tuple(gs)) for ip, gs in instances]
    by_id = {g["GroupId"]: g for g in groups}
    members = members_by_group(instances)
    policies: dict[str, HostPolicy] = {}
    for ip, group_ids in instances:
        missing = [g for g in group_ids if g not in by_id]
        if missing:
            raise TranslationError(f"{ip}: security groups {missing} were not described")
        policy = HostPolicy(ip, group_ids)
        seen: set[Rule] = set()
        for gid in group_ids:
            group = by_id[gid]
            for direction, key in (("ingress", "IpPermissions"), ("egress", "IpPermissionsEgress")):
                for perm in group.get(key, []):
                    rules, unresolved = _perm_rules(direction, group, perm, members)  # type: ignore[arg-type]
                    for ref in unresolved:
                        policy.unresolved[ref] = policy.unresolved.get(ref, 0) + 1
                    for rule in rules:
                        if rule not in seen:  # the same allow from two groups is one rule
                            seen.add(rule)
                            (policy.ingress if direction == "ingress" else policy.egress).append(rule)
        policies[ip] = policy
    return policies

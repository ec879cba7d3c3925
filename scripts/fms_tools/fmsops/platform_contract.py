"""The platform contract (platform.yml at the repository root), read and checked in one place.

Terraform reads the same file with yamldecode() and Ansible through the vars
plugin ansible/plugins/vars/fms_platform.py (which loads this module by path),
so Python code and tests ask this loader instead of keeping their own copy of
a port, a group or a topic name. The checks here mirror the security module's variable
validations: a contract Terraform would refuse is refused here too, with the
entry that is wrong.

Only the standard library and PyYAML: the Ansible vars plugin imports this
file outside the project's package layout. Not named platform.py: moto_server.py runs as a
script from this directory, which Python then searches first, so that name would shadow the
standard library's platform module.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import yaml

# Not fms_tools.REPO: the Ansible vars plugin loads this file by path, outside the package.
REPO = Path(__file__).resolve().parents[3]
PLATFORM_FILE = REPO / "platform.yml"

PROTOCOLS = frozenset({"tcp", "udp"})
SUBNET_TIERS = frozenset({"public", "private", "data"})
# The module variables a CIDR class may name (terraform/modules/security).
CIDR_VARIABLES = frozenset({"admin_cidrs", "dashboard_cidrs", "replication_peer_cidrs"})
# Names Terraform and AWS tags carry (environment, stack_role, Env and Stack tags).
NAME = re.compile(r"^[a-z][a-z0-9]*$")
AWS_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")
# A stack's aws_ec2 inventory (the plugin requires the name to end in aws_ec2.yml).
INVENTORY_PATH = re.compile(r"^inventory/([a-z0-9-]+\.)?aws_ec2\.yml$")
# What AWS accepts in a security group rule description.
AWS_DESCRIPTION = re.compile(r"^[a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]{1,255}$")
# What Kafka accepts as a topic name (and "." / ".." it refuses besides).
KAFKA_TOPIC = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
# Who creates a topic: the kafka role (kafka_topics, with ACLs) or fms-bench (admin, transient).
TOPIC_CREATORS = frozenset({"kafka", "bench"})
TOPIC_KEYS = frozenset({"name", "description", "created_by", "producers", "consumers", "consumer_groups"})
# SCRAM user names (kafka_scram_usernames) and consumer group prefixes.
KAFKA_USER = re.compile(r"^[a-z][a-z0-9_-]*$")
GROUP_PREFIX = re.compile(r"^[a-zA-Z0-9._-]+$")
# A stack's site role: active runs the pipeline, standby keeps it installed but stopped (Ansible
# fms_site_role); the standby stack of a pair requests the VPC peering (terraform/modules/peering).
SITE_ROLES = ("active", "standby")


_T = TypeVar("_T")


class ContractError(ValueError):
    """platform.yml breaks the schema documented at its top."""


@dataclass(frozen=True)
class Rule:
    """One ingress rule as Terraform creates it: `source` is a security group or a CIDR class."""

    port_name: str
    to: str
    source: str
    protocol: str
    from_port: int
    to_port: int
    description: str

    @property
    def key(self) -> str:
        """The security module's for_each key (to<-from:port, /udp for UDP)."""
        suffix = "" if self.protocol == "tcp" else f"/{self.protocol}"
        return f"{self.to}<-{self.source}:{self.from_port}{suffix}"


@dataclass(frozen=True)
class Port:
    name: str
    port: int
    port_to: int
    protocols: tuple[str, ...]
    description: str
    within: str | None
    ingress: tuple[Mapping[str, Any], ...]

    def covers(self, port: int) -> bool:
        return self.port <= port <= self.port_to


@dataclass(frozen=True)
class Environment:
    name: str
    description: str
    production: bool  # production rules apply (quorum checks, production sizing)
    lab: bool  # the local lab: stacks use their lab_vpc_cidr


@dataclass(frozen=True)
class StackSpec:
    """A Terraform root stack (terraform/envs/<name>): where it runs and whom it peers with."""

    name: str
    description: str
    region: str
    vpc_cidr: str
    lab_vpc_cidr: str
    peer: str | None
    role: str  # active or standby (SITE_ROLES)
    inventory: str  # its aws_ec2 dynamic inventory, relative to the repository root

    def cidr(self, environment: Environment) -> str:
        """The stack's VPC CIDR in `environment` (the lab has addresses of its own)."""
        return self.lab_vpc_cidr if environment.lab else self.vpc_cidr


@dataclass(frozen=True)
class Topic:
    """A Kafka topic: its name, who writes and reads it (SCRAM users), their consumer group prefixes."""

    key: str  # how code names it: contract.topic("raw")
    name: str
    description: str
    created_by: str  # kafka (the kafka role, with ACLs) or bench (fms-bench, transient)
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    consumer_groups: tuple[str, ...]


@dataclass(frozen=True)
class Platform:
    """The decoded contract; `data` is the plain mapping Terraform and Ansible see."""

    data: Mapping[str, Any]
    ports: Mapping[str, Port]
    environments: Mapping[str, Environment]
    stacks: Mapping[str, StackSpec]
    topics: Mapping[str, Topic]

    def environment(self, name: str) -> Environment:
        """The named environment; a ContractError naming the allowed ones otherwise."""
        return _named(self.environments, "environment", name)

    def stack(self, name: str) -> StackSpec:
        """The named stack; a ContractError naming the allowed ones otherwise."""
        return _named(self.stacks, "stack", name)

    def topic(self, key: str) -> Topic:
        """The topic the contract calls `key` (e.g. "raw"); a ContractError naming the known ones."""
        return _named(self.topics, "topic", key)

    @property
    def security_groups(self) -> dict[str, list[str]]:
        """Security group -> the inventory groups whose instances get it."""
        return {sg: list(g["inventory_groups"]) for sg, g in self.data["security_groups"].items()}

    @property
    def cidr_classes(self) -> frozenset[str]:
        return frozenset(self.data["cidr_classes"])

    @property
    def inventory_groups(self) -> list[str]:
        return [g for groups in self.security_groups.values() for g in groups]

    @property
    def jump_groups(self) -> list[str]:
        """Inventory groups of the public tier: the bastion(s) every other host is reached through."""
        return [
            group
            for g in self.data["security_groups"].values()
            if g["subnet_tier"] == "public"
            for group in g["inventory_groups"]
        ]

    def security_group_of(self, inventory_group: str) -> str:
        for sg, groups in self.security_groups.items():
            if inventory_group in groups:
                return sg
        raise KeyError(f"inventory group {inventory_group!r} is in no security group of platform.yml")

    def port(self, name: str) -> int:
        return self.ports[name].port

    def rules(self) -> list[Rule]:
        """Every ingress rule the contract asks for, expanded like the security module does."""
        return [
            Rule(p.name, to, source, protocol, p.port, p.port_to, entry["description"])
            for p in self.ports.values()
            for entry in p.ingress
            for to in entry["to"]
            for source in entry["from"]
            for protocol in p.protocols
        ]


def _named(entries: Mapping[str, _T], kind: str, name: str) -> _T:
    if name not in entries:
        raise ContractError(f"unknown {kind} {name!r}; platform.yml allows {', '.join(entries)}")
    return entries[name]


def parse(data: Any) -> Platform:
    """Check a decoded contract and wrap it; raises ContractError naming the wrong entry."""
    if not isinstance(data, Mapping):
        raise ContractError("platform.yml must be a mapping")
    for section in ("environments", "stacks", "security_groups", "cidr_classes", "ports", "topics"):
        if not isinstance(data.get(section), Mapping) or not data[section]:
            raise ContractError(f"platform.yml needs a non-empty mapping {section!r}")
    groups = data["security_groups"]
    seen: dict[str, str] = {}
    for sg, g in groups.items():
        members = g.get("inventory_groups") if isinstance(g, Mapping) else None
        if not re.fullmatch(r"[a-z][a-z0-9_]*", sg) or not members or not g.get("description"):
            raise ContractError(f"security_groups.{sg}: needs a description and inventory_groups")
        if g.get("subnet_tier") not in SUBNET_TIERS:
            raise ContractError(f"security_groups.{sg}: subnet_tier must be one of {sorted(SUBNET_TIERS)}")
        for member in members:
            if member in seen:
                raise ContractError(f"inventory group {member!r} is in both {seen[member]} and {sg}")
            seen[member] = sg
    for cls, c in data["cidr_classes"].items():
        if cls in groups or not isinstance(c, Mapping) or c.get("variable") not in CIDR_VARIABLES:
            raise ContractError(f"cidr_classes.{cls}: variable must be one of {sorted(CIDR_VARIABLES)}")
    sources = set(groups) | set(data["cidr_classes"])
    ports = {name: _port(name, p, set(groups), sources) for name, p in data["ports"].items()}
    for p in ports.values():
        if p.within is not None:
            outer = ports.get(p.within)
            if outer is None or p.ingress or not (outer.covers(p.port) and outer.covers(p.port_to)):
                raise ContractError(f"ports.{p.name}: must lie inside ports.{p.within} and have no ingress")
    environments = {name: _environment(name, e) for name, e in data["environments"].items()}
    stacks = _stacks(data["stacks"])
    topics = _topics(data["topics"])
    platform = Platform(data=data, ports=ports, environments=environments, stacks=stacks, topics=topics)
    keys = [r.key for r in platform.rules() if r.source in groups]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ContractError(f"two rules share a Terraform key: {duplicates}")
    return platform


def _environment(name: str, e: Any) -> Environment:
    if not NAME.match(name) or not isinstance(e, Mapping) or not e.get("description"):
        raise ContractError(f"environments.{name}: needs a lower-case name and a description")
    if not isinstance(e.get("production"), bool) or not isinstance(e.get("lab", False), bool):
        raise ContractError(f"environments.{name}: production (and lab, if given) must be true or false")
    return Environment(name, e["description"], e["production"], e.get("lab", False))


def _network(where: str, cidr: Any) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(cidr)  # strict: host bits set is an error, as in Terraform
    except (TypeError, ValueError):
        raise ContractError(f"{where}: {cidr!r} is not an IPv4 network address") from None
    if not 16 <= network.prefixlen <= 22:  # the network module's limit
        raise ContractError(f"{where}: {cidr} must be between /16 and /22")
    return network


def _stacks(data: Mapping[str, Any]) -> dict[str, StackSpec]:
    stacks: dict[str, StackSpec] = {}
    for name, s in data.items():
        where = f"stacks.{name}"
        keys = {"description", "region", "vpc_cidr", "lab_vpc_cidr", "peer", "role", "inventory"}
        if not NAME.match(name) or not isinstance(s, Mapping) or set(s) != keys or not s["description"]:
            raise ContractError(f"{where}: needs a lower-case name and exactly {sorted(keys)}")
        if not AWS_REGION.match(str(s["region"])):
            raise ContractError(f"{where}.region: {s['region']!r} is not an AWS region code")
        _network(f"{where}.vpc_cidr", s["vpc_cidr"])
        _network(f"{where}.lab_vpc_cidr", s["lab_vpc_cidr"])
        if s["role"] not in SITE_ROLES:
            raise ContractError(f"{where}.role: {s['role']!r} must be one of {', '.join(SITE_ROLES)}")
        if not INVENTORY_PATH.match(str(s["inventory"])):
            raise ContractError(f"{where}.inventory: {s['inventory']!r} must be inventory/<name>aws_ec2.yml")
        stacks[name] = StackSpec(
            name,
            s["description"],
            s["region"],
            s["vpc_cidr"],
            s["lab_vpc_cidr"],
            s["peer"],
            s["role"],
            s["inventory"],
        )
    for s in stacks.values():
        if s.peer is None:
            if s.role != "active":  # a standby nobody replicates into could never be promoted
                raise ContractError(f"stacks.{s.name}.role: a stack without a peer must be active")
            continue
        peer = stacks.get(s.peer)
        if peer is None or peer.name == s.name or peer.peer != s.name:
            raise ContractError(f"stacks.{s.name}.peer: {s.peer!r} must be another stack naming it as peer")
        if {s.role, peer.role} != set(SITE_ROLES):  # one side serves, the other stands by (and peers)
            raise ContractError(
                f"stacks.{s.name}.role: of the peers {s.name} and {s.peer} one must be active, one standby"
            )
        for key in ("vpc_cidr", "lab_vpc_cidr"):
            ours, theirs = (ipaddress.IPv4Network(getattr(x, key)) for x in (s, peer))
            if ours.overlaps(theirs):  # the VPCs route to each other for MirrorMaker 2
                raise ContractError(f"stacks.{s.name}.{key} overlaps its peer's ({s.peer})")
    return stacks


def _names(where: str, value: Any, pattern: re.Pattern[str], *, empty: bool) -> tuple[str, ...]:
    ok = isinstance(value, list) and (empty or value) and len(set(map(str, value))) == len(value)
    if not ok or not all(isinstance(v, str) and pattern.match(v) for v in value):
        kind = "a list" if empty else "a non-empty list"
        raise ContractError(f"{where}: {value!r} must be {kind} of distinct names matching {pattern.pattern}")
    return tuple(value)


def _topics(data: Mapping[str, Any]) -> dict[str, Topic]:
    topics: dict[str, Topic] = {}
    # Kafka refuses a topic whose name differs from another's only in '.' versus '_' (metric names collide).
    seen: dict[str, str] = {}
    for key, t in data.items():
        where = f"topics.{key}"
        required = {"name", "description", "created_by", "producers", "consumers"}
        keys = set(t) if isinstance(t, Mapping) else set()
        if not re.fullmatch(r"[a-z][a-z0-9_]*", str(key)) or not required <= keys <= TOPIC_KEYS:
            raise ContractError(f"{where}: needs a lower-case key and {sorted(required)}, consumer_groups")
        name = t["name"]
        if not isinstance(name, str) or not KAFKA_TOPIC.match(name) or name in (".", ".."):
            raise ContractError(f"{where}.name: Kafka refuses the topic name {name!r}")
        if not t["description"]:
            raise ContractError(f"{where}.description: say what the topic carries")
        if t["created_by"] not in TOPIC_CREATORS:
            raise ContractError(f"{where}.created_by: must be one of {sorted(TOPIC_CREATORS)}")
        producers = _names(f"{where}.producers", t["producers"], KAFKA_USER, empty=False)
        consumers = _names(f"{where}.consumers", t["consumers"], KAFKA_USER, empty=True)
        groups = _names(f"{where}.consumer_groups", t.get("consumer_groups", []), GROUP_PREFIX, empty=True)
        if groups and not consumers:
            raise ContractError(f"{where}.consumer_groups: a topic without consumers has no consumer groups")
        collides = name.replace(".", "_")
        if collides in seen:
            raise ContractError(f"{where}.name: {name!r} collides with topics.{seen[collides]} in Kafka")
        seen[collides] = key
        topics[key] = Topic(key, name, t["description"], t["created_by"], producers, consumers, groups)
    return topics


def _port(name: str, p: Any, groups: set[str], sources: set[str]) -> Port:
    if not isinstance(p, Mapping) or not isinstance(p.get("port"), int) or not p.get("description"):
        raise ContractError(f"ports.{name}: needs an integer port and a description")
    port, port_to = p["port"], p.get("port_to", p["port"])
    if not (isinstance(port_to, int) and 1 <= port <= port_to <= 65535):
        raise ContractError(f"ports.{name}: {port}..{port_to} is not a port range in 1-65535")
    protocols = tuple(p.get("protocols", ["tcp"]))
    if not protocols or not set(protocols) <= PROTOCOLS:
        raise ContractError(f"ports.{name}: protocols must be a non-empty subset of {sorted(PROTOCOLS)}")
    ingress = tuple(p.get("ingress") or ())
    for i, entry in enumerate(ingress):
        where = f"ports.{name}.ingress[{i}]"
        if not isinstance(entry, Mapping) or set(entry) != {"to", "from", "description"}:
            raise ContractError(f"{where}: needs exactly to, from and description")
        if not entry["to"] or not set(entry["to"]) <= groups:
            raise ContractError(f"{where}.to: {entry['to']} must be security groups {sorted(groups)}")
        if not entry["from"] or not set(entry["from"]) <= sources:
            raise ContractError(f"{where}.from: {entry['from']} must be among {sorted(sources)}")
        if not AWS_DESCRIPTION.match(entry["description"]):
            raise ContractError(f"{where}.description: AWS refuses {entry['description']!r}")
    return Port(name, port, port_to, protocols, p["description"], p.get("within"), ingress)


@lru_cache(maxsize=4)
def load(path: Path = PLATFORM_FILE) -> Platform:
    """The checked contract (cached: the file does not change during a run)."""
    with Path(path).open(encoding="utf-8") as handle:
        return parse(yaml.safe_load(handle))

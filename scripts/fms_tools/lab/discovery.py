"""Running EC2 instances of one env, as the AWS emulator (or AWS) reports them."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from fms_tools.fmsops.emulator import boto_credentials

from .envs import LAB_RANGE, Env

# Credentials the emulator accepts; they never leave the machine.
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class DiscoveryError(RuntimeError):
    pass


@dataclass(frozen=True)
class Instance:
    instance_id: str
    name: str
    role: str
    roles: tuple[str, ...]
    private_ip: str
    subnet_id: str
    subnet_cidr: str
    az: str
    vpc_id: str
    env_tag: str
    public_ip: str | None = None  # the bastion's Elastic IP: how operators reach it from outside
    # The instance's security groups (ids): the lab enforces them on its traffic (lab.firewall).
    security_groups: tuple[str, ...] = ()

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet_cidr).prefixlen

    @property
    def gateway(self) -> str:
        """The subnet's first address, held by the lab bridge (AWS's VPC router address)."""
        return str(ipaddress.ip_network(self.subnet_cidr).network_address + 1)


@dataclass
class Discovery:
    env: Env
    instances: list[Instance] = field(default_factory=list)
    subnet_cidrs: list[str] = field(default_factory=list)  # every subnet of the instances' VPCs

    @property
    def gateways(self) -> list[str]:
        """`<gateway>/<prefix>` for every subnet: the addresses the env's bridge carries."""
        out = []
        for cidr in self.subnet_cidrs:
            net = ipaddress.ip_network(cidr)
            out.append(f"{net.network_address + 1}/{net.prefixlen}")
        return out


def ec2_client(region: str, endpoint_url: str | None):
    import boto3  # lazily: `lab status` and `down` need no AWS SDK

    kwargs = boto_credentials() if endpoint_url else {}
    return boto3.client("ec2", region_name=region, endpoint_url=endpoint_url, **kwargs)


def _tags(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def discover(env: Env, endpoint_url: str | None, project: str = "fms") -> Discovery:
    ec2 = ec2_client(env.region, endpoint_url)
    filters = [
        {"Name": "instance-state-name", "Values": ["running"]},
        {"Name": "tag:Project", "Values": [project]},
    ]
    raw = [
        inst
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters)
        for res in page["Reservations"]
        for inst in res["Instances"]
    ]
    result = Discovery(env)
    if not raw:
        return result
    subnet_ids = sorted({i["SubnetId"] for i in raw if i.get("SubnetId")})
    vpc_ids = sorted({i["VpcId"] for i in raw if i.get("VpcId")})
    subnets = {s["SubnetId"]: s for s in ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"]}
    all_subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": vpc_ids}])["Subnets"]
    result.subnet_cidrs = sorted({s["CidrBlock"] for s in all_subnets}, key=ipaddress.ip_network)
    problems: list[str] = []
    for inst in raw:
        tags = _tags(inst)
        iid = inst["InstanceId"]
        name = tags.get("Name", "")
        subnet = subnets.get(inst.get("SubnetId", ""))
        if not _HOSTNAME.match(name):
            problems.append(
                f"{iid}: Name tag {name!r} is not a valid host name (lowercase letters, digits, '-')"
            )
            continue
        if subnet is None or not inst.get("PrivateIpAddress"):
            problems.append(f"{name} ({iid}): no subnet or private IP")
            continue
        roles = tuple(r.strip() for r in tags.get("Roles", tags.get("Role", "")).split(",") if r.strip())
        result.instances.append(
            Instance(
                instance_id=iid,
                name=name,
                role=tags.get("Role", roles[0] if roles else ""),
                roles=roles,
                private_ip=inst["PrivateIpAddress"],
                subnet_id=subnet["SubnetId"],
                subnet_cidr=subnet["CidrBlock"],
                az=subnet["AvailabilityZone"],
                vpc_id=inst["VpcId"],
                env_tag=tags.get("Env", ""),
                public_ip=inst.get("PublicIpAddress") or None,
                security_groups=tuple(g["GroupId"] for g in inst.get("SecurityGroups", [])),
            )
        )
    problems += validate(env, result)
    if problems:
        raise DiscoveryError(
            f"the {env.name} instances in {env.region} cannot become lab hosts:\n  - "
            + "\n  - ".join(problems)
        )
    result.instances.sort(key=lambda i: ipaddress.ip_address(i.private_ip))
    return result


def security_groups(env: Env, endpoint_url: str | None, group_ids: list[str]) -> list[dict]:
    """DescribeSecurityGroups of the given groups, as the emulator (or AWS) reports them.

    Why here: the same client and credentials as `discover`, so the firewall enforces the
    groups of exactly the instances discovery found.
    """
    if not group_ids:
        return []
    ec2 = ec2_client(env.region, endpoint_url)
    pages = ec2.get_paginator("describe_security_groups").paginate(GroupIds=sorted(set(group_ids)))
    return [group for page in pages for group in page["SecurityGroups"]]


def peered_cidrs(env: Env, endpoint_url: str | None, instances: list[Instance]) -> dict[str, tuple[str, ...]]:
    """Per instance IP: the CIDRs its subnet's route table sends through an *active* VPC peering.

    Why here: the lab machine routes between its bridges whatever Terraform declared, so the
    firewall needs the routes AWS would follow (lab.sg_iptables' route chain).
    """
    vpcs = sorted({i.vpc_id for i in instances})
    if not vpcs:
        return {}
    ec2 = ec2_client(env.region, endpoint_url)
    pages = ec2.get_paginator("describe_route_tables").paginate(Filters=[{"Name": "vpc-id", "Values": vpcs}])
    tables = [t for page in pages for t in page["RouteTables"]]
    ids = sorted(
        {r["VpcPeeringConnectionId"] for t in tables for r in t["Routes"] if r.get("VpcPeeringConnectionId")}
    )
    peerings = (
        ec2.describe_vpc_peering_connections(VpcPeeringConnectionIds=ids)["VpcPeeringConnections"]
        if ids
        else []
    )
    return routes_through_peerings(
        tables, peerings, [(i.private_ip, i.subnet_id, i.vpc_id) for i in instances]
    )


def routes_through_peerings(
    route_tables: list[dict], peerings: list[dict], instances: list[tuple[str, str, str]]
) -> dict[str, tuple[str, ...]]:
    """(ip, subnet, vpc) per instance + DescribeRouteTables + DescribeVpcPeeringConnections ->
    per ip the peered CIDRs of its subnet's table (its own association, else the VPC's main one).

    A route to a peering that is not `active` (deleted, rejected, pending) is a blackhole, as
    AWS reports it once the connection is gone (the emulator keeps calling it active).
    """
    active = {p["VpcPeeringConnectionId"] for p in peerings if p.get("Status", {}).get("Code") == "active"}
    by_subnet: dict[str, dict] = {}
    main: dict[str, dict] = {}
    for table in route_tables:
        for assoc in table.get("Associations", []):
            if assoc.get("SubnetId"):
                by_subnet[assoc["SubnetId"]] = table
            elif assoc.get("Main"):
                main[table["VpcId"]] = table
    out = {}
    for ip, subnet, vpc in instances:
        table = by_subnet.get(subnet) or main.get(vpc) or {"Routes": []}
        out[ip] = tuple(
            sorted(
                r["DestinationCidrBlock"]
                for r in table["Routes"]
                if r.get("VpcPeeringConnectionId") in active
                and r.get("State", "active") == "active"
                and r.get("DestinationCidrBlock")
            )
        )
    return out


def validate(env: Env, found: Discovery) -> list[str]:
    problems = []
    seen: dict[str, str] = {}
    for inst in found.instances:
        if inst.name in seen:
            problems.append(f"Name tag {inst.name!r} is used by {seen[inst.name]} and {inst.instance_id}")
        seen[inst.name] = inst.instance_id
        ip = ipaddress.ip_address(inst.private_ip)
        if ip not in env.network:
            problems.append(
                f"{inst.name}: private IP {ip} is outside the {env.name} lab CIDR {env.cidr} "
                "(the lab environment must give the VPC its lab_vpc_cidr from platform.yml)"
            )
    for cidr in found.subnet_cidrs:
        if not ipaddress.ip_network(cidr).subnet_of(env.network):  # type: ignore[arg-type]
            problems.append(
                f"subnet {cidr} is outside the {env.name} lab CIDR {env.cidr} (within {LAB_RANGE})"
            )
    return problems

"""The lab's translation of EC2 security groups (DescribeSecurityGroups JSON) into allow rules and
iptables chains: AWS semantics without root, iptables or an emulator (lab.sg_rules, lab.sg_iptables).

Ports come from the platform contract (platform.yml), never typed here.
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from fms_tools.fmsops.platform_contract import load
from fms_tools.lab import firewall, sg_iptables
from fms_tools.lab.sg_rules import Rule, TranslationError, lab_machine_rules, translate

CONTRACT = load()
KAFKA_CLIENT = CONTRACT.port("kafka_client")
KAFKA_JMX = CONTRACT.port("kafka_jmx_exporter")
SPARK_RPC = CONTRACT.ports["spark_rpc"]
GOSSIP = CONTRACT.ports["alertmanager_cluster"]
SSH = CONTRACT.port("ssh")

VPC = "198.18.0.0/16"
PEER = "198.19.0.0/16"
LAB_RANGE = "198.18.0.0/15"
OFFICE = "203.0.113.0/24"  # admin_cidrs / dashboard_cidrs in lab.tfvars
KAFKA_1, KAFKA_2, MONITORING, COLLECTOR, SPARK_1, SPARK_2 = (
    "198.18.128.4",
    "198.18.128.5",
    "198.18.64.5",
    "198.18.64.7",
    "198.18.64.6",
    "198.18.64.8",
)
BASTION = "198.18.0.10"


def perm(protocol: str, first: int | None = None, last: int | None = None, **peers: Any) -> dict[str, Any]:
    """One IpPermission as boto3 returns it (moto leaves out the ports of protocol -1)."""
    p: dict[str, Any] = {"IpProtocol": protocol, "IpRanges": [], "UserIdGroupPairs": [], "Ipv6Ranges": []}
    if first is not None:
        p["FromPort"], p["ToPort"] = first, first if last is None else last
    p["IpRanges"] = [{"CidrIp": c, "Description": f"from {c}"} for c in peers.get("cidrs", [])]
    p["UserIdGroupPairs"] = [{"GroupId": g, "UserId": "123456789012"} for g in peers.get("groups", [])]
    return p


def group(gid: str, ingress: list[dict], egress: list[dict] | None = None) -> dict[str, Any]:
    default_egress = [perm("-1", cidrs=["0.0.0.0/0"])]  # what AWS (and the emulator) give a new group
    return {
        "GroupId": gid,
        "GroupName": f"fms-lab-{gid[3:]}",
        "VpcId": "vpc-1",
        "IpPermissions": ingress,
        "IpPermissionsEgress": default_egress if egress is None else egress,
    }


GROUPS = [
    group(
        "sg-kafka",
        [
            perm("tcp", KAFKA_CLIENT, groups=["sg-collector", "sg-kafka"]),
            perm("tcp", KAFKA_JMX, groups=["sg-monitoring"]),
            perm("tcp", KAFKA_CLIENT, cidrs=[PEER]),
        ],
        egress=[perm("-1", cidrs=[VPC]), perm("tcp", KAFKA_CLIENT, cidrs=[PEER])],
    ),
    group("sg-spark", [perm("tcp", SPARK_RPC.port, SPARK_RPC.port_to, groups=["sg-spark"])]),
    group("sg-monitoring", [perm("udp", GOSSIP.port, groups=["sg-monitoring"])]),
    group("sg-collector", []),
    group("sg-bastion", [perm("tcp", SSH, cidrs=[OFFICE])]),
]
INSTANCES = [
    (KAFKA_1, ["sg-kafka"]),
    (KAFKA_2, ["sg-kafka"]),
    (MONITORING, ["sg-monitoring"]),
    (COLLECTOR, ["sg-collector"]),
    (SPARK_1, ["sg-spark"]),
    (SPARK_2, ["sg-spark"]),
    (BASTION, ["sg-bastion"]),
]


@pytest.fixture(scope="module")
def policies():
    return translate(GROUPS, INSTANCES)


def keys(rules: list[Rule]) -> set[tuple]:
    return {(r.protocol, r.ports, r.peer) for r in rules}


def test_group_reference_becomes_its_members_addresses(policies):
    ingress = keys(policies[KAFKA_1].ingress)
    port = (KAFKA_CLIENT, KAFKA_CLIENT)
    # the collector group and kafka's own group (both brokers, itself included), each a /32
    assert {("tcp", port, f"{ip}/32") for ip in (COLLECTOR, KAFKA_1, KAFKA_2)} <= ingress
    assert ("tcp", (KAFKA_JMX, KAFKA_JMX), f"{MONITORING}/32") in ingress
    assert not any(peer.endswith(f"{SPARK_1}/32") for _, _, peer in ingress)


def test_cidr_source_is_kept_as_a_network(policies):
    assert ("tcp", (KAFKA_CLIENT, KAFKA_CLIENT), PEER) in keys(policies[KAFKA_1].ingress)


def test_port_range_is_inclusive_and_rendered_as_one_range(policies):
    spark = policies[SPARK_1]
    assert keys(spark.ingress) == {
        ("tcp", (SPARK_RPC.port, SPARK_RPC.port_to), f"{ip}/32") for ip in (SPARK_1, SPARK_2)
    }
    assert sg_iptables.match_protocol(spark.ingress[0]) == [
        "-p",
        "tcp",
        "--dport",
        f"{SPARK_RPC.port}:{SPARK_RPC.port_to}",
    ]


def test_single_port_is_rendered_without_a_range(policies):
    rule = next(r for r in policies[KAFKA_1].ingress if r.peer == f"{MONITORING}/32")
    assert sg_iptables.match_protocol(rule) == ["-p", "tcp", "--dport", str(KAFKA_JMX)]


def test_protocol_minus_one_is_every_protocol_and_port(policies):
    (rule,) = policies[COLLECTOR].egress
    assert (rule.protocol, rule.ports, rule.peer) == ("all", None, "0.0.0.0/0")
    assert sg_iptables.match_protocol(rule) == []


def test_udp_rule(policies):
    (rule,) = policies[MONITORING].ingress
    assert (rule.protocol, rule.ports, rule.peer) == ("udp", (GOSSIP.port, GOSSIP.port), f"{MONITORING}/32")
    assert sg_iptables.match_protocol(rule)[:2] == ["-p", "udp"]


def test_egress_rules_are_the_groups_own(policies):
    assert keys(policies[KAFKA_1].egress) == {
        ("all", None, VPC),
        ("tcp", (KAFKA_CLIENT, KAFKA_CLIENT), PEER),
    }
    assert all(r.direction == "egress" for r in policies[KAFKA_1].egress)
    assert all(r.direction == "ingress" for r in policies[KAFKA_1].ingress)


def test_group_with_no_ingress_allows_nothing_in(policies):
    assert policies[COLLECTOR].ingress == []


def test_an_instance_gets_the_union_of_its_groups_once():
    both = translate(GROUPS, [(KAFKA_1, ["sg-kafka", "sg-kafka"]), (COLLECTOR, ["sg-collector"])])[KAFKA_1]
    single = translate(GROUPS, [(KAFKA_1, ["sg-kafka"]), (COLLECTOR, ["sg-collector"])])[KAFKA_1]
    assert keys(both.ingress) == keys(single.ingress) and len(both.ingress) == len(single.ingress)
    two = translate(GROUPS, [(KAFKA_1, ["sg-kafka", "sg-spark"]), (SPARK_1, ["sg-spark"])])[KAFKA_1]
    assert ("tcp", (SPARK_RPC.port, SPARK_RPC.port_to), f"{SPARK_1}/32") in keys(two.ingress)
    assert ("all", None, "0.0.0.0/0") in keys(two.egress)  # sg-spark's default egress


def test_reference_to_a_group_nobody_holds_allows_nothing_and_is_reported():
    policy = translate(GROUPS, [(KAFKA_1, ["sg-kafka"])])[KAFKA_1]
    assert not any(r.peer == f"{COLLECTOR}/32" for r in policy.ingress)
    assert policy.unresolved == {"sg-collector": 1, "sg-monitoring": 1}


def test_icmp_type_and_code_and_numeric_protocols():
    icmp = group(
        "sg-x",
        [
            perm("icmp", -1, -1, cidrs=[VPC]),
            perm("icmp", 8, -1, cidrs=["10.0.0.0/8"]),
            perm("1", 3, 4, cidrs=["10.1.0.0/16"]),
            perm("6", SSH, cidrs=["10.2.0.0/16"]),
            perm("17", 0, 65535, cidrs=["10.3.0.0/16"]),
            perm("47", cidrs=["10.4.0.0/16"]),
        ],
    )
    rules = {r.peer: r for r in translate([icmp], [(KAFKA_1, ["sg-x"])])[KAFKA_1].ingress}
    assert sg_iptables.match_protocol(rules[VPC]) == ["-p", "icmp"]
    assert sg_iptables.match_protocol(rules["10.0.0.0/8"]) == ["-p", "icmp", "--icmp-type", "8"]
    assert sg_iptables.match_protocol(rules["10.1.0.0/16"]) == ["-p", "icmp", "--icmp-type", "3/4"]
    assert sg_iptables.match_protocol(rules["10.2.0.0/16"]) == ["-p", "tcp", "--dport", str(SSH)]
    assert sg_iptables.match_protocol(rules["10.3.0.0/16"]) == ["-p", "udp"]  # every port
    assert sg_iptables.match_protocol(rules["10.4.0.0/16"]) == ["-p", "47"]


def test_undescribed_group_is_an_error():
    with pytest.raises(TranslationError, match="sg-gone"):
        translate(GROUPS, [(KAFKA_1, ["sg-gone"])])


# ---------------------------------------------------------------------------- rendering


@pytest.fixture(scope="module")
def ruleset(policies):
    names = {KAFKA_1: "kafka-1", KAFKA_2: "kafka-2", MONITORING: "monitoring-1", COLLECTOR: "collector-1"}
    hosts = [
        sg_iptables.HostFirewall(name, f"vb-{name}" if name != "kafka-2" else None, policies[ip])
        for ip, name in names.items()
    ]
    return sg_iptables.render("primary", "fmsbr-primary", "fms-lab:primary", hosts, ["10.255.255.53"])


def words(spec: list[str]) -> str:
    return " ".join(spec)


def test_every_rule_and_hook_carries_the_env_tag(ruleset):
    for spec in [*(h.spec for h in ruleset.hooks), *(s for specs in ruleset.chains.values() for s in specs)]:
        comment = spec[spec.index("--comment") + 1]
        assert comment.split()[0] == "fms-lab:primary", spec


def test_addresses_are_bound_to_ports_before_conntrack_lets_replies_through(ruleset):
    main = [words(s) for s in ruleset.chains["FMS-SG-primary"]]
    stateful = next(i for i, r in enumerate(main) if "ESTABLISHED,RELATED" in r)
    spoof = [i for i, r in enumerate(main) if "physdev" in r and r.endswith("-j DROP")]
    assert spoof and max(spoof) < stateful
    assert any(f"--physdev-in vb-kafka-1 ! -s {KAFKA_1}" in r for r in main)
    # a host that is not running: its address may come from no port at all
    assert any(r.startswith(f"-i fmsbr-primary -s {KAFKA_2} ") and r.endswith("-j DROP") for r in main)


def test_every_host_chain_ends_in_default_deny(ruleset):
    ips = (KAFKA_1, KAFKA_2, MONITORING, COLLECTOR)
    host_chains = [sg_iptables.host_chain("primary", ip, d) for ip in ips for d in ("egress", "ingress")]
    assert set(ruleset.chains) == {
        "FMS-SG-primary",
        "FMS-SG-primary-IN",
        "FMS-SG-primary-LM",
        "FMS-SG-primary-RT",
        *host_chains,
    }
    for chain in host_chains:
        assert words(ruleset.chains[chain][-1]).endswith("-j DROP"), chain
        assert len(chain) <= sg_iptables.MAX_CHAIN_NAME


def test_ingress_allows_return_and_egress_allows_go_on_to_the_receiver(ruleset):
    ingress = ruleset.chains[sg_iptables.host_chain("primary", KAFKA_1, "ingress")]
    allow = f"-s {MONITORING}/32 -p tcp --dport {KAFKA_JMX}"
    assert any(words(s).startswith(allow) and words(s).endswith("-j RETURN") for s in ingress)
    egress = ruleset.chains[sg_iptables.host_chain("primary", COLLECTOR, "egress")]
    assert all(words(s).endswith("-g FMS-SG-primary-IN") for s in egress[:-1])
    dns = [words(s) for s in egress if "--dport 53" in words(s)]
    assert len(dns) == 2 and all("-d 10.255.255.53/32" in d for d in dns)  # udp and tcp


def test_hooks_take_traffic_from_and_to_the_bridge_once(ruleset):
    assert [h.rule.replace(" -m comment --comment fms-lab:primary", "") for h in ruleset.hooks] == [
        "-A FORWARD -i fmsbr-primary -j FMS-SG-primary",
        "-A FORWARD ! -i fmsbr-primary -o fmsbr-primary -j FMS-SG-primary",
        "-A OUTPUT -o fmsbr-primary -j FMS-SG-primary-LM",
    ]


def test_restore_text_recreates_every_chain_and_drops_stale_ones(ruleset):
    text = ruleset.restore_text(["FMS-SG-primary-Ec6120063"])
    lines = text.splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"
    assert {ln[1:].split()[0] for ln in lines if ln.startswith(":")} == set(ruleset.chains)
    assert lines[-3:-1] == ["-F FMS-SG-primary-Ec6120063", "-X FMS-SG-primary-Ec6120063"]
    for line in lines:
        if line.startswith("-A "):
            shlex.split(line)  # quoting iptables-restore (and shlex) can read


def test_chain_names_are_per_env_and_bounded():
    assert sg_iptables.is_env_chain("dr", "FMS-SG-dr-IN")
    assert not sg_iptables.is_env_chain("dr", "FMS-SG-dr2")
    with pytest.raises(sg_iptables.RenderError):
        sg_iptables.main_chain("an-env-name-far-too-long-for-iptables")


def test_hooks_must_lead_forward():
    hook = "-A FORWARD -i fmsbr-primary -m comment --comment fms-lab:primary -j FMS-SG-primary"
    accept = "-A FORWARD -i fmsbr-dr -m comment --comment fms-lab:dr -j ACCEPT"
    assert firewall._hooks_first([hook, accept])
    assert not firewall._hooks_first([accept, hook])


def test_plan_reports_unresolved_groups_and_hosts_without_a_port():
    hosts = [("kafka-1", KAFKA_1, ["sg-kafka"]), ("monitoring-1", MONITORING, ["sg-monitoring"])]
    planned = firewall.plan(GROUPS, hosts, {"kafka-1": "vb-kafka-1"})
    assert [h.veth for h in planned.hosts] == ["vb-kafka-1", None]
    assert planned.notes == [
        "group sg-collector has no lab host: the 1 permissions naming it allow nothing here"
    ]
    assert planned.warnings == ["monitoring-1: no veth on the bridge (not running); its address is blocked"]


# ---------------------------------------------------------------------------- the lab machine


def test_the_lab_machine_as_operator_gets_only_what_the_office_cidrs_opened(policies):
    """admin_cidrs opened the bastion's SSH to the office: the lab machine (the operator) may
    open that and nothing on the brokers, whose rules all name groups or the peer VPC."""
    bastion = lab_machine_rules(policies[BASTION], LAB_RANGE)
    assert keys(bastion) == {("tcp", (SSH, SSH), OFFICE)}
    assert bastion[0].why.startswith("operator: ")
    # the peer VPC (DR) is inside the lab range: the operator gets nothing from its rules
    assert lab_machine_rules(policies[KAFKA_1], LAB_RANGE) == []


def test_the_lab_machine_as_harness_gets_the_rights_of_the_groups_it_stands_in_for(policies):
    rules = lab_machine_rules(policies[KAFKA_1], LAB_RANGE, harness_ips=[COLLECTOR, MONITORING])
    assert {(r.protocol, r.ports) for r in rules} == {
        ("tcp", (KAFKA_CLIENT, KAFKA_CLIENT)),
        ("tcp", (KAFKA_JMX, KAFKA_JMX)),
    }
    assert all(r.why.startswith("harness: ") for r in rules)
    # a right two members share is one rule
    assert len(lab_machine_rules(policies[KAFKA_1], LAB_RANGE, harness_ips=[COLLECTOR, KAFKA_2])) == 1


def test_a_world_open_rule_reaches_the_lab_machine_too():
    groups = [group("sg-open", [perm("tcp", SSH, cidrs=["0.0.0.0/0"])])]
    policy = translate(groups, [(BASTION, ["sg-open"])])[BASTION]
    assert keys(lab_machine_rules(policy, LAB_RANGE)) == {("tcp", (SSH, SSH), "0.0.0.0/0")}


def test_the_lab_machine_chain_lets_replies_through_then_allows_per_host_then_drops(policies):
    hosts = [
        sg_iptables.HostFirewall(
            "bastion-1",
            "vb-bastion-1",
            policies[BASTION],
            tuple(lab_machine_rules(policies[BASTION], LAB_RANGE)),
        ),
        sg_iptables.HostFirewall("kafka-1", "vb-kafka-1", policies[KAFKA_1]),
    ]
    chain = [
        words(s)
        for s in sg_iptables.render("primary", "fmsbr-primary", "fms-lab:primary", hosts).chains[
            "FMS-SG-primary-LM"
        ]
    ]
    assert "ESTABLISHED,RELATED" in chain[0] and chain[0].endswith("-j RETURN")
    allows = [r for r in chain if r.endswith("-j RETURN")][1:]
    assert len(allows) == 1 and allows[0].startswith(f"-d {BASTION}/32 -p tcp --dport {SSH} ")
    assert chain[-1].endswith("-j DROP") and "-d" not in chain[-1].split()


def test_plan_gives_each_host_the_lab_machines_rights(policies):
    hosts = [
        (name, ip, gs)
        for name, (ip, gs) in zip(("k1", "k2", "m", "c", "s1", "s2", "b"), INSTANCES, strict=True)
    ]
    planned = firewall.plan(GROUPS, hosts, {}, harness_ips=[COLLECTOR])
    by_name = {h.name: h for h in planned.hosts}
    assert keys(list(by_name["b"].from_lab_machine)) == {("tcp", (SSH, SSH), OFFICE)}
    assert keys(list(by_name["k1"].from_lab_machine)) == {
        ("tcp", (KAFKA_CLIENT, KAFKA_CLIENT), f"{COLLECTOR}/32")
    }
    assert by_name["s1"].from_lab_machine == ()


# --- routes between VPCs (the lab machine routes between its bridges; AWS only through a peering)


def _routed(peered: dict[str, tuple[str, ...]]) -> sg_iptables.Ruleset:
    policies = translate([], [(ip, []) for ip in (KAFKA_1, COLLECTOR)])
    hosts = [
        sg_iptables.HostFirewall(name, f"vb-{name}", policies[ip], peered=peered.get(ip, ()))
        for ip, name in ((KAFKA_1, "kafka-1"), (COLLECTOR, "collector-1"))
    ]
    return sg_iptables.render("primary", "fmsbr-primary", "fms-lab:primary", hosts, [], vpc_cidr=VPC)


def test_new_flows_to_or_from_another_lab_vpc_need_a_peering_route_on_the_host_subnet() -> None:
    ruleset = _routed({KAFKA_1: (PEER,)})
    main = [words(s) for s in ruleset.chains["FMS-SG-primary"]]
    stateful = next(i for i, r in enumerate(main) if "ESTABLISHED,RELATED" in r)
    to_routes = next(i for i, r in enumerate(main) if r.endswith("-j FMS-SG-primary-RT"))
    first_egress = next(i for i, r in enumerate(main) if " egress " in r)
    assert stateful < to_routes < first_egress  # replies need no route check; new flows do
    routes = [words(s) for s in ruleset.chains["FMS-SG-primary-RT"]]
    verdicts = [(r.split(" -m comment")[0], r.rsplit(" ", 1)[-1]) for r in routes]
    assert verdicts == [
        (f"-i fmsbr-primary -d {VPC}", "RETURN"),
        (f"-i fmsbr-primary -s {KAFKA_1} -d {PEER}", "RETURN"),
        (f"-o fmsbr-primary -s {PEER} -d {KAFKA_1}", "RETURN"),
        (f"-i fmsbr-primary -d {LAB_RANGE}", "DROP"),
        (f"-o fmsbr-primary -s {LAB_RANGE}", "DROP"),
    ]


def test_without_a_peering_no_host_reaches_another_lab_vpc_but_the_internet_stays_open() -> None:
    routes = [words(s) for s in _routed({}).chains["FMS-SG-primary-RT"]]
    assert not any(PEER in r for r in routes)
    assert routes[-2].startswith(f"-i fmsbr-primary -d {LAB_RANGE}") and routes[-2].endswith("-j DROP")
    # anything outside the lab range (the NAT to package registries) falls through to the groups
    assert not any("0.0.0.0/0" in r for r in routes)


def _peering_fixture(status: str) -> tuple[list[dict], list[dict]]:
    tables = [
        {
            "RouteTableId": "rtb-main",
            "VpcId": "vpc-1",
            "Associations": [{"Main": True}],
            "Routes": [{"DestinationCidrBlock": VPC, "GatewayId": "local", "State": "active"}],
        },
        {
            "RouteTableId": "rtb-data",
            "VpcId": "vpc-1",
            "Associations": [{"Main": False, "SubnetId": "subnet-data"}],
            "Routes": [
                {"DestinationCidrBlock": VPC, "GatewayId": "local", "State": "active"},
                {"DestinationCidrBlock": PEER, "VpcPeeringConnectionId": "pcx-1", "State": "active"},
            ],
        },
    ]
    return tables, [{"VpcPeeringConnectionId": "pcx-1", "Status": {"Code": status}}]


def test_a_subnet_routes_the_peer_cidr_only_through_an_active_peering() -> None:
    from fms_tools.lab.discovery import routes_through_peerings

    instances = [(KAFKA_1, "subnet-data", "vpc-1"), (COLLECTOR, "subnet-public", "vpc-1")]
    tables, active = _peering_fixture("active")
    # the collector's subnet has no table of its own: the VPC's main table, without the route
    assert routes_through_peerings(tables, active, instances) == {KAFKA_1: (PEER,), COLLECTOR: ()}
    for gone in ("deleted", "pending-acceptance", "rejected"):
        tables, peerings = _peering_fixture(gone)
        assert routes_through_peerings(tables, peerings, instances) == {KAFKA_1: (), COLLECTOR: ()}, gone
    tables, _ = _peering_fixture("active")
    assert routes_through_peerings(tables, [], instances)[KAFKA_1] == ()  # no such connection

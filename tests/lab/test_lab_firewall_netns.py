"""The lab's security-group enforcement on a tiny stand-in lab: no nspawn, no emulator, seconds.

A network namespace plays the lab machine (bridge with two subnets' gateways, forwarding, the
ACCEPT rules lab.network adds, FORWARD policy DROP); three more play hosts, each on a veth
named as nspawn names it (vb-<machine>): monitoring-1 and collector-1 share a subnet
(bridged traffic), kafka-1 is in another (routed). Hand-written security groups (ports from
platform.yml) are enforced with lab.firewall exactly as `lab up` does, then probed:
allowed ports connect, others time out (dropped, as AWS drops), replies pass without a rule
(stateful, TCP and UDP), egress is enforced, a host cannot use another's address, and
teardown leaves no rule, chain or changed sysctl behind. Everything runs in the namespaces:
the machine's own iptables and sysctls are never touched.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from fms_tools.fmsops.platform_contract import load
from fms_tools.lab import firewall, sg_iptables
from fms_tools.lab.envs import Env

pytestmark = pytest.mark.lab

CONTRACT = load()
KAFKA_CLIENT = CONTRACT.port("kafka_client")
KAFKA_JMX = CONTRACT.port("kafka_jmx_exporter")
NODE_EXPORTER = CONTRACT.port("node_exporter")
PROMETHEUS = CONTRACT.port("prometheus")
GOSSIP = CONTRACT.port("alertmanager_cluster")
SSH = CONTRACT.port("ssh")

PROBE = str(Path(__file__).with_name("netprobe.py"))
TAG = f"{os.getpid()}"
ENV = Env(f"t{TAG[-5:]}", "lab-test", "198.18.0.0/16")  # bridge fmsbr-t<pid>, tag fms-lab:t<pid>
PEER_ENV = Env(f"u{TAG[-5:]}", "lab-test-peer", "198.19.0.0/16")  # the other region, its own bridge
LAB_NS = f"fmsfw-{TAG}-lab"
GATEWAYS = ["198.18.64.1/24", "198.18.128.1/24"]
DENIED_TIMEOUT_S = 1.0  # a dropped probe waits this long; allowed ones answer in milliseconds


@dataclass(frozen=True)
class Host:
    name: str
    ip: str
    gateway: str
    group: str

    @property
    def ns(self) -> str:
        return f"fmsfw-{TAG}-{self.name.split('-')[0]}"


MONITORING = Host("monitoring-1", "198.18.64.5", "198.18.64.1", "sg-monitoring")
COLLECTOR = Host("collector-1", "198.18.64.7", "198.18.64.1", "sg-collector")
KAFKA = Host("kafka-1", "198.18.128.4", "198.18.128.1", "sg-kafka")
HOSTS = (MONITORING, COLLECTOR, KAFKA)
# An instance whose host is not running (no veth): its address must not be usable by anyone.
STOPPED = Host("collector-2", "198.18.64.9", "198.18.64.1", "sg-collector")


def perm(protocol: str, port: int | None = None, *, groups=(), cidrs=()) -> dict:
    p: dict = {"IpProtocol": protocol, "UserIdGroupPairs": [{"GroupId": g} for g in groups]}
    p["IpRanges"] = [{"CidrIp": c} for c in cidrs]
    if port is not None:
        p["FromPort"] = p["ToPort"] = port
    return p


# As DescribeSecurityGroups returns them. The collector may only produce to Kafka; monitoring
# keeps the default egress (everything); Kafka's egress is its VPC.
GROUPS = [
    {
        "GroupId": "sg-kafka",
        "GroupName": "kafka",
        "IpPermissions": [
            perm("tcp", KAFKA_CLIENT, groups=["sg-collector"]),
            perm("tcp", KAFKA_JMX, groups=["sg-monitoring"]),
            perm("udp", GOSSIP, groups=["sg-monitoring"]),
            perm("icmp", -1, groups=["sg-monitoring"]),
            perm("tcp", KAFKA_CLIENT, cidrs=[PEER_ENV.cidr]),  # MirrorMaker from the other region
        ],
        "IpPermissionsEgress": [perm("-1", cidrs=[ENV.cidr])],
    },
    {
        "GroupId": "sg-monitoring",
        "GroupName": "monitoring",
        "IpPermissions": [perm("tcp", PROMETHEUS, cidrs=["0.0.0.0/0"])],
        "IpPermissionsEgress": [perm("-1", cidrs=["0.0.0.0/0"])],
    },
    {
        "GroupId": "sg-collector",
        "GroupName": "collector",
        "IpPermissions": [perm("tcp", NODE_EXPORTER, groups=["sg-monitoring"])],
        "IpPermissionsEgress": [perm("tcp", KAFKA_CLIENT, cidrs=[ENV.cidr])],
    },
]
LISTEN = {
    MONITORING: (["--tcp", str(PROMETHEUS)], ["--udp", str(GOSSIP)]),
    COLLECTOR: (["--tcp", str(NODE_EXPORTER), str(SSH)], []),
    KAFKA: (["--tcp", str(KAFKA_CLIENT), str(KAFKA_JMX), str(SSH)], ["--udp", str(GOSSIP)]),
}


def sh(*cmd: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    proc = subprocess.run(argv, text=True, capture_output=True, timeout=20, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr}")
    return proc


def probe(src: Host, kind: str, dst: Host, port: int | None = None, *extra: str) -> str:
    args = [kind, dst.ip, *([str(port)] if port is not None else []), "--timeout", str(DENIED_TIMEOUT_S)]
    return sh(sys.executable, PROBE, *args, *extra, ns=src.ns).stdout.strip()


def probe_all(cases: dict[str, tuple]) -> dict[str, str]:
    """Run probes concurrently (each dropped one costs DENIED_TIMEOUT_S): name -> result."""
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        futures = {name: pool.submit(probe, *args) for name, args in cases.items()}
        return {name: f.result() for name, f in futures.items()}


def accept(op: str, direction: str, bridge: str, tag: str) -> None:
    """Insert (-I) or delete (-D) an ACCEPT like those lab.network adds for an env's bridge."""
    spec = [direction, bridge, *sg_iptables.comment(tag), "-j", "ACCEPT"]
    sh("iptables", op, "FORWARD", *(["1"] if op == "-I" else []), *spec, ns=LAB_NS)


def forward_rules() -> list[str]:
    return [r for r in sh("iptables", "-S", "FORWARD", ns=LAB_NS).stdout.splitlines() if r.startswith("-A")]


def lab_rules(ns: str = LAB_NS) -> list[str]:
    """The lab namespace's IPv4 and IPv6 filter rules (iptables-save without its dated comments)."""
    out = "".join(sh(save, "-t", "filter", ns=ns).stdout for save in ("iptables-save", "ip6tables-save"))
    return [line for line in out.splitlines() if not line.startswith("#")]


def wait_ready(proc: subprocess.Popen, timeout_s: float = 10) -> bool:
    """The server printed "ready" within the timeout (never blocks longer)."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            return False
    return proc.stdout.readline().strip() == "ready"


def _remove_namespaces_of_dead_runs() -> None:
    """Namespaces a killed run of this test left (fmsfw-<pid>-*, that pid gone): deleted."""
    for path in Path("/run/netns").glob("fmsfw-*"):
        pid = path.name.split("-")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            subprocess.run(["ip", "netns", "del", path.name], check=False, timeout=20)


@pytest.fixture(scope="module")
def stand_in_lab() -> Iterator[dict]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces, bridges and iptables need root")
    _remove_namespaces_of_dead_runs()
    made: list[str] = []
    servers: list[subprocess.Popen] = []
    try:
        for name in (LAB_NS, *(h.ns for h in HOSTS)):
            sh("ip", "netns", "add", name)
            made.append(name)
            sh("ip", "link", "set", "lo", "up", ns=name)
        br = ENV.bridge
        sh("ip", "link", "add", br, "type", "bridge", "forward_delay", "0", ns=LAB_NS)
        for gw in GATEWAYS:
            sh("ip", "addr", "add", gw, "dev", br, ns=LAB_NS)
        sh("ip", "link", "set", br, "up", ns=LAB_NS)
        lab = firewall.Netns(LAB_NS)
        lab.write_sysctl("net.ipv4.ip_forward", "1")
        for h in HOSTS:
            veth = f"vb-{h.name}"
            peer = ["peer", "name", "host0", "netns", h.ns]
            sh("ip", "-n", LAB_NS, "link", "add", veth, "type", "veth", *peer)
            sh("ip", "-n", LAB_NS, "link", "set", veth, "master", br, "up")
            sh("ip", "-n", h.ns, "addr", "add", f"{h.ip}/24", "dev", "host0")
            sh("ip", "-n", h.ns, "link", "set", "host0", "up")
            sh("ip", "-n", h.ns, "route", "add", "default", "via", h.gateway)
        # What lab.network gives every env (its ACCEPTs at the top), on a machine whose FORWARD
        # policy is DROP: a packet the security groups RETURN must still reach those ACCEPTs.
        sh("iptables", "-P", "FORWARD", "DROP", ns=LAB_NS)
        for direction in ("-i", "-o"):
            accept("-I", direction, br, ENV.rule_tag)
        for h in HOSTS:
            tcp, udp = LISTEN[h]
            proc = subprocess.Popen(
                ["ip", "netns", "exec", h.ns, sys.executable, PROBE, "serve", *tcp, *udp],
                stdout=subprocess.PIPE,
                text=True,
            )
            servers.append(proc)
            assert wait_ready(proc), f"{h.name}: the probe server did not start"
        # Previous bridge-netfilter values the lab must put back (a new namespace starts with 1).
        before = {k: "0" for k in firewall.BRIDGE_SYSCTLS}
        for key, value in before.items():
            lab.write_sysctl(key, value)
        veths = {h.name: firewall.host_veth(h.name, lab) for h in HOSTS}
        members = [(h.name, h.ip, [h.group]) for h in (*HOSTS, STOPPED)]
        # the lab machine stands in for a collector as the test harness (lab.firewall)
        plan = firewall.plan(GROUPS, members, veths, harness_ips=[COLLECTOR.ip])
        planned = plan.hosts
        saved: dict[str, str] = {}
        started = time.monotonic()
        ruleset, _ = firewall.enforce(ENV, planned, ["10.255.255.53"], saved, lab)
        yield {
            "ns": lab,
            "planned": planned,
            "plan": plan,
            "saved": saved,
            "before": before,
            "ruleset": ruleset,
            "veths": veths,
            "apply_s": time.monotonic() - started,
        }
    finally:
        for proc in servers:
            proc.kill()
            proc.wait(timeout=10)
        for name in reversed(made):  # deleting a namespace deletes its links, rules and sysctls
            subprocess.run(["ip", "netns", "del", name], check=False, timeout=20)


def test_hosts_are_found_by_their_nspawn_veth_names(stand_in_lab):
    assert stand_in_lab["veths"] == {h.name: f"vb-{h.name}" for h in HOSTS}
    plan = stand_in_lab["plan"]
    assert plan.warnings == ["collector-2: no veth on the bridge (not running); its address is blocked"]
    assert plan.notes == []
    assert stand_in_lab["apply_s"] < 10


def test_allowed_ports_connect_bridged_and_routed(stand_in_lab):
    assert probe_all(
        {
            "collector->kafka client (routed)": (COLLECTOR, "tcp", KAFKA, KAFKA_CLIENT),
            "monitoring->kafka jmx (routed)": (MONITORING, "tcp", KAFKA, KAFKA_JMX),
            "monitoring->collector node_exporter (bridged)": (MONITORING, "tcp", COLLECTOR, NODE_EXPORTER),
            "kafka->monitoring prometheus (ingress from anywhere)": (KAFKA, "tcp", MONITORING, PROMETHEUS),
            "monitoring->kafka icmp": (MONITORING, "icmp", KAFKA),
        }
    ) == dict.fromkeys(
        [
            "collector->kafka client (routed)",
            "monitoring->kafka jmx (routed)",
            "monitoring->collector node_exporter (bridged)",
            "kafka->monitoring prometheus (ingress from anywhere)",
            "monitoring->kafka icmp",
        ],
        "ok",
    )


def test_ports_no_group_opens_are_dropped(stand_in_lab):
    """Default deny: every one of these has a listener, so only the firewall can stop it."""
    results = probe_all(
        {
            "collector->kafka ssh": (COLLECTOR, "tcp", KAFKA, SSH),
            "collector->kafka jmx (not monitoring)": (COLLECTOR, "tcp", KAFKA, KAFKA_JMX),
            "monitoring->kafka client (not a collector)": (MONITORING, "tcp", KAFKA, KAFKA_CLIENT),
            "kafka->collector node_exporter (routed)": (KAFKA, "tcp", COLLECTOR, NODE_EXPORTER),
            "monitoring->collector ssh (bridged)": (MONITORING, "tcp", COLLECTOR, SSH),
            "collector->kafka icmp": (COLLECTOR, "icmp", KAFKA),
        }
    )
    assert set(results.values()) == {"timeout"}, results


def from_lab_machine(kind: str, dst: Host, port: int | None = None) -> str:
    args = [kind, dst.ip, *([str(port)] if port is not None else []), "--timeout", str(DENIED_TIMEOUT_S)]
    return sh(sys.executable, PROBE, *args, ns=LAB_NS).stdout.strip()


def test_the_lab_machine_reaches_only_what_an_outside_operator_and_the_harness_may(stand_in_lab):
    """OUTPUT is filtered too: the lab machine is the operator outside the VPC (monitoring's
    Prometheus is open to 0.0.0.0/0) and the harness standing in for a collector (Kafka's client
    port); SSH to a broker, Kafka's JMX port, the collector's node_exporter are dropped."""
    cases = {
        "prometheus (open to the world)": ("tcp", MONITORING, PROMETHEUS),
        "kafka client (harness as a collector)": ("tcp", KAFKA, KAFKA_CLIENT),
        "kafka ssh": ("tcp", KAFKA, SSH),
        "kafka jmx (monitoring only)": ("tcp", KAFKA, KAFKA_JMX),
        "collector node_exporter": ("tcp", COLLECTOR, NODE_EXPORTER),
        "kafka icmp": ("icmp", KAFKA, None),
    }
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        futures = {name: pool.submit(from_lab_machine, *args) for name, args in cases.items()}
        results = {name: f.result() for name, f in futures.items()}
    assert results == {
        "prometheus (open to the world)": "ok",
        "kafka client (harness as a collector)": "ok",
        "kafka ssh": "timeout",
        "kafka jmx (monitoring only)": "timeout",
        "collector node_exporter": "timeout",
        "kafka icmp": "timeout",
    }


def test_hosts_still_reach_the_lab_machines_services(stand_in_lab):
    """The artifact mirror and the resolver live on the lab machine: their replies leave through
    the filtered OUTPUT and pass as established."""
    gateway = GATEWAYS[0].split("/")[0]
    server = subprocess.Popen(
        ["ip", "netns", "exec", LAB_NS, sys.executable, PROBE, "serve", "--tcp", "18585"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_ready(server)
        res = sh(sys.executable, PROBE, "tcp", gateway, "18585", "--timeout", "5", ns=MONITORING.ns)
        assert res.stdout.strip() == "ok"
    finally:
        server.kill()
        server.wait(timeout=10)


def test_counts_show_the_rules_in_force_and_the_drops(stand_in_lab):
    """What `fms-lab firewall` and `fms-lab status` print: allow rules per host, drops of its default deny."""
    counts = firewall.counts(ENV, [h.ip for h in HOSTS], stand_in_lab["ns"])
    policy = {h.name: h.policy for h in stand_in_lab["planned"]}
    resolver_rules = 2  # DNS over udp and tcp to the one resolver
    for h in HOSTS:
        c = counts[h.ip]
        assert c.enforced and c.ingress_rules == len(policy[h.name].ingress), (h.name, c)
        assert c.egress_rules == len(policy[h.name].egress) + resolver_rules, (h.name, c)
    assert counts[KAFKA.ip].dropped_in > 0  # the probes of the test before


def test_egress_is_enforced_even_where_ingress_allows(stand_in_lab):
    """Monitoring takes Prometheus traffic from anywhere, but the collector's egress is Kafka only."""
    before = firewall.counts(ENV, [COLLECTOR.ip], stand_in_lab["ns"])[COLLECTOR.ip].dropped_out
    assert probe(COLLECTOR, "tcp", MONITORING, PROMETHEUS) == "timeout"
    assert firewall.counts(ENV, [COLLECTOR.ip], stand_in_lab["ns"])[COLLECTOR.ip].dropped_out > before


def test_replies_pass_without_a_rule_stateful(stand_in_lab):
    """No ingress rule lets Kafka reach the collector's or monitoring's ephemeral ports, yet
    Kafka's answers come back (TCP and UDP); a new UDP flow from Kafka to monitoring is dropped."""
    assert probe_all(
        {
            "tcp": (COLLECTOR, "tcp", KAFKA, KAFKA_CLIENT),
            "udp": (MONITORING, "udp", KAFKA, GOSSIP),
            "udp new flow back": (KAFKA, "udp", MONITORING, GOSSIP),
            "udp egress the collector has not": (COLLECTOR, "udp", KAFKA, GOSSIP),
        }
    ) == {
        "tcp": "ok",
        "udp": "ok",
        "udp new flow back": "timeout",
        "udp egress the collector has not": "timeout",
    }


def test_bridge_netfilter_is_on_and_ipv6_between_hosts_is_dropped(stand_in_lab):
    ns = stand_in_lab["ns"]
    assert all(ns.read_sysctl(k) == "1" for k in firewall.BRIDGE_SYSCTLS)
    assert stand_in_lab["saved"] == stand_in_lab["before"]
    v6 = sh("ip6tables", "-S", "FORWARD", ns=LAB_NS).stdout
    assert f"-i {ENV.bridge}" in v6 and f"-o {ENV.bridge}" in v6 and "-j DROP" in v6


def test_reapply_is_idempotent_and_keeps_the_hooks_ahead_of_accepts(stand_in_lab):
    """`lab up` again, after another env's ACCEPT landed on top of FORWARD: same rules, hooks first."""
    ns, env = stand_in_lab["ns"], ENV
    first = sorted(lab_rules())
    accept("-I", "-i", "fmsbr-other", "fms-lab:other")
    firewall.enforce(env, stand_in_lab["planned"], ["10.255.255.53"], stand_in_lab["saved"], ns)
    assert firewall._hooks_first(forward_rules()), forward_rules()
    accept("-D", "-i", "fmsbr-other", "fms-lab:other")
    assert sorted(lab_rules()) == first
    assert probe(COLLECTOR, "tcp", KAFKA, KAFKA_CLIENT) == "ok"


def test_a_host_that_is_gone_loses_its_chains_and_comes_back_with_them(stand_in_lab):
    """An instance Terraform removed: the next apply deletes its chains (nothing else changes)."""
    ns, planned, saved = stand_in_lab["ns"], stand_in_lab["planned"], stand_in_lab["saved"]
    first = sorted(lab_rules())
    gone = [sg_iptables.host_chain(ENV.name, STOPPED.ip, d) for d in ("egress", "ingress")]
    assert all(any(f":{c} " in line for line in first) for c in gone)
    firewall.enforce(ENV, [h for h in planned if h.name != STOPPED.name], ["10.255.255.53"], saved, ns)
    assert not any(c in line for line in lab_rules() for c in gone)
    assert probe(COLLECTOR, "tcp", KAFKA, KAFKA_CLIENT) == "ok"
    firewall.enforce(ENV, planned, ["10.255.255.53"], saved, ns)
    assert sorted(lab_rules()) == first


def test_a_second_env_beside_keeps_both_envs_rules(stand_in_lab):
    """The other region on its own bridge: its broker reaches this one's Kafka client port through
    the peer CIDR and nothing else, although lab.network's ACCEPTs for its bridge land on top of
    FORWARD (above this env's hooks) when it comes up; and only while both sides' route tables
    route the other's CIDR through a peering (the lab machine itself routes between its bridges
    regardless, AWS does not). Removing it leaves this env as it was."""
    lab, saved = stand_in_lab["ns"], stand_in_lab["saved"]
    planned = stand_in_lab["planned"]
    resolvers = ["10.255.255.53"]

    def routes_here(peered: bool) -> None:
        kafka_routes = (PEER_ENV.cidr,) if peered else ()
        hosts = [replace(h, peered=kafka_routes) if h.name == KAFKA.name else h for h in planned]
        firewall.enforce(ENV, hosts, resolvers, saved, lab)

    def routes_there(peered: bool) -> None:
        routes = {peer.ip: [ENV.cidr]} if peered else None
        there = firewall.plan(groups, [(peer.name, peer.ip, [peer.group])], {peer.name: veth}, peered=routes)
        firewall.enforce(PEER_ENV, there.hosts, [], saved, lab)

    before = sorted(lab_rules())
    peer = Host("dr-kafka-1", "198.19.128.4", "198.19.128.1", "sg-dr-kafka")  # namespace fmsfw-<pid>-dr
    veth = f"vb-{peer.name}"
    groups = [
        {
            "GroupId": "sg-dr-kafka",
            "GroupName": "dr-kafka",
            "IpPermissions": [perm("tcp", KAFKA_CLIENT, cidrs=[ENV.cidr])],
            # the default egress: only this env's ingress can stop the probes below
            "IpPermissionsEgress": [perm("-1", cidrs=["0.0.0.0/0"])],
        }
    ]
    br = PEER_ENV.bridge
    sh("ip", "netns", "add", peer.ns)
    try:
        sh("ip", "link", "add", br, "type", "bridge", "forward_delay", "0", ns=LAB_NS)
        sh("ip", "addr", "add", "198.19.128.1/24", "dev", br, ns=LAB_NS)
        sh("ip", "link", "set", br, "up", ns=LAB_NS)
        sh("ip", "-n", LAB_NS, "link", "add", veth, "type", "veth", "peer", "name", "host0", "netns", peer.ns)
        sh("ip", "-n", LAB_NS, "link", "set", veth, "master", br, "up")
        sh("ip", "-n", peer.ns, "addr", "add", f"{peer.ip}/24", "dev", "host0")
        sh("ip", "-n", peer.ns, "link", "set", "host0", "up")
        sh("ip", "-n", peer.ns, "route", "add", "default", "via", peer.gateway)
        for direction in ("-i", "-o"):
            accept("-I", direction, br, PEER_ENV.rule_tag)  # as lab.network does for the new bridge
        routes_there(peered=True)
        assert firewall._hooks_first(forward_rules()), forward_rules()
        no_way_back = probe(peer, "tcp", KAFKA, KAFKA_CLIENT)  # this side has no route to the peer
        routes_here(peered=True)
        results = probe_all(
            {
                "dr->kafka client": (peer, "tcp", KAFKA, KAFKA_CLIENT),
                "dr->kafka ssh": (peer, "tcp", KAFKA, SSH),
                "dr->kafka jmx": (peer, "tcp", KAFKA, KAFKA_JMX),
                "collector->kafka client": (COLLECTOR, "tcp", KAFKA, KAFKA_CLIENT),
            }
        )
        assert results == {
            "dr->kafka client": "ok",
            "dr->kafka ssh": "timeout",
            "dr->kafka jmx": "timeout",
            "collector->kafka client": "ok",
        }
        assert no_way_back == "timeout"
        routes_there(peered=False)  # the peering removed from Terraform
        assert probe(peer, "tcp", KAFKA, KAFKA_CLIENT) == "timeout"
    finally:
        firewall.enforce(ENV, planned, resolvers, saved, lab)
        firewall.teardown(PEER_ENV, lab)
        for direction in ("-i", "-o"):
            accept("-D", direction, br, PEER_ENV.rule_tag)
        subprocess.run(["ip", "-n", LAB_NS, "link", "del", br], check=False, timeout=20)
        subprocess.run(["ip", "netns", "del", peer.ns], check=False, timeout=20)
    assert sorted(lab_rules()) == before


def test_a_host_cannot_send_with_another_hosts_address(stand_in_lab):
    """Root in monitoring-1 takes the collector's address and wins its ARP (the lab machine's
    neighbour entry is pinned to monitoring-1): Kafka's collector-only port stays shut. Then the
    same with the address of an instance whose host is not running."""
    mac = sh("cat", "/sys/class/net/host0/address", ns=MONITORING.ns).stdout.strip()
    for victim in (COLLECTOR, STOPPED):
        sh("ip", "addr", "add", f"{victim.ip}/32", "dev", "host0", ns=MONITORING.ns)
        sh(
            "ip",
            "neigh",
            "replace",
            victim.ip,
            "lladdr",
            mac,
            "dev",
            ENV.bridge,
            "nud",
            "permanent",
            ns=LAB_NS,
        )
        try:
            assert probe(MONITORING, "tcp", KAFKA, KAFKA_CLIENT, "--source", victim.ip) == "timeout", victim
        finally:
            sh("ip", "addr", "del", f"{victim.ip}/32", "dev", "host0", ns=MONITORING.ns)
            sh("ip", "neigh", "del", victim.ip, "dev", ENV.bridge, ns=LAB_NS)


def test_teardown_leaves_no_rule_behind(stand_in_lab):
    ns, saved = stand_in_lab["ns"], stand_in_lab["saved"]
    firewall.teardown(ENV, ns)
    firewall.restore_bridge_netfilter(saved, ns)
    for direction in ("-i", "-o"):  # lab.network's part of the teardown
        accept("-D", direction, ENV.bridge, ENV.rule_tag)
    rules = "\n".join(lab_rules())
    assert "fms-lab" not in rules and sg_iptables.CHAIN_PREFIX not in rules, rules
    assert {k: ns.read_sysctl(k) for k in firewall.BRIDGE_SYSCTLS} == stand_in_lab["before"]
    assert saved == {}
    firewall.teardown(ENV, ns)  # idempotent

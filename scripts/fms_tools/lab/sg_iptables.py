"""Render one env's security-group policies as iptables chains (pure: text in, text out).

Why this shape (AWS semantics on one Linux bridge, see lab.firewall for how it is hooked in):

  FORWARD -i <bridge>            -> FMS-SG-<env>      packets from the env's hosts
  FORWARD ! -i <bridge> -o <bridge> -> FMS-SG-<env>   packets to them from elsewhere

  FMS-SG-<env>        1. each host's veth may send only its own address, and its address
                         only comes from its veth (before conntrack: a spoofed packet must
                         not pass as "established")
                      2. ESTABLISHED,RELATED -> RETURN (stateful: replies need no rule);
                         a new flow -> FMS-SG-<env>-RT (the VPC's routes, below)
                      3. a new flow from host h -> goto FMS-SG-<env>-E<h>; from the bridge
                         but from no host -> DROP
                      4. goto FMS-SG-<env>-IN
  FMS-SG-<env>-E<h>   h's egress rules (and the lab's DNS resolvers, which stand in for the
                      VPC resolver AWS does not filter) -> goto -IN; else DROP
  FMS-SG-<env>-IN     a flow to host h -> goto FMS-SG-<env>-I<h>; to any other address on
                      the bridge -> DROP; leaving the bridge (egress already allowed) -> RETURN
  FMS-SG-<env>-I<h>   h's ingress rules -> RETURN; else DROP
  FMS-SG-<env>-RT     the route tables between VPCs: within the env's VPC, or outside every
                      lab VPC (the internet through the lab's NAT) -> RETURN; to another lab
                      VPC only from a host whose subnet routes that CIDR through an active
                      peering, and from another lab VPC only to such a host (AWS needs the
                      route back too: without it the reply has no path); else DROP. The lab
                      machine routes between its bridges whatever Terraform says; this chain
                      is what makes the regions talk only because Terraform peered them.

  OUTPUT -o <bridge>  -> FMS-SG-<env>-LM   new flows the lab machine itself opens to a host:
                      only what lab.sg_rules.lab_machine_rules grants it (the operator's
                      CIDR rules: the bastion's SSH, the dashboards; the harness's probes);
                      replies to the hosts' own flows (the mirror, DNS) pass as established

A RETURN hands the packet back to FORWARD (OUTPUT), where the lab's ACCEPT rules (lab.network) take
it; every other outcome is DROP, as AWS drops (no reject). Gotos keep one verdict per
packet: a bridged packet between two hosts passes its sender's egress and its receiver's
ingress in one walk. Between envs (DR <-> primary, routed from one bridge to the other) the
sender's env checks its egress through the first hook, the receiver's env its ingress through
the second. Every rule carries the env's comment tag, so `iptables -S` says whose
it is and teardown can find the hooks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .envs import LAB_RANGE
from .sg_rules import HostPolicy, Rule

CHAIN_PREFIX = "FMS-SG-"
MAX_CHAIN_NAME = 28  # the kernel's limit (29 bytes with the NUL)
MAX_COMMENT = 255
ANY = "0.0.0.0/0"
DNS_PORT = 53  # the lab resolver's port: AWS's VPC resolver, which SGs never filter, serves here too


class RenderError(ValueError):
    pass


@dataclass(frozen=True)
class HostFirewall:
    """One lab host: its name, its veth on the bridge (None while it is not running), its policy."""

    name: str
    veth: str | None
    policy: HostPolicy
    # what the lab machine may open to this host (lab.sg_rules.lab_machine_rules)
    from_lab_machine: tuple[Rule, ...] = ()
    # CIDRs its subnet's route table sends through an active VPC peering (lab.discovery)
    peered: tuple[str, ...] = ()

    @property
    def ip(self) -> str:
        return self.policy.ip


@dataclass(frozen=True)
class Hook:
    """A rule in a built-in chain that sends traffic into the env's chains.

    FORWARD (host to host) and OUTPUT (the lab machine to a host); lab.firewall places and
    removes hooks of any built-in chain the same way.
    """

    chain: str  # FORWARD, OUTPUT, INPUT
    spec: list[str]  # the rule without `-A <chain>`

    @property
    def rule(self) -> str:
        return f"-A {self.chain} {quote_args(self.spec)}"


@dataclass(frozen=True)
class Ruleset:
    """The env's chains in order of creation, each a list of rule argument lists (no `-A chain`)."""

    env: str
    bridge: str
    tag: str
    chains: dict[str, list[list[str]]]
    hooks: list[Hook]

    def restore_text(self, remove_chains: Iterable[str] = ()) -> str:
        """iptables-restore --noflush input: (re)creates every chain at once (one atomic commit).

        Declaring an existing user chain flushes it, so a re-apply replaces the rules instead
        of adding to them; `remove_chains` (chains of hosts that are gone, no longer
        referenced once the main chain is rewritten) are flushed and deleted in the same commit.
        """
        lines = ["*filter"]
        lines += [f":{chain} - [0:0]" for chain in self.chains]
        lines += [f"-A {chain} {quote_args(spec)}" for chain, specs in self.chains.items() for spec in specs]
        for chain in remove_chains:
            lines += [f"-F {chain}", f"-X {chain}"]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


def quote_args(args: Sequence[str]) -> str:
    """Arguments as iptables-restore reads them (double quotes around words with spaces)."""
    return " ".join(f'"{a}"' if (not a or any(c in a for c in " \t'")) else a for a in args)


def main_chain(env: str) -> str:
    return _checked(f"{CHAIN_PREFIX}{env}")


def inbound_chain(env: str) -> str:
    return _checked(f"{CHAIN_PREFIX}{env}-IN")


def lab_machine_chain(env: str) -> str:
    return _checked(f"{CHAIN_PREFIX}{env}-LM")


def routes_chain(env: str) -> str:
    return _checked(f"{CHAIN_PREFIX}{env}-RT")


def host_chain(env: str, ip: str, direction: str) -> str:
    """FMS-SG-<env>-E<ip as hex> / -I<ip as hex>: fixed length whatever the host's name."""
    return _checked(f"{CHAIN_PREFIX}{env}-{'E' if direction == 'egress' else 'I'}{_hex(ip)}")


def is_env_chain(env: str, chain: str) -> bool:
    main = f"{CHAIN_PREFIX}{env}"
    return chain == main or chain.startswith(f"{main}-")


def _hex(ip: str) -> str:
    return f"{int(ipaddress.IPv4Address(ip)):08x}"


def _checked(chain: str) -> str:
    if len(chain) > MAX_CHAIN_NAME:
        raise RenderError(f"chain name {chain!r} is longer than iptables allows ({MAX_CHAIN_NAME})")
    return chain


def comment(tag: str, text: str = "") -> list[str]:
    """The env's tag first (teardown and `iptables -S` readers match on it), then why."""
    clean = " ".join(f"{tag} {text}".replace('"', "'").replace("\\", "/").split())
    return ["-m", "comment", "--comment", clean[:MAX_COMMENT]]


def match_protocol(rule: Rule) -> list[str]:
    """-p/--dport/--icmp-type for one rule's protocol and ports (nothing for protocol all)."""
    if rule.protocol == "all":
        return []
    args = ["-p", rule.protocol]
    if rule.ports is None:
        return args
    first, last = rule.ports
    if rule.protocol in ("tcp", "udp"):
        return [*args, "--dport", str(first) if first == last else f"{first}:{last}"]
    if rule.protocol == "icmp":
        return [*args, "--icmp-type", str(first) if last == -1 else f"{first}/{last}"]
    return args


def _peer(flag: str, cidr: str) -> list[str]:
    return [] if cidr == ANY else [flag, cidr]


def _describe(rule: Rule) -> str:
    if rule.ports is None:
        return f"{rule.why} ({rule.protocol})"
    first, last = rule.ports
    return f"{rule.why} ({rule.protocol}/{first}{'' if first == last else f'-{last}'})"


def _rule(match: Sequence[str], tag: str, why: str, *target: str) -> list[str]:
    """match + the tagged comment + the target (`-j X` / `-g X`)."""
    return [*match, *comment(tag, why), *target]


def render(
    env: str,
    bridge: str,
    tag: str,
    hosts: Sequence[HostFirewall],
    resolvers: Sequence[str] = (),
    vpc_cidr: str | None = None,
) -> Ruleset:
    """The env's chains for these hosts. `resolvers`: the DNS servers the hosts' resolv.conf names;
    `vpc_cidr`: the env's VPC (None: the hosts' addresses are the whole VPC, for tests)."""
    main, inbound, routes = main_chain(env), inbound_chain(env), routes_chain(env)
    ordered = sorted(hosts, key=lambda h: ipaddress.IPv4Address(h.ip))
    chains: dict[str, list[list[str]]] = {main: [], inbound: [], routes: []}
    rules = chains[main]
    drop, ret = ("-j", "DROP"), ("-j", "RETURN")
    for h in ordered:  # 1. addresses bound to ports
        if h.veth:
            own_port = ["-i", bridge, "-m", "physdev", "--physdev-in", h.veth, "!", "-s", h.ip]
            rules.append(_rule(own_port, tag, f"{h.name}: sends only from {h.ip}", *drop))
            spoofed = ["-i", bridge, "-s", h.ip, "-m", "physdev", "!", "--physdev-in", h.veth]
        else:
            spoofed = ["-i", bridge, "-s", h.ip]  # not running: nobody may use its address
        rules.append(_rule(spoofed, tag, f"{h.name}: {h.ip} only from its own port", *drop))
    # 2. stateful: replies (and ICMP errors about them) of an allowed flow need no rule
    rules.append(_rule(["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED"], tag, "replies", *ret))
    rules.append(_rule(["-m", "conntrack", "--ctstate", "INVALID"], tag, "invalid", *drop))
    rules.append(_rule([], tag, "new flows: the VPC's routes", "-j", routes))
    chains[routes] = _route_rules(tag, bridge, ordered, vpc_cidr)
    for h in ordered:  # 3. egress of new flows
        egress = host_chain(env, h.ip, "egress")
        rules.append(_rule(["-i", bridge, "-s", h.ip], tag, f"{h.name} egress", "-g", egress))
        chains[egress] = _egress_rules(tag, h, resolvers, inbound)
    rules.append(_rule(["-i", bridge], tag, "from no instance: default deny", *drop))
    rules.append(_rule([], tag, "to the receiver's ingress", "-g", inbound))
    for h in ordered:  # 4. ingress of new flows
        ingress = host_chain(env, h.ip, "ingress")
        to_host = ["-o", bridge, "-d", f"{h.ip}/32"]
        chains[inbound].append(_rule(to_host, tag, f"{h.name} ingress", "-g", ingress))
        chains[ingress] = _ingress_rules(tag, h)
    chains[inbound].append(_rule(["-o", bridge], tag, "to no instance: default deny", *drop))
    lab_machine = lab_machine_chain(env)
    chains[lab_machine] = _lab_machine_rules(tag, ordered)
    hooks = [
        Hook("FORWARD", _rule(["-i", bridge], tag, "", "-j", main)),
        Hook("FORWARD", _rule(["!", "-i", bridge, "-o", bridge], tag, "", "-j", main)),
        Hook("OUTPUT", _rule(["-o", bridge], tag, "", "-j", lab_machine)),
    ]
    return Ruleset(env, bridge, tag, chains, hooks)


def _route_rules(
    tag: str, bridge: str, hosts: Sequence[HostFirewall], vpc_cidr: str | None
) -> list[list[str]]:
    own = [vpc_cidr] if vpc_cidr else [f"{h.ip}/32" for h in hosts]
    ret, drop = ("-j", "RETURN"), ("-j", "DROP")
    out = []
    for cidr in own:
        out.append(_rule(["-i", bridge, "-d", cidr], tag, "local route", *ret))
    for h in hosts:
        for cidr in h.peered:
            why = f"{h.name}: route to {cidr} through a peering"
            out.append(_rule(["-i", bridge, "-s", h.ip, "-d", cidr], tag, why, *ret))
            out.append(_rule(["-o", bridge, "-s", cidr, "-d", h.ip], tag, f"{why} (the way back)", *ret))
    lab = str(LAB_RANGE)
    out.append(_rule(["-i", bridge, "-d", lab], tag, "another VPC: no route (no peering)", *drop))
    out.append(_rule(["-o", bridge, "-s", lab], tag, "from another VPC: no route back (no peering)", *drop))
    return out


def _egress_rules(tag: str, h: HostFirewall, resolvers: Sequence[str], inbound: str) -> list[list[str]]:
    dns = f"{h.name}: DNS (the lab's resolver, unfiltered like the VPC resolver)"
    out = [
        _rule(["-d", f"{r}/32", "-p", proto, "--dport", str(DNS_PORT)], tag, dns, "-g", inbound)
        for r in resolvers
        for proto in ("udp", "tcp")
    ]
    for r in h.policy.egress:
        match = [*_peer("-d", r.peer), *match_protocol(r)]
        out.append(_rule(match, tag, f"{h.name} egress {_describe(r)}", "-g", inbound))
    out.append(_rule([], tag, f"{h.name} egress: default deny", "-j", "DROP"))
    return out


def _ingress_rules(tag: str, h: HostFirewall) -> list[list[str]]:
    out = []
    for r in h.policy.ingress:
        match = [*_peer("-s", r.peer), *match_protocol(r)]
        out.append(_rule(match, tag, f"{h.name} ingress {_describe(r)}", "-j", "RETURN"))
    out.append(_rule([], tag, f"{h.name} ingress: default deny", "-j", "DROP"))
    return out


def _lab_machine_rules(tag: str, hosts: Sequence[HostFirewall]) -> list[list[str]]:
    state = ["-m", "conntrack", "--ctstate"]
    out = [
        _rule([*state, "ESTABLISHED,RELATED"], tag, "lab machine: replies", "-j", "RETURN"),
        _rule([*state, "INVALID"], tag, "lab machine: invalid", "-j", "DROP"),
    ]
    for h in hosts:
        for r in h.from_lab_machine:
            match = ["-d", f"{h.ip}/32", *match_protocol(r)]
            out.append(_rule(match, tag, f"lab machine -> {h.name} {_describe(r)}", "-j", "RETURN"))
    out.append(_rule([], tag, "lab machine: default deny", "-j", "DROP"))
    return out

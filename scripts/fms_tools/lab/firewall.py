"""The lab enforces the security groups Terraform created, on the lab machine, between lab hosts.

Why on the lab machine: a role runs as root inside its host and could rewrite any firewall
there; the bridge and the FORWARD chain are out of its reach. With
`net.bridge.bridge-nf-call-iptables=1` every IPv4 packet between two hosts of the same
subnet (bridged) passes FORWARD just like one between subnets (routed), so one set of
chains per env covers both; the rules themselves are rendered by lab.sg_iptables from the
groups the emulator reports (lab.sg_rules). IPv6 between hosts is dropped: the lab's VPCs
have none, and it must not be a way around the IPv4 rules.

The lab machine's own connections to the hosts (OUTPUT, not FORWARD) are filtered too: it
stands for the operator outside the VPC, so it reaches what admin_cidrs and dashboard_cidrs
opened (lab.tfvars puts an "office" network there: the bastion's SSH, the dashboards) and
nothing else; Ansible and every ssh go through the bastion, as on AWS. It is also the test
harness (the benchmark's producer, metric probes), which on AWS would be an instance in the
VPC: it gets the rights of the groups in HARNESS_STANDS_IN_FOR, no more. Replies to the hosts'
own flows to the lab machine (the artifact mirror, DNS) pass as established.

Everything added carries the env's comment tag (`fms-lab:<env>`) or lives in a chain named
`FMS-SG-<env>...`; teardown removes exactly those and puts the sysctls back when the last
env goes. A re-apply rewrites the env's chains in one iptables-restore commit (no moment
without rules) and is idempotent.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import sg_iptables
from .envs import BRIDGE_PREFIX, LAB_RANGE, RULE_TAG_PREFIX, Env
from .sg_iptables import HostFirewall, Ruleset
from .sg_rules import lab_machine_rules, translate

WAIT = ["-w", "10"]  # wait (bounded) for the xtables lock
TIMEOUT_S = 30
# Bridged IPv4/IPv6 goes through iptables/ip6tables only with these on (br_netfilter).
BRIDGE_SYSCTLS = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")
HOOK_CHAINS = ("FORWARD", "OUTPUT", "INPUT")  # built-in chains a hook may live in
# platform.yml security groups whose rights the lab machine has as the test harness: the
# benchmark produces like a collector and scrapes like Prometheus.
HARNESS_STANDS_IN_FOR = ("collector", "monitoring")
DISABLE_ENV = "FMS_LAB_FIREWALL"  # "off": no enforcement (debugging only; says so loudly)


class FirewallError(RuntimeError):
    pass


@dataclass(frozen=True)
class Netns:
    """Where the commands run: the lab machine (name None) or a network namespace (the tests)."""

    name: str | None = None

    def argv(self, cmd: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd] if self.name else list(cmd)

    def run(
        self, cmd: Sequence[str], stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(cmd), input=stdin, text=True, capture_output=True, timeout=TIMEOUT_S, check=False
        )
        if check and proc.returncode != 0:
            raise FirewallError(f"{shlex.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def _sysctl_path(self, key: str) -> Path:
        return Path("/proc/sys", *key.split("."))

    def read_sysctl(self, key: str) -> str | None:
        """/proc/sys is per network namespace for net.*: read it from a process inside it."""
        path = self._sysctl_path(key)
        if self.name is None:
            return path.read_text().strip() if path.exists() else None
        proc = self.run(["cat", str(path)], check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def write_sysctl(self, key: str, value: str) -> None:
        path = self._sysctl_path(key)
        if self.name is None:
            path.write_text(f"{value}\n")
        else:
            self.run(["sh", "-c", f"echo {shlex.quote(value)} > {shlex.quote(str(path))}"])


HOST = Netns()


def disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").lower() in ("0", "off", "no", "false")


# ---------------------------------------------------------------------------- plan


def host_veth(machine: str, ns: Netns = HOST) -> str | None:
    """The kernel name of the host's veth on the bridge (nspawn's altname vb-<machine>), if it exists.

    iptables' physdev match compares kernel names; nspawn shortens long ones with a hash.
    """
    proc = ns.run(["ip", "-j", "link", "show", "dev", f"vb-{machine}"], check=False)
    if proc.returncode != 0:
        return None
    links = json.loads(proc.stdout or "[]")
    return links[0]["ifname"] if links else None


@dataclass
class Plan:
    """Each host's firewall, plus what the operator should hear about it."""

    hosts: list[HostFirewall]
    notes: list[str]  # expected, e.g. rules naming the bastion's group in a profile without one
    warnings: list[str]  # not expected: a host with no veth (not running) has its address blocked


def plan(
    groups: Sequence[Mapping[str, Any]],
    hosts: Sequence[tuple[str, str, Sequence[str]]],
    veths: Mapping[str, str | None],
    harness_ips: Sequence[str] = (),
    peered: Mapping[str, Sequence[str]] | None = None,
) -> Plan:
    """(name, ip, group ids) per host + the groups' descriptions -> each host's firewall.

    `harness_ips`: members of the groups the lab machine stands in for as the test harness.
    `peered`: per host IP, the CIDRs its subnet routes through an active VPC peering
    (lab.discovery.peered_cidrs); a host absent from it reaches no other VPC.
    """
    policies = translate(groups, [(ip, gs) for _, ip, gs in hosts])
    out = []
    for name, ip, _ in hosts:
        from_lab_machine = tuple(lab_machine_rules(policies[ip], str(LAB_RANGE), harness_ips))
        routes = tuple((peered or {}).get(ip, ()))
        out.append(HostFirewall(name, veths.get(name), policies[ip], from_lab_machine, routes))
    refs: dict[str, int] = {}
    for h in out:
        for ref, count in h.policy.unresolved.items():
            refs[ref] = refs.get(ref, 0) + count
    notes = [
        f"group {ref} has no lab host: the {count} permissions naming it allow nothing here"
        for ref, count in sorted(refs.items())
    ]
    warnings = [
        f"{h.name}: no veth on the bridge (not running); its address is blocked" for h in out if not h.veth
    ]
    return Plan(out, notes, warnings)


# ---------------------------------------------------------------------------- apply


def ensure_bridge_netfilter(saved: dict[str, str], ns: Netns = HOST) -> list[str]:
    """Bridged traffic through ip(6)tables; the previous values go into `saved` (first time only).

    Returns notes for the operator: other bridges on the machine whose traffic this also
    sends through FORWARD (a FORWARD policy of DROP would then apply to them).
    """
    notes = []
    for key in BRIDGE_SYSCTLS:
        value = ns.read_sysctl(key)
        if value is None and ns.name is None:
            subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False, timeout=TIMEOUT_S)
            value = ns.read_sysctl(key)
        if value is None:
            raise FirewallError(f"{key} does not exist: the kernel has no bridge netfilter (br_netfilter)")
        if value != "1":
            saved.setdefault(key, value)
            ns.write_sysctl(key, "1")
            others = [b for b in _bridges(ns) if not b.startswith(BRIDGE_PREFIX)]
            if others:
                notes.append(f"{key}=1 also sends the traffic of bridges {others} through FORWARD")
    return notes


def restore_bridge_netfilter(saved: dict[str, str], ns: Netns = HOST) -> None:
    """Put back what ensure_bridge_netfilter changed (call when no lab env is left)."""
    for key in list(saved):
        if ns.read_sysctl(key) is not None:
            ns.write_sysctl(key, saved[key])
        del saved[key]


def _bridges(ns: Netns) -> list[str]:
    proc = ns.run(["ip", "-j", "link", "show", "type", "bridge"], check=False)
    return sorted(link["ifname"] for link in json.loads(proc.stdout or "[]")) if proc.returncode == 0 else []


def _chain_rules(ns: Netns, chain: str = "FORWARD", cmd: str = "iptables") -> list[str]:
    out = ns.run([cmd, *WAIT, "-S", chain]).stdout
    return [line for line in out.splitlines() if line.startswith(f"-A {chain} ")]


def _jump_target(rule: str) -> str | None:
    words = shlex.split(rule)
    return words[words.index("-j") + 1] if "-j" in words else None


def _env_chains(env_name: str, ns: Netns) -> list[str]:
    out = ns.run(["iptables", *WAIT, "-S"]).stdout
    chains = [line.split()[1] for line in out.splitlines() if line.startswith("-N ")]
    return [c for c in chains if sg_iptables.is_env_chain(env_name, c)]


def _hooks_first(rules: list[str]) -> bool:
    """Every security-group hook comes before any other rule of its chain (else an ACCEPT could skip it)."""
    hooks = [(_jump_target(r) or "").startswith(sg_iptables.CHAIN_PREFIX) for r in rules]
    return all(hooks[: sum(hooks)])


def apply(env: Env, ruleset: Ruleset, ns: Netns = HOST) -> None:
    """Write the env's chains (atomically), then make sure every env's hooks lead their chains.

    Hooks of all envs go first: the lab's own `-i <bridge> -j ACCEPT` of another env
    (lab.network inserts them at the top of FORWARD) would otherwise accept a packet from
    that env before this env's ingress rules saw it.
    """
    stale = [c for c in _env_chains(env.name, ns) if c not in ruleset.chains]
    _restore(ruleset.restore_text(stale), ns)
    _drop_ipv6(env, ns)
    for chain in sorted({h.chain for h in ruleset.hooks}):
        _place_hooks(env, chain, [h.rule for h in ruleset.hooks if h.chain == chain], ns)


def _is_hook(rule: str) -> bool:
    return (_jump_target(rule) or "").startswith(sg_iptables.CHAIN_PREFIX)


def _place_hooks(env: Env, chain: str, wanted: list[str], ns: Netns) -> None:
    """The env's hooks present and every env's hooks at the top of `chain`, in one commit if moved."""
    rules = _chain_rules(ns, chain)
    present = {_normalise(r) for r in rules}
    if all(_normalise(w) in present for w in wanted) and _hooks_first(rules):
        return
    # Re-place every env's hooks at the top in one commit: no moment without them.
    ours = [r for r in rules if _is_hook(r)]
    others = [r for r in ours if not sg_iptables.is_env_chain(env.name, _jump_target(r) or "")]
    head = f"-A {chain}"
    lines = ["*filter", *("-D" + r[2:] for r in ours)]
    lines += [f"-I {chain} 1" + r[len(head) :] for r in reversed([*wanted, *others])]
    lines.append("COMMIT")
    _restore("\n".join(lines) + "\n", ns)


def _normalise(rule: str) -> str:
    return " ".join(shlex.split(rule))


def _restore(text: str, ns: Netns, cmd: str = "iptables-restore") -> None:
    proc = ns.run([cmd, *WAIT, "--noflush"], stdin=text, check=False)
    if proc.returncode != 0:
        raise FirewallError(
            f"{cmd} refused the lab's rules ({proc.returncode}): {proc.stderr.strip()}\n{text}"
        )


def _drop_ipv6(env: Env, ns: Netns) -> None:
    """No IPv6 into or out of the env's bridge (the lab's VPCs have none)."""
    have = {_normalise(r) for r in _chain_rules(ns, "FORWARD", "ip6tables")}
    for spec in (["-i", env.bridge], ["-o", env.bridge]):
        rule = [*spec, *sg_iptables.comment(env.rule_tag, "no IPv6 in the VPC"), "-j", "DROP"]
        if _normalise(f"-A FORWARD {sg_iptables.quote_args(rule)}") not in have:
            ns.run(["ip6tables", *WAIT, "-I", "FORWARD", "1", *rule])


def teardown(env: Env, ns: Netns = HOST) -> None:
    """Remove the env's hooks, chains and IPv6 rules (idempotent; what a crashed run left included)."""
    chains = _env_chains(env.name, ns)
    hooks = [r for chain in HOOK_CHAINS for r in _chain_rules(ns, chain) if (_jump_target(r) or "") in chains]
    if chains or hooks:
        lines = ["*filter", *("-D" + r[2:] for r in hooks)]
        lines += [f"-F {c}" for c in chains] + [f"-X {c}" for c in chains]
        _restore("\n".join([*lines, "COMMIT"]) + "\n", ns)
    for rule in _chain_rules(ns, "FORWARD", "ip6tables"):
        words = shlex.split(rule)
        if "--comment" in words and words[words.index("--comment") + 1].split()[0] == env.rule_tag:
            ns.run(["ip6tables", *WAIT, "-D", *words[1:]], check=False)


def leftovers(ns: Netns = HOST) -> list[str]:
    """Security-group chains of any env and lab-tagged IPv6 rules still present (empty after `down`)."""
    out = ns.run(["iptables", *WAIT, "-S"]).stdout
    found = [
        f"chain {line.split()[1]}"
        for line in out.splitlines()
        if line.startswith(f"-N {sg_iptables.CHAIN_PREFIX}")
    ]
    found += [f"ip6tables {r}" for r in _chain_rules(ns, "FORWARD", "ip6tables") if RULE_TAG_PREFIX in r]
    return found


def enforce(
    env: Env,
    hosts: Sequence[HostFirewall],
    resolvers: Sequence[str],
    saved_sysctls: dict[str, str],
    ns: Netns = HOST,
) -> tuple[Ruleset, list[str]]:
    """Bridge netfilter on, the env's chains written and hooked in; returns the ruleset and notes."""
    notes = ensure_bridge_netfilter(saved_sysctls, ns)
    ruleset = sg_iptables.render(env.name, env.bridge, env.rule_tag, hosts, resolvers, env.cidr)
    apply(env, ruleset, ns)
    return ruleset, notes


# ---------------------------------------------------------------------------- report


@dataclass(frozen=True)
class HostCounts:
    ip: str
    enforced: bool  # the host has its chains (else nothing filters its traffic)
    ingress_rules: int
    egress_rules: int
    dropped_in: int  # packets the default deny of the host's ingress dropped (since the last apply)
    dropped_out: int


def counts(env: Env, ips: Sequence[str], ns: Netns = HOST) -> dict[str, HostCounts]:
    """Per host IP: allow rules in force (ingress/egress) and packets dropped by its default deny."""
    out = ns.run(["iptables-save", "-c", "-t", "filter"]).stdout
    chains: dict[str, list[tuple[int, str]]] = {}
    for line in out.splitlines():
        if line.startswith("[") and " -A " in line:
            packets = int(line[1:].split(":", 1)[0])
            rule = line.split("] ", 1)[1]
            chains.setdefault(rule.split()[1], []).append((packets, rule))
    result = {}
    for ip in ips:
        inn = chains.get(sg_iptables.host_chain(env.name, ip, "ingress"), [])
        eg = chains.get(sg_iptables.host_chain(env.name, ip, "egress"), [])

        def allows(rules: list[tuple[int, str]]) -> int:
            return sum(1 for _, r in rules if not r.endswith("-j DROP"))

        def dropped(rules: list[tuple[int, str]]) -> int:
            return sum(p for p, r in rules if r.endswith("-j DROP"))

        enforced = bool(inn) and bool(eg)
        result[ip] = HostCounts(ip, enforced, allows(inn), allows(eg), dropped(inn), dropped(eg))
    return result

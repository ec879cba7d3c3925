"""Lab networking on the lab machine: one bridge per env, NAT for the lab CIDR.

The bridge `fmsbr-<env>` holds the first address of every subnet of the env's
VPC, so it is each subnet's gateway (the VPC router on AWS). Hosts reach
package registries through the machine: ip_forward plus a MASQUERADE rule for
traffic leaving the lab range. Every iptables rule the lab adds carries the
comment `fms-lab:<env>`, so teardown removes exactly those rules and nothing else.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
from pathlib import Path

from . import firewall
from .envs import BRIDGE_PREFIX, LAB_RANGE, RULE_TAG_PREFIX, Env

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
IPT = ["iptables", "-w", "10"]  # wait (bounded) for the xtables lock


class NetworkError(RuntimeError):
    pass


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, text=True, capture_output=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise NetworkError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _ip_json(*args: str) -> list[dict]:
    return json.loads(_run(["ip", "-j", *args]).stdout or "[]")


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def is_stale_bridge(name: str) -> bool:
    """A lab bridge with no host attached: left by a lab whose hosts are gone (crash, reboot,
    another checkout's session that ended). Safe to reclaim; a bridge with ports is in use."""
    brif = Path("/sys/class/net", name, "brif")
    return brif.is_dir() and not any(brif.iterdir())


def lab_bridges() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(BRIDGE_PREFIX))


def ensure_bridge(env: Env, gateways: list[str]) -> None:
    """Create the env's bridge (if missing) carrying exactly the given gateway addresses."""
    br = env.bridge
    if not link_exists(br):
        _run(["ip", "link", "add", "name", br, "type", "bridge", "forward_delay", "0", "stp_state", "0"])
    # The host routes between subnets on the same bridge; redirects would only confuse hosts.
    Path(f"/proc/sys/net/ipv4/conf/{br}/send_redirects").write_text("0\n")
    have = {
        f"{a['local']}/{a['prefixlen']}"
        for link in _ip_json("-4", "addr", "show", "dev", br)
        for a in link.get("addr_info", [])
    }
    for addr in sorted(set(gateways) - have):
        _run(["ip", "addr", "add", addr, "dev", br])
    for addr in sorted(have - set(gateways)):
        _run(["ip", "addr", "del", addr, "dev", br])
    _run(["ip", "link", "set", br, "up"])


def _rules(table: str, chain: str) -> list[str]:
    out = _run([*IPT, "-t", table, "-S", chain]).stdout
    return [line for line in out.splitlines() if line.startswith("-A ")]


def tagged_rules(tag_prefix: str = RULE_TAG_PREFIX) -> list[tuple[str, str]]:
    """(table, rule) for every rule whose comment starts with the tag."""
    found = []
    for table, chain in (("nat", "POSTROUTING"), ("filter", "FORWARD"), ("filter", "INPUT")):
        for rule in _rules(table, chain):
            words = shlex.split(rule)
            comment = words[words.index("--comment") + 1] if "--comment" in words else ""
            if comment.startswith(tag_prefix):
                found.append((table, rule))
    return found


def _ensure_rule(table: str, spec: list[str]) -> None:
    if _run([*IPT, "-t", table, "-C", *spec], check=False).returncode != 0:
        chain, rest = spec[0], spec[1:]
        # Insert first, so a restrictive policy or rule further down cannot shadow it.
        _run([*IPT, "-t", table, "-I", chain, "1", *rest])


def read_ip_forward() -> str:
    return IP_FORWARD.read_text().strip()


def ensure_nat(env: Env) -> None:
    """ip_forward on and the env's tagged rules (the caller saved the previous ip_forward)."""
    if read_ip_forward() != "1":
        IP_FORWARD.write_text("1\n")
    tag = ["-m", "comment", "--comment", env.rule_tag]
    _ensure_rule("nat", ["POSTROUTING", "-s", env.cidr, "!", "-d", str(LAB_RANGE), *tag, "-j", "MASQUERADE"])
    _ensure_rule("filter", ["FORWARD", "-i", env.bridge, *tag, "-j", "ACCEPT"])
    _ensure_rule("filter", ["FORWARD", "-o", env.bridge, *tag, "-j", "ACCEPT"])
    # Hosts reach services the lab machine offers them on the gateway (e.g. the artifact mirror).
    _ensure_rule("filter", ["INPUT", "-i", env.bridge, *tag, "-j", "ACCEPT"])


def teardown(env: Env) -> None:
    """Remove the env's rules and bridge (idempotent; leftovers of a crashed run included).

    The security-group chains go first (lab.firewall): they hang off the tagged hooks.
    """
    firewall.teardown(env)
    for table, rule in tagged_rules(env.rule_tag):
        words = shlex.split(rule)
        words[0] = "-D"
        _run([*IPT, "-t", table, *words], check=False)
    if link_exists(env.bridge):
        _run(["ip", "link", "del", env.bridge])


def restore_ip_forward(lab_state: dict) -> None:
    saved = lab_state.pop("saved_ip_forward", None)
    if saved is not None and read_ip_forward() != saved:
        IP_FORWARD.write_text(f"{saved}\n")


def route_conflicts(cidr: str, own_bridge: str | None = None) -> list[str]:
    """Routes and interface addresses of this machine that overlap `cidr`.

    `own_bridge` (the env's bridge, when this lab created it) is ignored so a
    second `up` converges instead of tripping over its own routes.
    """
    net = ipaddress.ip_network(cidr)
    conflicts = []
    for route in _ip_json("-4", "route", "show", "table", "all"):
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("dev") == own_bridge:
            continue
        try:
            rnet = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if rnet.prefixlen and rnet.overlaps(net):
            conflicts.append(f"route {dst} dev {route.get('dev', '?')} (table {route.get('table', 'main')})")
    for link in _ip_json("-4", "addr"):
        if link.get("ifname") == own_bridge:
            continue
        for a in link.get("addr_info", []):
            anet = ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
            if anet.overlaps(net):
                conflicts.append(f"address {a['local']}/{a['prefixlen']} on {link.get('ifname')}")
    return sorted(set(conflicts))

"""Checks that run before the lab changes anything, with messages that say what to do."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
from pathlib import Path

from . import firewall, network
from .envs import LAB_RANGE, Env, Profile

# binary -> Debian package that provides it
TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "iptables": "iptables",
    "iptables-restore": "iptables",
    "ip6tables": "iptables",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "mount": "mount",
    "umount": "mount",
    "chroot": "coreutils",
}


class PreflightError(SystemExit):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("lab preflight failed; nothing was changed:\n  - " + "\n  - ".join(problems))
        self.problems = problems


def check_root() -> list[str]:
    if os.geteuid() != 0:
        return ["the lab needs root (containers, bridges, iptables): run it as root, e.g. `sudo make lab`"]
    return []


def check_tools(terraform: bool = False) -> list[str]:
    missing = {tool: pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None}
    problems = []
    if terraform and shutil.which("terraform") is None:
        problems.append(
            "terraform is not on PATH: run `make bootstrap` "
            '(or `eval "$(bash scripts/bootstrap/terraform_env.sh)"`)'
        )
    if missing:
        pkgs = sorted(set(missing.values()))
        listed = ", ".join(f"{t} (Debian package {p})" for t, p in missing.items())
        problems.append(f"missing {listed}: run `make bootstrap` or `apt-get install {' '.join(pkgs)}`")
    return problems


def check_kernel() -> list[str]:
    problems = []
    if "overlay" not in Path("/proc/filesystems").read_text():
        problems.append(
            "the kernel has no overlayfs (`modprobe overlay`); hosts share the cached rootfs through it"
        )
    if not Path("/sys/fs/cgroup").is_dir() or not any(Path("/sys/fs/cgroup").iterdir()):
        problems.append("no cgroup filesystem is mounted on /sys/fs/cgroup; systemd in the hosts needs it")
    problems += check_bridge_netfilter()
    return problems


def check_bridge_netfilter() -> list[str]:
    """The lab enforces security groups on bridged traffic through iptables (lab.firewall)."""
    if firewall.disabled():
        return []
    key = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if not key.exists() and shutil.which("modprobe"):
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False, timeout=30)
    if not key.exists():
        return [
            "the kernel has no bridge netfilter (CONFIG_BRIDGE_NETFILTER; `modprobe br_netfilter` failed): "
            "the lab cannot enforce the security groups between hosts "
            f"({firewall.DISABLE_ENV}=off runs the lab without them, unlike AWS)"
        ]
    return []


def mem_available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def check_memory(profile: Profile, already_used_mib: int = 0) -> list[str]:
    """MemAvailable must cover the profile; memory the env's running hosts already hold counts as theirs."""
    need = profile.min_available_mib - already_used_mib
    have = mem_available_mib()
    if have < need:
        return [
            f"profile {profile.name!r} needs {profile.min_available_mib} MiB available memory, "
            f"the machine has {have} MiB available: free memory or use `--profile minimal`"
        ]
    return []


def check_port(port: int, what: str, host: str = "127.0.0.1") -> list[str]:
    """`port` is free on `host` ("0.0.0.0": free on every address, as a later bind to a
    lab address that does not exist yet needs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            where = "this machine" if host == "0.0.0.0" else host
            return [
                f"port {port} on {where} ({what}) is taken by another process: stop it or pick another port"
            ]
    return []


def check_cidr(env: Env, own_bridge: str | None) -> list[str]:
    net = ipaddress.ip_network(env.cidr)
    if not net.subnet_of(LAB_RANGE):  # type: ignore[arg-type]
        return [f"the {env.name} lab CIDR {env.cidr} is outside the reserved range {LAB_RANGE}"]
    conflicts = network.route_conflicts(env.cidr, own_bridge)
    if conflicts:
        return [
            f"the {env.name} lab CIDR {env.cidr} collides with this machine's "
            + "; ".join(conflicts)
            + " — remove that route/address (or a lab left by another checkout) before bringing the lab up"
        ]
    return []


def host_nameservers() -> list[str]:
    """Name servers lab hosts can use: $FMS_LAB_DNS, else the machine's non-loopback ones."""
    if os.environ.get("FMS_LAB_DNS"):
        return [s.strip() for s in os.environ["FMS_LAB_DNS"].split(",") if s.strip()]
    for path in (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf")):
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        servers = []
        for line in lines:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                try:
                    addr = ipaddress.ip_address(parts[1].split("%")[0])
                except ValueError:
                    continue
                if not addr.is_loopback and addr.version == 4:
                    servers.append(str(addr))
        if servers:
            return servers
    return []


def check_dns() -> list[str]:
    if not host_nameservers():
        return ["no non-loopback IPv4 name server found for the hosts: set FMS_LAB_DNS=<ip>[,<ip>]"]
    return []


def run(
    env: Env,
    profile: Profile,
    *,
    own_bridge: str | None,
    emulator_port: int | None,
    mirror_port: int | None = None,
    terraform: bool = False,
    already_used_mib: int = 0,
) -> None:
    """Every check, all reported at once; raises PreflightError before anything changes."""
    problems = check_root() + check_tools(terraform) + check_kernel()
    problems += check_memory(profile, already_used_mib)
    if emulator_port is not None:
        problems += check_port(emulator_port, "the AWS emulator")
    if mirror_port is not None:
        problems += check_port(mirror_port, "the lab's artifact mirror", host="0.0.0.0")
    if shutil.which("ip"):
        problems += check_cidr(env, own_bridge)
    problems += check_dns()
    if problems:
        raise PreflightError(problems)

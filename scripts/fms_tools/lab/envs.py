"""The lab's environments (one per Terraform root stack) and size profiles.

The stacks, their regions and lab CIDRs are platform.yml's `stacks` (read
through fmsops.platform_contract, as Terraform reads them). Addresses come
from 198.18.0.0/15, the range reserved for network benchmark testing
(RFC 2544), so lab hosts can never shadow a real network; preflight still
checks the machine's routes before a bridge is created.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from fms_tools.fmsops.platform_contract import load as load_platform

LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
BRIDGE_PREFIX = "fmsbr-"
RULE_TAG_PREFIX = "fms-lab:"


@dataclass(frozen=True)
class Env:
    name: str
    region: str
    cidr: str  # the stack's lab_vpc_cidr in platform.yml (what Terraform gives its VPC in the lab)

    @property
    def bridge(self) -> str:
        return f"{BRIDGE_PREFIX}{self.name}"

    @property
    def rule_tag(self) -> str:
        return f"{RULE_TAG_PREFIX}{self.name}"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.ip_network(self.cidr)  # type: ignore[return-value]


def _envs() -> dict[str, Env]:
    envs = {s.name: Env(s.name, s.region, s.lab_vpc_cidr) for s in load_platform().stacks.values()}
    outside = [f"{e.name}: {e.cidr}" for e in envs.values() if not e.network.subnet_of(LAB_RANGE)]
    if outside:  # the lab's routes and preflight assume every lab host is inside LAB_RANGE
        raise ValueError(f"platform.yml lab_vpc_cidr outside {LAB_RANGE}: {', '.join(outside)}")
    return envs


ENVS: dict[str, Env] = _envs()


@dataclass(frozen=True)
class Profile:
    name: str
    min_available_mib: int  # MemAvailable needed for one env's idle hosts plus the services later issues run
    description: str
    # below this the hosts' JVMs and site.yml starve each other (ssh answers late, probes fail)
    min_cores: int = 1


PROFILES: dict[str, Profile] = {
    "lab": Profile(
        "lab", 10 * 1024, "every role on its own host(s), as production lays them out", min_cores=4
    ),
    "minimal": Profile("minimal", 5 * 1024, "the fewest hosts that still run every role"),
}


AUTO_PROFILE = "auto"
# `auto` takes the first profile this machine runs comfortably, largest first.
AUTO_ORDER = ("lab", "minimal")


def pick_profile(cores: int, available_mib: int) -> tuple[Profile, str]:
    """The largest profile this machine runs comfortably, and why (for `--profile auto`).

    The smallest profile is the floor: preflight still refuses it if memory is short.
    """
    passed_over: list[str] = []
    for name in AUTO_ORDER:
        prof = PROFILES[name]
        short = [f"{cores} cores < {prof.min_cores}"] if cores < prof.min_cores else []
        if available_mib < prof.min_available_mib:
            short.append(f"{available_mib} MiB available < {prof.min_available_mib}")
        if not short or name == AUTO_ORDER[-1]:
            why = "; ".join(passed_over) or f"{cores} cores, {available_mib} MiB available"
            return prof, why
        passed_over.append(f"not {name}: {', '.join(short)}")
    raise AssertionError("AUTO_ORDER is empty")


def env(name: str) -> Env:
    try:
        return ENVS[name]
    except KeyError:
        raise SystemExit(f"unknown env {name!r}; choose one of {', '.join(ENVS)}") from None

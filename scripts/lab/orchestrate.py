"""`lab up`, `lab down`, `lab status`: the steps, in order, with progress lines.

up:   preflight -> emulator -> Terraform apply -> discovery -> rootfs -> network -> hosts
down: hosts -> network -> emulator (when no env is left) -> ip_forward restored

Both are idempotent. `up` converges: a healthy host is kept, a stopped one is
restarted from its own upper layer, a host whose instance is gone or changed is
removed, a new instance gets a new host.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import discovery, hosts, network, preflight, progress, rootfs, state
from .envs import ENVS, PROFILES, Env
from .envs import env as get_env

ApplyFn = Callable[[str, str, str], None]  # (env name, emulator URL, profile name)

DEFAULT_EMULATOR_PORT = 5000
EMULATOR_STOP_TIMEOUT_S = 10.0


def emulator_port() -> int:
    return int(os.environ.get("FMS_EMULATOR_PORT", DEFAULT_EMULATOR_PORT))


# ---------------------------------------------------------------------------- emulator


def _emulator_alive(emu: dict[str, Any]) -> bool:
    pid = emu.get("pid")
    return bool(pid) and hosts.proc_start_time(pid) == emu.get("pid_start")


def _start_emulator(lab: dict[str, Any], port: int) -> str:
    try:
        from fmsops.emulator import Emulator
    except ImportError as exc:
        raise SystemExit(
            f"the AWS emulator helper (scripts/fmsops/emulator.py) is not available: {exc}"
        ) from exc
    emu = Emulator(port=port, log_path=state.logs_dir() / "emulator.log").start()
    lab["emulator"] = {
        "owned": True,
        "url": emu.url,
        "port": port,
        "pid": emu.pid,
        "pid_start": hosts.proc_start_time(emu.pid) if emu.pid else None,
        "log": str(emu.log_path),
    }
    return emu.url


def _stop_emulator(lab: dict[str, Any]) -> None:
    emu = lab.pop("emulator", None)
    if not emu or not emu.get("owned") or not _emulator_alive(emu):
        return
    progress.step(f"emulator: stopping moto_server (pid {emu['pid']})")
    from fmsops.emulator import Emulator

    Emulator(port=emu["port"], log_path=Path(emu["log"]), pid=emu["pid"]).stop(EMULATOR_STOP_TIMEOUT_S)
    # Emulator.stop() cannot wait for a process that is not its child (the `up` that started
    # it has exited): wait here (bounded), then kill its process group.
    if hosts.wait_gone({emu["pid"]}, EMULATOR_STOP_TIMEOUT_S):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(emu["pid"], signal.SIGKILL)
        if hosts.wait_gone({emu["pid"]}, EMULATOR_STOP_TIMEOUT_S):
            raise SystemExit(f"moto_server (pid {emu['pid']}) survived SIGKILL")


def _terraform_apply_fn():
    """`fmsops.terraform.apply_env`, resolved before anything changes (clear error if missing)."""
    try:
        from fmsops import terraform
    except ImportError as exc:
        raise SystemExit(f"scripts/fmsops/terraform.py is not importable: {exc}") from exc
    apply_env = getattr(terraform, "apply_env", None)
    if apply_env is None:
        raise SystemExit(
            "fmsops.terraform.apply_env(env, emulator_url) does not exist yet, so the lab cannot apply "
            "terraform/envs/<env>; to host instances that already exist in an emulator run "
            "`lab.py up --emulator-url URL --no-apply`"
        )
    return apply_env


def _apply_step(apply: bool | ApplyFn) -> ApplyFn | None:
    """What creates the env's instances: Terraform (True), a stand-in (a callable), nothing (False)."""
    if callable(apply):
        return apply
    if not apply:
        return None
    apply_env = _terraform_apply_fn()

    def terraform_apply(env_name: str, url: str, profile: str) -> None:
        kwargs = {"profile": profile} if "profile" in inspect.signature(apply_env).parameters else {}
        apply_env(env_name, url, **kwargs)

    return terraform_apply


# ---------------------------------------------------------------------------- up


def _record(inst: discovery.Instance, env: Env, image: Path) -> hosts.HostRecord:
    return {
        "name": inst.name,
        "env": env.name,
        "instance_id": inst.instance_id,
        "role": inst.role,
        "roles": list(inst.roles),
        "ip": inst.private_ip,
        "prefix": inst.prefixlen,
        "gateway": inst.gateway,
        "subnet_cidr": inst.subnet_cidr,
        "az": inst.az,
        "vpc_id": inst.vpc_id,
        "bridge": env.bridge,
        "image": image.name,
        "pid": None,
        "pid_start": None,
    }


def _same_instance(rec: hosts.HostRecord, want: hosts.HostRecord) -> bool:
    keys = ("instance_id", "ip", "prefix", "gateway", "bridge")
    return all(rec.get(k) == want[k] for k in keys) and (rootfs.rootfs_root() / rec.get("image", "")).is_dir()


def _env_memory_mib(all_hosts: dict[str, hosts.HostRecord], env: Env) -> int:
    used = 0
    for rec in all_hosts.values():
        if rec["env"] == env.name and hosts.nspawn_pid(rec):
            used += hosts.memory_usage(rec["name"]).get("total", 0)
    return used // (1024 * 1024)


def up(
    env_name: str = "primary",
    profile: str = "lab",
    *,
    emulator_url: str | None = None,
    apply: bool | ApplyFn = True,
) -> dict[str, hosts.HostRecord]:
    """Bring one env's hosts up (converging); returns the env's host records.

    `apply`: True runs `fmsops.terraform.apply_env` against the emulator, False
    hosts what the emulator already has, a callable stands in for Terraform.
    """
    progress.restart()
    env = get_env(env_name)
    if profile not in PROFILES:
        raise SystemExit(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    prof = PROFILES[profile]
    with state.locked():
        lab, all_hosts = state.load_lab(), state.load_hosts()
        emu = lab.get("emulator")
        reuse = emulator_url is None and emu is not None and emu.get("owned") and _emulator_alive(emu)
        port = None if emulator_url or reuse else emulator_port()
        own_bridge = env.bridge if env.name in lab["envs"] else None
        progress.step(f"preflight: env {env.name} ({env.cidr}, {env.region}), profile {prof.name}")
        apply_fn = _apply_step(apply)
        preflight.run(
            env,
            prof,
            own_bridge=own_bridge,
            emulator_port=port,
            terraform=apply is True,
            already_used_mib=_env_memory_mib(all_hosts, env),
        )

        if emulator_url:
            lab["emulator"] = {"owned": False, "url": emulator_url}
            url = emulator_url
            progress.step(f"emulator: using {url} (not managed by the lab)")
        elif reuse:
            url = emu["url"]
            progress.step(f"emulator: moto_server already running at {url}")
        else:
            progress.step(f"emulator: starting moto_server on 127.0.0.1:{port}")
            url = _start_emulator(lab, port)
        state.save_lab(lab)

        if apply_fn:
            progress.step(
                f"terraform: applying terraform/envs/{env.name} with lab.tfvars (profile {prof.name})"
            )
            apply_fn(env.name, url, prof.name)
        progress.step(f"discovery: running instances in {env.region}")
        found = discovery.discover(env, url)
        if not found.instances:
            raise SystemExit(
                f"the emulator reports no running fms instances in {env.region}; nothing to host"
            )
        clash = [
            i.name for i in found.instances if all_hosts.get(i.name, {}).get("env", env.name) != env.name
        ]
        if clash:
            raise SystemExit(
                f"Name tags {clash} are already lab hosts of another env; each env needs its own names"
            )
        progress.step(f"discovery: {len(found.instances)} instances in {len(found.subnet_cidrs)} subnets")

        image = rootfs.ensure_image()

        progress.step(
            f"network: bridge {env.bridge} with gateways {', '.join(found.gateways)}; NAT for {env.cidr}"
        )
        lab.setdefault("saved_ip_forward", network.read_ip_forward())
        lab["envs"][env.name] = {
            "bridge": env.bridge,
            "cidr": env.cidr,
            "region": env.region,
            "gateways": found.gateways,
            "profile": prof.name,
        }
        state.save_lab(lab)
        network.ensure_bridge(env, found.gateways)
        network.ensure_nat(env)

        _converge_hosts(env, found, image, all_hosts)
        env_hosts = {n: r for n, r in all_hosts.items() if r["env"] == env.name}
        _report_health(env_hosts)
        progress.step(f"up: {len(env_hosts)} hosts of {env.name} ready in {progress.elapsed():.1f}s")
        return env_hosts


def _converge_hosts(env: Env, found: discovery.Discovery, image: Path, all_hosts: dict) -> None:
    wanted = {i.name: _record(i, env, image) for i in found.instances}
    for name, rec in list(all_hosts.items()):
        if rec["env"] == env.name and (name not in wanted or not _same_instance(rec, wanted[name])):
            progress.step(f"hosts: removing {name} (its instance is gone or changed)")
            hosts.destroy(rec)
            del all_hosts[name]
            state.save_hosts(all_hosts)

    pubkey = state.ensure_key().with_suffix(".pub").read_text()
    nameservers = preflight.host_nameservers()
    to_wait: list[hosts.HostRecord] = []
    for name, want in wanted.items():
        rec = all_hosts.get(name)
        if rec and hosts.nspawn_pid(rec):
            res = hosts.ssh_run(rec["ip"], "hostname", timeout_s=10)
            if res.returncode == 0 and res.stdout.strip() == name:
                progress.step(f"hosts: {name} ({rec['ip']}) is running; kept")
                continue
            progress.step(f"hosts: {name} is running but not answering yet; waiting for it")
            to_wait.append(rec)
            continue
        if rec:
            progress.step(f"hosts: {name} ({rec['ip']}) is stopped; restarting it with its own disk")
            hosts.stop(rec)  # clears whatever a crashed nspawn left in its cgroups
            hosts.mount_root(rec, rootfs.rootfs_root() / rec["image"])
        else:
            progress.step(
                f"hosts: creating {name} ({want['ip']}/{want['prefix']}, {','.join(want['roles'])})"
            )
            rec = all_hosts[name] = want
            root = hosts.mount_root(rec, image)
            hosts.write_identity(rec, root, pubkey, nameservers)
        state.save_hosts(all_hosts)
        state.write_ssh_files(all_hosts)
        to_wait.append(rec)

    peers = sorted(wanted.values(), key=lambda r: r["ip"])
    for name in wanted:
        hosts.update_etc_hosts(all_hosts[name], peers)

    for rec in to_wait:
        if not hosts.nspawn_pid(rec):
            hosts.start(rec)
    state.save_hosts(all_hosts)
    if to_wait:
        progress.step(
            f"hosts: waiting for {len(to_wait)} hosts to boot (ssh + systemd, ≤{hosts.BOOT_TIMEOUT_S:.0f}s)"
        )
        with ThreadPoolExecutor(max_workers=min(8, len(to_wait))) as pool:
            results = list(pool.map(_wait_one, to_wait))
        state.save_hosts(all_hosts)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise SystemExit(
                "some hosts did not come up (run `lab up` again to retry, `lab down` to clean up):\n"
                + "\n".join(str(e) for e in errors)
            )


def _wait_one(rec: hosts.HostRecord) -> hosts.HostRecord | Exception:
    started = time.monotonic()
    try:
        hosts.wait_ready(rec)
    except hosts.HostError as exc:
        return exc
    progress.step(
        f"hosts: {rec['name']} up in {time.monotonic() - started:.1f}s (systemd: {rec['system_state']})"
    )
    return rec


def _report_health(env_hosts: dict[str, hosts.HostRecord]) -> None:
    for rec in env_hosts.values():
        unexplained = [u for u in rec.get("failed_units", []) if u not in hosts.KNOWN_DEGRADED_UNITS]
        if unexplained:
            progress.warn(
                f"{rec['name']}: failed units {unexplained}; "
                f"see `lab.py ssh {rec['name']} systemctl --failed`"
            )


# ---------------------------------------------------------------------------- down


def down(env_names: list[str] | None = None) -> None:
    """Remove the given envs (default: everything the lab made). Safe to run any number of times."""
    progress.restart()
    if preflight.check_root():
        raise preflight.PreflightError(preflight.check_root())
    with state.locked():
        lab, all_hosts = state.load_lab(), state.load_hosts()
        everything = env_names is None
        targets = (
            sorted(set(ENVS) | set(lab["envs"]) | {r["env"] for r in all_hosts.values()})
            if everything
            else [get_env(n).name for n in env_names]
        )
        for name, rec in sorted(all_hosts.items()):
            if rec["env"] in targets:
                progress.step(f"hosts: removing {name} ({rec['ip']})")
                hosts.destroy(rec)
                del all_hosts[name]
                state.save_hosts(all_hosts)
        if everything:
            _sweep_leftovers()
        for name in targets:
            env = get_env(name)
            if network.link_exists(env.bridge) or network.tagged_rules(env.rule_tag):
                progress.step(f"network: removing bridge {env.bridge} and its NAT rules")
            network.teardown(env)
            lab["envs"].pop(name, None)
        state.save_lab(lab)
        if not lab["envs"]:
            _stop_emulator(lab)
            network.restore_ip_forward(lab)
        state.save_lab(lab)
        state.write_ssh_files(all_hosts)
        progress.step(f"down: done in {progress.elapsed():.1f}s")


def _sweep_leftovers() -> None:
    """What a crashed run may have left without a state record: nspawns, mounts, cgroups."""
    base = state.lab_dir() / "hosts"
    strays = hosts.nspawn_processes_under(base)
    if strays:
        progress.step(f"hosts: stopping {len(strays)} unrecorded nspawn processes under {base}")
        hosts.signal_all(set(strays), signal.SIGTERM)
        if hosts.wait_gone(set(strays), hosts.STOP_TIMEOUT_S):
            hosts.signal_all(set(strays), signal.SIGKILL)
            hosts.wait_gone(set(strays), hosts.KILL_TIMEOUT_S)
    if base.is_dir():
        for hd in sorted(base.iterdir()):
            rec = {"name": hd.name, "pid": None}
            hosts.destroy(rec)
        with contextlib.suppress(OSError):
            base.rmdir()


# ---------------------------------------------------------------------------- status


def services() -> dict[str, list[str]]:
    """Service URLs per host, written by later steps into <lab>/services.json ({"host": ["url", ...]})."""
    try:
        return json.loads((state.lab_dir() / "services.json").read_text())
    except (OSError, ValueError):
        return {}


def collect_status() -> list[dict[str, Any]]:
    all_hosts = state.load_hosts()
    urls = services()

    def one(rec: hosts.HostRecord) -> dict[str, Any]:
        row = {k: rec.get(k) for k in ("name", "env", "role", "roles", "ip", "az")}
        running = hosts.nspawn_pid(rec) is not None
        row["state"] = "running" if running else "stopped"
        row["ssh"], row["system"] = "-", "-"
        if running:
            res = hosts.ssh_run(rec["ip"], "hostname; systemctl is-system-running", timeout_s=10)
            lines = res.stdout.split()
            row["ssh"] = "ok" if lines[:1] == [rec["name"]] else "unreachable"
            row["system"] = lines[1] if len(lines) > 1 else "-"
        mem = hosts.memory_usage(rec["name"]) if running else {}
        row["mem_mib"] = round(mem.get("total", 0) / 2**20) if mem else None
        row["services"] = urls.get(rec["name"], [])
        return row

    recs = sorted(all_hosts.values(), key=lambda r: (r["env"], tuple(int(x) for x in r["ip"].split("."))))
    if not recs:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(recs))) as pool:
        return list(pool.map(one, recs))


def print_status() -> int:
    lab = state.load_lab()
    emu = lab.get("emulator")
    if emu:
        alive = "running" if not emu.get("owned") or _emulator_alive(emu) else "NOT running"
        print(f"emulator: {emu['url']} ({alive}{'' if emu.get('owned') else ', external'})")
    else:
        print("emulator: not started by the lab")
    for name, info in sorted(lab["envs"].items()):
        bridge_state = "up" if network.link_exists(info["bridge"]) else "MISSING"
        print(
            f"env {name}: bridge {info['bridge']} {bridge_state}, "
            f"{info['cidr']} ({info['region']}), profile {info.get('profile', '?')}"
        )
    rows = collect_status()
    if not rows:
        print("no lab hosts (run `make lab`)")
        return 0
    header = ("HOST", "ENV", "ROLES", "IP", "STATE", "SSH", "SYSTEMD", "MEM", "SERVICES")
    table = [header] + [
        (
            r["name"],
            r["env"],
            ",".join(r["roles"] or [r["role"]]),
            r["ip"],
            r["state"],
            r["ssh"],
            r["system"],
            f"{r['mem_mib']}M" if r["mem_mib"] is not None else "-",
            " ".join(r["services"]) or "-",
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + str(row[-1]))
    bad = [r for r in rows if r["state"] != "running" or r["ssh"] != "ok"]
    return 1 if bad else 0

"""`lab up`, `lab down`, `lab status`: the steps, in order, with progress lines.

up:   preflight -> emulator -> [artifact build, in the background] -> Terraform apply
      -> discovery (checked against Terraform's outputs) -> rootfs -> network -> hosts
      -> security groups enforced (lab.firewall) -> artifact mirror served on the primary bridge
down: hosts -> mirror (with the env that carries its address) -> network (its firewall chains first)
      -> emulator (when no env is left) -> ip_forward and bridge netfilter restored

Both are idempotent. `up` converges: a healthy host is kept, a stopped one is
restarted from its own upper layer, a host whose instance is gone or changed is
removed, a new instance gets a new host.
"""

from __future__ import annotations

import contextlib
import inspect
import ipaddress
import json
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fms_tools.fmsops import procs
from fms_tools.fmsops.emulator import EMULATOR_ENV
from fms_tools.fmsops.platform_contract import load as load_contract

from . import (
    alert_receiver,
    discovery,
    firewall,
    hosts,
    mirror,
    network,
    package_cache,
    preflight,
    progress,
    rootfs,
    services,
    state,
)
from .envs import AUTO_PROFILE, ENVS, PROFILES, Env, pick_profile
from .envs import env as get_env

# (env name, emulator URL, profile name) -> Terraform's outputs (or None when there are none)
ApplyFn = Callable[[str, str, str], "dict[str, Any] | None"]

DEFAULT_EMULATOR_PORT = 5000
EMULATOR_STOP_TIMEOUT_S = 10.0


def emulator_port() -> int:
    return int(os.environ.get("FMS_EMULATOR_PORT", DEFAULT_EMULATOR_PORT))


# ---------------------------------------------------------------------------- emulator


def _emulator_alive(emu: dict[str, Any]) -> bool:
    pid = emu.get("pid")
    return bool(pid) and hosts.proc_start_time(pid) == emu.get("pid_start")


def _emulator_pid_file() -> Path:
    return state.lab_dir() / "emulator.pid"


def _start_emulator(lab: dict[str, Any], port: int) -> str:
    try:
        from fms_tools.fmsops.emulator import Emulator
    except ImportError as exc:
        raise SystemExit(
            f"the AWS emulator helper (scripts/fms_tools/fmsops/emulator.py) is not available: {exc}"
        ) from exc
    state.lab_dir().mkdir(parents=True, exist_ok=True)
    log = state.logs_dir() / "emulator.log"
    emu = Emulator(port=port, log_path=log, pid_file=_emulator_pid_file()).start()
    assert emu.pid is not None
    lab["emulator"] = _owned_record(emu.pid, hosts.proc_start_time(emu.pid), port)
    return emu.url


def _owned_record(pid: int, pid_start: int | None, port: int) -> dict[str, Any]:
    log = state.logs_dir() / "emulator.log"
    url = f"http://127.0.0.1:{port}"
    return {"owned": True, "url": url, "port": port, "pid": pid, "pid_start": pid_start, "log": str(log)}


def _own_leftover_emulator() -> dict[str, Any] | None:
    """The emulator an earlier `up` of this lab dir started and left running (a run that failed or
    was killed before it recorded it in lab.json), by <lab>/emulator.pid: the same pid and start
    time, and the command line of our moto_server launcher on the recorded port. None otherwise
    (a stale pid file is removed; whatever process holds that pid now is left alone)."""
    path = _emulator_pid_file()
    try:
        rec = json.loads(path.read_text())
        pid, port = int(rec["pid"]), int(rec["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    cmd = procs.cmdline(pid)
    ours = (
        procs.start_time(pid) == rec.get("pid_start")
        and len(cmd) >= 2
        and Path(cmd[1]).name == "moto_server.py"
        and cmd[-2:] == ["-p", str(port)]
    )
    if not ours:
        path.unlink(missing_ok=True)
        return None
    return _owned_record(pid, rec.get("pid_start"), port)


def _reusable_emulator(lab: dict[str, Any], emulator_url: str | None) -> bool:
    """Whether `up` can use the lab's own running emulator (recorded in lab.json, or left by a failed
    run): its own leftover on this port is adopted; one that does not answer, or answers on another
    port, is stopped so a fresh one starts. Anything else on the port stays and fails preflight."""
    if emulator_url is not None:
        return False
    emu = lab.get("emulator")
    if emu is not None and emu.get("owned") and _emulator_alive(emu):
        return True
    left = _own_leftover_emulator()
    if left is None:
        return False
    from fms_tools.fmsops.emulator import Emulator

    port = emulator_port()
    answers = Emulator(port=left["port"], log_path=Path(left["log"]), pid=left["pid"]).is_ready()
    if answers and left["port"] == port:
        lab["emulator"] = left
        progress.step(
            f"emulator: reusing moto_server (pid {left['pid']}) an earlier `up` left at {left['url']}"
        )
        return True
    why = f"port {left['port']}, not {port}" if answers else "it does not answer"
    progress.step(f"emulator: replacing moto_server (pid {left['pid']}) an earlier `up` left ({why})")
    _stop_emulator({"emulator": left})
    return False


def _stop_emulator(lab: dict[str, Any]) -> None:
    emu = lab.pop("emulator", None)
    if not emu or not emu.get("owned") or not _emulator_alive(emu):
        return
    progress.step(f"emulator: stopping moto_server (pid {emu['pid']})")
    from fms_tools.fmsops.emulator import Emulator

    pid_file = _emulator_pid_file()
    Emulator(port=emu["port"], log_path=Path(emu["log"]), pid=emu["pid"], pid_file=pid_file).stop(
        EMULATOR_STOP_TIMEOUT_S
    )
    # Emulator.stop() cannot wait for a process that is not its child (the `up` that started
    # it has exited): wait here (bounded), then kill its process group.
    if hosts.wait_gone({emu["pid"]}, EMULATOR_STOP_TIMEOUT_S):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(emu["pid"], signal.SIGKILL)
        if hosts.wait_gone({emu["pid"]}, EMULATOR_STOP_TIMEOUT_S):
            raise SystemExit(f"moto_server (pid {emu['pid']}) survived SIGKILL")


def _ensure_emulator(lab: dict[str, Any], emulator_url: str | None, port: int | None) -> str:
    """The emulator `up` uses (after preflight): the given URL, the lab's running one (port None),
    or a new one on `port`; recorded in `lab` (the caller saves it)."""
    if emulator_url:
        lab["emulator"] = {"owned": False, "url": emulator_url}
        progress.step(f"emulator: using {emulator_url} (not managed by the lab)")
        return emulator_url
    if port is None:
        progress.step(f"emulator: moto_server already running at {lab['emulator']['url']}")
        return str(lab["emulator"]["url"])
    progress.step(f"emulator: starting moto_server on 127.0.0.1:{port}")
    return _start_emulator(lab, port)


def _terraform_apply_fn():
    """`fmsops.terraform.apply_env`, resolved before anything changes (clear error if missing)."""
    try:
        from fms_tools.fmsops import terraform
    except ImportError as exc:
        raise SystemExit(f"scripts/fms_tools/fmsops/terraform.py is not importable: {exc}") from exc
    apply_env = getattr(terraform, "apply_env", None)
    if apply_env is None:
        raise SystemExit(
            "fmsops.terraform.apply_env(env, emulator_url) does not exist yet, so the lab cannot apply "
            "terraform/envs/<env>; to host instances that already exist in an emulator run "
            "`fms-lab up --emulator-url URL --no-apply`"
        )
    return apply_env


def _apply_step(apply: bool | ApplyFn) -> ApplyFn | None:
    """What creates the env's instances: Terraform (True), a stand-in (a callable), nothing (False)."""
    if callable(apply):
        return apply
    if not apply:
        return None
    apply_env = _terraform_apply_fn()

    def terraform_apply(env_name: str, url: str, profile: str) -> dict[str, Any] | None:
        kwargs = {"profile": profile} if "profile" in inspect.signature(apply_env).parameters else {}
        return apply_env(env_name, url, **kwargs)

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
        "public_ip": inst.public_ip,
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


def _auto_profile(env_name: str) -> str:
    """`--profile auto`: the env's profile if it is up, else the largest the machine runs comfortably."""
    running = state.load_lab()["envs"].get(env_name, {}).get("profile")
    if running in PROFILES:
        progress.step(f"profile: auto -> {running} (the profile {env_name} is already up with)")
        return running
    prof, why = pick_profile(os.cpu_count() or 1, preflight.mem_available_mib())
    progress.step(f"profile: auto -> {prof.name} ({why}; --profile/PROFILE= picks one)")
    return prof.name


def up(
    env_name: str = "primary",
    profile: str = "lab",
    *,
    emulator_url: str | None = None,
    apply: bool | ApplyFn = True,
    serve_mirror: bool = True,
) -> dict[str, hosts.HostRecord]:
    """Bring one env's hosts up (converging); returns the env's host records.

    `apply`: True runs `fmsops.terraform.apply_env` against the emulator, False
    hosts what the emulator already has, a callable stands in for Terraform.
    `serve_mirror`: build (cached) and serve the artifact mirror (see lab.mirror).
    """
    progress.restart()
    env = get_env(env_name)
    if profile == AUTO_PROFILE:
        profile = _auto_profile(env.name)
    if profile not in PROFILES:
        choices = ", ".join([*PROFILES, AUTO_PROFILE])
        raise SystemExit(f"unknown profile {profile!r}; choose one of {choices}")
    prof = PROFILES[profile]
    with state.locked():
        lab, all_hosts = state.load_lab(), state.load_hosts()
        reuse = _reusable_emulator(lab, emulator_url)
        port = None if emulator_url or reuse else emulator_port()
        own_bridge = env.bridge if env.name in lab["envs"] else None
        if own_bridge is None and network.is_stale_bridge(env.bridge):
            # No host is attached, so no lab uses it: reclaim it instead of calling it a collision.
            progress.step(f"network: reclaiming stale bridge {env.bridge} (no host attached) and its rules")
            network.teardown(env)
        progress.step(f"preflight: env {env.name} ({env.cidr}, {env.region}), profile {prof.name}")
        apply_fn = _apply_step(apply)
        endpoint, mirror_env = _mirror_plan(env, lab) if serve_mirror else (None, None)
        mirror_port = endpoint.port if endpoint and not mirror.alive(lab.get("mirror")) else None
        preflight.run(
            env,
            prof,
            own_bridge=own_bridge,
            emulator_port=port,
            mirror_port=mirror_port,
            terraform=apply is True,
            already_used_mib=_env_memory_mib(all_hosts, env),
        )

        url = _ensure_emulator(lab, emulator_url, port)
        state.save_lab(lab)

        build = None
        if endpoint:
            build = mirror.start_build()
            progress.step(f"mirror: building artifacts in the background (cached; log {build[1]})")
        try:
            env_hosts = _up_hosts(env, prof, lab, all_hosts, url, apply_fn)
            if endpoint and mirror_env:
                _ensure_mirror(lab, endpoint, mirror_env, build)
                build = None
            alert_receiver.ensure(lab, env.name)
        finally:
            if build is not None:  # failed before the mirror step: leave no build running
                mirror.cancel_build(build)
        progress.step(f"up: {len(env_hosts)} hosts of {env.name} ready in {progress.elapsed():.1f}s")
        return env_hosts


def _up_hosts(
    env: Env,
    prof: Any,
    lab: dict[str, Any],
    all_hosts: dict[str, hosts.HostRecord],
    url: str,
    apply_fn: ApplyFn | None,
) -> dict[str, hosts.HostRecord]:
    outputs = None
    if apply_fn:
        progress.step(f"terraform: applying terraform/envs/{env.name} with lab.tfvars (profile {prof.name})")
        outputs = apply_fn(env.name, url, prof.name)
        if outputs:
            state.save_outputs(env.name, outputs)
    progress.step(f"discovery: running instances in {env.region}")
    found = discovery.discover(env, url)
    if not found.instances:
        raise SystemExit(f"the emulator reports no running fms instances in {env.region}; nothing to host")
    if outputs and isinstance(outputs.get("instances"), dict):
        _check_against_outputs(env, found, outputs["instances"])
    clash = [i.name for i in found.instances if all_hosts.get(i.name, {}).get("env", env.name) != env.name]
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
    # After every apply and on every `up`: the groups as Terraform left them, on the hosts as
    # they run now (a restarted host's veth is looked up again).
    enforce_security_groups(env, found, url, lab)
    # This apply may have changed the others' routes too (the standby stack owns the peering and
    # its routes in both regions): their firewalls follow.
    for other in sorted(set(lab["envs"]) - {env.name}):
        other_env = get_env(other)
        enforce_security_groups(other_env, discovery.discover(other_env, url), url, lab)
    env_hosts = {n: r for n, r in all_hosts.items() if r["env"] == env.name}
    _report_health(env_hosts)
    return env_hosts


def enforce_security_groups(env: Env, found: discovery.Discovery, url: str, lab: dict[str, Any]) -> None:
    """Read the instances' security groups from the emulator and enforce them between the hosts."""
    if firewall.disabled():
        progress.warn(
            f"{firewall.DISABLE_ENV}=off: security groups are NOT enforced on {env.name}; "
            "every host reaches every port of every other (unlike AWS)"
        )
        firewall.teardown(env)
        return
    no_group = [i.name for i in found.instances if not i.security_groups]
    if no_group:
        progress.warn(f"instances without a security group (all their traffic is dropped): {no_group}")
    group_ids = sorted({g for i in found.instances for g in i.security_groups})
    groups = discovery.security_groups(env, url, group_ids)
    members = [(i.name, i.private_ip, i.security_groups) for i in found.instances]
    veths = {i.name: firewall.host_veth(i.name) for i in found.instances}
    security_groups = load_contract().security_groups
    harness_roles = {g for sg in firewall.HARNESS_STANDS_IN_FOR for g in security_groups[sg]}
    harness = [i.private_ip for i in found.instances if harness_roles & set(i.roles)]
    peered = discovery.peered_cidrs(env, url, found.instances)
    planned = firewall.plan(groups, members, veths, harness, peered)
    saved = lab.setdefault("saved_sysctls", {})
    try:
        ruleset, notes = firewall.enforce(env, planned.hosts, preflight.host_nameservers(), saved)
    finally:
        state.save_lab(lab)  # the sysctls' previous values, even if the rules were refused
    rules = sum(len(specs) for specs in ruleset.chains.values())
    progress.step(
        f"firewall: {len(groups)} security groups enforced on {len(planned.hosts)} hosts of {env.name} "
        f"({rules} rules in {firewall.sg_iptables.main_chain(env.name)}*; `fms-lab firewall` shows them)"
    )
    routes = sorted({c for cidrs in peered.values() for c in cidrs})
    progress.step(
        f"firewall: {env.name} reaches other VPCs through peerings to {', '.join(routes)}"
        if routes
        else f"firewall: {env.name} has no route to another VPC (no active peering)"
    )
    for line in planned.notes:
        progress.step(f"firewall: {line}")
    for line in planned.warnings + notes:
        progress.warn(f"firewall: {line}")


def reapply_security_groups(env_name: str) -> None:
    """`fms-lab firewall --apply`: enforce the emulator's groups again (e.g. after a manual apply)."""
    env = get_env(env_name)
    with state.locked():
        lab = state.load_lab()
        if env.name not in lab["envs"] or not lab.get("emulator"):
            raise SystemExit(f"the {env.name} env is not up (`fms-lab up --env {env.name}`)")
        url = lab["emulator"]["url"]
        enforce_security_groups(env, discovery.discover(env, url), url, lab)


def _check_against_outputs(env: Env, found: discovery.Discovery, tf_instances: dict[str, Any]) -> None:
    """Every instance Terraform reports is a running instance of the emulator, and nothing else is."""
    want = {name: inst.get("private_ip") for name, inst in tf_instances.items()}
    have = {i.name: i.private_ip for i in found.instances}
    if want == have:
        return
    only_tf, only_emu = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    problems = [f"only in Terraform's outputs: {only_tf}"] if only_tf else []
    if only_emu:
        problems.append(f"running in the emulator, not in Terraform's outputs: {only_emu}")
    for n in sorted(set(want) & set(have)):
        if want[n] != have[n]:
            problems.append(f"{n}: Terraform says {want[n]}, the emulator {have[n]}")
    raise SystemExit(
        f"the {env.name} instances in {env.region} do not match terraform/envs/{env.name}'s outputs:\n  - "
        + "\n  - ".join(problems)
    )


# ---------------------------------------------------------------------------- mirror


def _mirror_plan(env: Env, lab: dict[str, Any]) -> tuple[mirror.Endpoint | None, str | None]:
    """The mirror endpoint and the env whose bridge carries its address, if this `up` serves it."""
    endpoint = mirror.configured()
    owner = next((e.name for e in ENVS.values() if ipaddress.ip_address(endpoint.address) in e.network), None)
    if owner is None:
        raise SystemExit(
            f"{mirror.CONFIG}: the mirror address {endpoint.address} is in no lab env's CIDR "
            f"({', '.join(e.cidr for e in ENVS.values())}); hosts could not reach it"
        )
    if owner != env.name and owner not in lab["envs"]:
        progress.warn(
            f"the artifact mirror listens on {endpoint.address}, an address of the {owner} env's bridge: "
            f"bring `--env {owner}` up too, or the hosts cannot download artifacts"
        )
        return None, None
    return endpoint, owner


def _ensure_mirror(lab: dict[str, Any], endpoint: mirror.Endpoint, owner: str, build: Any) -> None:
    if build is not None:
        mirror.wait_build(build)
    rec = lab.get("mirror")
    if mirror.alive(rec) and rec.get("url") == endpoint.url and mirror.answers(endpoint.url):
        progress.step(f"mirror: serving {rec['root']} at {endpoint.url}/ (kept)")
        return
    if mirror.alive(rec):
        progress.step(f"mirror: restarting (was {rec.get('url')}, pid {rec.get('pid')})")
        mirror.stop(rec)
    lab.pop("mirror", None)
    held = {g.split("/")[0] for g in lab["envs"].get(owner, {}).get("gateways", [])}
    if endpoint.address not in held:
        raise SystemExit(
            f"the mirror address {endpoint.address} ({mirror.CONFIG.name}) is not a gateway of the {owner} "
            f"bridge ({', '.join(sorted(held)) or 'none'}): the Terraform subnet layout and the lab's "
            "mirror configuration disagree"
        )
    progress.step(f"mirror: serving {mirror.mirror_root()} at {endpoint.url}/ on {ENVS[owner].bridge}")
    try:
        rec = mirror.start(endpoint)
    except mirror.MirrorError as exc:
        raise SystemExit(f"the artifact mirror did not start: {exc}") from exc
    rec["env"] = owner
    lab["mirror"] = rec
    state.save_lab(lab)


def _stop_mirror(lab: dict[str, Any]) -> None:
    rec = lab.pop("mirror", None)
    if rec and mirror.alive(rec):
        progress.step(f"mirror: stopping the artifact mirror at {rec['url']} (pid {rec['pid']})")
        mirror.stop(rec)


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
            package_cache.seed(image, state.host_dir(name) / "upper")
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
        # Every other host is reached through its env's bastion: wait for the bastions first
        # (all hosts boot meanwhile), so a failure names the host that really did not come up.
        first = [r for r in to_wait if state.bastion_of(r, all_hosts) is None]
        rest = [r for r in to_wait if r not in first]
        results: list[hosts.HostRecord | Exception] = []
        for stage in (first, rest):
            if stage:
                with ThreadPoolExecutor(max_workers=min(8, len(stage))) as pool:
                    results += pool.map(_wait_one, stage)
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
                f"see `fms-lab ssh {rec['name']} systemctl --failed`"
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
        _remove_hosts(all_hosts, targets)
        if everything or lab.get("mirror", {}).get("env") in targets:
            _stop_mirror(lab)
        alert_receiver.release(lab, None if everything else targets)
        state.save_lab(lab)
        if everything:
            _sweep_leftovers()
        for name in targets:
            state.remove_outputs(name)
            env = get_env(name)
            if network.link_exists(env.bridge) or network.tagged_rules(env.rule_tag):
                progress.step(f"network: removing bridge {env.bridge} and its NAT rules")
            network.teardown(env)
            lab["envs"].pop(name, None)
        state.save_lab(lab)
        if not lab["envs"]:
            _stop_emulator(lab)
            if (left := _own_leftover_emulator()) is not None:  # one a failed `up` never recorded
                _stop_emulator({"emulator": left})
            network.restore_ip_forward(lab)
            saved = lab.pop("saved_sysctls", {})
            others = network.lab_bridges()
            if saved and others:  # another lab's hosts rely on it: leave it on (the kernel's default)
                progress.step(f"firewall: bridge netfilter stays on for {', '.join(others)} (another lab)")
            else:
                firewall.restore_bridge_netfilter(saved)
        state.save_lab(lab)
        state.write_ssh_files(all_hosts)
        progress.step(f"down: done in {progress.elapsed():.1f}s")


def _remove_hosts(all_hosts: dict[str, hosts.HostRecord], targets: list[str]) -> None:
    """Save each target host's journal and destroy it, hosts side by side (a host's orderly
    poweroff mostly waits); the bastions go last, as every other host's journal is fetched
    through its env's bastion. State is saved for every host removed, even when one fails."""
    doomed = {n: r for n, r in all_hosts.items() if r["env"] in targets}
    bastions = {n for n, r in doomed.items() if state.bastion_of(r, all_hosts) is None}

    def remove(name: str) -> None:
        rec = doomed[name]
        progress.step(f"hosts: removing {name} ({rec['ip']})")
        hosts.save_journal(rec)
        try:
            package_cache.harvest(state.host_dir(name) / "upper")
        except (OSError, SystemExit) as exc:  # a cache is never a reason to keep a host
            progress.warn(f"package cache: nothing kept from {name}: {exc}")
        hosts.destroy(rec)

    errors: list[BaseException] = []
    for wave in (sorted(set(doomed) - bastions), sorted(bastions)):
        if not wave:
            continue
        with ThreadPoolExecutor(max_workers=min(8, len(wave))) as pool:
            futures = {name: pool.submit(remove, name) for name in wave}
        for name, fut in futures.items():
            if fut.exception() is not None:
                errors.append(fut.exception())
                continue
            del all_hosts[name]
            services.forget([name])
        state.save_hosts(all_hosts)
    if errors:
        raise errors[0]


def _sweep_leftovers() -> None:
    """What a crashed run may have left without a state record: nspawns, mounts, cgroups, mirror."""
    mirror.sweep(state.lab_dir())
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


def service_urls() -> dict[str, list[str]]:
    """Service URLs per host, written by later steps into <lab>/services.json ({"host": ["url", ...]})."""
    try:
        return json.loads((state.lab_dir() / "services.json").read_text())
    except (OSError, ValueError):
        return {}


def collect_status() -> list[dict[str, Any]]:
    all_hosts = state.load_hosts()
    urls = service_urls()

    def one(rec: hosts.HostRecord) -> dict[str, Any]:
        row = {k: rec.get(k) for k in ("name", "env", "role", "roles", "ip", "az")}
        running = hosts.nspawn_pid(rec) is not None
        row["state"] = "running" if running else "stopped"
        row["ssh"], row["system"] = "-", "-"
        if running:
            row["ssh"], row["system"] = hosts.probe(rec)
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
    rec = lab.get("mirror")
    if rec:
        serving = "running" if mirror.alive(rec) and mirror.answers(rec["url"]) else "NOT answering"
        print(f"mirror:   {rec['url']}/ ({serving}; serves {rec['root']}: apache/, maven2/, github/)")
    alerts = alert_receiver.status_line(lab)
    if alerts:
        print(alerts)
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
    fw = _firewall_counts(rows)
    header = ("HOST", "ENV", "ROLES", "IP", "STATE", "SSH", "SYSTEMD", "MEM", "SG IN/OUT", "SERVICES")
    table = [header] + [
        (
            r["name"],
            r["env"],
            ",".join(state.host_groups(r)),
            r["ip"],
            r["state"],
            r["ssh"],
            r["system"],
            f"{r['mem_mib']}M" if r["mem_mib"] is not None else "-",
            _fw_cell(fw.get(r["ip"])),
            " ".join(r["services"]) or "-",
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + str(row[-1]))
    bad = [r for r in rows if r["state"] != "running" or not r["ssh"].startswith("ok")]
    return 1 if bad else 0


def _firewall_counts(rows: list[dict[str, Any]]) -> dict[str, firewall.HostCounts]:
    """Per host IP, the security-group rules the lab enforces (empty when iptables cannot be read)."""
    out: dict[str, firewall.HostCounts] = {}
    for env_name in sorted({r["env"] for r in rows}):
        try:
            out.update(firewall.counts(get_env(env_name), [r["ip"] for r in rows if r["env"] == env_name]))
        except (firewall.FirewallError, OSError, SystemExit):
            continue  # not root, or no iptables: the column says "-"
    return out


def _fw_cell(c: firewall.HostCounts | None) -> str:
    """Allow rules as "in/out"; "OFF" when the host has no chains (nothing enforced)."""
    if c is None:
        return "-"
    return f"{c.ingress_rules}/{c.egress_rules}" if c.enforced else "OFF"


def print_firewall(env_names: list[str] | None = None) -> int:
    """`fms-lab firewall`: per host, the allow rules in force and what their default deny dropped."""
    all_hosts = sorted(state.load_hosts().values(), key=lambda r: (r["env"], ipaddress.ip_address(r["ip"])))
    names = env_names or sorted({r["env"] for r in all_hosts})
    header = ("HOST", "ENV", "IP", "INGRESS RULES", "EGRESS RULES", "DROPPED IN", "DROPPED OUT")
    table: list[tuple[str, ...]] = [header]
    off = []
    for env_name in names:
        env = get_env(env_name)
        recs = [r for r in all_hosts if r["env"] == env.name]
        try:
            counts = firewall.counts(env, [r["ip"] for r in recs])
        except (firewall.FirewallError, OSError) as exc:
            print(f"cannot read the lab's iptables rules (root needed): {exc}")
            return 2
        for r in recs:
            c = counts[r["ip"]]
            if not c.enforced:
                off.append(r["name"])
            table.append(
                (r["name"], env.name, r["ip"], str(c.ingress_rules), str(c.egress_rules),
                 str(c.dropped_in), str(c.dropped_out))
            )  # fmt: skip
    if len(table) == 1:
        print("no lab hosts (run `make lab`)")
        return 0
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(
        "rules: allow rules of the host's security groups (FMS-SG-<env>-I/E<ip> chains, `iptables -S`); "
        "dropped: packets of new flows its default deny dropped"
    )
    if off:
        print(f"NOT enforced on {off}: run `fms-lab firewall --apply` (or `fms-lab up`)")
    return 1 if off else 0


def print_next_steps(env_name: str) -> None:
    """Where to look after `up`: the hosts (the table above), the mirror, the inventory, ssh."""
    lab = state.load_lab()
    lab_dir = state.lab_dir()
    rel = os.path.relpath(lab_dir, state.REPO) if lab_dir.is_relative_to(state.REPO) else str(lab_dir)
    emu = lab.get("emulator", {})
    inventory = load_contract().stack(env_name).inventory
    lab_env = "" if lab_dir == state.REPO / ".lab" else f"FMS_LAB_DIR={lab_dir} "
    print("\nwhere to look:")
    print("  hosts:      the table above; `.venv/bin/fms-lab status` prints it again")
    if lab.get("mirror"):
        print(
            f"  mirror:     {lab['mirror']['url']}/ (apache/, maven2/, github/); the roles' base URLs point "
            f"there via {mirror.CONFIG.relative_to(state.REPO)}"
        )
    print(f"  terraform:  outputs in {rel}/outputs/{env_name}.json, state in {rel}/terraform/{env_name}/")
    if emu.get("url"):
        aws = " ".join([f"AWS_URL={emu['url']}", *(f"{k}={v}" for k, v in EMULATOR_ENV.items())])
        print(
            f"  inventory:  {lab_env}{aws} ANSIBLE_CONFIG=ansible/ansible.cfg "
            f".venv/bin/ansible-inventory -i {inventory} -i inventory/lab --graph"
        )
    print(f"  ssh:        {lab_env}.venv/bin/fms-lab ssh <HOST> [command]   (ssh config: {rel}/ssh/config)")
    print(f"  logs:       {rel}/logs/ (host consoles, emulator, mirror)")
    print(f"  tear down:  {lab_env}make lab-down   (or .venv/bin/fms-lab down)")

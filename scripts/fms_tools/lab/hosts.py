"""Lab hosts: systemd-nspawn containers booted with systemd, one per instance.

A host is a dict record (kept in hosts.json) with the instance's facts plus
what the lab needs to manage it: the image it boots from, the nspawn PID and
that process's start time (so a recycled PID is never mistaken for it).

Root filesystem: an overlay mounted at <lab>/hosts/<name>/root, lower = the
cached image, upper = <lab>/hosts/<name>/upper. Nothing of the lab machine is
bind-mounted in (`--resolv-conf=off --timezone=off --link-journal=no`).

Process tree: each nspawn starts in its own cgroup `fms-lab/<name>` in every
cgroup hierarchy the lab uses. With `--keep-unit --register=no` (no systemd on
the lab machine) nspawn nests the container's cgroups under the cgroup it runs
in; a cgroup per host keeps containers apart, gives per-host memory figures,
and lets teardown find every process a host left behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from fms_tools.fmsops.procs import start_time as proc_start_time

from . import state

CGROUP_ROOT_NAME = "fms-lab"
# v1 hierarchies the lab places hosts in (accounting and, later, limits); cpuset is left
# alone (a new cpuset cgroup has no CPUs until configured).
_V1_HIERARCHIES = ("name=systemd", "memory", "pids", "cpu", "cpuacct")
BOOT_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
KILL_TIMEOUT_S = 10.0
SSH_CONNECT_TIMEOUT_S = 3

# Units that may be failed on an otherwise healthy lab host, with the reason. A host whose
# `systemctl is-system-running` says "degraded" is accepted only if every failed unit is here.
# (Empty: a fresh host boots to "running" in this container setup; see the lab tests.)
KNOWN_DEGRADED_UNITS: dict[str, str] = {}

HostRecord = dict[str, Any]


class HostError(RuntimeError):
    pass


# ---------------------------------------------------------------------------- cgroups


def _cgroup_mounts() -> dict[str, Path]:
    """hierarchy key ('name=systemd', 'memory', ..., 'unified') -> mount point."""
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        fstype, mnt = rfields[0], Path(fields[4])
        if fstype == "cgroup2":
            mounts.setdefault("unified", mnt)
        elif fstype == "cgroup":
            opts = rfields[2].split(",")
            for key in _V1_HIERARCHIES:
                if key in opts:
                    mounts.setdefault(key, mnt)
    return mounts


def cgroup_dirs(name: str) -> list[Path]:
    mounts = dict.fromkeys(_cgroup_mounts().values())  # co-mounted controllers share one directory
    return [mnt / CGROUP_ROOT_NAME / name for mnt in mounts]


def _prepare_cgroups(name: str) -> list[Path]:
    dirs = cgroup_dirs(name)
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def cgroup_pids(name: str) -> set[int]:
    """Every process left in the host's cgroups (all levels, all hierarchies)."""
    pids: set[int] = set()
    for top in cgroup_dirs(name):
        if not top.is_dir():
            continue
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def _remove_cgroups(name: str) -> None:
    for top in cgroup_dirs(name):
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
        with contextlib.suppress(OSError):
            top.parent.rmdir()  # fms-lab/, once no host is left


def memory_usage(name: str) -> dict[str, int]:
    """Bytes charged to the host: 'total' (incl. page cache) and 'anon' (rss + shmem)."""
    mnt = _cgroup_mounts().get("memory")
    if mnt:
        d = mnt / CGROUP_ROOT_NAME / name
        with contextlib.suppress(OSError):
            stat = dict(line.split() for line in (d / "memory.stat").read_text().splitlines())
            return {
                "total": int((d / "memory.usage_in_bytes").read_text()),
                "anon": int(stat.get("total_rss", 0)) + int(stat.get("total_shmem", 0)),
            }
    unified = _cgroup_mounts().get("unified")
    if unified and (unified / CGROUP_ROOT_NAME / name / "memory.current").exists():
        d = unified / CGROUP_ROOT_NAME / name
        stat = dict(line.split() for line in (d / "memory.stat").read_text().splitlines())
        return {
            "total": int((d / "memory.current").read_text()),
            "anon": int(stat["anon"]) + int(stat["shmem"]),
        }
    return {}


# ---------------------------------------------------------------------------- processes


def nspawn_pid(rec: HostRecord) -> int | None:
    """The host's live nspawn PID, or None (checked against the recorded start time)."""
    pid = rec.get("pid")
    if not pid or proc_start_time(pid) != rec.get("pid_start"):
        return None
    return pid


def wait_gone(pids: set[int], timeout_s: float) -> set[int]:
    deadline = time.monotonic() + timeout_s
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if proc_start_time(p) is not None}
        if alive:
            time.sleep(0.1)
    return alive


def signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def nspawn_processes_under(root: Path) -> dict[int, str]:
    """nspawn processes whose directory (-D) is under `root`: the lab's, found without its state."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"systemd-nspawn"):
            continue
        args = [a.decode(errors="replace") for a in argv]
        for i, arg in enumerate(args):
            if arg == "-D" and i + 1 < len(args):
                directory = args[i + 1]
            elif arg.startswith("--directory="):
                directory = arg.split("=", 1)[1]
            else:
                continue
            if Path(directory).is_relative_to(root):
                found[int(proc.name)] = " ".join(args)
    return found


# ---------------------------------------------------------------------------- root filesystem


def root_dir(name: str) -> Path:
    return state.host_dir(name) / "root"


def is_mounted(path: Path) -> bool:
    target = str(path)
    return any(line.split()[4] == target for line in Path("/proc/self/mountinfo").read_text().splitlines())


def mount_root(rec: HostRecord, image: Path) -> Path:
    hd = state.host_dir(rec["name"])
    upper, work, root = hd / "upper", hd / "work", hd / "root"
    for d in (upper, work, root):
        d.mkdir(parents=True, exist_ok=True)
    if not is_mounted(root):
        subprocess.run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={image},upperdir={upper},workdir={work}",
                str(root),
            ],
            check=True,
            timeout=30,
            capture_output=True,
            text=True,
        )
    return root


def unmount_root(name: str) -> None:
    root = root_dir(name)
    for _ in range(3):  # bounded: a mount stacked twice by a crashed run needs two umounts
        if not is_mounted(root):
            return
        proc = subprocess.run(["umount", str(root)], timeout=30, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            subprocess.run(["umount", "-l", str(root)], timeout=30, capture_output=True, check=False)


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    os.chmod(path, mode)


# The begin marker keeps its first wording: lab machines already carry it in /etc/hosts, and
# `down` finds the block by it.
HOSTS_BEGIN, HOSTS_END = "# BEGIN fms-lab hosts (managed by scripts/lab.py)", "# END fms-lab hosts"


def etc_hosts(current: str, rec: HostRecord, peers: list[HostRecord]) -> str:
    """/etc/hosts with the lab's block (this env's hosts) replaced, anything else kept."""
    block = [HOSTS_BEGIN] + [f"{p['ip']}\t{p['name']}" for p in peers] + [HOSTS_END]
    base = re.sub(rf"{re.escape(HOSTS_BEGIN)}.*?{re.escape(HOSTS_END)}\n?", "", current, flags=re.S)
    if not base.strip():
        base = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    if rec["name"] not in {p["name"] for p in peers}:
        block.insert(1, f"{rec['ip']}\t{rec['name']}")
    return base.rstrip("\n") + "\n" + "\n".join(block) + "\n"


def write_identity(rec: HostRecord, root: Path, pubkey: str, nameservers: list[str]) -> None:
    """Per-host files (first creation): name, address, DNS, machine-id, ssh host and root keys."""
    name = rec["name"]
    _write(root, "/etc/hostname", f"{name}\n")
    _write(root, "/etc/machine-id", f"{uuid.uuid4().hex}\n", 0o444)
    _write(root, "/etc/resolv.conf", "".join(f"nameserver {s}\n" for s in nameservers))
    _write(
        root,
        "/etc/systemd/network/10-fms-lab.network",
        "# The instance's private IP; the subnet's first address (the lab bridge) is the gateway.\n"
        f"[Match]\nName=host0\n\n[Network]\nAddress={rec['ip']}/{rec['prefix']}\nGateway={rec['gateway']}\n"
        "LinkLocalAddressing=no\nIPv6AcceptRA=no\n",
    )
    hostkey = root / "etc/ssh/ssh_host_ed25519_key"
    for f in (hostkey, hostkey.with_suffix(".pub")):
        f.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(hostkey)],
        check=True,
        timeout=30,
    )
    rec["host_key"] = hostkey.with_suffix(".pub").read_text().split()[:2]
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(root, "/root/.ssh/authorized_keys", pubkey.strip() + "\n", 0o600)


def update_etc_hosts(rec: HostRecord, peers: list[HostRecord]) -> None:
    path = root_dir(rec["name"]) / "etc/hosts"
    current = path.read_text() if path.exists() and not path.is_symlink() else ""
    new = etc_hosts(current, rec, peers)
    if new != current:
        _write(root_dir(rec["name"]), "/etc/hosts", new)


# ---------------------------------------------------------------------------- lifecycle


def _host_on_systemd() -> bool:
    return Path("/run/systemd/system").is_dir()


def nspawn_command(rec: HostRecord) -> list[str]:
    cmd = [
        "systemd-nspawn",
        "--quiet",
        f"--directory={root_dir(rec['name'])}",
        f"--machine={rec['name']}",
        f"--hostname={rec['name']}",
        "--boot",
        "--register=no",
        f"--network-bridge={rec['bridge']}",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=read-only",
        # SIGTERM to nspawn = orderly poweroff of the host.
        "--kill-signal=SIGRTMIN+4",
        # Services' units raise limits (LimitNOFILE=, LimitMEMLOCK=) above the container's
        # inherited ones, as on a VM; nspawn drops these two capabilities by default.
        "--capability=CAP_SYS_RESOURCE,CAP_IPC_LOCK",
    ]
    if not _host_on_systemd():
        cmd.append("--keep-unit")  # no systemd to create a scope; the lab's cgroup is used instead
    return cmd


def start(rec: HostRecord) -> int:
    """Start the host's nspawn in the background; returns its PID (recorded in rec)."""
    name = rec["name"]
    dirs = [] if _host_on_systemd() else _prepare_cgroups(name)
    log = state.logs_dir() / f"{name}.console.log"
    log.parent.mkdir(parents=True, exist_ok=True)

    def enter_cgroups() -> None:  # runs in the child before exec
        pid = str(os.getpid())
        for d in dirs:
            (d / "cgroup.procs").write_text(pid)

    with log.open("ab") as fh:
        fh.write(f"\n===== lab: starting {name} at {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
        fh.flush()
        proc = subprocess.Popen(
            nspawn_command(rec),
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=enter_cgroups,
            close_fds=True,
        )
    rec["pid"] = proc.pid
    rec["pid_start"] = proc_start_time(proc.pid)
    rec["started_at"] = time.time()
    return proc.pid


def ssh_command(
    target: str, command: str | None = None, *, tty: bool = False, connect_timeout_s: int | None = None
) -> list[str]:
    cmd = ["ssh", "-F", str(state.ssh_config_path())]
    if connect_timeout_s is not None:  # the command line wins over the config's ConnectTimeout
        cmd += ["-o", f"ConnectTimeout={connect_timeout_s}"]
    if tty:
        cmd.append("-t")
    cmd.append(target)
    if command is not None:
        cmd += ["--", command]
    return cmd


def ssh_run(
    target: str, command: str, timeout_s: float = 30.0, *, connect_timeout_s: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command on a host (by name or IP); a hung connection ends at the timeout (rc 124)."""
    try:
        return subprocess.run(
            ssh_command(target, command, connect_timeout_s=connect_timeout_s),
            text=True,
            capture_output=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return subprocess.CompletedProcess(exc.cmd, 124, out, f"timed out after {timeout_s:.0f}s")


# A busy lab (load far above its cores while site.yml or Spark runs) answers late, not never:
# the status probe tries again with more patience before it calls a host unreachable.
PROBE_ATTEMPTS_S = (10, 30, 60)


def probe(rec: HostRecord) -> tuple[str, str]:
    """(ssh, systemd state) of a running host, patient with a loaded machine.

    ssh is "ok", "ok (slow: Ns)" when only a later, longer attempt answered, or "unreachable".
    """
    started = time.monotonic()
    command = "hostname; systemctl is-system-running"
    for attempt, limit in enumerate(PROBE_ATTEMPTS_S):
        res = ssh_run(rec["ip"], command, timeout_s=limit, connect_timeout_s=int(limit * 2 / 3))
        lines = res.stdout.split()
        if lines[:1] == [rec["name"]]:
            ssh = "ok" if attempt == 0 else f"ok (slow: {time.monotonic() - started:.0f}s)"
            return ssh, (lines[1] if len(lines) > 1 else "-")
    return "unreachable", "-"


def console_tail(name: str, lines: int = 20) -> str:
    log = state.logs_dir() / f"{name}.console.log"
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return "\n".join(text.splitlines()[-lines:])


JOURNAL_LINES = 20000


def save_journal(rec: HostRecord) -> Path | None:
    """The host's journal (last JOURNAL_LINES lines) into logs/ before the host goes: the
    services' own account of a failed run outlives the lab (CI keeps the lab directory)."""
    if nspawn_pid(rec) is None:
        return None
    res = ssh_run(rec["ip"], f"journalctl --no-pager -o short-iso -n {JOURNAL_LINES}", timeout_s=60)
    if res.returncode != 0 or not res.stdout:
        return None
    path = state.logs_dir() / f"{rec['name']}.journal.log"
    path.write_text(res.stdout)
    return path


def wait_ready(rec: HostRecord, timeout_s: float = BOOT_TIMEOUT_S) -> HostRecord:
    """Bounded wait until the host answers ssh as itself and systemd has finished booting.

    Records `system_state` (running / degraded / ...) and `failed_units`.
    """
    name, deadline = rec["name"], time.monotonic() + timeout_s
    last = ""
    while True:
        if nspawn_pid(rec) is None:
            raise HostError(f"{name}: systemd-nspawn exited during boot; console:\n{console_tail(name)}")
        res = ssh_run(rec["ip"], "hostname", timeout_s=SSH_CONNECT_TIMEOUT_S + 5)
        if res.returncode == 0 and res.stdout.strip() == name:
            break
        last = (res.stderr or res.stdout).strip()
        if time.monotonic() > deadline:
            raise HostError(
                f"{name}: no ssh at {rec['ip']} within {timeout_s:.0f}s ({last}); console:\n"
                f"{console_tail(name)}"
            )
        time.sleep(0.5)
    remaining = max(5, int(deadline - time.monotonic()))
    res = ssh_run(
        rec["ip"], f"timeout {remaining} systemctl is-system-running --wait", timeout_s=remaining + 10
    )
    rec["system_state"] = res.stdout.strip() or f"unknown ({res.stderr.strip()})"
    rec["failed_units"] = failed_units(rec["ip"]) if rec["system_state"] != "running" else []
    return rec


def failed_units(target: str) -> list[str]:
    res = ssh_run(target, "systemctl list-units --failed --plain --no-legend --no-pager", timeout_s=15)
    return sorted(line.split()[0] for line in res.stdout.splitlines() if line.strip())


def stop(rec: HostRecord, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Orderly poweroff (SIGTERM to nspawn) -> bounded wait -> SIGKILL of everything the host left."""
    name = rec["name"]
    pid = nspawn_pid(rec)
    if pid is not None:
        signal_all({pid}, signal.SIGTERM)
        if wait_gone({pid}, timeout_s):
            signal_all({pid}, signal.SIGKILL)
            wait_gone({pid}, KILL_TIMEOUT_S)
    leftovers = cgroup_pids(name)
    if leftovers:
        signal_all(leftovers, signal.SIGKILL)
        still = wait_gone(leftovers, KILL_TIMEOUT_S)
        if still:
            raise HostError(f"{name}: processes {sorted(still)} survived SIGKILL")
    remove_host_veth(name)
    rec["pid"] = rec["pid_start"] = None


def remove_host_veth(name: str) -> None:
    """Delete the host side of the host's veth pair if it outlived the host.

    It normally goes with the container's network namespace, but the kernel can keep that
    namespace alive for a while after the last process exited; the next boot of the host
    would then fail on the existing interface. nspawn gives it the altname vb-<machine>
    (the interface name itself is shortened with a hash), which `ip` resolves.
    """
    if host_veth_exists(name):
        subprocess.run(["ip", "link", "del", "dev", f"vb-{name}"], capture_output=True, check=False)


def host_veth_exists(name: str) -> bool:
    """The host side of the host's veth pair (altname vb-<machine>) still exists."""
    res = subprocess.run(["ip", "link", "show", "dev", f"vb-{name}"], capture_output=True, check=False)
    return res.returncode == 0


def destroy(rec: HostRecord) -> None:
    """Stop the host and remove everything of it: processes, mount, cgroups, files."""
    name = rec["name"]
    stop(rec)
    unmount_root(name)
    if is_mounted(root_dir(name)):
        raise HostError(f"{name}: {root_dir(name)} is still mounted")
    _remove_cgroups(name)
    hd = state.host_dir(name)
    if hd.exists():
        shutil.rmtree(hd)

"""The lab's artifact mirror: `fms-artifacts build all` (cached) and a `serve` process.

Where it listens is static configuration, read from the same file that points
the Ansible roles at it (inventory/lab/group_vars/all/lab_artifacts.yml,
`fms_lab_mirror_url`): the first address of the primary lab VPC
(198.18.0.1, the gateway of its first public subnet, which the primary bridge
carries), port 8585. Hosts of every env reach it through their gateway; it is
not bound to any other interface of the lab machine.

The serve process outlives `lab up` (its own session, output in
<lab>/logs/mirror.log); lab.json records its PID and start time. Its
environment (and the build's) carries FMS_LAB_MIRROR=<lab dir>, so `down`
finds exactly the mirror processes this lab started, even without the state
file.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fms_tools import artifacts
from fms_tools.fmsops import procs

from . import hosts, progress, state

CONFIG = state.REPO / "inventory" / "lab" / "group_vars" / "all" / "lab_artifacts.yml"
MARKER_ENV = "FMS_LAB_MIRROR"
BUILD_TIMEOUT_S = float(os.environ.get("FMS_MIRROR_BUILD_TIMEOUT", 3600))
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# What the roles download, relative to the mirror URL (CONTRACTS.md): one sub-tree per base URL.
BASE_URLS = {
    "apache_mirror_base_url": "apache",
    "maven_repository_url": "maven2",
    "github_base_url": "github",
}


_ELAPSED = re.compile(r"^\[artifacts\s+([0-9.]+)s\]")


class MirrorError(RuntimeError):
    pass


@dataclass(frozen=True)
class Endpoint:
    url: str  # http://<address>:<port> (no trailing slash)
    address: str
    port: int


def configured() -> Endpoint:
    """The mirror URL from lab_artifacts.yml (the single place it is written down)."""
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - environment problem
        raise SystemExit("PyYAML is needed: run the lab with the project venv (.venv/bin/python)") from exc
    try:
        data = yaml.safe_load(CONFIG.read_text()) or {}
    except OSError as exc:
        raise SystemExit(f"{CONFIG} is missing: the lab's artifact mirror is configured there") from exc
    raw = str(data.get("fms_lab_mirror_url", "")).rstrip("/")
    url = urllib.parse.urlsplit(raw)
    try:
        address = str(ipaddress.ip_address(url.hostname or ""))
        port = int(url.port or 0)
    except ValueError:
        address, port = "", 0
    if url.scheme != "http" or not address or not port or url.path:
        raise SystemExit(f"{CONFIG}: fms_lab_mirror_url must be http://<IPv4 address>:<port> (got {raw!r})")
    return Endpoint(raw, address, port)


def artifacts_env() -> dict[str, str]:
    return {**os.environ, "FMS_CACHE_DIR": str(state.cache_dir())}


# ---------------------------------------------------------------------------- build


def start_build() -> tuple[subprocess.Popen[bytes], Path, float]:
    """`fms-artifacts build all` in the background (it skips what is up to date)."""
    log = state.logs_dir() / "mirror-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        fh.write(f"\n===== lab: build all at {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
        fh.flush()
        proc = subprocess.Popen(
            [*artifacts.COMMAND, "build", "all"],
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**artifacts_env(), MARKER_ENV: str(state.lab_dir())},
            start_new_session=True,
        )
    return proc, log, time.monotonic()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_build(
    build: tuple[subprocess.Popen[bytes], Path, float], timeout_s: float = BUILD_TIMEOUT_S
) -> None:
    proc, log, started = build
    remaining = max(1.0, timeout_s - (time.monotonic() - started))
    if proc.poll() is None:
        progress.step(f"mirror: waiting for the artifact build (≤{remaining:.0f}s more; log {log})")
    try:
        rc = proc.wait(timeout=remaining)
    except subprocess.TimeoutExpired:
        procs.stop_group(proc, STOP_TIMEOUT_S)
        raise SystemExit(
            f"the artifact build did not finish within {timeout_s:.0f}s "
            f"(FMS_MIRROR_BUILD_TIMEOUT); log {log}:\n{_tail(log)}"
        ) from None
    if rc != 0:
        raise SystemExit(
            f"`fms-artifacts build all` failed ({rc}); the hosts are up, the mirror is not. "
            f"Fix the cause and run `lab up` again. Log {log}:\n{_tail(log)}"
        )
    lines = _tail(log, 40).splitlines()
    built = [line for line in lines if ": built " in line]
    # The build's own duration (its last progress line: "[artifacts   12.3s] ..."), not the time `up` took.
    took = next((m.group(1) for line in reversed(lines) if (m := _ELAPSED.match(line))), "?")
    progress.step(f"mirror: artifacts ready (build took {took}s: {len(built)} rebuilt, the rest up to date)")


def cancel_build(build: tuple[subprocess.Popen[bytes], Path, float]) -> None:
    """Stop a background build `up` no longer waits for (it failed earlier); bounded."""
    proc = build[0]
    if proc.poll() is not None:
        return
    progress.step("mirror: stopping the background artifact build (bring-up failed)")
    procs.stop_group(proc, STOP_TIMEOUT_S)


# ---------------------------------------------------------------------------- serve


def alive(rec: dict[str, Any] | None) -> bool:
    return bool(rec) and bool(rec.get("pid")) and hosts.proc_start_time(rec["pid"]) == rec.get("pid_start")


# The mirror is on this machine: never ask a proxy from the environment for it.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(url: str, timeout_s: float = 3.0) -> bool:
    try:
        with _DIRECT.open(f"{url}/", timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def mirror_root() -> Path:
    return state.cache_dir() / "mirror"


def start(endpoint: Endpoint) -> dict[str, Any]:
    """Start `fms-artifacts serve` on the endpoint; return its record (for lab.json)."""
    log = state.logs_dir() / "mirror.log"
    env = {**artifacts_env(), MARKER_ENV: str(state.lab_dir())}
    cmd = [*artifacts.COMMAND, "serve", "--bind", endpoint.address, "--port", str(endpoint.port)]
    proc = procs.start_detached(cmd, log, env, f"lab: serve at {time.strftime('%Y-%m-%d %H:%M:%S')}")
    rec = {
        "url": endpoint.url,
        "bind": endpoint.address,
        "port": endpoint.port,
        "root": str(mirror_root()),
        "pid": proc.pid,
        "pid_start": hosts.proc_start_time(proc.pid),
        "log": str(log),
    }
    deadline = time.monotonic() + START_TIMEOUT_S
    while not answers(endpoint.url, timeout_s=2):
        if proc.poll() is not None:
            raise MirrorError(f"the mirror server exited with {proc.returncode}; log {log}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            stop(rec)
            raise MirrorError(f"the mirror did not answer on {endpoint.url} within {START_TIMEOUT_S:.0f}s")
        time.sleep(0.3)
    return rec


def stop(rec: dict[str, Any] | None) -> None:
    """SIGTERM -> bounded wait -> SIGKILL of the recorded serve process (if it is still ours)."""
    if not alive(rec):
        return
    assert rec is not None
    _terminate({rec["pid"]})


def _terminate(pids: set[int]) -> None:
    hosts.signal_all(pids, signal.SIGTERM)
    left = hosts.wait_gone(pids, STOP_TIMEOUT_S)
    if left:
        hosts.signal_all(left, signal.SIGKILL)
        if hosts.wait_gone(left, STOP_TIMEOUT_S):
            raise MirrorError(f"mirror server processes {sorted(left)} survived SIGKILL")


def processes_of(lab_dir: Path) -> set[int]:
    """Mirror processes (serve, build) the lab in `lab_dir` started, found by their marker variable."""
    return procs.marked(MARKER_ENV, str(lab_dir))


def sweep(lab_dir: Path) -> None:
    """Stop mirror processes this lab directory started that its state no longer records."""
    strays = processes_of(lab_dir)
    if strays:
        progress.step(f"mirror: stopping {len(strays)} unrecorded mirror process(es)")
        _terminate(strays)

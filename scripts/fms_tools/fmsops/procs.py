"""Processes the tools start: who they are (/proc) and how they are stopped.

The one home of these mechanics for the lab, the emulator wrapper and bench: a process is
identified by its pid *and* its start time (a pid alone may have been given to another
process since), and a process group a tool started is stopped with SIGTERM, a bounded
wait, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie is gone; reap it if it is our child
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return None
    return int(fields[19])


def cmdline(pid: int) -> list[str]:
    """The process's command line ([] when it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def stop_group(proc: subprocess.Popen[Any], timeout_s: float) -> None:
    """SIGTERM to the process group of `proc` (started with start_new_session), wait at most
    `timeout_s`, then SIGKILL and wait again: nothing it started is left behind."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout_s)
            return
        except subprocess.TimeoutExpired:
            continue


def marked(name: str, value: str) -> set[int]:
    """Processes whose environment holds name=value: those a tool started and marked, found
    even when its state file no longer records them (a crashed run)."""
    marker = f"{name}={value}".encode()
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.add(int(proc.name))
        except OSError:
            continue
    return found


def terminate(pids: set[int], timeout_s: float) -> set[int]:
    """SIGTERM, a bounded wait, then SIGKILL and another; returns the pids still alive."""
    left = set(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while left and time.monotonic() < deadline:
            left = {pid for pid in left if start_time(pid) is not None}
            if left:
                time.sleep(0.1)
        if not left:
            break
    return left


def start_detached(
    cmd: list[str], log: Path, env: dict[str, str], banner: str = ""
) -> subprocess.Popen[bytes]:
    """Start a service process of a tool in its own session (it outlives the tool and a Ctrl-C of
    it), output appended to `log` after an optional banner line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        if banner:
            fh.write(f"\n===== {banner} =====\n".encode())
            fh.flush()
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

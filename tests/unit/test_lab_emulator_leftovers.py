"""The lab recognises the AWS emulator an earlier, failed `up` left running (no root, no hosts).

A child process brings the emulator up as `lab up` does (orchestrate's emulator step, a real
moto_server) and dies by SIGKILL before it records it in lab.json, as a bring-up killed or failed
at that point would. The next bring-up's emulator step must adopt that emulator (same lab dir, same
port) or replace it (another port), and say so; a process of anyone else on the port is refused by
preflight and never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fms_tools.fmsops import procs
from fms_tools.fmsops.emulator import free_port
from fms_tools.lab import orchestrate, preflight, state

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 20.0

CRASHING_UP = """
import os, signal
from fms_tools.lab import orchestrate, state
lab = state.load_lab()
reuse = orchestrate._reusable_emulator(lab, None)
orchestrate._ensure_emulator(lab, None, None if reuse else orchestrate.emulator_port())
print(lab["emulator"]["pid"], flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # dies before `up` saves lab.json
"""


@dataclass
class Lab:
    env: dict[str, str]  # FMS_LAB_DIR and FMS_EMULATOR_PORT of this test
    started: list[int] = field(default_factory=list)  # process groups it started


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    """A lab dir and emulator port of this test only (never the machine's lab on port 5000)."""
    env = {"FMS_LAB_DIR": str(tmp_path / "lab"), "FMS_EMULATOR_PORT": str(free_port())}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    made = Lab(env)
    yield made
    for pid in made.started:  # whatever the test left: only the processes it started
        if procs.start_time(pid) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def crash_after_starting_the_emulator(lab: Lab) -> int:
    path = f"{REPO / 'scripts'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_UP],
        env={**os.environ, **lab.env, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    pid = int(child.stdout.strip().splitlines()[-1])
    lab.started.append(pid)
    return pid


def answers(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/moto-api/", timeout=5) as resp:
        return resp.status == 200


def test_the_next_up_adopts_its_own_leftover_emulator_or_replaces_it(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pid = crash_after_starting_the_emulator(lab)
    assert procs.start_time(pid) is not None, "the emulator outlives the crashed `up`"
    saved = state.load_lab()
    assert "emulator" not in saved, "the crash came before lab.json recorded the emulator"

    # Same lab dir, same port: adopted, so preflight does not check the (taken) port.
    assert orchestrate._reusable_emulator(saved, None) is True
    url = orchestrate._ensure_emulator(saved, None, None)
    assert saved["emulator"]["pid"] == pid and saved["emulator"]["owned"]
    assert answers(url) and url.endswith(f":{lab.env['FMS_EMULATOR_PORT']}")
    assert f"reusing moto_server (pid {pid}) an earlier `up` left" in capsys.readouterr().out

    # The port changed meanwhile: the leftover is the lab's own, so it is stopped, not refused.
    new_port = free_port()
    monkeypatch.setenv("FMS_EMULATOR_PORT", str(new_port))
    assert orchestrate._reusable_emulator({"envs": {}}, None) is False
    assert f"replacing moto_server (pid {pid}) an earlier `up` left" in capsys.readouterr().out
    assert procs.start_time(pid) is None
    assert not (state.lab_dir() / "emulator.pid").exists()
    assert preflight.check_port(new_port, "the AWS emulator") == []


def test_a_foreign_process_on_the_port_is_refused_and_left_alone(lab: Lab) -> None:
    port = int(lab.env["FMS_EMULATOR_PORT"])
    # Someone else's server on the port, and a pid file naming someone else's process (its pid
    # and start time are right; its command line is not our emulator's), e.g. a recycled pid.
    foreign = subprocess.Popen(["sleep", "60"], start_new_session=True)
    lab.started.append(foreign.pid)
    state.lab_dir().mkdir(parents=True)
    pid_file = state.lab_dir() / "emulator.pid"
    pid_file.write_text(
        json.dumps({"pid": foreign.pid, "pid_start": procs.start_time(foreign.pid), "port": port})
    )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert orchestrate._reusable_emulator(state.load_lab(), None) is False
        problems = preflight.check_port(port, "the AWS emulator")
        assert problems == [
            f"port {port} on 127.0.0.1 (the AWS emulator) is taken by another process: "
            "stop it or pick another port"
        ]
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # give a wrongly sent signal time to land
            assert foreign.poll() is None, "a foreign process was signalled"
            time.sleep(0.1)
    assert not pid_file.exists(), "a pid file that names no emulator of ours is dropped"
    foreign.kill()
    foreign.wait(timeout=WAIT_S)

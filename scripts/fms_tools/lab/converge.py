"""Run the product's playbooks against the lab, exactly as an operator runs them on AWS.

    ansible-playbook -i inventory/aws_ec2.yml -i inventory/lab ansible/site.yml

The only lab-specific inputs are the environment (the aws_ec2 plugin's endpoint
is the emulator, with the emulator's dummy credentials) and where the site's
generated secrets live (inside the lab state directory, so `lab down` of a
fresh lab never reuses an old CA). Output goes to a log file; the console gets
one line per play with the elapsed time, then the recap.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fms_tools.fmsops.emulator import EMULATOR_ENV
from fms_tools.fmsops.platform_contract import load as load_platform

from . import progress, state
from .envs import env as get_env

REPO = state.REPO
PLAYBOOKS = {
    "site": "ansible/site.yml",
    "rolling_restart": "ansible/rolling_restart.yml",
    "pipeline": "ansible/pipeline.yml",
    "monitoring": "ansible/monitoring.yml",
    "promote": "ansible/promote.yml",
    "demote": "ansible/demote.yml",
    "dr_precheck": "ansible/dr_precheck.yml",
    "region_outage": "ansible/region_outage.yml",
}
RECAP_LINE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")
PLAY_LINE = re.compile(r"^PLAY \[(?P<name>.*)\] \*+")
DEFAULT_TIMEOUT_S = 45 * 60


class ConvergeError(RuntimeError):
    pass


@dataclass
class PlaybookRun:
    playbook: str
    returncode: int
    elapsed_s: float
    log: Path
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    def total(self, key: str) -> int:
        return sum(counts.get(key, 0) for counts in self.recap.values())

    @property
    def ok(self) -> bool:
        bad = self.total("failed") + self.total("unreachable")
        return self.returncode == 0 and bool(self.recap) and not bad

    def summary(self) -> str:
        keys = ("ok", "changed", "failed", "unreachable", "skipped")
        totals = ", ".join(f"{k}={self.total(k)}" for k in keys)
        hosts = len(self.recap)
        return f"{self.playbook}: rc={self.returncode}, {hosts} hosts, {totals}, {self.elapsed_s:.0f}s"


def inventory_for(env_name: str) -> str:
    """The env's aws_ec2 inventory (platform.yml stacks.<env>.inventory), relative to the repository."""
    return load_platform().stack(env_name).inventory


def secrets_dir(env_name: str) -> Path:
    return state.lab_dir() / "secrets" / env_name


def _peer_secrets_args(env_name: str) -> list[str]:
    """Where a standby's MirrorMaker 2 finds the peer site's CA and mirror password: the lab keeps
    each env's secrets under its env name, not under the site name the role would look for."""
    peer = load_platform().stack(env_name).peer
    return ["-e", f"mirrormaker_source_secrets_dir={secrets_dir(peer)}"] if peer else []


def ansible_env(env_name: str) -> dict[str, str]:
    """Environment for ansible-playbook/-inventory against the lab's emulator."""
    emu = state.load_lab().get("emulator") or {}
    if not emu.get("url"):
        raise ConvergeError("the lab has no emulator running; run `fms-lab up` first")
    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "FMS_LAB_DIR": str(state.lab_dir()),
        "AWS_URL": emu["url"],
        **EMULATOR_ENV,
        "AWS_DEFAULT_REGION": get_env(env_name).region,
        "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        # One control-socket directory per lab, so two checkouts never share connections.
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(state.lab_dir() / "ssh" / "cp"),
    }


def parse_recap(lines: list[str]) -> dict[str, dict[str, int]]:
    """The PLAY RECAP block of an ansible-playbook run: host -> {ok, changed, failed, ...}."""
    recap: dict[str, dict[str, int]] = {}
    inside = False
    for line in lines:
        if line.startswith("PLAY RECAP"):
            inside, recap = True, {}
            continue
        if inside:
            m = RECAP_LINE.match(line.strip())
            if m:
                recap[m["host"]] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m["counts"])}
            elif line.strip() and recap:
                inside = False
    return recap


def run_playbook(
    env_name: str = "primary",
    playbook: str = "site",
    extra_args: list[str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> PlaybookRun:
    """Run one of PLAYBOOKS (or a path) on the env's hosts; bounded by `timeout_s`."""
    path = PLAYBOOKS.get(playbook, playbook)
    name = Path(path).stem
    get_env(env_name)
    sdir = secrets_dir(env_name)
    sdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (state.lab_dir() / "ssh" / "cp").mkdir(parents=True, exist_ok=True, mode=0o700)
    logs = state.logs_dir()
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"ansible-{env_name}-{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    cmd = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        inventory_for(env_name),
        "-i",
        "inventory/lab",
        path,
        "-e",
        f"fms_secrets_dir={sdir}",
        *_peer_secrets_args(env_name),
        *(extra_args or []),
    ]
    progress.step(f"ansible: {' '.join(cmd[1:])}  (log: {log})")
    started = time.monotonic()
    lines: list[str] = []
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=ansible_env(env_name),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                out.write(line)
                lines.append(line.rstrip("\n"))
                m = PLAY_LINE.match(line)
                if m:
                    progress.step(f"ansible: play {m['name']}")
                elif line.startswith(("fatal:", "failed:")) or "UNREACHABLE!" in line:
                    progress.warn(f"ansible: {line.strip()[:300]}")
                if time.monotonic() - started > timeout_s:
                    proc.kill()
                    raise ConvergeError(f"{path} did not finish within {timeout_s:.0f}s; see {log}")
        finally:
            rc = proc.wait(timeout=60)
    run = PlaybookRun(path, rc, time.monotonic() - started, log, parse_recap(lines))
    progress.step(f"ansible: {run.summary()}")
    return run

"""What the static Ansible tests share: the venv's tools and the environment they run in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
BIN = Path(sys.executable).parent


def ansible_env(**extra: str) -> dict[str, str]:
    """The project's ansible.cfg, plain output, fast failing connections, the venv's tools first."""
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_SSH_RETRIES": "0",
            "ANSIBLE_TIMEOUT": "3",
            "PATH": f"{BIN}:{env.get('PATH', '')}",
        }
    )
    env.update(extra)
    return env


def task_results(*args: str, task: str) -> dict[str, Any]:
    """Run ansible-playbook with `args`; host -> result of the task named `task` (the run must pass).

    The JSON callback on stdout; the timer stays the only other callback
    (profile_tasks would interleave with the report).
    """
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=ansible_env(
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_CALLBACKS_ENABLED="ansible.posix.timer"
        ),
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{\n") : proc.stdout.rindex("\n}") + 2])
    # one task entry per host (the project's strategy reports hosts separately)
    return {
        host: result
        for play in report["plays"]
        for entry in play["tasks"]
        if entry["task"]["name"] == task
        for host, result in entry["hosts"].items()
    }

"""site.yml's strategy (ansible/plugins/strategy/fms_linear.py): linear, through Mitogen when it is installed.

The same playbook gives the same results with and without Mitogen, and a controller without Mitogen
(FMS_ANSIBLE_MITOGEN=0 stands in for one) still runs, as plain linear.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_support import ANSIBLE_DIR, BIN, ansible_env

PLAYBOOK = """
- name: Strategy probe
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Write a file
      ansible.builtin.copy:
        content: "hello\\n"
        dest: "{{ out }}/file.txt"
        mode: "0600"
    - name: Run a command
      ansible.builtin.command: cat {{ out }}/file.txt
      register: cat
      changed_when: false
    - name: Check what it read
      ansible.builtin.assert:
        that: cat.stdout == "hello"
"""


def strategy_classes(**env: str) -> list[str]:
    """The class names of fms_linear's StrategyModule, loaded as ansible-playbook loads it."""
    code = (
        "from ansible.plugins.loader import strategy_loader\n"
        f"strategy_loader.add_directory({str(ANSIBLE_DIR / 'plugins' / 'strategy')!r})\n"
        "cls = strategy_loader.get('fms_linear', class_only=True)\n"
        "import json; print(json.dumps([c.__module__ + '.' + c.__name__ for c in cls.__mro__]))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], env=ansible_env(**env), capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_site_runs_fms_linear() -> None:
    cfg = (ANSIBLE_DIR / "ansible.cfg").read_text()
    assert "strategy = fms_linear" in cfg and "strategy_plugins = plugins/strategy" in cfg


def test_fms_linear_is_linear_through_mitogen_when_installed() -> None:
    with_mitogen = strategy_classes()
    assert any("ansible_mitogen" in c for c in with_mitogen), with_mitogen
    assert "ansible.plugins.strategy.linear.StrategyModule" in with_mitogen
    without = strategy_classes(FMS_ANSIBLE_MITOGEN="0")
    assert not any("mitogen" in c for c in without), without
    assert "ansible.plugins.strategy.linear.StrategyModule" in without


@pytest.mark.parametrize("mitogen", ["1", "0"])
def test_same_results_with_and_without_mitogen(mitogen: str, tmp_path: Path) -> None:
    book = tmp_path / "probe.yml"
    book.write_text(PLAYBOOK)
    recaps = []
    for _run in range(2):  # the second run must change nothing
        res = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", "localhost,", str(book), "-e", f"out={tmp_path}"],
            env=ansible_env(FMS_ANSIBLE_MITOGEN=mitogen, ANSIBLE_PYTHON_INTERPRETER=sys.executable),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        recaps.append(next(line for line in res.stdout.splitlines() if line.startswith("localhost")))
    assert "ok=3" in recaps[0] and "changed=1" in recaps[0], recaps
    assert "ok=3" in recaps[1] and "changed=0" in recaps[1], recaps
    assert (tmp_path / "file.txt").read_text() == "hello\n"

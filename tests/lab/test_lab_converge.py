"""site.yml on the lab hosts, as an operator runs it on AWS, then testinfra against the result.

Runs after the host tests (the conftest orders this module last among the lab tests) on the
session's primary lab: bare hosts fresh from Terraform. Asserted:

* ``ansible-playbook -i inventory/aws_ec2.yml -i inventory/lab ansible/site.yml`` converges every
  host Terraform created (no failed or unreachable host);
* a second run reports changed=0 on every host (from the recap);
* the testinfra suite (tests/infra) passes against the same inventory.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from lab import converge, state
from lab_support import REPO, outputs

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.fixture(scope="module")
def converged(lab) -> converge.PlaybookRun:
    run = converge.run_playbook("primary", "site")
    print(f"\nsite.yml from bare hosts: {run.summary()}")
    if not run.ok:
        pytest.fail(f"site.yml did not converge the lab: {run.summary()}\n{_failures(run)}")
    return run


def _failures(run: converge.PlaybookRun, limit: int = 40) -> str:
    lines = run.log.read_text(errors="replace").splitlines()
    bad = [ln for ln in lines if ln.startswith(("fatal:", "failed:")) or "UNREACHABLE!" in ln]
    return "\n".join(bad[:limit]) or "\n".join(lines[-limit:])


def _changed_tasks(run: converge.PlaybookRun) -> list[str]:
    """`TASK [...]` headers followed by a `changed:` result, for a readable failure message."""
    task, found = "", []
    for line in run.log.read_text(errors="replace").splitlines():
        if line.startswith("TASK ["):
            task = line.split("]", 1)[0] + "]"
        elif line.startswith("changed:"):
            found.append(f"{task} {line[:160]}")
    return found


def test_site_converges_every_host_terraform_created(converged):
    assert set(converged.recap) == set(outputs()["instances"]), "site.yml must reach every lab host"
    assert converged.total("failed") == 0 and converged.total("unreachable") == 0
    assert converged.total("changed") > 0, "bare hosts must be changed by the first run"


def test_second_site_run_changes_nothing(converged):
    again = converge.run_playbook("primary", "site")
    print(f"\nsite.yml again: {again.summary()}")
    assert again.ok, _failures(again)
    changed = {h: c["changed"] for h, c in again.recap.items() if c.get("changed")}
    assert not changed, f"second run changed {changed}:\n" + "\n".join(_changed_tasks(again)[:30])


def test_testinfra_suite_passes_on_the_lab(converged):
    started = time.monotonic()
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/infra",
        "--fms-inventory",
        converge.inventory_for("primary"),
        "--fms-inventory",
        "inventory/lab",
    ]
    res = subprocess.run(
        cmd,
        cwd=REPO,
        env=converge.ansible_env("primary"),
        capture_output=True,
        text=True,
        timeout=40 * 60,
        check=False,
    )
    tail = res.stdout[-6000:]
    print(f"\ntestinfra on the lab ({time.monotonic() - started:.0f}s):\n{tail[-800:]}")
    assert res.returncode == 0, f"testinfra failed (rc={res.returncode}):\n{tail}\n{res.stderr[-2000:]}"
    m = re.search(r"(\d+) passed", res.stdout)
    assert m and int(m.group(1)) >= 50, f"too few testinfra checks ran:\n{tail}"
    assert "error" not in res.stdout.splitlines()[-1], tail
    assert state.load_hosts(), "the lab is still up for the teardown test"

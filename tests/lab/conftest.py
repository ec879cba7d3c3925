"""Fixtures for the lab tests (marker `lab`).

`lab` brings up one primary lab (profile minimal: 11 hosts, three brokers) from the real
Terraform stack, with the artifact mirror, once per session in its own
FMS_LAB_DIR; `test_down_leaves_nothing` tears it down and asserts nothing is
left. Test order: tests without hosts first (fast feedback on a machine that
cannot run the lab), then the ones on bare lab hosts, then site.yml and
testinfra (test_lab_converge.py), the security groups between the converged hosts
(test_lab_security_groups.py), bad input injected into the running pipeline
(test_lab_bad_input.py), brokers and the stream's driver SIGKILLed under load
(test_lab_faults.py, in `make chaos` only),
the pipeline end to end (test_lab_pipeline.py: its conservation audit also covers every record the
bad-input module injected and every record that flowed through the faults), the alert drills
(test_lab_alerts.py), then the teardown test.

Development against a lab that is up: FMS_LAB_REUSE=1 FMS_LAB_DIR=... runs the converge, bad-input,
pipeline and alert modules on it (`converged` runs site.yml once per session);
FMS_LAB_REUSE=converged does not run site.yml at all - for a lab just converged from this checkout
(`fms-lab converge`), whose latest site.yml log then stands for the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from fms_tools.fmsops import terraform
from fms_tools.lab import converge, orchestrate, state
from lab_support import APPLY, PROFILE, playbook_failures

DR_APPLY_TIMEOUT_S = 900

TEARDOWN_TESTS = ("test_down_leaves_nothing",)
# Run on the converged lab, in this order.
CONVERGE_MODULES = (
    "test_lab_converge.py",
    "test_lab_security_groups.py",
    "test_lab_bad_input.py",
    "test_lab_faults.py",
    "test_lab_pipeline.py",
    "test_lab_bench.py",
    "test_lab_dr.py",
    "test_lab_alerts.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Reorder the lab tests among themselves (the slots they occupy), leave other tests alone."""
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if Path(str(item.fspath)).parent == here]

    def rank(item: pytest.Item) -> tuple[int, int]:
        module = Path(str(item.fspath)).name
        if item.name in TEARDOWN_TESTS:
            return (3, 0)
        if module in CONVERGE_MODULES:
            # the hosts tests want bare hosts; converging installs the platform on them
            return (2, CONVERGE_MODULES.index(module))
        return (1, 0) if "lab" in getattr(item, "fixturenames", ()) else (0, 0)

    ordered = sorted((items[i] for i in slots), key=rank)  # stable within a rank
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item


@pytest.fixture(scope="session")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab-state")


@pytest.fixture(scope="session")
def lab(lab_dir: Path):
    """A primary lab brought up with Terraform; torn down (and asserted) by test_down_leaves_nothing."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (systemd-nspawn, bridges, iptables); run `make test-lab` as root")
    if os.environ.get("FMS_LAB_REUSE"):
        # Development: run the converge/pipeline/alerts modules against the lab that is up
        # (FMS_LAB_DIR); nothing is brought up or torn down (deselect test_down_leaves_nothing).
        hosts = state.load_hosts()
        if not hosts:
            pytest.skip("FMS_LAB_REUSE is set but no lab is up in FMS_LAB_DIR")
        yield hosts
        return
    from fms_tools.fmsops.emulator import free_port

    mp = pytest.MonkeyPatch()
    mp.setenv("FMS_LAB_DIR", str(lab_dir))
    mp.setenv("FMS_EMULATOR_PORT", str(free_port()))
    started = time.monotonic()
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dr-apply")
    try:
        hosts = orchestrate.up("primary", PROFILE, apply=APPLY)
        print(f"\nlab up: {len(hosts)} hosts in {time.monotonic() - started:.1f}s")
        if APPLY:
            # The DR stack's first apply mostly waits on the emulator (the provider's propagation
            # polls): run it while the bare-host tests run; the DR test waits for it (dr_applied).
            url = state.load_lab()["emulator"]["url"]
            _DR_APPLY.append(background.submit(terraform.apply_env, "dr", url, PROFILE))
        yield hosts
    finally:
        try:
            background.shutdown(wait=True)  # never stop the emulator under a running apply
            orchestrate.down()
        finally:
            mp.undo()


_DR_APPLY: list[Future] = []


@pytest.fixture(scope="session")
def dr_applied(lab) -> Callable[[], float]:
    """Wait for the DR stack's background apply (started with the lab); returns the seconds waited."""

    def wait() -> float:
        started = time.monotonic()
        for future in _DR_APPLY:
            future.result(timeout=DR_APPLY_TIMEOUT_S)  # an apply failure fails the test that needs it
        return time.monotonic() - started

    return wait


@pytest.fixture(scope="session")
def converged(lab) -> converge.PlaybookRun:
    """site.yml run once on the session's bare lab hosts, as an operator runs it on AWS."""
    if os.environ.get("FMS_LAB_REUSE") == "converged":
        return _last_site_run()
    run = converge.run_playbook("primary", "site")
    print(f"\nsite.yml from bare hosts: {run.summary()}")
    if not run.ok:
        pytest.fail(f"site.yml did not converge the lab: {run.summary()}\n{playbook_failures(run)}")
    return run


def _last_site_run() -> converge.PlaybookRun:
    """FMS_LAB_REUSE=converged: the lab's latest site.yml run, from its log (no second run)."""
    logs = sorted(state.logs_dir().glob("ansible-primary-site-*.log"))
    if not logs:
        pytest.skip(f"FMS_LAB_REUSE=converged but no site.yml log in {state.logs_dir()}")
    recap = converge.parse_recap(logs[-1].read_text(errors="replace").splitlines())
    run = converge.PlaybookRun("ansible/site.yml", 0, 0.0, logs[-1], recap)
    print(f"\nreusing the lab converged by {logs[-1].name}: {run.summary()}")
    if not run.ok:
        pytest.fail(
            f"the lab's last site.yml run did not converge: {run.summary()}\n{playbook_failures(run)}"
        )
    return run

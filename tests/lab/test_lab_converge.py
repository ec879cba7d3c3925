"""site.yml on the lab hosts, as an operator runs it on AWS, then testinfra against the result.

Runs after the host tests (the conftest orders this module last among the lab tests) on the
session's primary lab: bare hosts fresh from Terraform. Asserted:

* ``ansible-playbook -i inventory/aws_ec2.yml -i inventory/lab ansible/site.yml`` converges every
  host Terraform created (no failed or unreachable host);
* a second run reports changed=0 on every host (from the recap);
* the testinfra suite (tests/infra) passes against the same inventory.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
from fms_tools.lab import converge, state
from kafka_probe import KafkaProbe
from lab_support import (
    REPO,
    host_epoch,
    host_ssh,
    longest_batch_gap,
    must,
    outputs,
    playbook_failures,
    unit_restarts,
    unit_runs,
)

pytestmark = [pytest.mark.lab, pytest.mark.slow]


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
    assert again.ok, playbook_failures(again)
    changed = {h: c["changed"] for h, c in again.recap.items() if c.get("changed")}
    assert not changed, f"second run changed {changed}:\n" + "\n".join(_changed_tasks(again)[:30])


# testinfra's checks mostly wait on ssh round trips and the hosts' tools: shares of the suite
# run side by side take a fraction of the wall time on the lab's two cores.
TESTINFRA_SHARDS = 3


def test_testinfra_suite_passes_on_the_lab(converged, tmp_path):
    started = time.monotonic()
    base = [
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
    # output to files: a share with much to say must not block on a full pipe
    logs = [(tmp_path / f"share{i}.out", tmp_path / f"share{i}.err") for i in range(TESTINFRA_SHARDS)]
    procs = []
    for i, (out, err) in enumerate(logs):
        with out.open("w") as o, err.open("w") as e:
            cmd = [*base, "--fms-shard", f"{i}/{TESTINFRA_SHARDS}"]
            env = converge.ansible_env("primary")
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=o, stderr=e, text=True))
    outs = []
    try:
        for proc, (out, err) in zip(procs, logs, strict=True):
            rc = proc.wait(timeout=max(60, 40 * 60 - (time.monotonic() - started)))
            outs.append((rc, out.read_text(errors="replace"), err.read_text(errors="replace")))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    passed = 0
    for i, (rc, out, err) in enumerate(outs):
        tail = out[-6000:]
        print(f"\ntestinfra share {i}/{TESTINFRA_SHARDS} (rc={rc}):\n{tail[-600:]}")
        assert rc == 0, f"testinfra share {i} failed (rc={rc}):\n{tail}\n{err[-2000:]}"
        assert "error" not in out.splitlines()[-1], tail
        m = re.search(r"(\d+) passed", out)
        passed += int(m.group(1)) if m else 0
    print(f"testinfra on the lab: {passed} passed in {time.monotonic() - started:.0f}s")
    assert passed >= 50, "too few testinfra checks ran"
    assert state.load_hosts(), "the lab is still up for the teardown test"


# ---------------------------------------------------------------------------- rolling restart under load

PROBE_TOPIC = "fms.probe.rolling-restart"


def test_rolling_restart_under_load_loses_nothing(converged):
    """rolling_restart.yml while Kafka's VerifiableProducer writes with acks=all: 0 failed, 0 lost."""
    kafka_hosts = sorted(outputs()["inventory_groups"]["kafka"])
    started = time.monotonic()
    probe = KafkaProbe(kafka_hosts[0], PROBE_TOPIC, brokers=len(kafka_hosts))
    probe.start()
    try:
        run = converge.run_playbook("primary", "rolling_restart")
        print(f"\nrolling restart under load: {run.summary()}")
        assert run.ok, playbook_failures(run)
        time.sleep(10)  # records sent after the last restart
    finally:
        result = probe.stop()
    print(f"rolling restart under load over {time.monotonic() - started:.0f}s: {result.summary()}")
    assert not result.failed, (
        f"{len(result.failed)} failed sends during the rolling restart, e.g. {result.failed[:3]}"
    )
    result.assert_nothing_lost_or_duplicated()
    probe.delete_topic()


# ---------------------------------------------------------------- a setting changed through site.yml

DRILL_TOPIC = "fms.probe.setting-change"
# A broker setting whose change needs a restart and harms nothing (default 15000).
CHANGED_SETTING = ("log.cleaner.backoff.ms", "16000")
# A stream without a committed batch this long is stalled (the stall alert's threshold order).
STALL_S = 120


def _restart_sequence(run: converge.PlaybookRun) -> list[tuple[str, str]]:
    """("restart", host) and ("gate", "") of the handlers' gated restart walk, in the order run."""
    seq: list[tuple[str, str]] = []
    task, walking = "", False
    for line in run.log.read_text(errors="replace").splitlines():
        header = re.match(r"(?:TASK|RUNNING HANDLER) \[(?:[\w-]+ : )?(.*?)\] \*", line)
        if header:
            task = header.group(1)
            walking = walking or task.startswith("Restart the marked Kafka nodes one at a time")
            continue
        if not walking or not re.match(r"(?:changed|ok): \[", line):
            continue
        restart = re.fullmatch(r"Restart Kafka on (\S+)", task)
        if restart:
            seq.append(("restart", restart.group(1)))
        elif task.startswith("Stop unless the Kafka cluster is healthy"):
            seq.append(("gate", ""))
    return seq


# make chaos, not make test: a whole third site.yml run with three gated restarts costs 10-14
# minutes of CI's lab critical path, and its stall bound failed under CI's load (issue 18 first).
@pytest.mark.chaos
def test_a_broker_setting_changed_through_site_restarts_brokers_one_at_a_time(converged):
    """Issue 17's drill: one broker setting changed and site.yml re-run while acks=all writes go on.

    The handlers restart the brokers through the one health-gated path: one broker, then the
    gate (every ISR full again), then the next; every acknowledged record is read back once
    and the stream keeps committing batches throughout.
    """
    kafka_hosts = sorted(outputs()["inventory_groups"]["kafka"])
    master = outputs()["inventory_groups"]["spark_master"][0]
    key, value = CHANGED_SETTING
    stream_restarts = unit_restarts(master, "fms-stream")
    probe = KafkaProbe(kafka_hosts[0], DRILL_TOPIC, brokers=len(kafka_hosts))
    probe.start()
    started, since = time.monotonic(), host_epoch(master)
    try:
        extra = json.dumps({"kafka_extra_properties": {key: value}})
        run = converge.run_playbook("primary", "site", ["-e", extra])
        print(f"\nsite.yml with {key}={value}: {run.summary()}")
        assert run.ok, playbook_failures(run)
        time.sleep(10)  # records sent after the last restart
    finally:
        result = probe.stop()
    seq = _restart_sequence(run)
    print(f"restart sequence: {seq}")
    restarted = [h for what, h in seq if what == "restart"]
    assert sorted(restarted) == kafka_hosts, f"each broker restarted exactly once: {seq}"
    # (the gate before the first), then restart, gate, restart, gate...: the next broker goes
    # down only after the cluster was whole again
    walk, n = [what for what, _ in seq], len(kafka_hosts)
    assert walk[: 1 + 2 * n] == ["gate"] + ["restart", "gate"] * n and walk.count("restart") == n, seq
    for host in kafka_hosts:
        conf = must(host_ssh(host, f"grep -x '{key}={value}' /etc/kafka/server.properties || true"))
        assert conf.strip() == f"{key}={value}", f"{host} did not get the new setting"
    print(f"setting change under load over {time.monotonic() - started:.0f}s: {result.summary()}")
    assert not result.failed, f"{len(result.failed)} failed sends, e.g. {result.failed[:3]}"
    result.assert_nothing_lost_or_duplicated()
    after = unit_restarts(master, "fms-stream")
    assert after == stream_restarts, "the stream had to be restarted during the broker restarts"
    until = host_epoch(master)
    gap, gap_from, gap_to = longest_batch_gap(master, since, until)
    # Where the gap lies, and whether the hourly batch job ran then (it shares the Spark worker).
    hourly = unit_runs(master, "fms-hourly-summary.service", since, until)
    print(
        f"longest time without a committed micro-batch during the drill: {gap:.0f}s "
        f"(drill +{gap_from - since:.0f}s to +{gap_to - since:.0f}s of {until - since:.0f}s); "
        f"hourly summary runs in the drill: {hourly or 'none'}"
    )
    assert gap < STALL_S, f"the stream stalled for {gap:.0f}s while the brokers restarted"
    probe.delete_topic()

"""The FMS pipeline on the lab, end to end, through the services site.yml deployed.

Runs after test_lab_converge.py (the conftest orders it) on the converged lab, where the
collectors have been sending 1,000 simulated devices (inventory default
fms_pipeline_collector_devices, with the lab's share of bad records of every kind) into
Kafka since site.yml started them - through the second site run, testinfra and the rolling
Kafka restart. Asserted, as an operator would check it:

* conservation: with the collectors stopped, ``fms-spark-job audit --wait-seconds`` on the
  Spark master finds every raw record exactly once in the lake - stored, dead-lettered or a
  counted duplicate - and dead letters among them;
* the hourly summary of the hour the collectors stopped in (``fms-spark-job hourly_summary
  --hour H --assume-closed``) equals an independent recomputation from the stored rows
  (tests/lab/hourly_recompute.py, spark-submit in local mode), covers all 1,000 devices,
  and a re-run reports "unchanged" and rewrites nothing;
* the audit still conserves after the hourly job compacted the hour's files.

The collectors are started again when the module ends (the alert tests need records flowing).
"""

from __future__ import annotations

import base64
import json
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lab_support import host_ssh, last_json, must, outputs, spark_job

pytestmark = [pytest.mark.lab, pytest.mark.slow]

DEVICES = 1000  # roles/fms_pipeline/defaults: fms_pipeline_collector_devices
AUDIT_WAIT_S = 600
# hourly_summary's dead-letter horizon: the rules' max lateness (600 s) + 1 h.
DLQ_HORIZON_S = 600 + 3600
RECOMPUTE = Path(__file__).with_name("hourly_recompute.py")
REMOTE_SCRIPT = "/var/tmp/fms-hourly-recompute.py"


@dataclass
class Drained:
    master: str
    collectors: list[str]
    stopped_at: datetime
    audit: dict


@pytest.fixture(scope="module")
def drained(converged) -> Iterator[Drained]:
    """Collectors stopped, then the audit waits until the stream has drained the topic."""
    groups = outputs()["inventory_groups"]
    master, collectors = groups["spark_master"][0], sorted(groups["collector"])
    for host in collectors:
        must(host_ssh(host, "systemctl is-active fms-collector && systemctl stop fms-collector", 180))
    stopped_at = datetime.now(UTC)
    try:
        rc, out = spark_job(master, f"audit --wait-seconds {AUDIT_WAIT_S}", AUDIT_WAIT_S + 600)
        audit = last_json(out)
        print(f"audit after stopping the collectors: {json.dumps(audit)[:600]}")
        assert rc in (0, 2), f"the audit could not run (rc={rc}):\n{out}"
        yield Drained(master, collectors, stopped_at, audit)
    finally:
        for host in collectors:
            host_ssh(host, "systemctl start fms-collector", 180)


def test_audit_conserves_every_raw_record(drained):
    a = drained.audit
    assert a["conserved"], f"the lake does not conserve the raw topic: {json.dumps(a)[:3000]}"
    assert a["missing"] == 0 and a["double_counted"] == 0, a
    assert a["records_in"] == a["stored"] + a["dead_lettered"] + a["duplicates"], a
    # Minutes of 1,000 devices every 10 s, with the lab's share of bad records of every kind.
    assert a["stored"] >= 10 * DEVICES, f"too few records went through the pipeline: {a}"
    assert a["dead_lettered"] > 0, f"the lab's bad records must reach the dead letters: {a}"


@pytest.fixture(scope="module")
def hourly(drained) -> dict:
    """The hour the collectors stopped in, summarised twice, then recomputed independently."""
    hour = (drained.stopped_at - timedelta(seconds=60)).replace(minute=0, second=0, microsecond=0)
    key = f"{hour:%Y-%m-%dT%H}"
    runs = []
    for _ in range(2):
        started = time.time()
        rc, out = spark_job(drained.master, f"hourly_summary --hour {key} --assume-closed")
        assert rc == 0, f"hourly_summary failed:\n{out}"
        runs.append((started, last_json(out)))
    print(f"hourly runs: {[r for _, r in runs]}")
    args = must(host_ssh(drained.master, "grep -v '^#' /etc/fms/hourly-summary.args")).split()
    paths = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
    summary_file = runs[0][1].get("summary_file")
    assert summary_file, f"the first run wrote no summary: {runs[0][1]}"
    user = must(host_ssh(drained.master, "systemctl show fms-stream -p User --value")).strip()
    script = base64.b64encode(RECOMPUTE.read_bytes()).decode()
    argv = " ".join(
        shlex.quote(a) for a in (paths["--processed"], paths["--dlq"], summary_file, key, str(DLQ_HORIZON_S))
    )
    cmd = (
        f"echo {script} | base64 -d > {REMOTE_SCRIPT} && chmod 644 {REMOTE_SCRIPT}"
        f" && cd /var/tmp && runuser -u {user} -- env SPARK_HOME=/opt/spark SPARK_CONF_DIR=/etc/spark"
        " PYSPARK_DRIVER_PYTHON=/opt/fms-jobs/venv/bin/python PYSPARK_PYTHON=/usr/bin/python3"
        " /opt/spark/bin/spark-submit --master 'local[1]' --conf spark.ui.enabled=false"
        f" --driver-memory 512m {REMOTE_SCRIPT} {argv} 2>/tmp/fms-hourly-recompute.err"
    )
    started = time.monotonic()
    res = host_ssh(drained.master, cmd, 900)
    err = host_ssh(drained.master, "tail -c 3000 /tmp/fms-hourly-recompute.err").stdout
    print(f"recomputation ({time.monotonic() - started:.0f}s): {res.stdout.strip()[-1500:]}")
    assert res.returncode in (0, 2), f"recomputation failed (rc={res.returncode}):\n{res.stdout}\n{err}"
    return {"hour": key, "runs": runs, "recomputed": last_json(res.stdout)}


def test_hourly_summary_equals_a_recomputation_from_the_stored_rows(hourly):
    first = hourly["runs"][0][1]
    assert first["status"] == "summarised", first
    check = hourly["recomputed"]
    assert check["mismatches"] == 0, f"summary differs from the stored rows: {check}"
    assert check["stored_devices"] == DEVICES, f"every simulated device has rows in {hourly['hour']}: {check}"
    assert check["records"] == first["rows"] > 0, (check, first)


def test_hourly_summary_rerun_changes_nothing(hourly):
    (_, first), (second_started, second) = hourly["runs"]
    assert second["status"] == "unchanged", second
    assert second["summary_file"] == first["summary_file"], (first, second)
    mtime = hourly["recomputed"]["summary_mtime_ms"] / 1000
    assert mtime < second_started, "the re-run rewrote the summary file"


def test_audit_still_conserves_after_compaction(drained, hourly):
    rc, out = spark_job(drained.master, "audit")
    a = last_json(out)
    assert rc == 0 and a["conserved"], f"compaction changed what the lake holds: {json.dumps(a)[:3000]}"
    assert a["records_in"] == drained.audit["records_in"], (a, drained.audit)

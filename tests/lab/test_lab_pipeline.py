"""The FMS pipeline end to end on the lab, through the services site.yml deployed.

Runs after test_lab_converge.py on the same converged lab (the conftest orders it so): the
collector host simulates the fleet (fms_pipeline_collector_devices, 1,000 by default) and sends
to Kafka over TLS + SCRAM; fms-stream on the Spark master validates into Parquet on HDFS.
Asserted, with bounded waits:

* readings of every simulated device reach the lake while the services run;
* after the collector is stopped and the stream drained, the conservation audit
  (``fms-spark-job audit``) finds every record of ``fms.sensor.raw`` exactly once as stored,
  dead-lettered or a counted duplicate;
* the hourly summary of the run's hour(s) (``fms-spark-job hourly_summary --hour H
  --assume-closed``) equals a recomputation from the stored rows made by an independent Spark
  script, and a re-run reports ``unchanged`` and leaves every file as it was.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lab import hosts, state
from lab_support import outputs

pytestmark = [pytest.mark.lab, pytest.mark.slow]

STREAM_METRICS = "http://127.0.0.1:9311/metrics"
COLLECTOR_METRICS = "http://127.0.0.1:9310/metrics"
RUN_WINDOW_S = 90  # traffic after the stream's first batch: ~9 readings per device at 10 s
FIRST_BATCH_TIMEOUT_S = 15 * 60
AUDIT_WAIT_S = 600
CHECK_SCRIPT = "/var/tmp/fms-lab-hourly-check.py"

# Independent recomputation of the hourly summary from the stored rows of one hour: plain
# DataFrame aggregations over the hour's rows (selected by event time, not by partition), diffed
# against the summary file the hourly job wrote. Also lists the files under the hour's processed
# partition and the summary directory (path, size, modification time) so that a re-run can be
# shown to leave them alone.
CHECK = r"""
import json, sys
from pyspark.sql import SparkSession, functions as F
processed, output, start = sys.argv[1], sys.argv[2], sys.argv[3]
spark = SparkSession.builder.appName("fms-lab-hourly-check").getOrCreate()
spark.conf.set("spark.sql.session.timeZone", "UTC")
y, mo, d, h = start[0:4], start[5:7], start[8:10], start[11:13]
lo = F.to_timestamp(F.lit(f"{y}-{mo}-{d} {h}:00:00"))
part = f"{processed}/year={int(y)}/month={int(mo)}/day={int(d)}/hour={int(h)}"
jvm = spark._jvm
conf = spark._jsc.hadoopConfiguration()
def exists(path):
    p = jvm.org.apache.hadoop.fs.Path(path)
    return p.getFileSystem(conf).exists(p)
if not exists(part):
    print("FMS-CHECK " + json.dumps({"stored_rows": 0, "devices": 0, "summary_rows": 0,
          "mismatches": [], "mismatch_count": 0, "files": []}))
    sys.exit(0)
# the hour's partition directory, selected by event time below: the recomputation
# does not trust the partitioning it checks
rows = (spark.read.option("basePath", processed).parquet(part)
        .where((F.col("timestamp") >= lo) & (F.col("timestamp") < lo + F.expr("INTERVAL 1 HOUR"))))
mine = rows.groupBy("device_id").agg(
    F.count(F.lit(1)).alias("n"), F.avg("temperature").alias("avg_t"),
    F.min("temperature").alias("min_t"), F.max("temperature").alias("max_t"),
    F.sum(F.col("anomaly_flag").cast("long")).alias("anomalies"),
    F.sum(F.col("is_fail").cast("long")).alias("fails"))
cols = ["device_id", "record_count", "avg_temperature", "min_temperature", "max_temperature",
        "anomaly_count", "fail_count"]
day_dir = f"{output}/year={int(y)}/month={int(mo)}/day={int(d)}"
if exists(day_dir):
    summary = spark.read.parquet(day_dir).where(F.col("hour") == lo).select(*cols)
else:  # no summary written for that day: every device of the hour is a mismatch
    summary = spark.createDataFrame([], "device_id int, record_count long, avg_temperature double, "
        "min_temperature double, max_temperature double, anomaly_count long, fail_count long")
j = mine.join(summary, "device_id", "full")
bad = j.where(
    F.col("n").isNull() | F.col("record_count").isNull() | (F.col("n") != F.col("record_count"))
    | (F.abs(F.col("avg_t") - F.col("avg_temperature")) > 1e-9)
    | (F.col("min_t") != F.col("min_temperature")) | (F.col("max_t") != F.col("max_temperature"))
    | (F.col("anomalies") != F.col("anomaly_count")) | (F.col("fails") != F.col("fail_count")))
def listing(path):
    p = jvm.org.apache.hadoop.fs.Path(path)
    fs = p.getFileSystem(conf)
    out, it = [], fs.listFiles(p, True)
    while it.hasNext():
        s = it.next()
        out.append([s.getPath().toUri().getPath(), s.getLen(), s.getModificationTime()])
    return sorted(out)
result = {
    "stored_rows": rows.count(), "devices": mine.count(), "summary_rows": summary.count(),
    "mismatches": [r.asDict() for r in bad.limit(5).collect()], "mismatch_count": bad.count(),
    "files": listing(part) + (listing(output) if exists(output) else []),
}
print("FMS-CHECK " + json.dumps(result, default=str))
spark.stop()
"""


def _ssh(name: str, command: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return hosts.ssh_run(state.load_hosts()[name]["ip"], command, timeout_s=timeout_s)


def _must(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, f"rc={res.returncode}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res.stdout


def _metric(name: str, url: str, metric: str) -> float:
    """Sum of a metric's samples as the service itself serves them (0 when absent)."""
    body = _ssh(
        name,
        f"python3 -c 'import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("
        f'"{url}", timeout=10).read().decode())\'',
        60,
    ).stdout
    pattern = re.compile(rf"^{re.escape(metric)}(?:\{{[^}}]*\}})? (\S+)$")
    return sum(float(m.group(1)) for ln in body.splitlines() if (m := pattern.match(ln)))


def _args_option(master: str, option: str) -> str:
    args = _must(_ssh(master, "cat /etc/fms/hourly-summary.args")).splitlines()
    return args[args.index(option) + 1].strip()


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]


@pytest.fixture(scope="module")
def pipeline_run(converged) -> dict[str, Any]:
    """Traffic from the deployed collector until the stream has stored it, then the collector stopped."""
    groups = outputs()["inventory_groups"]
    master, collector = groups["spark_master"][0], groups["collector"][0]
    started = time.monotonic()
    deadline = started + FIRST_BATCH_TIMEOUT_S
    while _metric(master, STREAM_METRICS, "fms_stream_records_stored_total") <= 0:
        if time.monotonic() > deadline:
            log = _ssh(master, "journalctl -u fms-stream -n 60 --no-pager").stdout
            pytest.fail(f"fms-stream stored nothing within {FIRST_BATCH_TIMEOUT_S}s:\n{log}")
        time.sleep(10)
    first_batch_s = time.monotonic() - started
    first_hour = datetime.now(UTC) - timedelta(minutes=30)  # readings before the first batch, too
    time.sleep(RUN_WINDOW_S)
    _must(_ssh(collector, "systemctl stop fms-collector"))
    stopped = datetime.now(UTC)
    sent = _ssh(collector, "journalctl -u fms-collector -n 20 --no-pager").stdout
    audit_started = time.monotonic()
    audit = _ssh(master, f"fms-spark-job audit --wait-seconds {AUDIT_WAIT_S}", AUDIT_WAIT_S + 600)
    return {
        "master": master,
        "collector": collector,
        "first_batch_s": first_batch_s,
        "hours_from": first_hour,
        "stopped": stopped,
        "collector_log": sent,
        "audit": audit,
        "audit_s": time.monotonic() - audit_started,
    }


def test_every_record_is_stored_dead_lettered_or_a_counted_duplicate(pipeline_run):
    res = pipeline_run["audit"]
    found = _json_lines(res.stdout)
    assert found, (
        f"the audit printed no result (rc={res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    )
    audit = found[-1]
    figures = json.dumps({k: v for k, v in audit.items() if k != "partitions"})
    print(
        f"\nlab pipeline: first stored batch after {pipeline_run['first_batch_s']:.0f}s; "
        f"audit ({pipeline_run['audit_s']:.0f}s): {figures}"
    )
    assert res.returncode == 0 and audit["conserved"] is True, audit
    assert audit["missing"] == 0 and audit["double_counted"] == 0, audit
    assert audit["records_in"] == audit["stored"] + audit["dead_lettered"] + audit["duplicates"], audit
    # 1,000 devices at one reading per 10 s for the window (and the start-up before it)
    assert audit["records_in"] >= 1000 * RUN_WINDOW_S // 10 // 2, audit


def test_every_simulated_device_reached_the_lake(pipeline_run):
    master = pipeline_run["master"]
    devices = max(_check_hour(master, h)["devices"] for h in _run_hours(pipeline_run))
    assert devices >= 1000, f"only {devices} simulated devices have rows in the lake"


def _check_hour(master: str, hour: str) -> dict[str, Any]:
    processed = _args_option(master, "--processed")
    output = _args_option(master, "--output")
    put = f"cat > {CHECK_SCRIPT} <<'FMS_EOF'\n{CHECK}\nFMS_EOF\nchmod 0644 {CHECK_SCRIPT}"
    _must(_ssh(master, put))
    cmd = (
        "cd /var/lib/fms-jobs && runuser -u spark -- env SPARK_HOME=/opt/spark SPARK_CONF_DIR=/etc/spark "
        "PYSPARK_PYTHON=/usr/bin/python3 PYSPARK_DRIVER_PYTHON=/usr/bin/python3 /opt/spark/bin/spark-submit "
        "--master 'local[1]' --driver-memory 512m --conf spark.ui.enabled=false "
        f"{CHECK_SCRIPT} {shlex.quote(processed)} {shlex.quote(output)} {hour}"
    )
    out = _must(_ssh(master, cmd, 900))
    line = next(ln for ln in out.splitlines() if ln.startswith("FMS-CHECK "))
    return json.loads(line.removeprefix("FMS-CHECK "))


def _run_hours(pipeline_run: dict[str, Any]) -> list[str]:
    start, end = pipeline_run["hours_from"], pipeline_run["stopped"]
    hours, h = [], start.replace(minute=0, second=0, microsecond=0)
    while h <= end:
        hours.append(h.strftime("%Y-%m-%dT%H"))
        h += timedelta(hours=1)
    return hours


@pytest.fixture(scope="module")
def hourly(pipeline_run) -> dict[str, Any]:
    master = pipeline_run["master"]
    hours = _run_hours(pipeline_run)
    args = " ".join(f"--hour {h}" for h in hours)
    first = _must(_ssh(master, f"fms-spark-job hourly_summary {args} --assume-closed", 1200))
    checks = {h: _check_hour(master, h) for h in hours}
    second = _must(_ssh(master, f"fms-spark-job hourly_summary {args} --assume-closed", 1200))
    after = {h: _check_hour(master, h) for h in hours}
    return {
        "hours": hours,
        "first": _json_lines(first),
        "second": _json_lines(second),
        "checks": checks,
        "after": after,
    }


def test_hourly_summary_equals_recomputation_from_stored_rows(hourly, pipeline_run):
    print(f"\nhourly summary: {hourly['first']}")
    statuses = {r["hour"]: r["status"] for r in hourly["first"]}
    assert set(statuses.values()) <= {"summarised", "empty"}, hourly["first"]
    assert "summarised" in statuses.values(), hourly["first"]
    for hour, check in hourly["checks"].items():
        assert check["mismatch_count"] == 0, f"{hour}: {check['mismatches']}"
        assert check["summary_rows"] == check["devices"], check
    stored = sum(c["stored_rows"] for c in hourly["checks"].values())
    audit = _json_lines(pipeline_run["audit"].stdout)[-1]
    assert stored == audit["stored"], (
        f"rows in the run's hour partitions {stored} != stored {audit['stored']}"
    )
    assert stored == sum(r.get("rows", 0) for r in hourly["first"])


def test_hourly_rerun_changes_nothing(hourly):
    statuses = [r["status"] for r in hourly["second"]]
    assert all(s in ("unchanged", "empty") for s in statuses), hourly["second"]
    for hour in hourly["hours"]:
        assert hourly["after"][hour]["files"] == hourly["checks"][hour]["files"], (
            f"{hour}: files changed on re-run"
        )


def test_collector_resumes(pipeline_run):
    """Leave the pipeline running as site.yml converged it."""
    _must(
        _ssh(pipeline_run["collector"], "systemctl start fms-collector && systemctl is-active fms-collector")
    )

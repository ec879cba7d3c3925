"""FMS pipeline services (roles/fms_pipeline, deployed by site.yml's last play).

Per node: the collector on every collector host and the streaming job on the Spark
master run as enabled systemd services and serve their Prometheus metrics; the batch
jobs have their timers. Cluster: records are flowing - the collector's acknowledged
count and the stream's stored count both grow, and the stream reports recent progress.
"""

from __future__ import annotations

import re
import time

from fms_tools.fmsops.platform_contract import load as load_platform
from infra_helpers import http, listening, run

# Ports from the platform contract (platform.yml), the ones the roles configure.
COLLECTOR_PORT = load_platform().port("collector_metrics")
STREAM_PORT = load_platform().port("stream_metrics")
# The streaming query reports progress every trigger (seconds); a minute of silence is a stall.
PROGRESS_MAX_AGE_S = 120


def _metric(body: str, name: str) -> float:
    """Sum of every sample of `name` (all label sets) in a Prometheus text exposition."""
    values = [
        float(m.group(1))
        for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", body, flags=re.MULTILINE)
    ]
    assert values, f"{name} is not exported"
    return sum(values)


def _scrape(host, port: int) -> str:
    status, body = http(host, f"http://127.0.0.1:{port}/metrics")
    assert status == 200, body[:300]
    return body


# --------------------------------------------------------------------------- per node


def test_collector_service_running(platform, collector_node):
    host = platform.host(collector_node)
    unit = host.service("fms-collector")
    assert unit.is_running and unit.is_enabled
    assert listening(host, COLLECTOR_PORT)
    conf = host.file("/etc/fms/collector.yml")
    assert conf.exists and conf.mode & 0o007 == 0, "the collector config is not world-readable"
    assert "sasl_password:" not in conf.content_string, "the SASL password is read from a file"


def test_stream_service_running(platform, spark_master_node):
    host = platform.host(spark_master_node)
    unit = host.service("fms-stream")
    assert unit.is_running and unit.is_enabled
    assert listening(host, STREAM_PORT)


def test_batch_timers_enabled(platform, spark_master_node):
    """The hourly summary always has its timer; the archive's exists only where lake buckets are set."""
    host = platform.host(spark_master_node)
    for timer, required in (("fms-hourly-summary.timer", True), ("fms-archive.timer", False)):
        if not required and not host.file(f"/etc/systemd/system/{timer}").exists:
            continue
        out = run(host, f"systemctl is-enabled {timer}; systemctl is-active {timer}").stdout.split()
        assert out == ["enabled", "active"], f"{timer}: {out}"


def test_manual_job_wrapper_lists_its_jobs(platform, spark_master_node):
    host = platform.host(spark_master_node)
    res = run(host, "/usr/local/sbin/fms-spark-job --help")
    assert res.rc == 64, res.stderr
    assert "hourly_summary" in res.stderr and "audit" in res.stderr, res.stderr


# --------------------------------------------------------------------------- cluster


def test_records_flow_from_collectors_into_the_lake(platform):
    """Between two scrapes the collectors' acknowledged records and the stream's stored records grow."""
    hosts = [platform.host(h) for h in platform.members("collector")]
    stream = platform.host(platform.first("spark_master"))

    def totals() -> tuple[float, float, float]:
        sent = sum(_metric(_scrape(c, COLLECTOR_PORT), "fms_collector_records_sent_total") for c in hosts)
        body = _scrape(stream, STREAM_PORT)
        return (
            sent,
            _metric(body, "fms_stream_records_stored_total"),
            _metric(body, "fms_stream_last_progress_timestamp_seconds"),
        )

    sent0, stored0, _ = totals()
    deadline = time.monotonic() + 90
    while True:
        time.sleep(10)
        sent1, stored1, progress = totals()
        if (sent1 > sent0 and stored1 > stored0) or time.monotonic() > deadline:
            break
    assert sent1 > sent0, f"no collector record was acknowledged in 90 s ({sent0:.0f} -> {sent1:.0f})"
    assert stored1 > stored0, f"the stream stored nothing in 90 s ({stored0:.0f} -> {stored1:.0f})"
    age = time.time() - progress
    assert age < PROGRESS_MAX_AGE_S, f"the streaming query's last progress is {age:.0f} s old"

"""Pipeline services (roles/fms_pipeline, deployed by site.yml through ansible/pipeline.yml).

Collector hosts run fms-collector; the Spark master runs fms-stream and the hourly summary
timer. Checked per node: the units run, restart on failure and run unprivileged, their
metrics endpoints serve the names the dashboards and alert rules use, secrets are readable
by the service's group only, and the streaming driver is a registered Spark application.
"""

from __future__ import annotations

import json

import pytest
from infra_helpers import http

COLLECTOR_METRICS_PORT = 9310  # fms_pipeline_collector_metrics_port
STREAM_METRICS_PORT = 9311  # fms_pipeline_stream_metrics_port
SPARK_MASTER_UI_PORT = 8080


def _unit_property(host, unit: str, prop: str) -> str:
    return host.check_output(f"systemctl show {unit} -p {prop} --value").strip()


def _metric_names(body: str) -> set[str]:
    samples = (line for line in body.splitlines() if line and not line.startswith("#"))
    return {line.split("{")[0].split(" ")[0] for line in samples}


# --- collector -------------------------------------------------------------------------------


@pytest.fixture
def collector(platform):
    return platform.host(platform.first("collector"))


def test_collector_service_runs_unprivileged_and_restarts(collector):
    service = collector.service("fms-collector")
    assert service.is_running and service.is_enabled
    assert _unit_property(collector, "fms-collector", "Restart") == "on-failure"
    assert _unit_property(collector, "fms-collector", "User") == "fms-collector"
    main_pid = _unit_property(collector, "fms-collector", "MainPID")
    assert collector.check_output(f"ps -o user= -p {main_pid}").strip() == "fms-collector"


def test_collector_sends_and_serves_its_metrics(collector):
    status, body = http(collector, f"http://127.0.0.1:{COLLECTOR_METRICS_PORT}/metrics")
    assert status == 200
    names = _metric_names(body)
    for metric in ("fms_collector_records_sent_total", "fms_collector_send_failures_total"):
        assert metric in names, f"{metric} missing"
    sent = sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("fms_collector_records_sent_total")
    )
    assert sent > 0, "the collector has not delivered a record to Kafka"


def test_collector_secret_is_private(collector):
    secrets = collector.file("/etc/fms/secrets")
    assert secrets.is_directory and secrets.mode == 0o711
    files = collector.check_output("find /etc/fms/secrets -type f").split()
    assert files, "the collector's Kafka password file is missing"
    for path in files:
        f = collector.file(path)
        assert f.user == "root" and f.mode & 0o007 == 0, f"{path} must not be world-readable"


# --- streaming job and batch timers (Spark master) ---------------------------------------------


@pytest.fixture
def spark_master(platform):
    return platform.host(platform.first("spark_master"))


def test_stream_service_runs_as_spark_and_restarts(spark_master):
    service = spark_master.service("fms-stream")
    assert service.is_running and service.is_enabled
    assert _unit_property(spark_master, "fms-stream", "Restart") == "on-failure"
    assert _unit_property(spark_master, "fms-stream", "User") == "spark"


def test_stream_serves_quality_metrics(spark_master):
    status, body = http(spark_master, f"http://127.0.0.1:{STREAM_METRICS_PORT}/metrics")
    assert status == 200
    names = _metric_names(body)
    for metric in (
        "fms_stream_records_in_total",
        "fms_stream_conservation_errors_total",
        "fms_stream_last_progress_timestamp_seconds",
    ):
        assert metric in names, f"{metric} missing"
    errors = [ln for ln in body.splitlines() if ln.startswith("fms_stream_conservation_errors_total ")]
    assert errors and float(errors[0].split()[1]) == 0


def test_stream_is_a_running_spark_application(spark_master):
    status, body = http(spark_master, f"http://127.0.0.1:{SPARK_MASTER_UI_PORT}/json/")
    assert status == 200
    apps = {a["name"]: a for a in json.loads(body).get("activeapps", [])}
    assert "fms-stream" in apps, f"active Spark applications: {sorted(apps)}"
    assert apps["fms-stream"]["cores"] > 0, "the streaming job has no executor"


def test_hourly_summary_timer_is_scheduled(spark_master):
    timer = spark_master.service("fms-hourly-summary.timer")
    assert timer.is_enabled and timer.is_running
    assert _unit_property(spark_master, "fms-hourly-summary.timer", "NextElapseUSecRealtime")
    assert spark_master.file("/etc/fms/hourly-summary.args").contains("--closed-hours")

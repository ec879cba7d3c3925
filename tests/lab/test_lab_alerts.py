"""Faults on the running lab reach an operator as alerts, and their fixes as resolutions.

Runs last among the lab tests on the converged lab with the pipeline running (the conftest
orders it after test_lab_pipeline.py). The lab's standing alert receiver (fms_tools.lab.alert_receiver,
started by `lab up` where the lab's Alertmanagers post: inventory/lab alertmanager_webhook_urls)
records every delivered alert; the tests inject faults one way an operator would meet them:

* one collector sends a stated share of out-of-range readings: FmsQualityDimensionLow for
  the accuracy dimension (and for no other) is delivered, and resolves once the collector
  sends good readings again;
* a Kafka broker stops: KafkaBrokerDown for that broker is delivered (with under-replication
  where the profile has more than one broker) and resolves once it runs again;
* the streaming job stops: FmsStreamingQueryStalled is delivered; the job is started again.

Last, with every service having run (the hourly job included), every metric name an alert or
recording rule or a Grafana dashboard reads must be among the names the lab's Prometheus
really scraped - the catalogue tests/monitoring checks the rules against is thereby held to
the deployed software.

Each case prints the time from the fault to the delivered notification - the figures the
closing note reports. Every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from fms_jobs.quality.reasons import ReasonCode
from fms_tools.lab import alert_receiver, state
from lab_support import REPO, host_ssh, must, outputs, prometheus_api

pytestmark = [pytest.mark.lab, pytest.mark.slow]

# Fault -> delivered: scrape (15 s) + the rule's `for` (1 m) + evaluation (15 s) + group_wait (10 s),
# with room for a loaded 2-core machine.
FIRE_WITHIN_S = 300
# Fix -> resolution delivered: the 2 m quality window, evaluation, group_interval (1 m).
RESOLVE_WITHIN_S = 600
BAD_SHARE = 0.3
BAD_KIND = "out_of_range"
DRILL_UNIT = "fms-alert-drill-collector"


@dataclass
class Receiver:
    """What the lab's standing alert receiver (fms_tools.lab.alert_receiver) took from Alertmanager."""

    path: Path

    def find(self, alertname: str, status: str, since: float, **labels: str) -> list[alert_receiver.Notice]:
        return [
            n
            for n in alert_receiver.read(self.path, since)
            if n.status == status
            and n.labels.get("alertname") == alertname
            and all(n.labels.get(k) == v for k, v in labels.items())
        ]

    def wait(self, alertname: str, status: str, since: float, within: float, **labels: str) -> float:
        """Seconds from `since` to the first matching notice; fails after `within` seconds."""
        deadline = since + within
        while time.time() < deadline:
            found = self.find(alertname, status, since, **labels)
            if found:
                return found[0].received - since
            time.sleep(2)
        seen = sorted(
            {(n.labels.get("alertname", "?"), n.status) for n in alert_receiver.read(self.path, since)}
        )
        pytest.fail(f"no {status} {alertname} {labels or ''} delivered in {within:.0f}s; received: {seen}")


@pytest.fixture(scope="module")
def receiver(converged) -> Receiver:
    """The receiver `lab up` started on the address the lab's Alertmanagers post to."""
    rec = state.load_lab().get("alert_receiver")
    assert rec and alert_receiver.alive(rec), "lab up must leave the standing alert receiver running"
    assert rec["url"] == alert_receiver.configured().url
    return Receiver(Path(rec["out"]))


def _groups() -> dict[str, list[str]]:
    return outputs()["inventory_groups"]


def test_bad_records_fire_the_quality_alert_of_their_dimension_then_resolve(receiver):
    collector = sorted(_groups()["collector"])[0]
    dimension = ReasonCode(BAD_KIND.upper()).dimension.value
    drill = (
        f"systemctl stop fms-collector && systemd-run --unit={DRILL_UNIT} -p User=fms-collector"
        " -p Group=fms-collector -p RuntimeMaxSec=1800 /opt/fms-jobs/venv/bin/fms-collector"
        f" --config /etc/fms/collector.yml --bad-share {BAD_SHARE} --bad-kinds {BAD_KIND}"
    )
    fault = time.time()
    try:
        must(host_ssh(collector, drill, 180))
        low = receiver.wait("FmsQualityDimensionLow", "firing", fault, FIRE_WITHIN_S, dimension=dimension)
        print(f"\nfault -> delivered: FmsQualityDimensionLow{{{dimension}}} {low:.0f}s ({BAD_SHARE:.0%} bad)")
        others = {
            n.labels.get("dimension")
            for n in receiver.find("FmsQualityDimensionLow", "firing", fault)
            if n.labels.get("dimension") != dimension
        }
        assert not others, f"only {dimension} may fall below its bound, also got {others}"
    finally:
        fixed = time.time()
        host_ssh(collector, f"systemctl stop {DRILL_UNIT}; systemctl start fms-collector", 180)
    good = receiver.wait("FmsQualityDimensionLow", "resolved", fixed, RESOLVE_WITHIN_S, dimension=dimension)
    print(f"fix -> resolved: FmsQualityDimensionLow{{{dimension}}} {good:.0f}s after good readings resumed")


def test_broker_down_alert_then_resolve(receiver):
    broker = sorted(_groups()["kafka"])[-1]
    fault = time.time()
    try:
        must(host_ssh(broker, "systemctl stop kafka", 300))
        down = receiver.wait("KafkaBrokerDown", "firing", fault, FIRE_WITHIN_S, host=broker)
        under = receiver.find("KafkaUnderReplicatedPartitions", "firing", fault)
        print(
            f"\nfault -> delivered: KafkaBrokerDown {down:.0f}s after stopping kafka on {broker}; "
            "KafkaUnderReplicatedPartitions "
            + (f"{under[0].received - fault:.0f}s" if under else "not delivered")
        )
    finally:
        fixed = time.time()
        host_ssh(broker, "systemctl start kafka", 300)
    up = receiver.wait("KafkaBrokerDown", "resolved", fixed, RESOLVE_WITHIN_S, host=broker)
    print(f"fix -> resolved: KafkaBrokerDown {up:.0f}s after starting kafka")


def test_stopping_the_stream_fires_the_stalled_query_alert(receiver):
    master = _groups()["spark_master"][0]
    fault = time.time()
    must(host_ssh(master, "systemctl stop fms-stream", 300))
    try:
        stalled = receiver.wait("FmsStreamingQueryStalled", "firing", fault, FIRE_WITHIN_S)
        print(f"\nfault -> delivered: FmsStreamingQueryStalled {stalled:.0f}s after stopping fms-stream")
    finally:
        # The stream resumes from its checkpoint (the resolution is not awaited: the lab ends here).
        must(host_ssh(master, "systemctl start fms-stream && systemctl is-active fms-stream", 300))


# ---------------------------------------------------------------------------- metric names

RULES_DIR = REPO / "roles" / "prometheus" / "files" / "rules"
DASHBOARDS_DIR = REPO / "roles" / "grafana" / "files" / "dashboards"
# Names the lab cannot export, with the reason; every other name must be scraped.
NOT_IN_THE_LAB = {
    "grafana_": "Grafana is not installed in the lab (no package source here)",
    "fms_collector_api_": "the lab's collectors simulate devices; only the HTTP source calls an API",
    # MirrorMaker 2 runs on the standby (DR) stack only; make drill reads them from DR's Prometheus
    # (tests/lab/test_lab_dr.py).
    "kafka_connect_mirror_": "MirrorMaker 2 runs on the DR standby only (make drill scrapes it there)",
}


def _promql_names():
    """tests/monitoring/promql_names.py: the extractor and the dashboard walk its tests use."""
    spec = importlib.util.spec_from_file_location("promql_names", REPO / "tests/monitoring/promql_names.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _used_metric_names() -> tuple[dict[str, str], set[str]]:
    """{metric name: first place that reads it} over rules and dashboards, and the recorded names."""
    promql = _promql_names()
    names = promql.metric_names
    used: dict[str, str] = {}
    recorded: set[str] = set()
    for path in sorted(RULES_DIR.glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                recorded |= {rule["record"]} if "record" in rule else set()
                for name in names(rule["expr"]):
                    used.setdefault(name, f"{path.name}: {rule.get('alert') or rule.get('record')}")
    for where, expr in promql.dashboard_queries(DASHBOARDS_DIR):
        for name in names(expr):
            used.setdefault(name, where)
    return used, recorded


def _scraped_metric_names() -> set[str]:
    return set(prometheus_api("/api/v1/label/__name__/values")["data"])


def test_alertmanager_delivered_every_notification_to_the_standing_receiver(receiver):
    """No notification of the drills above (nor of the converge before them) failed: the lab's
    Alertmanager always has somebody to tell, so AlertmanagerNotificationsFailing never fires."""
    query = urllib.parse.quote("sum by (integration) (alertmanager_notifications_failed_total)")
    failed = {
        r["metric"].get("integration", "?"): float(r["value"][1])
        for r in prometheus_api(f"/api/v1/query?query={query}")["data"]["result"]
    }
    query = urllib.parse.quote("sum by (integration) (alertmanager_notifications_total)")
    sent = {
        r["metric"].get("integration", "?"): float(r["value"][1])
        for r in prometheus_api(f"/api/v1/query?query={query}")["data"]["result"]
    }
    print(
        f"\nAlertmanager notifications: sent {sent}, failed {failed}; "
        f"the receiver holds {len(alert_receiver.read(receiver.path))} alerts"
    )
    assert sent.get("webhook", 0) > 0, f"no webhook notification counted: {sent}"
    assert failed.get("webhook", 0) == 0, f"webhook notifications failed: {failed}"
    assert not receiver.find("AlertmanagerNotificationsFailing", "firing", 0)


def test_rules_and_dashboards_read_only_metric_names_the_lab_scrapes(receiver):
    used, recorded = _used_metric_names()
    scraped = _scraped_metric_names()
    expected = {
        name: where
        for name, where in used.items()
        if name not in recorded
        and not name.startswith("fms:threshold:")
        and not any(name.startswith(prefix) for prefix in NOT_IN_THE_LAB)
    }
    missing = {name: where for name, where in sorted(expected.items()) if name not in scraped}
    print(
        f"\n{len(used)} metric names read by rules and dashboards; {len(expected)} expected on the lab, "
        f"{len(expected) - len(missing)} scraped; skipped: {sorted(set(used) - set(expected) - recorded)}"
    )
    assert not missing, "read by rules/dashboards but never scraped on the lab:\n" + "\n".join(
        f"  {name}  ({where})" for name, where in missing.items()
    )

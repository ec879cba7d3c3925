"""Alerts seen end to end on the lab: a fault -> Prometheus rule -> Alertmanager -> webhook.

Runs last among the converged-lab modules (after test_lab_pipeline.py), with the pipeline
running. The test owns the webhook receiver the lab's Alertmanager posts to
(inventory/lab/group_vars/all/lab_monitoring.yml: alertmanager_webhook_urls, on the lab bridge's
gateway address). Each case injects one fault, waits (bounded) for the alert to be delivered
firing, removes the fault and waits for it to be delivered resolved; the delay from fault to
delivery is printed for the closing note:

* the simulator sends 30 % out-of-range readings -> FmsQualityDimensionLow{dimension="accuracy"};
* fms-stream stopped -> FmsStreamingQueryStalled;
* the Kafka broker stopped -> KafkaBrokerDown.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from lab import hosts, state
from lab_support import REPO, outputs

pytestmark = [pytest.mark.lab, pytest.mark.slow]

FIRING_BOUND_S = 6 * 60  # rule `for` (1m) + scrape/evaluation (15s each) + group_wait, with margin
RESOLVED_BOUND_S = 8 * 60  # the quality rule averages over 2m; resolved notices go out per group_interval
COLLECTOR_CONFIG = "/etc/fms/collector.yml"
BAD_SHARE = 0.3


def _webhook_url() -> str:
    path = REPO / "inventory" / "lab" / "group_vars" / "all" / "lab_monitoring.yml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))["alertmanager_webhook_urls"][0]


class Receiver:
    """Alertmanager webhook payloads as they arrive, with their arrival time."""

    def __init__(self) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def add(self, payload: dict[str, Any]) -> None:
        with self.lock:
            self.events.append((time.monotonic(), payload))

    def find(
        self, name: str, status: str, since: float, labels: dict[str, str] | None = None
    ) -> float | None:
        """Arrival time of the first notice after `since` carrying alert `name` in `status`."""
        with self.lock:
            for at, payload in self.events:
                if at < since:
                    continue
                for alert in payload.get("alerts", []):
                    lab = alert.get("labels", {})
                    if (
                        lab.get("alertname") == name
                        and alert.get("status") == status
                        and all(lab.get(k) == v for k, v in (labels or {}).items())
                    ):
                        return at
        return None

    def wait(
        self, name: str, status: str, since: float, bound_s: float, labels: dict[str, str] | None = None
    ) -> float:
        deadline = since + bound_s
        while time.monotonic() < deadline:
            at = self.find(name, status, since, labels)
            if at is not None:
                return at - since
            time.sleep(2)
        with self.lock:
            seen = sorted(
                {
                    (a.get("labels", {}).get("alertname"), a.get("status"))
                    for _, p in self.events
                    for a in p.get("alerts", [])
                }
            )
        pytest.fail(
            f"{name} {labels or ''} was not delivered {status} within {bound_s:.0f}s; delivered: {seen}"
        )


@pytest.fixture(scope="module")
def receiver(converged) -> Iterator[Receiver]:
    url = urlsplit(_webhook_url())
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == url.path:
                rec.add(json.loads(body or b"{}"))
            self.send_response(200 if self.path == url.path else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((url.hostname or "", url.port or 80), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def _ssh(group: str, command: str, timeout_s: float = 300) -> str:
    name = outputs()["inventory_groups"][group][0]
    res = hosts.ssh_run(state.load_hosts()[name]["ip"], command, timeout_s=timeout_s)
    assert res.returncode == 0, (
        f"{name}: {command}\nrc={res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    )
    return res.stdout


def _report(case: str, fired_s: float, resolved_s: float) -> None:
    print(
        f"\nalert {case}: delivered firing {fired_s:.0f}s after the fault, "
        f"resolved {resolved_s:.0f}s after the fix"
    )


def test_quality_alert_fires_for_the_accuracy_dimension(receiver):
    edit = (
        "/opt/fms-jobs/venv/bin/python - <<'EOF'\n"
        "import yaml\n"
        f"p = '{COLLECTOR_CONFIG}'\n"
        "c = yaml.safe_load(open(p))\n"
        f"c['simulator']['bad_share'] = {BAD_SHARE}\n"
        "c['simulator']['bad_kinds'] = {'out_of_range': 1.0}\n"
        "open(p, 'w').write(yaml.safe_dump(c, sort_keys=False))\n"
        "EOF\n"
    )
    _ssh(
        "collector",
        f"cp -p {COLLECTOR_CONFIG} {COLLECTOR_CONFIG}.orig && {edit} && systemctl restart fms-collector",
    )
    fault = time.monotonic()
    try:
        fired = receiver.wait(
            "FmsQualityDimensionLow", "firing", fault, FIRING_BOUND_S, {"dimension": "accuracy"}
        )
    finally:
        _ssh("collector", f"mv {COLLECTOR_CONFIG}.orig {COLLECTOR_CONFIG} && systemctl restart fms-collector")
    fixed = time.monotonic()
    resolved = receiver.wait(
        "FmsQualityDimensionLow", "resolved", fixed, RESOLVED_BOUND_S, {"dimension": "accuracy"}
    )
    _report(
        f"FmsQualityDimensionLow{{dimension=accuracy}} ({BAD_SHARE:.0%} out-of-range readings)",
        fired,
        resolved,
    )
    for other in ("completeness", "consistency", "timeliness"):
        assert receiver.find("FmsQualityDimensionLow", "firing", fault, {"dimension": other}) is None, other


def test_stalled_query_alert_when_the_streaming_job_stops(receiver):
    _ssh("spark_master", "systemctl stop fms-stream")
    fault = time.monotonic()
    try:
        fired = receiver.wait("FmsStreamingQueryStalled", "firing", fault, FIRING_BOUND_S)
    finally:
        _ssh("spark_master", "systemctl start fms-stream")
    fixed = time.monotonic()
    # the driver needs its first micro-batch after the restart before progress is reported again
    resolved = receiver.wait("FmsStreamingQueryStalled", "resolved", fixed, RESOLVED_BOUND_S)
    _report("FmsStreamingQueryStalled (fms-stream stopped)", fired, resolved)


def test_broker_down_alert_and_recovery(receiver):
    _ssh("kafka", "systemctl stop kafka", 400)
    fault = time.monotonic()
    try:
        fired = receiver.wait("KafkaBrokerDown", "firing", fault, FIRING_BOUND_S)
    finally:
        _ssh("kafka", "systemctl start kafka", 400)
    fixed = time.monotonic()
    resolved = receiver.wait("KafkaBrokerDown", "resolved", fixed, RESOLVED_BOUND_S)
    _report("KafkaBrokerDown (kafka stopped on the broker)", fired, resolved)

"""The rendered Alertmanager routing and inhibition, exercised by a real
Alertmanager on loopback: alerts are posted to its API (behind the rendered
basic-auth web config) and a webhook receiver started by the test records what
is delivered. Slack and e-mail are replaced by the local webhook (no traffic
leaves the machine); routes, grouping and inhibit rules are the rendered ones."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from conftest import load_yaml


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Receiver(BaseHTTPRequestHandler):
    deliveries: ClassVar[list[dict]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).deliveries.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Receiver.deliveries = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", _Receiver.deliveries
    server.shutdown()
    server.server_close()


@pytest.fixture
def alertmanager(rendered: Path, webhook, tmp_path: Path):
    binary = (
        os.environ.get("FMS_ALERTMANAGER")
        or shutil.which("prometheus-alertmanager")
        or shutil.which("alertmanager")
    )
    if not binary:
        pytest.skip("no alertmanager binary (Debian package prometheus-alertmanager)")
    url, deliveries = webhook
    config = load_yaml(rendered / "alertmanager" / "alertmanager.yml")
    config["global"] = {"resolve_timeout": "5m"}
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    config["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": url, "send_resolved": True}]}
        for r in config["receivers"]
    ]
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--web.config.file={rendered / 'alertmanager' / 'web.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "alertmanager.log").open("w"),
    )
    password = (rendered / "secrets" / "monitoring" / "alertmanager-web.password").read_text().strip()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if _request(f"{base}/-/ready", "admin", password)[0] == 200:
                break
            assert process.poll() is None, (tmp_path / "alertmanager.log").read_text()
            time.sleep(0.3)
        else:
            pytest.fail("Alertmanager did not become ready:\n" + (tmp_path / "alertmanager.log").read_text())
        yield base, password, deliveries
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _request(url: str, user: str = "", password: str = "", data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    if user:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def _alert(alertname: str, severity: str, **labels: str) -> dict:
    return {
        "labels": {"alertname": alertname, "severity": severity, **labels},
        "annotations": {"summary": alertname, "description": "posted by test_alertmanager_live"},
        "startsAt": datetime.now(UTC).isoformat(),
    }


def _delivered(deliveries: list[dict], wait: float = 8.0) -> dict[str, set[str]]:
    time.sleep(wait)
    out: dict[str, set[str]] = {}
    for message in deliveries:
        for alert in message["alerts"]:
            out.setdefault(message["receiver"], set()).add(alert["labels"]["alertname"])
    return out


def test_alertmanager_is_not_anonymous(alertmanager):
    base, password, _ = alertmanager
    assert _request(f"{base}/api/v2/status")[0] == 401
    assert _request(f"{base}/api/v2/status", "admin", "wrong-password")[0] == 401
    assert _request(f"{base}/api/v2/status", "admin", password)[0] == 200


def test_routing_and_inhibition(alertmanager):
    base, password, deliveries = alertmanager
    alerts = [
        # kafka-1's broker is down: the critical alert silences the generic TargetDown of the same target
        _alert("KafkaBrokerDown", "critical", job="kafka", instance="kafka-1:7071", host="kafka-1"),
        _alert("TargetDown", "warning", job="kafka", instance="kafka-1:7071", host="kafka-1"),
        # kafka-2 is down as a host: its service alerts are silenced
        _alert("HostDown", "critical", job="node", instance="kafka-2:9100", host="kafka-2"),
        _alert(
            "KafkaUnderReplicatedPartitions", "warning", job="kafka", instance="kafka-2:7071", host="kafka-2"
        ),
        _alert("TargetDown", "warning", job="kafka", instance="kafka-2:7071", host="kafka-2"),
        # unrelated warning on a healthy host: delivered
        _alert(
            "KafkaUnderReplicatedPartitions", "warning", job="kafka", instance="kafka-3:7071", host="kafka-3"
        ),
        _alert("FmsQualityDimensionLow", "warning", dimension="accuracy", service="pipeline"),
    ]
    status, body = _request(f"{base}/api/v2/alerts", "admin", password, json.dumps(alerts).encode())
    assert status == 200, body
    got = _delivered(deliveries)
    assert got.get("fms-critical") == {"KafkaBrokerDown", "HostDown"}, got
    assert got.get("fms-warning") == {"KafkaUnderReplicatedPartitions", "FmsQualityDimensionLow"}, got
    warned_hosts = {
        a["labels"].get("host")
        for m in deliveries
        if m["receiver"] == "fms-warning"
        for a in m["alerts"]
        if a["labels"]["alertname"] == "KafkaUnderReplicatedPartitions"
    }
    assert warned_hosts == {"kafka-3"}, "kafka-2's alerts must be inhibited by HostDown"

"""The rendered Alertmanager routing and inhibition, exercised by a real
Alertmanager on loopback: alerts are posted to its API (behind the rendered
web config: HTTPS with the host certificate from the site CA, basic auth) and a
webhook receiver started by the test records what is delivered. Slack and
e-mail are replaced by the local webhook (no traffic leaves the machine);
routes, grouping and inhibit rules are the rendered ones.

A real Prometheus with the rendered web config and the rendered client settings
(scheme, tls_config, basic_auth of the alerting and self-scrape sections) then
proves the whole path over TLS: it scrapes itself and Alertmanager and delivers
a firing alert to Alertmanager. Only the targets are moved to loopback, an
address the host certificate names like the node's own."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


def _binary(env_name: str, *names: str) -> str:
    found = os.environ.get(env_name) or next(filter(None, map(shutil.which, names)), None)
    if not found:
        pytest.skip(f"no {names[-1]} binary (Debian package {names[0]}; or set {env_name})")
    return found


@dataclass
class Server:
    base: str  # https://127.0.0.1:<port>
    password: str  # of the user admin
    ca: ssl.SSLContext  # trusts the site CA only

    def get(self, path: str, user: str = "admin", password: str | None = None) -> tuple[int, bytes]:
        password = self.password if password is None else password
        return _request(self.base + path, user, password, context=self.ca)


@pytest.fixture
def site_ca(rendered: Path) -> ssl.SSLContext:
    """A client that trusts the site CA only (the one that issued the rendered host certificate)."""
    return ssl.create_default_context(cafile=str(rendered / "secrets" / "pki" / "ca.crt"))


@contextmanager
def _serve(
    name: str, binary: str, config: Path, rendered: Path, ca: ssl.SSLContext, port: int, *args: str
) -> Iterator[Server]:
    """Run `name` (prometheus or alertmanager) with `config` and its rendered web config (the site
    password, TLS) on loopback until its authenticated readiness probe answers 200 over TLS."""
    password = (rendered / "secrets" / "monitoring" / f"{name}-web.password").read_text().strip()
    server = Server(f"https://127.0.0.1:{port}", password, ca)
    cmd = [
        binary,
        f"--config.file={config}",
        f"--web.config.file={rendered / name / 'web.yml'}",
        f"--web.listen-address=127.0.0.1:{port}",
        *args,
    ]
    log = config.with_suffix(".log")
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if server.get("/-/ready")[0] == 200:
                break
            assert process.poll() is None, log.read_text()
            time.sleep(0.3)
        else:
            pytest.fail(f"{cmd[0]} did not become ready over TLS:\n" + log.read_text())
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def alertmanager(rendered: Path, webhook, site_ca, tmp_path: Path):
    binary = _binary("FMS_ALERTMANAGER", "prometheus-alertmanager", "alertmanager")
    url, deliveries = webhook
    config = load_yaml(rendered / "alertmanager" / "alertmanager.yml")
    config["global"] = {"resolve_timeout": "5m"}
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    config["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": url, "send_resolved": True}]}
        for r in config["receivers"]
    ]
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    config_file, port = tmp_path / "alertmanager.yml", _free_port()
    args = f"--storage.path={tmp_path / 'am-data'}", "--cluster.listen-address="
    with _serve("alertmanager", binary, config_file, rendered, site_ca, port, *args) as am:
        yield am, deliveries


FIRING_RULE = "FmsTlsPathCheck"


@pytest.fixture
def prometheus(rendered: Path, alertmanager, site_ca, tmp_path: Path) -> Iterator[Server]:
    """Prometheus with the rendered web config and the rendered alerting / self-scrape client settings
    (scheme, tls_config, basic_auth), its targets moved to the loopback addresses of the two servers."""
    binary = _binary("FMS_PROMETHEUS", "prometheus")
    am, _ = alertmanager
    port = _free_port()
    config = load_yaml(rendered / "prometheus" / "prometheus.yml")
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    rule = {"alert": FIRING_RULE, "expr": "vector(1)", "labels": {"severity": "warning"}}
    rules = tmp_path / "tls.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "tls-path", "rules": [rule]}]}))
    config["rule_files"] = [str(rules)]
    (alerting,) = config["alerting"]["alertmanagers"]
    alerting["static_configs"] = [{"targets": [urllib.parse.urlsplit(am.base).netloc]}]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["prometheus"]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    jobs["alertmanager"]["static_configs"] = [{"targets": [urllib.parse.urlsplit(am.base).netloc]}]
    config["scrape_configs"] = [jobs["prometheus"], jobs["alertmanager"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    args = (
        f"--storage.tsdb.path={tmp_path / 'prom-data'}",
        # the first notification may leave before Alertmanager is discovered: resend soon, not after 1m
        "--rules.alert.resend-delay=1s",
    )
    with _serve("prometheus", binary, tmp_path / "prometheus.yml", rendered, site_ca, port, *args) as prom:
        yield prom


def _request(
    url: str,
    user: str = "",
    password: str = "",
    data: bytes | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    if user:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as resp:
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
    am, _ = alertmanager
    assert am.get("/api/v2/status", user="")[0] == 401
    assert am.get("/api/v2/status", password="wrong-password")[0] == 401
    assert am.get("/api/v2/status")[0] == 200


def _refuses_plain_http_and_unknown_cas(server: Server) -> None:
    port = urllib.parse.urlsplit(server.base).port
    # Plain HTTP gets Go's "client sent an HTTP request to an HTTPS server" (400), never the API,
    # credentials or not.
    status, body = _request(f"http://127.0.0.1:{port}/-/ready", "admin", server.password)
    assert status == 400 and b"HTTPS" in body, (status, body)
    # A client that does not trust the site CA cannot complete the handshake.
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"{server.base}/-/ready", timeout=5, context=ssl.create_default_context())
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError), refused.value


def test_alertmanager_serves_only_tls_with_the_site_certificate(alertmanager):
    am, _ = alertmanager
    _refuses_plain_http_and_unknown_cas(am)


def test_routing_and_inhibition(alertmanager):
    am, deliveries = alertmanager
    base, password = am.base, am.password
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
    status, body = _request(f"{base}/api/v2/alerts", "admin", password, json.dumps(alerts).encode(), am.ca)
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


# --- Prometheus -> Alertmanager over TLS ------------------------------------------------------------


def test_prometheus_is_not_anonymous(prometheus):
    assert prometheus.get("/api/v1/status/buildinfo", user="")[0] == 401
    assert prometheus.get("/api/v1/status/buildinfo", password="wrong-password")[0] == 401
    assert prometheus.get("/api/v1/status/buildinfo")[0] == 200


def test_prometheus_serves_only_tls_with_the_site_certificate(prometheus):
    _refuses_plain_http_and_unknown_cas(prometheus)


def test_prometheus_reaches_itself_and_alertmanager_over_tls(prometheus, alertmanager):
    """The rendered client settings work end to end: both scrapes are up and a firing alert is delivered."""
    am, deliveries = alertmanager
    deadline = time.monotonic() + 60
    up: dict[str, str] = {}
    delivered: set[str] = set()
    while time.monotonic() < deadline:
        status, body = prometheus.get("/api/v1/query?query=up")
        assert status == 200, body
        up = {r["metric"]["job"]: r["value"][1] for r in json.loads(body)["data"]["result"]}
        delivered = {a["labels"]["alertname"] for m in deliveries for a in m["alerts"]}
        if up == {"prometheus": "1", "alertmanager": "1"} and FIRING_RULE in delivered:
            break
        time.sleep(1)
    status, body = prometheus.get("/api/v1/targets")
    errors = {t["scrapeUrl"]: t["lastError"] for t in json.loads(body)["data"]["activeTargets"]}
    assert up == {"prometheus": "1", "alertmanager": "1"}, errors
    assert all(url.startswith("https://") for url in errors), errors
    status, body = prometheus.get("/api/v1/alertmanagers")
    (active,) = json.loads(body)["data"]["activeAlertmanagers"]
    assert active["url"].startswith(am.base + "/api/v2/alerts"), active
    assert FIRING_RULE in delivered, f"{FIRING_RULE} not delivered through Alertmanager: {deliveries}"

"""The lab's standing alert receiver takes Alertmanager's webhooks and keeps every alert.

The real receiver process (`python -m fms_tools.lab.alert_receiver`, as `lab up` starts it) on a loopback
port: an Alertmanager-shaped notification (version 4, as alertmanager/notify/webhook sends it)
is answered 200 and every alert of it is one JSON line; what is not a webhook is refused with
400 and the receiver goes on serving; `status` derives what is firing now; a receiver this lab
dir started and never recorded is found and stopped by the sweep of `down`.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fms_tools.fmsops import procs
from fms_tools.fmsops.emulator import free_port
from fms_tools.lab import alert_receiver, mirror
from fms_tools.lab.envs import ENVS

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _notification(status: str, *alerts: dict[str, str]) -> dict:
    return {
        "version": "4",
        "status": status,
        "receiver": "fms-critical",
        "groupKey": '{}:{alertname="KafkaBrokerDown"}',
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": "a broker is down"},
                "startsAt": "2026-12-06T18:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": f"fp-{labels['instance']}",
            }
            for labels in alerts
        ],
    }


def _post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with NO_PROXY.open(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def receiver(tmp_path: Path):
    ep = alert_receiver.endpoint_of(f"http://127.0.0.1:{free_port()}/alerts")
    out = tmp_path / "logs" / "alerts.jsonl"
    rec = alert_receiver.start(ep, out, tmp_path / "logs" / "receiver.log", tmp_path)
    try:
        yield ep, out, rec
    finally:
        alert_receiver.stop(rec)
    assert not alert_receiver.alive(rec)


def test_every_alert_of_a_notification_is_one_line(receiver):
    ep, out, _ = receiver
    a = {"alertname": "KafkaBrokerDown", "instance": "kafka-1", "severity": "critical"}
    b = {"alertname": "KafkaBrokerDown", "instance": "kafka-2", "severity": "critical"}
    assert _post(ep.url, json.dumps(_notification("firing", a, b)).encode()) == 200
    assert _post(ep.url, json.dumps(_notification("resolved", a)).encode()) == 200
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(rec["status"], rec["labels"]["instance"]) for rec in lines] == [
        ("firing", "kafka-1"),
        ("firing", "kafka-2"),
        ("resolved", "kafka-1"),
    ]
    assert lines[0]["receiver"] == "fms-critical" and lines[0]["fingerprint"] == "fp-kafka-1"
    notices = alert_receiver.read(out)
    assert alert_receiver.firing_now(notices) == [b], "kafka-1 resolved, kafka-2 still fires"
    assert alert_receiver.read(out, since=lines[2]["received"])[0].status == "resolved"


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"status": "firing"}', b""])
def test_what_is_not_a_webhook_is_refused_and_serving_goes_on(receiver, body):
    ep, out, _ = receiver
    assert _post(ep.url, body) == 400
    labels = {"alertname": "FmsStreamingQueryStalled", "instance": "spark-master-1"}
    assert _post(ep.url, json.dumps(_notification("firing", labels)).encode()) == 200
    assert [n.labels for n in alert_receiver.read(out)] == [labels]


def test_the_sweep_of_down_stops_a_receiver_the_state_lost(tmp_path: Path):
    ep = alert_receiver.endpoint_of(f"http://127.0.0.1:{free_port()}/alerts")
    rec = alert_receiver.start(ep, tmp_path / "alerts.jsonl", tmp_path / "receiver.log", tmp_path)
    assert alert_receiver.answers(ep)
    other = tmp_path / "other-lab"
    assert alert_receiver.sweep(other) == set(), "another lab dir's sweep leaves it alone"
    assert alert_receiver.sweep(tmp_path) == {rec["pid"]}
    assert procs.start_time(rec["pid"]) is None and not alert_receiver.answers(ep)


def test_the_lab_alertmanagers_post_to_a_gateway_the_primary_bridge_carries():
    """`up` serves the receiver only on an address of a lab bridge: the webhook URL the lab's
    Alertmanagers are given must be a gateway of the primary env (where the mirror is too)."""
    ep = alert_receiver.configured()
    primary = ENVS["primary"].network
    assert ipaddress.ip_address(ep.address) in primary, f"{ep.url} is outside {primary}"
    assert ep.address == mirror.configured().address, "the lab machine's one address on the primary bridge"

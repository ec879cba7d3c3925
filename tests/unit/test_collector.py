"""Collector: backoff, circuit breaker, configuration, producer settings, HTTP poller, simulator source."""

from __future__ import annotations

import argparse
import itertools
import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fms_jobs.collector.app import Collector, simulator_config
from fms_jobs.collector.cli import main as collector_main
from fms_jobs.collector.cli import parse_bad_kinds
from fms_jobs.collector.config import (
    PASSWORD_ENV,
    CollectorConfig,
    ConfigError,
    HttpConfig,
    KafkaConfig,
    load_config,
    parse_device_ids,
)
from fms_jobs.collector.metrics import CollectorMetrics
from fms_jobs.collector.producer import RecordProducer, producer_config, redacted
from fms_jobs.collector.resilience import Backoff, BreakerState, CircuitBreaker
from fms_jobs.collector.sources import HttpPoller, SimulatorSource
from fms_jobs.quality.rulebook import QualityRules
from fms_jobs.quality.rules import parse_event_time
from fms_jobs.quality.schema import CREATED_HEADER, SOURCE_HEADER
from fms_jobs.simulator import FleetSimulator, SimulatorConfig
from fms_jobs.simulator.api import FakeFmsApi

# ------------------------------------------------------------------ backoff


def test_backoff_grows_exponentially_with_jitter_bounds() -> None:
    b = Backoff(base_s=0.1, factor=2.0, max_s=2.0)
    rng = random.Random(1)
    for attempt, ceiling in enumerate([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]):
        assert b.ceiling(attempt) == pytest.approx(ceiling)
        for _ in range(200):
            d = b.delay(attempt, rng)
            assert ceiling / 2 <= d <= ceiling
    delays = {round(b.delay(3, rng), 6) for _ in range(50)}
    assert len(delays) > 40, "jitter spreads retries"


def test_backoff_validation() -> None:
    with pytest.raises(ValueError):
        Backoff(base_s=0)
    with pytest.raises(ValueError):
        Backoff(base_s=1, max_s=0.5)


# ------------------------------------------------------------------ circuit breaker


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_breaker_opens_after_consecutive_failures_and_recovers() -> None:
    clock = FakeClock()
    changes: list[BreakerState] = []
    br = CircuitBreaker(failure_threshold=3, reset_timeout_s=10, clock=clock, on_change=changes.append)
    assert br.state is BreakerState.CLOSED and br.allow()
    br.record_failure()
    br.record_failure()
    br.record_success()  # success resets the count
    br.record_failure()
    br.record_failure()
    assert br.state is BreakerState.CLOSED
    br.record_failure()
    assert br.state is BreakerState.OPEN and not br.allow()
    assert br.seconds_until_retry() == pytest.approx(10)
    clock.t += 9.9
    assert not br.allow()
    clock.t += 0.2
    assert br.state is BreakerState.HALF_OPEN
    assert br.allow()  # one trial call
    assert not br.allow()  # only one
    br.record_success()
    assert br.state is BreakerState.CLOSED and br.allow()
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    assert br.opened_count == 1


def test_breaker_half_open_failure_reopens_for_full_timeout() -> None:
    clock = FakeClock()
    br = CircuitBreaker(failure_threshold=1, reset_timeout_s=5, clock=clock)
    br.record_failure()
    clock.t += 5
    assert br.allow() and br.state is BreakerState.HALF_OPEN
    br.record_failure()
    assert br.state is BreakerState.OPEN
    clock.t += 4.9
    assert not br.allow()
    clock.t += 0.1
    assert br.allow()
    assert br.opened_count == 2


def test_breaker_validation() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)


# ------------------------------------------------------------------ configuration


def test_parse_device_ids() -> None:
    assert parse_device_ids("1-3,7, 9-10") == [1, 2, 3, 7, 9, 10]
    assert parse_device_ids([5, 5, 6]) == [5, 6]
    assert parse_device_ids(4) == [4]
    assert parse_device_ids("discover") is None
    for bad in ("3-1", "a-b", "", [1, "x"], 1.5):
        with pytest.raises(ConfigError):
            parse_device_ids(bad)


def test_load_config_file_env_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "c.yml"
    p.write_text(
        yaml.safe_dump(
            {
                "source": "http",
                "kafka": {"topic": "t", "compression": "lz4"},
                "http": {"base_url": "http://api", "devices": "1-10", "interval_s": 5},
            }
        )
    )
    monkeypatch.setenv("FMS_KAFKA_BOOTSTRAP_SERVERS", "k1:9093,k2:9093")
    cfg = load_config(p, {"http.interval_s": 2.0, "metrics.port": 0})
    assert cfg.source == "http" and cfg.kafka.topic == "t" and cfg.kafka.compression == "lz4"
    assert cfg.kafka.bootstrap_servers == "k1:9093,k2:9093"
    assert cfg.http.interval_s == 2.0 and cfg.metrics.port == 0


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"colour": 1}, "unknown setting"),
        ({"kafka": {"colour": 1}}, r"kafka\.colour: unknown setting"),
        ({"kafka": 5}, "must be a mapping"),
        ({"source": "carrier-pigeon"}, "source must be"),
        ({"kafka": {"security_protocol": "TLS"}}, "security_protocol must be one of"),
        ({"kafka": {"security_protocol": "SASL_SSL"}}, "sasl_username is required"),
        ({"kafka": {"security_protocol": "SASL_SSL", "sasl_username": "u"}}, "SASL password missing"),
        ({"kafka": {"compression": "brotli"}}, "compression must be one of"),
        ({"kafka": {"acks": "1"}}, "idempotence requires acks=all"),
        ({"source": "http", "http": {"url_template": "{base_url}/x"}}, "must contain {device_id}"),
        ({"source": "http", "http": {"devices": "9-1"}}, "reversed"),
        ({"simulator": {"devices": 0}}, "devices must be >= 1"),
        ({"simulator": {"rate": -5}}, "rate must be > 0"),
        ({"simulator": {"bad_share": 2}}, "bad_share"),
        ({"simulator": {"bad_kinds": {"out_of_rang": 1}}}, r"unknown kind\(s\) \['out_of_rang'\]"),
        ({"simulator": {"bad_kinds": {"duplicate": 0}}}, "positive sum"),
        ({"simulator": {"bad_kinds": {"duplicate": -1, "late_event": 2}}}, "weights must be >= 0"),
    ],
)
def test_config_errors(
    tmp_path: Path, doc: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    p = tmp_path / "c.yml"
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=message):
        load_config(p)


def test_bad_kinds_option_parses_names_and_weights() -> None:
    assert parse_bad_kinds("out_of_range") == {"out_of_range": 1.0}
    assert parse_bad_kinds("duplicate=2, late_event=0.5") == {"duplicate": 2.0, "late_event": 0.5}
    for bad in ("", "duplicate=x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_bad_kinds(bad)


def test_bad_kinds_option_reaches_the_simulator(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--bootstrap-servers", "127.0.0.1:9", "--security-protocol", "PLAINTEXT", "--print-config"]
    assert collector_main([*argv, "--bad-share", "0.3", "--bad-kinds", "out_of_range"]) == 0
    sim = json.loads(capsys.readouterr().out)["simulator"]
    assert sim["bad_share"] == 0.3 and sim["bad_kinds"] == {"out_of_range": 1.0}
    assert collector_main([*argv, "--bad-kinds", "nope"]) == 1
    assert "unknown kind(s) ['nope']" in capsys.readouterr().err


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("kafka: [")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)


def test_sasl_ssl_producer_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    k = KafkaConfig(
        bootstrap_servers="k1:9093",
        security_protocol="SASL_SSL",
        sasl_username="fms-collector",
        sasl_password_file=str(pw),
        ssl_ca_location="/etc/fms/tls/ca.crt",
        extra={"socket.keepalive.enable": True},
    )
    conf = producer_config(k)
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "fms-collector" and conf["sasl.password"] == "s3cret"
    assert conf["ssl.ca.location"] == "/etc/fms/tls/ca.crt"
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    assert conf["acks"] == "all" and conf["enable.idempotence"] is True
    assert conf["compression.type"] == "zstd" and conf["linger.ms"] == 20
    assert conf["socket.keepalive.enable"] is True
    assert redacted(conf)["sasl.password"] == "***"
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    k2 = KafkaConfig(security_protocol="SASL_PLAINTEXT", sasl_username="u")
    assert producer_config(k2)["sasl.password"] == "from-env"
    assert "ssl.ca.location" not in producer_config(k2)


def test_producer_settings_accepted_by_librdkafka() -> None:
    from confluent_kafka import Producer

    p = Producer(producer_config(KafkaConfig(bootstrap_servers="127.0.0.1:1")))  # raises on a bad key
    p.poll(0)


# ------------------------------------------------------------------ producer wrapper


class FakeMessage:
    def __init__(self, ts: int) -> None:
        self._ts = ts

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)


class FakeProducer:
    def __init__(self, conf: dict[str, Any], fail_every: int = 0, full_first: int = 0) -> None:
        self.conf = conf
        self.sent: list[dict[str, Any]] = []
        self.pending: list[tuple[Callable[..., None], int]] = []
        self.fail_every = fail_every
        self.full = full_first

    def produce(self, topic: str, **kw: Any) -> None:
        if self.full > 0:
            self.full -= 1
            raise BufferError("queue full")
        self.sent.append({"topic": topic, **kw})
        self.pending.append((kw["on_delivery"], kw["timestamp"]))

    def poll(self, timeout: float = 0) -> int:
        n = 0
        while self.pending:
            cb, ts = self.pending.pop(0)
            n += 1
            err = "boom" if self.fail_every and len(self.sent) % self.fail_every == 0 and n == 1 else None
            cb(err, FakeMessage(ts))
        return n

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0

    def __len__(self) -> int:
        return len(self.pending)


def test_record_producer_headers_key_timestamp_and_metrics() -> None:
    m = CollectorMetrics()
    fakes: list[FakeProducer] = []

    def factory(conf: dict[str, Any]) -> FakeProducer:
        fakes.append(FakeProducer(conf, full_first=2))
        return fakes[-1]

    rp = RecordProducer(KafkaConfig(topic="fms.sensor.raw"), m, factory)
    rp.send(17, b"{}", 1_700_000_000_123, "simulator")
    assert rp.flush() == 0
    msg = fakes[0].sent[0]
    assert msg["topic"] == "fms.sensor.raw" and msg["key"] == b"17" and msg["timestamp"] == 1_700_000_000_123
    assert dict(msg["headers"]) == {CREATED_HEADER: b"1700000000123", SOURCE_HEADER: b"simulator"}
    assert rp.delivered == 1 and rp.failed == 0
    assert m.registry.get_sample_value("fms_collector_records_sent_total") == 1
    assert m.registry.get_sample_value("fms_collector_records_produced_total") == 1


# ------------------------------------------------------------------ HTTP poller


class Sink:
    def __init__(self) -> None:
        self.records: list[tuple[int, bytes, int, str]] = []
        self.lock = threading.Lock()

    def __call__(self, device_id: int, value: bytes, created_ms: int, source: str) -> None:
        with self.lock:
            self.records.append((device_id, value, created_ms, source))


class ScriptedResponse:
    def __init__(self, code: int, body: bytes = b"{}") -> None:
        self.status_code = code
        self.content = body

    def json(self) -> Any:
        import json

        return json.loads(self.content)


class ScriptedSession:
    """Answers from a script: an int status, bytes (200) or an exception instance."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.calls: list[str] = []

    def get(self, url: str, timeout: float) -> ScriptedResponse:
        self.calls.append(url)
        item = self.script.pop(0) if self.script else 200
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, bytes):
            return ScriptedResponse(200, item)
        return ScriptedResponse(item)


class ReadTimeout(Exception):
    pass


def poller(script: list[Any], **http: Any) -> tuple[HttpPoller, ScriptedSession, Sink, list[float]]:
    sleeps: list[float] = []
    cfg = HttpConfig(**{"devices": [1], "retries": 3, "backoff_base_s": 0.1, **http})
    session = ScriptedSession(script)
    sink = Sink()
    clock = FakeClock()
    p = HttpPoller(
        cfg, sink, CollectorMetrics(), session=session, clock=clock, sleep=sleeps.append, rng=random.Random(0)
    )
    return p, session, sink, sleeps


def test_poller_retries_with_backoff_then_succeeds() -> None:
    p, session, sink, sleeps = poller([500, ConnectionError("refused"), ReadTimeout(), b'{"a":1}'])
    assert p.poll_device(1)
    assert len(session.calls) == 4 and session.calls[0].endswith("/devices/1/latest")
    assert len(sleeps) == 3
    for attempt, d in enumerate(sleeps):
        ceiling = 0.1 * 2**attempt
        assert ceiling / 2 <= d <= ceiling
    assert sink.records[0][1] == b'{"a":1}' and sink.records[0][3] == "http"
    reg = p.metrics.registry
    assert reg.get_sample_value("fms_collector_api_errors_total", {"reason": "http_5xx"}) == 1
    assert reg.get_sample_value("fms_collector_api_errors_total", {"reason": "connection"}) == 1
    assert reg.get_sample_value("fms_collector_api_errors_total", {"reason": "timeout"}) == 1
    assert reg.get_sample_value("fms_collector_api_request_duration_seconds_count") == 4


def test_poller_gives_up_after_retries() -> None:
    p, session, sink, sleeps = poller([500] * 10, retries=2, breaker_failure_threshold=100)
    assert not p.poll_device(1)
    assert len(session.calls) == 3 and len(sleeps) == 2 and not sink.records


def test_poller_404_is_not_retried_nor_a_breaker_failure() -> None:
    p, session, _sink, _ = poller([404] * 10, breaker_failure_threshold=1)
    for _ in range(5):
        assert not p.poll_device(1)
    assert len(session.calls) == 5
    assert p.breaker.state is BreakerState.CLOSED


def test_poller_breaker_opens_and_stops_calls() -> None:
    p, session, _sink, _ = poller([503] * 100, retries=1, breaker_failure_threshold=4)
    p.poll_device(1)
    p.poll_device(1)
    assert p.breaker.state is BreakerState.OPEN
    calls = len(session.calls)
    for _ in range(10):
        assert p.fetch(1).status == "breaker_open"
    assert len(session.calls) == calls, "no request while the breaker is open"
    assert p.metrics.registry.get_sample_value("fms_collector_circuit_breaker_state") == 2


def test_poller_skips_unchanged_readings() -> None:
    p, _, sink, _ = poller([b"same", b"same", b"new"])
    assert p.poll_device(1) and not p.poll_device(1) and p.poll_device(1)
    assert [r[1] for r in sink.records] == [b"same", b"new"]
    assert p.metrics.registry.get_sample_value("fms_collector_unchanged_skipped_total") == 1


def test_poller_against_fake_api_with_outage(rules: QualityRules) -> None:
    fleet = FleetSimulator(SimulatorConfig(devices=20, interval_s=0.2), rules)
    with FakeFmsApi(fleet) as api:
        sink = Sink()
        cfg = HttpConfig(
            base_url=api.url,
            devices="discover",
            interval_s=0.25,
            timeout_s=2,
            retries=1,
            backoff_base_s=0.01,
            breaker_failure_threshold=3,
            breaker_reset_s=0.3,
            workers=4,
        )
        p = HttpPoller(cfg, sink, CollectorMetrics())
        stop = threading.Event()
        t = threading.Thread(target=p.run, args=(stop, 6.0), daemon=True)
        t.start()
        deadline = time.monotonic() + 5
        while len({r[0] for r in sink.records}) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {r[0] for r in sink.records} == set(range(1, 21))
        api.outage = True
        deadline = time.monotonic() + 5
        while p.breaker.opened_count == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.breaker.opened_count >= 1
        during = api.requests
        time.sleep(0.2)
        assert api.requests - during <= 3, "open breaker throttles the API"
        api.outage = False
        before = len(sink.records)
        deadline = time.monotonic() + 5
        while len(sink.records) <= before + 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        t.join(timeout=10)
        assert not t.is_alive()
        assert len(sink.records) > before + 20, "recovers after the outage"
        assert p.breaker.state is BreakerState.CLOSED


# ------------------------------------------------------------------ simulator source and the collector


class _MovedClock:
    """A monotonic clock that moves only when the source waits or a record is handed to the sink:
    the pacing is then checked against the rate, not against the CPU a loaded machine gives it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _ClockStop(threading.Event):
    def __init__(self, clock: _MovedClock) -> None:
        super().__init__()
        self.clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        self.clock.now += timeout or 0.0
        return self.is_set()


def test_simulator_source_paces_to_rate(rules: QualityRules) -> None:
    fleet = FleetSimulator(SimulatorConfig(devices=40, interval_s=40 / 400, bad_share=0.1, seed=1), rules)
    sink = Sink()
    m = CollectorMetrics()
    clock = _MovedClock()
    sent = SimulatorSource(fleet, sink, m, clock=clock).run(_ClockStop(clock), duration_s=1.0)
    assert 399 <= sent <= 401, "one second at 400 records/s"
    assert clock.now == pytest.approx(1001.0, abs=0.01), "it waited out the second instead of spinning"
    assert len(sink.records) == sent
    bad = sum(v for k, v in fleet.counts.items() if k != "good")
    assert (
        sum(
            m.registry.get_sample_value("fms_collector_bad_records_injected_total", {"kind": k}) or 0
            for k in fleet.counts
            if k != "good"
        )
        == bad
    )


def test_simulator_source_catches_up_after_a_stall_in_bounded_bursts(rules: QualityRules) -> None:
    # A 3-second stall (GC pause, a starved CPU) at 2,000 records/s: the source owes 6,000 records;
    # it pays them back in bursts of at most 1,000 (it reads the clock, stop and the deadline between
    # bursts) and ends the run on the rate's total, not ahead of it.
    fleet = FleetSimulator(SimulatorConfig(devices=20, interval_s=20 / 2000, bad_share=0.0, seed=2), rules)
    sink = Sink()
    sent_at_each_clock_read: list[int] = []

    class StallingClock(_MovedClock):
        def __call__(self) -> float:
            sent_at_each_clock_read.append(len(sink.records))
            if len(sink.records) == 100 and self.now < 1003:
                self.now += 3.0
            return self.now

    clock = StallingClock()
    sent = SimulatorSource(fleet, sink, CollectorMetrics(), clock=clock).run(
        _ClockStop(clock), duration_s=5.0
    )
    assert 9_999 <= sent <= 10_001, "5 s at 2,000 records/s, stall included"
    bursts = [b - a for a, b in itertools.pairwise(sent_at_each_clock_read)]
    assert max(bursts) == 1_000
    assert sum(n for n in bursts if n > 1) >= 5_900, "the 6,000 owed records came in bursts"


def test_collector_with_fake_producer(rules: QualityRules) -> None:
    cfg = CollectorConfig(source="simulator", max_records=500)
    cfg.simulator.devices = 50
    cfg.simulator.rate = 5000
    assert simulator_config(cfg).interval_s == pytest.approx(0.01)
    fakes: list[FakeProducer] = []
    c = Collector(cfg, producer_factory=lambda conf: fakes.append(FakeProducer(conf)) or fakes[-1])
    summary = c.run()
    assert summary.ok and summary.produced == 500 and summary.delivered == 500
    keys = {m["key"] for m in fakes[0].sent}
    assert keys == {str(i).encode() for i in range(1, 51)}


def test_run_time_failure_exits_2_so_the_unit_restarts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Collector, stop: threading.Event) -> None:
        raise OSError("Kafka client state corrupted")

    monkeypatch.setattr(Collector, "run", broken)
    argv = ["--bootstrap-servers", "127.0.0.1:9", "--security-protocol", "PLAINTEXT", "--metrics-port", "0"]
    assert collector_main(argv) == 2


def test_clock_offset_moves_event_and_creation_time(rules: Any) -> None:
    """--clock-offset-seconds: a collector whose clock runs a day ahead (the lab's wrong-clock drill)."""
    from fms_jobs.collector.cli import build_parser

    args = build_parser().parse_args(["--clock-offset-seconds", "86400"])
    assert getattr(args, "simulator.clock_offset_s") == 86400.0
    cfg = CollectorConfig(source="simulator", max_records=20)
    cfg.simulator.clock_offset_s = 86400.0
    cfg.simulator.rate = 1000
    sent: list[tuple[bytes, int]] = []
    fleet = FleetSimulator(simulator_config(cfg), rules)
    source = SimulatorSource(
        fleet, lambda _d, v, ts, _s: sent.append((v, ts)), CollectorMetrics(), 86_400_000
    )
    source.run(threading.Event(), max_records=20)
    now = time.time() * 1000
    for value, created in sent:
        event_ms = parse_event_time(json.loads(value)["time"]) // 1000
        assert abs(created - (now + 86_400_000)) < 60_000
        assert abs(event_ms - (now + 86_400_000)) < 60_000

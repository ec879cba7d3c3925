"""Device simulator: determinism, realistic signals, bad-record share and kinds, fake FMS API."""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest
from fms_jobs.quality.rulebook import QualityRules
from fms_jobs.quality.rules import evaluate
from fms_jobs.simulator import ALL_KINDS, GOOD, BadKind, FleetSimulator, SimulatorConfig
from fms_jobs.simulator.api import FakeFmsApi
from fms_jobs.simulator.devices import DeviceModel, DeviceProfile, Health, format_time
from pipeline_testlib import T0_MS


def fleet(rules: QualityRules, **kw: object) -> FleetSimulator:
    cfg = SimulatorConfig(**{"start_ms": T0_MS, **kw})  # type: ignore[arg-type]
    return FleetSimulator(cfg, rules)


def test_same_seed_same_stream(rules: QualityRules) -> None:
    a = [r.value for r in fleet(rules, devices=50, bad_share=0.2, seed=9).records(3000)]
    b = [r.value for r in fleet(rules, devices=50, bad_share=0.2, seed=9).records(3000)]
    c = [r.value for r in fleet(rules, devices=50, bad_share=0.2, seed=10).records(3000)]
    assert a == b
    assert a != c


def test_round_robin_timing(rules: QualityRules) -> None:
    sim = fleet(rules, devices=4, interval_s=10.0)
    recs = list(sim.records(8))
    assert [r.device_id for r in recs] == [1, 2, 3, 4, 1, 2, 3, 4]
    assert [r.event_ms - T0_MS for r in recs] == [0, 2500, 5000, 7500, 10000, 12500, 15000, 17500]
    assert sim.rate_per_s == pytest.approx(0.4)
    assert json.loads(recs[0].value)["time"] == "2024-01-15T14:30:00Z"


def test_format_time() -> None:
    assert format_time(T0_MS) == "2024-01-15T14:30:00Z"
    assert format_time(T0_MS + 7) == "2024-01-15T14:30:00.007Z"


def test_scales_to_thousands_of_devices(rules: QualityRules) -> None:
    sim = fleet(rules, devices=5000, interval_s=1.0)
    recs = list(sim.records(10_000))
    assert len({r.device_id for r in recs}) == 5000
    keys = {(r.device_id, r.event_ms) for r in recs}
    assert len(keys) == 10_000  # (device, time) unique for good records


def test_good_records_always_pass(rules: QualityRules) -> None:
    # high failure rate so degradation and failures are exercised
    sim = fleet(rules, devices=10, interval_s=30.0, failure_rate_per_day=24.0)
    recs = list(sim.records(20_000))
    fails = 0
    for r in recs:
        ev = evaluate(r.value, r.created_ms, rules)
        assert ev.candidate and not ev.flags, (r.value, ev.primary, ev.flags)
        fails += json.loads(r.value)["isFail"]
    assert 0 < fails < len(recs) // 2


def test_degradation_precedes_failure() -> None:
    dev = DeviceModel(1, seed=5, profile=DeviceProfile(failure_rate_per_day=50.0))
    temps: list[float] = []
    states: list[Health] = []
    t = T0_MS
    for _ in range(20_000):
        temps.append(dev.reading(t)["sensor1"])
        states.append(dev.health)
        t += 10_000
    first_fail = states.index(Health.FAILED)
    degr = [i for i in range(first_fail) if states[i] is Health.DEGRADING]
    assert degr, "a failure must be preceded by degradation"
    start = degr[0]
    before = sum(temps[max(0, start - 30) : start]) / len(temps[max(0, start - 30) : start])
    just_before = sum(temps[first_fail - 5 : first_fail]) / 5
    assert just_before > before + 20, "temperature climbs while degrading"
    assert Health.NORMAL in states[first_fail:], "failed devices get repaired"


def test_daily_cycle_and_noise() -> None:
    dev = DeviceModel(3, seed=1, profile=DeviceProfile(failure_rate_per_day=0.0))
    hourly = [dev.reading(T0_MS + h * 3_600_000)["sensor1"] for h in range(48)]
    spread = max(hourly) - min(hourly)
    assert 3.0 < spread < 30.0
    assert len(set(hourly)) > 40


@pytest.mark.parametrize("share", [0.0, 0.05, 0.5])
def test_bad_share(rules: QualityRules, share: float) -> None:
    n = 20_000
    sim = fleet(rules, devices=100, interval_s=1.0, bad_share=share, seed=11)
    counts = Counter(r.kind for r in sim.records(n))
    bad = n - counts[GOOD]
    sd = math.sqrt(n * share * (1 - share)) if share else 0
    assert abs(bad - n * share) <= 5 * sd + 1
    if share:
        assert set(counts) - {GOOD} == {k.value for k in ALL_KINDS}
    assert sim.counts == dict(counts)


def test_kind_weights(rules: QualityRules) -> None:
    sim = fleet(rules, devices=10, bad_share=1.0, bad_kinds={"not_utf8": 1.0, "oversized": 3.0})
    counts = Counter(r.kind for r in sim.records(4000))
    assert set(counts) == {"not_utf8", "oversized"}
    assert 2.5 < counts["oversized"] / counts["not_utf8"] < 3.5


@pytest.mark.parametrize("kind", [k for k in ALL_KINDS if k not in (BadKind.DUPLICATE, BadKind.OUT_OF_ORDER)])
def test_each_stateless_kind_fails_its_rule(rules: QualityRules, kind: BadKind) -> None:
    sim = fleet(rules, devices=7, bad_share=1.0, bad_kinds={kind.value: 1.0}, seed=2)
    for r in sim.records(300):
        ev = evaluate(r.value, r.created_ms, rules)
        got = ev.primary.reason if ev.primary else (ev.flags[0] if ev.flags else None)
        assert got is kind.reason, (r.value[:200], got)


def test_duplicates_and_out_of_order_kinds(rules: QualityRules) -> None:
    sim = fleet(rules, devices=5, bad_share=0.3, bad_kinds={"duplicate": 1.0, "out_of_order": 1.0}, seed=4)
    recs = list(sim.records(3000))
    good_keys = {(r.device_id, r.event_ms) for r in recs if r.kind == GOOD}
    dups = [r for r in recs if r.kind == "duplicate"]
    ooo = [r for r in recs if r.kind == "out_of_order"]
    assert dups and ooo
    originals = {r.value for r in recs if r.kind == GOOD}
    assert all(r.value in originals for r in dups)
    assert all((r.device_id, r.event_ms) not in good_keys for r in ooo)


def test_invalid_config(rules: QualityRules) -> None:
    with pytest.raises(ValueError, match="devices"):
        FleetSimulator(SimulatorConfig(devices=0), rules)
    with pytest.raises(ValueError, match="bad_share"):
        FleetSimulator(SimulatorConfig(bad_share=1.5), rules)
    with pytest.raises(ValueError, match="unknown bad kind"):
        FleetSimulator(SimulatorConfig(bad_kinds={"gremlins": 1.0}), rules)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_fake_api_serves_latest_readings(rules: QualityRules) -> None:
    sim = FleetSimulator(SimulatorConfig(devices=3, interval_s=0.05), rules)
    with FakeFmsApi(sim) as api:
        code, body = _get(f"{api.url}/devices")
        assert code == 200 and json.loads(body) == {"devices": [1, 2, 3]}
        code, body = _get(f"{api.url}/devices/2/latest")
        assert code == 200
        reading = json.loads(body)
        assert reading["DeviceId"] == 2
        assert evaluate(body, int(1000 * time.time()), rules).candidate
        assert _get(f"{api.url}/devices/99/latest")[0] == 404
        assert _get(f"{api.url}/nothing")[0] == 404
        api.outage = True
        assert _get(f"{api.url}/devices/1/latest")[0] == 503
        api.outage = False
        api.error_rate = 1.0
        assert _get(f"{api.url}/devices/1/latest")[0] == 500
        assert api.requests == 6


def test_latest_advances_with_time(rules: QualityRules) -> None:
    sim = FleetSimulator(SimulatorConfig(devices=2, interval_s=10.0, start_ms=T0_MS), rules)
    a = sim.latest(1, T0_MS + 1)
    b = sim.latest(1, T0_MS + 9_000)
    c = sim.latest(1, T0_MS + 10_000)
    assert a is not None and b is not None and c is not None
    assert a.value == b.value  # same reading within one interval
    assert c.event_ms == T0_MS + 10_000
    assert sim.latest(7, T0_MS) is None


def test_maintenance_repairs_a_degrading_device_before_it_fails() -> None:
    """The closed loop's lever: a maintenance request returns a degrading device to NORMAL."""
    dev = DeviceModel(1, seed=5, profile=DeviceProfile(failure_rate_per_day=50.0))
    t = T0_MS
    while dev.health is not Health.DEGRADING:
        dev.reading(t)
        t += 10_000
    assert dev.request_maintenance(t) is True
    assert dev.health is Health.NORMAL and dev.planned_repairs == 1
    reading = dev.reading(t + 10_000)
    assert reading["isFail"] is False
    # a failed device is being repaired already: nothing to do
    while dev.health is not Health.FAILED:
        t += 10_000
        dev.reading(t)
    assert dev.request_maintenance(t) is False and dev.health is Health.FAILED


def test_maintenance_keeps_a_normal_device_on_its_course() -> None:
    a = DeviceModel(7, seed=3, profile=DeviceProfile(failure_rate_per_day=0.0))
    b = DeviceModel(7, seed=3, profile=DeviceProfile(failure_rate_per_day=0.0))
    ra = [a.reading(T0_MS + i * 10_000) for i in range(50)]
    rb = [b.reading(T0_MS + i * 10_000) for i in range(25)]
    assert b.request_maintenance(T0_MS + 25 * 10_000) is False
    rb += [b.reading(T0_MS + i * 10_000) for i in range(25, 50)]
    assert ra == rb


def test_fleet_profile_knobs(rules: QualityRules) -> None:
    sim = fleet(rules, devices=2, degradation_minutes=(5.0, 6.0), failure_minutes=(1.0, 2.0))
    assert sim.devices[0].profile.degradation_minutes == (5.0, 6.0)
    assert sim.devices[0].profile.failure_minutes == (1.0, 2.0)
    with pytest.raises(ValueError, match="degradation_minutes"):
        FleetSimulator(SimulatorConfig(degradation_minutes=(10.0, 5.0)), rules)


def test_api_maintenance_request(rules: QualityRules) -> None:
    sim = fleet(rules, devices=3, seed=1)
    with FakeFmsApi(sim) as api:
        req = urllib.request.Request(f"{api.url}/devices/2/maintenance", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 202
            assert json.loads(resp.read()) == {"device": 2, "repaired": False}
        assert sim.device(2) is not None and sim.device(2).maintenance_requests == 1  # type: ignore[union-attr]
        bad = urllib.request.Request(f"{api.url}/devices/99/maintenance", data=b"", method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bad, timeout=5)
        assert e.value.code == 404

"""Failure prediction (issue 16): label, feature and alarm rules on tiny hand-made frames, thresholds."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fms_jobs.prediction.benchmark import exact_auc
from fms_jobs.prediction.evaluate import choose_threshold
from fms_jobs.prediction.fleet import StreamAnomalyScorer
from fms_jobs.quality.rulebook import QualityRules
from fms_jobs.quality.schema import DEVICE_ID, IS_FAIL, PROCESSED_COLUMN, READINGS, TIME

os.environ["TZ"] = "UTC"
time.tzset()
T0 = datetime(2026, 12, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEV, TS, FAILED = PROCESSED_COLUMN[DEVICE_ID], PROCESSED_COLUMN[TIME], PROCESSED_COLUMN[IS_FAIL]
COLS = [DEV, TS, *[PROCESSED_COLUMN[r] for r in READINGS], FAILED]
NORMAL = {"temperature": 50.0, "humidity": 40.0, "pressure": 80.0, "motor1_rpm": 1200.0, "motor2_rpm": 850.0}
NORMAL["motor3_rpm"] = 1100.0


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    from fms_jobs.sparkutil.session import build_session

    s = build_session("fms-unit-prediction", "local[1]", local_test=True)
    yield s
    s.stop()


def frame(spark: Any, rows: list[tuple[int, int, dict[str, float], bool]]) -> Any:
    """(device, minute, readings overriding NORMAL, is_fail) -> a processed frame."""
    data = []
    for dev, minute, over, failed in rows:
        vals = {**NORMAL, **over}
        data.append((dev, T0 + timedelta(minutes=minute), *[vals[c] for c in COLS[2:-1]], failed))
    schema = (
        f"{DEV} int, {TS} timestamp, " + ", ".join(f"{c} double" for c in COLS[2:-1]) + f", {FAILED} boolean"
    )
    return spark.createDataFrame(data, schema)


def by_minute(df: Any, dev: int, col: str) -> dict[int, Any]:
    t0 = T0.replace(tzinfo=None)  # Spark hands timestamps back naive, in the session zone (UTC)
    return {int((r[TS] - t0).total_seconds() // 60): r[col] for r in df.where(f"{DEV} = {dev}").collect()}


# ------------------------------------------------------------------ labels
@pytest.mark.spark
def test_label_is_a_later_failure_of_the_same_device_within_the_horizon(spark: Any) -> None:
    from fms_jobs.prediction.labels import FAIL_START, LABEL, MINUTES_TO_FAILURE, add_labels

    rows = [(1, m, {}, 40 <= m < 50) for m in range(80)]  # fails at minute 40 for 10 minutes
    rows += [(2, m, {}, False) for m in range(6)]  # too short a future: every label censored
    rows += [(3, m, {}, m < 3) for m in range(51)]  # failed at the start of the data
    out = add_labels(frame(spark, rows), horizon_min=30)
    label = by_minute(out, 1, LABEL)
    assert all(label[m] == 0.0 for m in range(10))  # failure 31..40 min away
    assert all(label[m] == 1.0 for m in range(10, 40))
    assert all(label[m] is None for m in range(40, 50))  # failed: not a prediction
    assert all(label[m] is None for m in range(50, 80))  # nothing seen 30 min ahead: censored
    mtf = by_minute(out, 1, MINUTES_TO_FAILURE)
    assert mtf[10] == 30.0 and mtf[39] == 1.0 and mtf[45] is None
    start = by_minute(out, 1, FAIL_START)
    assert [m for m, v in start.items() if v] == [40]
    assert set(by_minute(out, 2, LABEL).values()) == {None}
    l3 = by_minute(out, 3, LABEL)
    assert [m for m, v in by_minute(out, 3, FAIL_START).items() if v] == [0]
    assert all(l3[m] == 0.0 for m in range(3, 21)) and l3[21] is None
    # another device's failure never labels this one
    other = add_labels(frame(spark, [(1, m, {}, False) for m in range(40)] + [(2, 20, {}, True)]), 30)
    assert 1.0 not in by_minute(other, 1, LABEL).values()


# ------------------------------------------------------------------ features
SMALL = dict(
    interval_s=60.0,
    level_minutes=(1, 2),
    slope_minutes=(4,),
    vol_minutes=2,
    baseline_end_min=5,
    baseline_start_min=10,
    min_baseline_minutes=3,
)


@pytest.mark.spark
def test_features_against_the_devices_own_baseline(spark: Any) -> None:
    from fms_jobs.prediction.features import SCORABLE, SINCE_FAILURE, FeatureSpec, add_features

    spec = FeatureSpec(**SMALL)  # one record per minute
    # device 1: temperature 50, then from minute 21 a ramp of +2 per minute
    rows = [(1, m, {"temperature": 50.0 + (2.0 * (m - 20) if m > 20 else 0.0)}, False) for m in range(30)]
    # device 2: flat, but failed (stalled, hot) in minutes 12-13
    rows += [
        (2, m, {"temperature": 150.0, "motor1_rpm": 0.0} if 12 <= m <= 13 else {}, 12 <= m <= 13)
        for m in range(30)
    ]
    out = add_features(frame(spark, rows), spec).cache()
    assert out.count() == 60
    f = {c: by_minute(out, 1, c) for c in [*spec.names, SCORABLE]}
    # minute 25: temperature 60; the baseline (minutes 16-20) is 50 with no spread -> min stddev 0.5
    assert f["temperature_dev_1m"][25] == pytest.approx((60 - 50) / 0.5)
    assert f["temperature_dev_2m"][25] == pytest.approx((59 - 50) / 0.5)
    assert f["temperature_slope_4m"][25] == pytest.approx((59 - 55) / 2 / 0.5)  # newer vs older half
    assert f["temperature_rate_4m"][25] == pytest.approx(2.0)  # degC per minute
    assert f["temperature_vol_2m"][25] == pytest.approx(1.0 / 0.5)  # std of (58, 60)
    assert f["temperature_delta_2m"][25] == pytest.approx(9.0)
    assert f["motor1_rpm_dev_1m"][25] == 0.0 and f["motor3_rpm_slope_4m"][25] == 0.0
    assert f[SINCE_FAILURE][25] == 10.0  # no failure seen: capped at the baseline's start
    # the whole baseline must be behind a record before it is scored
    assert not any(f[SCORABLE][m] for m in range(10)) and all(f[SCORABLE][m] for m in range(10, 30))
    g = {
        c: by_minute(out, 2, c)
        for c in ["temperature_dev_1m", "motor1_rpm_delta_2m", SINCE_FAILURE, SCORABLE]
    }
    assert not g[SCORABLE][12] and not g[SCORABLE][13]  # a failed record is not a prediction
    # failed readings are in no statistic: the baseline of minute 20 (minutes 11-15) is the 3 others
    assert g["temperature_dev_1m"][20] == 0.0 and g["motor1_rpm_delta_2m"][15] == 0.0
    assert g[SINCE_FAILURE][20] == 7.0
    out.unpersist()


# ------------------------------------------------------------------ alarms
@pytest.mark.spark
def test_alarms_lead_time_and_false_alarms(spark: Any) -> None:
    from fms_jobs.prediction.evaluate import alarm_metrics
    from fms_jobs.prediction.features import SCORABLE
    from fms_jobs.prediction.labels import add_labels
    from pyspark.sql import functions as F

    rows = [(1, m, {}, 60 <= m < 65) for m in range(100)]
    rows += [(2, m, {}, False) for m in range(100)]
    df = add_labels(frame(spark, rows), 30).withColumn(SCORABLE, ~F.col(FAILED))
    m = F.floor((F.unix_seconds(F.col(TS)) - F.lit(int(T0.timestamp()))) / 60)
    dev = F.col(DEV)
    warn = (
        ((dev == 1) & m.between(45, 59))  # true: the failure 15 min after it started
        | ((dev == 1) & m.between(5, 7))  # false: nothing within 30 min
        | ((dev == 2) & m.between(30, 31))  # false
        | ((dev == 2) & m.between(40, 40))  # 9 min after the last warning: the same false alarm
        | ((dev == 2) & m.between(85, 86))  # the data ends 14 min later: cannot be judged (censored)
    )
    a = alarm_metrics(df.withColumn("w", warn), "w", horizon_min=30, clear_min=15, interval_s=60)
    assert (a["alarms"], a["true_alarms"], a["false_alarms"], a["alarms_censored"]) == (3, 1, 2, 1)
    assert (a["failures"], a["failures_caught"], a["lead_min"]) == (1, 1, [15.0])
    assert a["precision"] == pytest.approx(1 / 3) and a["recall"] == 1.0
    assert a["device_days"] == pytest.approx(195 / 1440)
    assert a["false_alarms_per_100_device_days"] == pytest.approx(100 * 2 / (195 / 1440))
    # an alarm raised before the horizon that stays up until the failure is a true one
    early = alarm_metrics(df.withColumn("w", (dev == 1) & m.between(20, 59)), "w", 30, 15, 60)
    assert (early["true_alarms"], early["false_alarms"], early["lead_min"]) == (1, 0, [40.0])


# ------------------------------------------------------------------ thresholds
def test_record_threshold_is_the_lowest_reaching_the_target_precision() -> None:
    hist = [(9, 5, 0), (7, 3, 1), (5, 2, 6), (1, 0, 50)]  # (bin, positives, negatives), 10 bins
    c = choose_threshold(hist, 0.8, bins=10)
    # 0.6 predicts exactly what 0.7 does here (no score in bin 6): the lowest such threshold
    assert (c.threshold, c.target_met) == (0.6, True)
    assert c.precision == pytest.approx(8 / 9) and c.recall == pytest.approx(0.8)
    assert choose_threshold(hist, 1.0, bins=10).threshold == 0.8
    none = choose_threshold(hist, 1.01, bins=10)
    assert (none.threshold, none.target_met) == (0.8, False)  # the best precision, lowest such
    assert choose_threshold([], 0.9).target_met is False


def test_alarm_setting_is_the_most_cautious_that_keeps_recall_and_lead() -> None:
    from fms_jobs.prediction.evaluate import AlarmPoint, pick_alarm_setting

    def pt(t: float, hold: float, p: float, r: float, fa: float, lead: float) -> AlarmPoint:
        return AlarmPoint(t, hold, p, r, fa, lead)

    pts = [
        pt(0.5, 0, 0.90, 1.0, 3.0, 28),  # too many false alarms
        pt(0.8, 0, 0.97, 1.0, 0.0, 26),
        pt(0.9, 0, 0.97, 1.0, 0.0, 25),
        pt(0.8, 2, 0.97, 1.0, 0.0, 24),
        pt(0.9, 2, 0.97, 0.96, 0.0, 22),
        pt(0.9, 5, 0.97, 0.90, 0.0, 14),  # too late and too few caught
    ]
    c = pick_alarm_setting(pts, 0.95, 1.0, min_recall=0.95, min_lead_min=15)
    assert (c.threshold, c.hold_min, c.target_met, c.median_lead_min) == (0.9, 2, True, 22)
    # a higher threshold of the same hold that misses the targets makes the lower ones unsafe
    pts.append(pt(0.95, 2, 0.90, 0.9, 2.0, 20))
    c = pick_alarm_setting(pts, 0.95, 1.0, min_recall=0.95, min_lead_min=15)
    assert (c.threshold, c.hold_min, c.target_met) == (0.9, 0, True)
    # none keeps recall and lead: the safe point with the best recall, target not met
    miss = pick_alarm_setting(pts, 0.95, 1.0, min_recall=1.0, min_lead_min=27)
    assert (miss.threshold, miss.hold_min, miss.target_met) == (0.8, 0, False)
    assert pick_alarm_setting([], 0.95, 1.0, 0.95, 15).target_met is False


# ------------------------------------------------------------------ the stream's z-score, offline
def test_offline_anomaly_score_follows_the_stream_rules(rules: QualityRules) -> None:
    a = rules.anomaly
    scorer = StreamAnomalyScorer(rules)
    base = {"DeviceId": 1, "sensor1": 70.0, "sensor2": 50.0, "sensor3": 80.0, "motor1": 1200}
    base |= {"motor2": 850, "motor3": 1100, "isFail": False}
    t = 0
    for _ in range(a.warmup_records // 3):  # the warm-up: no score yet
        batch = [{**base, "_event_ms": (t := t + 10_000)} for _ in range(3)]
        assert scorer.score_batch(batch) == [(0.0, False)] * 3
    z = a.z_threshold * 1.5
    batch = [{**base, "sensor1": 70.0 + z * a.min_stddev["sensor1"], "_event_ms": t + 10_000}]
    batch.append({**base, "_event_ms": t + 20_000})
    batch.append({**base, "isFail": True, "_event_ms": t + 30_000})
    assert scorer.score_batch(batch) == [(pytest.approx(z), True), (0.0, False), (0.0, True)]


def test_exact_auc() -> None:
    assert exact_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert exact_auc([0.5, 0.5], [False, True]) == 0.5


def test_tree_ensemble_is_mllibs_gbt_probability() -> None:
    from fms_jobs.prediction.online import TreeEnsemble, _Node

    # x0 <= 1.5 ? (x1 <= 0 ? -1 : 0.5) : 1.0
    tree = [_Node(0, 1.5, 0.0, 1, 4), _Node(1, 0.0, 0.0, 2, 3), _Node(-1, 0, -1.0, -1, -1)]
    tree += [_Node(-1, 0, 0.5, -1, -1), _Node(-1, 0, 1.0, -1, -1)]
    ens = TreeEnsemble([tree, tree], [1.0, 0.1])
    assert ens.probability([2.0, 0.0]) == pytest.approx(1 / (1 + math.exp(-2 * 1.1)))
    assert ens.probability([1.0, -3.0]) == pytest.approx(1 / (1 + math.exp(2 * 1.1)))
    assert ens.probability([1.5, 0.1]) == pytest.approx(1 / (1 + math.exp(-2 * 0.55)))


def test_closed_loop_without_predictions_counts_the_unplanned_downtime() -> None:
    from fms_jobs.prediction.closed_loop import run_fleet
    from fms_jobs.prediction.fleet import FleetSpec

    spec = FleetSpec("loop", devices=2, days=0.5, seed=5, failure_rate_per_day=6.0)
    r = run_fleet(spec, None)
    assert r.failures > 0 and r.downtime_min > 0 and r.maintenance_requests == 0
    assert run_fleet(spec, None).downtime_min == r.downtime_min  # the same fleet, twice


# ------------------------------------------------------------------ online scoring: bounded running state
@pytest.mark.spark
def test_incremental_features_equal_the_offline_ones_on_a_simulated_fleet(spark: Any) -> None:
    from fms_jobs.prediction.features import SCORABLE, FeatureSpec, add_features, min_std_from_rules
    from fms_jobs.prediction.fleet import FleetSpec, processed_rows
    from fms_jobs.prediction.incremental import IncrementalFeatures, Record
    from fms_jobs.quality.rulebook import load_rules

    # 3 devices x 9 h at 10 s, failures every few hours: baselines fill (4 h), fail, repair, refill
    fleet = FleetSpec("inc", devices=3, days=0.375, seed=11, failure_rate_per_day=8.0)
    rows = list(processed_rows(fleet))
    assert sum(r[FAILED] for r in rows) > 0
    spec, min_std = FeatureSpec(), min_std_from_rules(load_rules())
    data = [
        (r[DEV], EPOCH + timedelta(milliseconds=r[TS]), *[float(r[c]) for c in COLS[2:-1]], r[FAILED])
        for r in rows
    ]
    schema = (
        f"{DEV} int, {TS} timestamp, " + ", ".join(f"{c} double" for c in COLS[2:-1]) + f", {FAILED} boolean"
    )
    offline = add_features(spark.createDataFrame(data, schema), spec, min_std).select(
        DEV, TS, SCORABLE, *spec.names
    )
    t0 = T0.replace(tzinfo=None)
    want = {
        (r[DEV], (r[TS] - t0) // timedelta(milliseconds=1)): (list(r)[3:] if r[SCORABLE] else None)
        for r in offline.collect()
    }
    inc = IncrementalFeatures(spec, min_std)
    t_base = int(T0.timestamp() * 1000)
    got: dict[tuple[int, int], list[float] | None] = {}
    for i in range(0, len(rows), 9):  # micro-batches of 3 records per device, as they arrive
        batch = [Record(r[DEV], r[TS], {c: r[c] for c in COLS[2:-1]}, r[FAILED]) for r in rows[i : i + 9]]
        for rec, x in inc.update_batch(batch):
            got[(rec.device, rec.t_ms - t_base)] = x
    assert got.keys() == want.keys()
    scorable = [k for k, v in want.items() if v is not None]
    assert len(scorable) > len(rows) // 3  # most of the fleet after the 4 h warm-up
    assert [k for k, v in got.items() if v is not None] == [k for k in got if want[k] is not None]
    assert all(got[k] == want[k] for k in scorable)  # the same floating-point numbers
    # bounded: one ring per device of max lag + 1 snapshots, whatever the records seen
    assert inc.ring_size == spec.rows(spec.baseline_start_min) + 1
    assert {len(d.buf) * 8 for d in inc.devices.values()} == {inc.state_bytes()}


@pytest.mark.spark
def test_alarm_state_is_the_offline_alarm_rule(spark: Any) -> None:
    import random

    from fms_jobs.prediction.features import SCORABLE, FeatureSpec
    from fms_jobs.prediction.incremental import AlarmState, hold_rows
    from fms_jobs.prediction.train import ALARM_RISK, HELD_RISK, add_alarm_risk, add_held_risk
    from fms_jobs.quality.schema import FAILURE_RISK

    spec = FeatureSpec()
    rng = random.Random(3)
    data = []
    for dev in (1, 2):
        for m in range(200):  # one record each 10 s; risk None where not scorable
            risk = None if m < 5 or 90 <= m < 95 else rng.random()
            data.append((dev, T0 + timedelta(seconds=10 * m), risk is not None, risk))
    df = spark.createDataFrame(data, f"{DEV} int, {TS} timestamp, {SCORABLE} boolean, {FAILURE_RISK} double")
    out = add_held_risk(add_alarm_risk(df, spec, 2.0), spec, 1.0).orderBy(DEV, TS).collect()
    state = AlarmState(spec.rows(2.0), hold_rows(spec, 1.0))
    assert (state.smooth, state.hold) == (12, 6)
    for r, (dev, _, _, risk) in zip(out, data, strict=True):
        alarm, held = state.update(dev, risk)
        assert (alarm is None, held is None) == (r[ALARM_RISK] is None, r[HELD_RISK] is None)
        if alarm is not None:
            assert alarm == pytest.approx(r[ALARM_RISK], abs=1e-12)
        if held is not None:
            assert held == pytest.approx(r[HELD_RISK], abs=1e-12)
    assert sum(r[HELD_RISK] is not None for r in out) > 300

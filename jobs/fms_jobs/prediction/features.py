"""Features of a processed record: its device's recent behaviour against the device's own baseline.

Per device, records in time order; for each reading column of the processed
table (temperature, humidity, pressure, the three motor RPMs):

* ``<col>_dev_{1,5,15}m`` - mean of the last 1 / 5 / 15 minutes minus the device's
  baseline mean, in baseline standard deviations;
* ``<col>_slope_{15,30}m`` - trend: (mean of the newer half of the window - mean of
  the older half) per minute, in baseline standard deviations;
* ``<col>_vol_5m`` - standard deviation of the last 5 minutes over the baseline's;
* ``<col>_delta_5m`` / ``<col>_rate_30m`` - the same level and trend in the column's
  own unit (the physical size of a change, whatever the device's noise);
* ``minutes_since_failure`` - since the device's last failed record (a repaired device
  settles), capped at the baseline's start.

The baseline of a record is the device's readings from ``baseline_end_min`` to
``baseline_start_min`` minutes before it (the device as it was, before any
precursor of a coming failure). Every statistic is taken over the readings of
the device while it was not failed, so a past failure's stalled motors do not
look like a trend.

Windows count records at the device's reporting interval (``interval_s``, 10 s
at the seeds' polling rate). Each statistic is a difference of running sums
(growing window frames) read back with ``lag``: O(rows) whatever the window's
length, where a sliding frame of a window function costs O(rows x window).
Only column expressions; no UDFs. A record is ``scorable`` when its device has
the whole baseline behind it and it is not failed itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from fms_jobs.quality.schema import DEVICE_ID, IS_FAIL, PROCESSED_COLUMN, READINGS, TIME

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

DEVICE = PROCESSED_COLUMN[DEVICE_ID]
TS = PROCESSED_COLUMN[TIME]
FAILED = PROCESSED_COLUMN[IS_FAIL]
SIGNALS: tuple[str, ...] = tuple(PROCESSED_COLUMN[r] for r in READINGS)
SCORABLE = "scorable"
SINCE_FAILURE = "minutes_since_failure"  # capped at baseline_start_min (also: no failure seen)
# smallest standard deviation a baseline is credited with (the stream's anomaly.min_stddev, per column)
DEFAULT_MIN_STD: dict[str, float] = {
    PROCESSED_COLUMN["sensor1"]: 0.5,
    PROCESSED_COLUMN["sensor2"]: 1.0,
    PROCESSED_COLUMN["sensor3"]: 0.5,
    PROCESSED_COLUMN["motor1"]: 10.0,
    PROCESSED_COLUMN["motor2"]: 10.0,
    PROCESSED_COLUMN["motor3"]: 10.0,
}


@dataclass(frozen=True)
class FeatureSpec:
    interval_s: float = 10.0
    level_minutes: tuple[int, ...] = (1, 5, 15)
    slope_minutes: tuple[int, ...] = (15, 30)
    vol_minutes: int = 5
    baseline_end_min: int = 120
    baseline_start_min: int = 240
    min_baseline_minutes: int = 30  # non-failed readings the baseline must hold

    def rows(self, minutes: float) -> int:
        return max(1, round(minutes * 60 / self.interval_s))

    @property
    def names(self) -> list[str]:
        out: list[str] = []
        for s in SIGNALS:
            out += [f"{s}_dev_{m}m" for m in self.level_minutes]
            out += [f"{s}_slope_{m}m" for m in self.slope_minutes]
            out += [f"{s}_vol_{self.vol_minutes}m", f"{s}_delta_{self.vol_minutes}m"]
            out += [f"{s}_rate_{max(self.slope_minutes)}m"]
        return [*out, SINCE_FAILURE]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FeatureSpec:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def min_std_from_rules(rules: Any) -> dict[str, float]:
    """The stream's anomaly.min_stddev (raw field names) keyed by processed column."""
    return {PROCESSED_COLUMN[k]: float(v) for k, v in rules.anomaly.min_stddev.items()}


def feature_lags(spec: FeatureSpec) -> list[int]:
    """Every row offset the features read, 0 (the record itself) included: add_features lags the
    running sums by each, and the online state (incremental.py) keeps that many snapshots."""
    lags = {0}
    lags |= {spec.rows(m) for m in spec.level_minutes}
    lags |= {spec.rows(m) for m in spec.slope_minutes} | {spec.rows(m) // 2 for m in spec.slope_minutes}
    lags |= {
        spec.rows(spec.vol_minutes),
        spec.rows(spec.baseline_end_min),
        spec.rows(spec.baseline_start_min),
    }
    return sorted(lags)


def add_features(df: DataFrame, spec: FeatureSpec, min_std: Mapping[str, float] | None = None) -> DataFrame:
    """df (processed columns) + every feature of spec.names + ``scorable``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    C = F.col
    floor = dict(DEFAULT_MIN_STD, **(min_std or {}))
    by_time = Window.partitionBy(DEVICE).orderBy(TS)
    running = by_time.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    ok = ~C(FAILED)
    # 1) running sums over the device's non-failed readings
    cums: dict[str, Column] = {"_cn": F.sum(F.when(ok, 1).otherwise(0)).over(running)}
    last_failed = F.max(F.when(C(FAILED), C(TS))).over(running)
    for s in SIGNALS:
        x = C(s).cast("double")
        cums[f"_c1_{s}"] = F.sum(F.when(ok, x).otherwise(0.0)).over(running)
        cums[f"_c2_{s}"] = F.sum(F.when(ok, x * x).otherwise(0.0)).over(running)
    out = df.select("*", *[v.alias(k) for k, v in cums.items()], last_failed.alias("_last_failed"))
    # 2) the same sums k rows back
    lag_cols = []
    for k in feature_lags(spec):
        if k == 0:
            continue
        for name in cums:
            lag_cols.append(F.lag(C(name), k).over(by_time).alias(f"{name}_l{k}"))
    out = out.select("*", *lag_cols)

    def at(name: str, k: int) -> Column:
        return C(name) if k == 0 else C(f"{name}_l{k}")

    def count(newer: int, older: int) -> Column:
        """non-failed readings among the rows (older, newer] rows back"""
        return at("_cn", newer) - at("_cn", older)

    def mean(s: str, newer: int, older: int) -> Column:
        n = count(newer, older)
        return F.when(n > 0, (at(f"_c1_{s}", newer) - at(f"_c1_{s}", older)) / n)

    def std(s: str, newer: int, older: int) -> Column:
        n = count(newer, older)
        m = mean(s, newer, older)
        ex2 = (at(f"_c2_{s}", newer) - at(f"_c2_{s}", older)) / n
        return F.when(n > 0, F.sqrt(F.greatest(ex2 - m * m, F.lit(0.0))))

    b_new, b_old = spec.rows(spec.baseline_end_min), spec.rows(spec.baseline_start_min)
    v = spec.rows(spec.vol_minutes)
    # 3) window statistics as columns of their own, then the features from them (one generated
    #    method per projection stays below the JVM's 64 KB limit)
    spans = {(0, spec.rows(m)) for m in spec.level_minutes} | {(0, v)}
    for m in spec.slope_minutes:
        k, h = spec.rows(m), spec.rows(m) // 2
        spans |= {(0, h), (h, k)}
    stats: dict[str, Column] = {}
    for s in SIGNALS:
        stats[f"_b_{s}"] = mean(s, b_new, b_old)
        stats[f"_sc_{s}"] = F.greatest(std(s, b_new, b_old), F.lit(float(floor[s])))
        stats[f"_sd_{s}"] = std(s, 0, v)
        for a, b in sorted(spans):
            stats[f"_m{a}_{b}_{s}"] = mean(s, a, b)
    stats["_base_ok"] = count(b_new, b_old) >= F.lit(spec.rows(spec.min_baseline_minutes))
    lag_names = [c for c in out.columns if c.startswith("_c")]
    out = out.select("*", *[e.alias(k) for k, e in stats.items()]).drop(*lag_names)
    feats: dict[str, Column] = {}
    for s in SIGNALS:
        b_mean, scale = C(f"_b_{s}"), C(f"_sc_{s}")
        for m in spec.level_minutes:
            feats[f"{s}_dev_{m}m"] = (C(f"_m0_{spec.rows(m)}_{s}") - b_mean) / scale
        for m in spec.slope_minutes:
            k, h = spec.rows(m), spec.rows(m) // 2
            per_min = (C(f"_m0_{h}_{s}") - C(f"_m{h}_{k}_{s}")) / F.lit(h * spec.interval_s / 60.0)
            feats[f"{s}_slope_{m}m"] = per_min / scale
            if m == max(spec.slope_minutes):
                rate = per_min
        feats[f"{s}_vol_{spec.vol_minutes}m"] = C(f"_sd_{s}") / scale
        feats[f"{s}_delta_{spec.vol_minutes}m"] = C(f"_m0_{v}_{s}") - b_mean
        feats[f"{s}_rate_{max(spec.slope_minutes)}m"] = rate
    since = (F.unix_millis(C(TS)) - F.unix_millis(C("_last_failed"))) / F.lit(60_000.0)
    cap = F.lit(float(spec.baseline_start_min))
    feats[SINCE_FAILURE] = F.coalesce(F.least(since, cap), cap)
    assert list(feats) == spec.names
    helper = [*stats, "_last_failed"]
    out = out.select("*", *[f.alias(k) for k, f in feats.items()])
    scorable = ok & C("_base_ok")
    for k in feats:
        scorable = scorable & C(k).isNotNull() & ~F.isnan(C(k))
    out = out.select("*", F.coalesce(scorable, F.lit(False)).alias(SCORABLE))
    return out.drop(*helper)

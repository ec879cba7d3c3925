"""Evaluation of a failure predictor: per record, per alarm, and the alarm setting from a validation fleet.

Two views of the same scores:

* **records** - each scorable record is a prediction of "fails within the horizon"
  (:mod:`.labels`): precision, recall, F1, ROC AUC;
* **alarms** - what an operator sees. An alarm of a device starts at a warned record
  and lasts while warnings keep coming (a gap of ``clear_min`` minutes, or a failure,
  ends it). An alarm is *true* when its device fails within the horizon after it
  started, or while it is still raised (within ``clear_min`` of its last warning);
  otherwise it is a false alarm - unless the data ends less than the horizon after it
  started without a failure: like a censored label, such an alarm cannot be judged and
  is counted apart (``alarms_censored``). A failure is *caught* when a true alarm started
  before it; its lead time is the failure's start minus the first such alarm's start.
  Precision = true alarms / alarms, recall = caught failures / failures, F1 of the two;
  false alarms per 100 device-days of monitored (scorable) operation.

Failures that no model could have warned about are left out and counted apart:
those whose device had no scorable record in the horizon before them (the start of
the data, before the device's baseline exists).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from fms_jobs.prediction.features import DEVICE, FAILED, SCORABLE, TS
from fms_jobs.prediction.labels import FAIL_START, LABEL, NEXT_FAILURE_AT

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

BINS = 1000


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    precision: float
    recall: float
    f1: float
    target_precision: float
    target_met: bool
    hold_min: float = 0.0  # the alarm risk stays at or above the threshold this long before a warning
    false_alarms_per_100_device_days: float | None = None
    median_lead_min: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def f1_of(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def choose_threshold(
    hist: Sequence[tuple[int, int, int]], target_precision: float, bins: int = BINS
) -> ThresholdChoice:
    """The lowest threshold whose precision reaches the target (so the highest recall that does).

    ``hist``: (bin, positives, negatives) with bin = floor(score * bins), scores in [0, 1];
    predicting positive for score >= bin / bins. Without any threshold reaching the target, the
    one with the best precision (ties: the lower one) and ``target_met`` false.
    """
    pos = [0] * (bins + 1)
    neg = [0] * (bins + 1)
    for b, p, n in hist:
        b = min(max(int(b), 0), bins)
        pos[b] += int(p)
        neg[b] += int(n)
    total_pos = sum(pos)
    tp = fp = 0
    best: tuple[float, int, int, int] | None = None  # (precision, bin, tp, fp) of the best precision
    chosen: tuple[int, int, int] | None = None
    for b in range(bins, -1, -1):
        tp += pos[b]
        fp += neg[b]
        if tp + fp == 0:
            continue
        prec = tp / (tp + fp)
        if prec >= target_precision and tp > 0:
            chosen = (b, tp, fp)
        if best is None or prec >= best[0]:
            best = (prec, b, tp, fp)
    if chosen is None:
        if best is None:
            return ThresholdChoice(1.0, 0.0, 0.0, 0.0, target_precision, False)
        _, b, tp_, fp_ = best
        met = False
    else:
        b, tp_, fp_ = chosen
        met = True
    prec = tp_ / (tp_ + fp_) if tp_ + fp_ else 0.0
    rec = tp_ / total_pos if total_pos else 0.0
    return ThresholdChoice(b / bins, prec, rec, f1_of(prec, rec), target_precision, met)


@dataclass(frozen=True)
class AlarmPoint:
    """An alarm setting measured on the validation devices."""

    threshold: float
    hold_min: float
    precision: float
    recall: float
    false_alarms_per_100_device_days: float | None
    median_lead_min: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def pick_alarm_setting(
    points: Sequence[AlarmPoint],
    target_precision: float,
    target_false_alarms: float,
    min_recall: float,
    min_lead_min: float,
) -> ThresholdChoice:
    """The most cautious setting (highest threshold, then longest hold) that keeps recall and lead.

    A point is *safe* when its precision reaches ``target_precision`` and its false alarms per 100
    device-days stay at or below ``target_false_alarms`` - and so do all the higher thresholds of
    the same hold (alarm precision on a validation fleet is noisy from one threshold to the next).
    Of the safe points whose recall reaches ``min_recall`` and median lead ``min_lead_min``, the
    highest threshold (then the longest hold) is taken: a validation fleet sees too few false
    alarms to tell apart settings that all have none, so the recall and lead margin measured
    there is spent on caution. Without such a point: the safe point with the best recall (then
    lead), else the best precision, with ``target_met`` false.
    """
    if not points:
        return ThresholdChoice(1.0, 0.0, 0.0, 0.0, target_precision, False)

    def meets(p: AlarmPoint) -> bool:
        fa = p.false_alarms_per_100_device_days
        return p.precision >= target_precision and fa is not None and fa <= target_false_alarms

    safe: list[AlarmPoint] = []
    for hold in sorted({p.hold_min for p in points}):
        for p in sorted((q for q in points if q.hold_min == hold), key=lambda q: -q.threshold):
            if not meets(p):
                break
            safe.append(p)
    kept = [
        p
        for p in safe
        if p.recall >= min_recall and p.median_lead_min is not None and p.median_lead_min >= min_lead_min
    ]
    if kept:
        c, met = max(kept, key=lambda q: (q.threshold, q.hold_min)), True
    elif safe:
        c, met = (
            max(safe, key=lambda q: (q.recall, q.median_lead_min or 0.0, -q.threshold, -q.hold_min)),
            False,
        )
    else:
        c, met = max(points, key=lambda q: (q.precision, -q.threshold, -q.hold_min)), False
    return ThresholdChoice(
        float(c.threshold),
        float(c.precision),
        float(c.recall),
        f1_of(c.precision, c.recall),
        target_precision,
        met,
        float(c.hold_min),
        c.false_alarms_per_100_device_days,
        c.median_lead_min,
    )


def score_histogram(
    df: DataFrame, score_col: str, label_col: str = LABEL, bins: int = BINS
) -> list[tuple[int, int, int]]:
    from pyspark.sql import functions as F

    C = F.col
    b = F.least(F.greatest(F.floor(C(score_col) * F.lit(bins)), F.lit(0)), F.lit(bins)).cast("int")
    rows = (
        df.where(C(label_col).isNotNull() & C(score_col).isNotNull())
        .groupBy(b.alias("b"))
        .agg(
            F.sum(F.when(C(label_col) == 1.0, 1).otherwise(0)).alias("p"),
            F.sum(F.when(C(label_col) == 0.0, 1).otherwise(0)).alias("n"),
        )
        .collect()
    )
    return [(int(r["b"]), int(r["p"]), int(r["n"])) for r in rows]


def record_metrics(
    df: DataFrame, warn_col: str, score_col: str | None, label_col: str = LABEL
) -> dict[str, Any]:
    """Precision / recall / F1 of warn_col against the label; ROC and PR AUC of score_col."""
    from pyspark.sql import functions as F

    C = F.col
    d = df.where(C(label_col).isNotNull())
    w = F.coalesce(C(warn_col), F.lit(False))
    y = C(label_col) == 1.0
    r = d.agg(
        F.sum(F.when(w & y, 1).otherwise(0)).alias("tp"),
        F.sum(F.when(w & ~y, 1).otherwise(0)).alias("fp"),
        F.sum(F.when(~w & y, 1).otherwise(0)).alias("fn"),
        F.sum(F.when(~w & ~y, 1).otherwise(0)).alias("tn"),
    ).collect()[0]
    tp, fp, fn, tn = (int(r[k] or 0) for k in ("tp", "fp", "fn", "tn"))
    p = tp / (tp + fp) if tp + fp else 0.0
    rc = tp / (tp + fn) if tp + fn else 0.0
    out: dict[str, Any] = {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": p,
        "recall": rc,
        "f1": f1_of(p, rc),
    }
    if score_col is not None:
        out.update(auc(d, score_col, label_col))
    return out


def auc(df: DataFrame, score_col: str, label_col: str = LABEL) -> dict[str, float]:
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.sql import functions as F

    d = df.where(F.col(score_col).isNotNull() & F.col(label_col).isNotNull()).select(
        F.col(score_col).cast("double").alias("_s"), F.col(label_col).cast("double").alias("_y")
    )
    ev = BinaryClassificationEvaluator(rawPredictionCol="_s", labelCol="_y")
    return {
        "roc_auc": float(ev.setMetricName("areaUnderROC").evaluate(d)),
        "pr_auc": float(ev.setMetricName("areaUnderPR").evaluate(d)),
    }


def alarm_metrics(
    df: DataFrame, warn_col: str, horizon_min: float, clear_min: float, interval_s: float
) -> dict[str, Any]:
    """Alarm-level metrics (see the module documentation).

    df: every record of the evaluated span (failed ones included) with the label columns,
    ``scorable`` and a boolean warn_col (null = no warning).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    C = F.col
    ms = F.unix_millis
    by_time = Window.partitionBy(DEVICE).orderBy(TS)
    before = by_time.rowsBetween(Window.unboundedPreceding, -1)
    upto = by_time.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    warn = C(SCORABLE) & ~C(FAILED) & F.coalesce(C(warn_col), F.lit(False))
    clear_ms = int(clear_min * 60_000)
    h_ms = int(horizon_min * 60_000)
    x = df.select(DEVICE, TS, FAILED, SCORABLE, FAIL_START, NEXT_FAILURE_AT, warn.alias("_warn"))
    x = x.select(
        "*",
        F.max(F.when(C("_warn"), C(TS))).over(before).alias("_prev_warn"),
        F.max(F.when(C(FAIL_START), C(TS))).over(upto).alias("_last_fail"),
        F.max(F.when(C(SCORABLE), C(TS))).over(before).alias("_prev_scorable"),
        F.max(C(TS)).over(Window.partitionBy(DEVICE)).alias("_data_end"),
    )
    new = C("_warn") & (
        C("_prev_warn").isNull()
        | ((ms(C(TS)) - ms(C("_prev_warn"))) > F.lit(clear_ms))
        | (F.coalesce(ms(C("_last_fail")), F.lit(-1)) > ms(C("_prev_warn")))
    )
    x = x.withColumn("_episode", F.sum(F.when(new, 1).otherwise(0)).over(upto)).cache()
    episodes = (
        x.where(C("_warn"))
        .groupBy(DEVICE, "_episode")
        .agg(
            F.min(TS).alias("start"),
            F.max(TS).alias("last"),
            F.min(NEXT_FAILURE_AT).alias("fail_at"),
            F.max("_data_end").alias("data_end"),
        )
        .withColumn(
            "true_alarm",
            C("fail_at").isNotNull()
            & (
                ((ms(C("fail_at")) - ms(C("start"))) <= F.lit(h_ms))
                | ((ms(C("fail_at")) - ms(C("last"))) <= F.lit(clear_ms))
            ),
        )
        .withColumn(
            "censored",
            C("fail_at").isNull() & ((ms(C("data_end")) - ms(C("start"))) < F.lit(h_ms)),
        )
        .cache()
    )
    n_censored = episodes.where(C("censored")).count()
    n_alarms = episodes.count() - n_censored
    n_true = episodes.where(C("true_alarm")).count()
    # failures the model could have seen coming: a scorable record of the device within the horizon before
    fails = x.where(C(FAIL_START)).select(
        DEVICE,
        C(TS).alias("fail_at"),
        (C("_prev_scorable").isNotNull() & ((ms(C(TS)) - ms(C("_prev_scorable"))) <= F.lit(h_ms))).alias(
            "seen"
        ),
    )
    n_fail_all = fails.count()
    seen = fails.where(C("seen"))
    first_true = (
        episodes.where(C("true_alarm")).groupBy(DEVICE, "fail_at").agg(F.min("start").alias("first_warning"))
    )
    caught = seen.join(first_true, [DEVICE, "fail_at"], "inner").select(
        ((ms(C("fail_at")) - ms(C("first_warning"))) / F.lit(60_000.0)).alias("lead_min")
    )
    leads = sorted(float(r["lead_min"]) for r in caught.collect())
    n_fail = seen.count()
    monitored_rows = x.where(C(SCORABLE)).count()
    device_days = monitored_rows * interval_s / 86_400.0
    x.unpersist()
    episodes.unpersist()
    p = n_true / n_alarms if n_alarms else 0.0
    r = len(leads) / n_fail if n_fail else 0.0
    false_alarms = n_alarms - n_true
    return {
        "precision": p,
        "recall": r,
        "f1": f1_of(p, r),
        "alarms": n_alarms,
        "true_alarms": n_true,
        "false_alarms": false_alarms,
        "alarms_censored": n_censored,
        "failures": n_fail,
        "failures_caught": len(leads),
        "failures_unseen": n_fail_all - n_fail,
        "device_days": device_days,
        "false_alarms_per_100_device_days": 100.0 * false_alarms / device_days if device_days else None,
        "median_lead_min": statistics.median(leads) if leads else None,
        "lead_min_p10": _quantile(leads, 0.1),
        "lead_min_p90": _quantile(leads, 0.9),
        "lead_min": [round(v, 2) for v in leads],
    }


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    i = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return sorted(values)[i]

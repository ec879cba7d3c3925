"""``make predict-eval``: train on one simulated fleet, evaluate on held-out fleets, benchmark, report.

1. The real simulator generates a training fleet and held-out fleets with other
   seeds, device ids, noise, failure rates and degradation durations
   (:mod:`.fleet`; cached under ``<out>/fleets`` by their spec).
2. :func:`.train.train` learns on the training fleet and picks the threshold on
   its validation devices; the model is written to ``<out>/models/<version>``.
3. The held-out fleets are scored by that model, and by the stream's EWMA
   z-score ``anomaly_flag`` (the baseline) on the same records: per record and
   per alarm (:mod:`.evaluate`).
4. The public benchmark (:mod:`.benchmark`).
5. The report: ``<out>/report.json``, and with ``--docs`` a markdown page and a
   plot. The last line printed is the summary JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fms_jobs.prediction.evaluate import alarm_metrics, record_metrics
from fms_jobs.prediction.features import DEVICE, FAILED, SCORABLE, TS, min_std_from_rules
from fms_jobs.prediction.fleet import ANOMALY_FLAG, ANOMALY_SCORE, FleetSpec, write_fleet
from fms_jobs.prediction.labels import LABEL
from fms_jobs.prediction.train import WARN, TrainParams, prepare, save, score, train
from fms_jobs.quality.schema import FAILURE_RISK

BASELINE_WARN = "baseline_warning"


@dataclass(frozen=True)
class Scale:
    train: FleetSpec
    held_out: tuple[FleetSpec, ...]
    closed_loop: FleetSpec


SCALES: dict[str, Scale] = {
    # the figures in docs/failure-prediction.md
    "full": Scale(
        FleetSpec("train", devices=40, days=3, seed=101, failure_rate_per_day=1.0),
        (
            FleetSpec(
                "heldout-a", devices=30, days=2, seed=202, first_device_id=1001, failure_rate_per_day=0.7,
                noise_scale=1.3, degradation_minutes=(20.0, 90.0),
            ),
            FleetSpec(
                "heldout-b", devices=30, days=2, seed=303, first_device_id=2001, failure_rate_per_day=1.5,
                noise_scale=0.8, degradation_minutes=(15.0, 60.0),
            ),
        ),
        FleetSpec(
            "closed-loop", devices=30, days=1.5, seed=404, first_device_id=3001, failure_rate_per_day=1.0,
        ),
    ),
    # a quick run (the end-to-end test's size is smaller still)
    "small": Scale(
        FleetSpec("train-small", devices=12, days=1, seed=101, failure_rate_per_day=2.0),
        (
            FleetSpec(
                "heldout-small", devices=8, days=1, seed=202, first_device_id=1001, failure_rate_per_day=1.5,
                noise_scale=1.3, degradation_minutes=(15.0, 60.0),
            ),
        ),
        FleetSpec(
            "closed-loop-small", devices=8, days=1, seed=404, first_device_id=3001, failure_rate_per_day=1.5,
        ),
    ),
}  # fmt: skip


def fleet_path(spec: FleetSpec, fleets_dir: Path, trigger_s: float) -> Path:
    """Generate the fleet once per spec (the directory name carries the spec's hash)."""
    key = hashlib.sha256(json.dumps([spec.to_json(), trigger_s], sort_keys=True).encode()).hexdigest()[:12]
    named = FleetSpec(**{**spec.to_json(), "name": f"{spec.name}-{key}"})
    target = fleets_dir / named.name
    if not (target / "_fleet.json").exists():
        write_fleet(named, fleets_dir, trigger_s)
    return target


def score_fleets(
    spark: Any, model: Any, paths: list[str], params: TrainParams, min_std: dict[str, float]
) -> Any:
    """The fleets' records scored by the model, with the baseline's warning beside it (cached)."""
    from pyspark.sql import functions as F

    C = F.col
    prepared = prepare(spark.read.parquet(*paths), model.spec, params.horizon_min, min_std).cache()
    t = model.threshold
    scored = score(model.pipeline, prepared, model.spec, params, t.threshold, model.version, t.hold_min)
    # the baseline warns where the stream flags an operating device: anomaly_flag without isFail
    scored = scored.withColumn(BASELINE_WARN, C(ANOMALY_FLAG) & ~C(FAILED)).cache()
    scored.count()
    prepared.unpersist()
    return scored


def detector_metrics(
    scored: Any, warn_col: str, score_col: str, params: TrainParams, interval_s: float
) -> dict[str, Any]:
    """One detector (the model, or the baseline) on the scored records: per record and per alarm."""
    from pyspark.sql import functions as F

    return {
        "records": record_metrics(scored.where(F.col(SCORABLE)), warn_col, score_col),
        "alarms": alarm_metrics(scored, warn_col, params.horizon_min, params.clear_min, interval_s),
    }


def fleet_metrics(scored: Any, params: TrainParams, interval_s: float) -> dict[str, Any]:
    """Model and baseline on the same records, through the same metrics."""
    from pyspark.sql import functions as F

    C = F.col
    recs = scored.where(C(SCORABLE))
    return {
        "devices": scored.select(DEVICE).distinct().count(),
        "records": scored.count(),
        "scorable_records": recs.count(),
        "positive_records": recs.where(C(LABEL) == 1.0).count(),
        "model": detector_metrics(scored, WARN, FAILURE_RISK, params, interval_s),
        "baseline": detector_metrics(scored, BASELINE_WARN, ANOMALY_SCORE, params, interval_s),
    }


def example_timeline(scored: Any, max_points: int = 4000) -> dict[str, Any] | None:
    """One held-out device with a caught failure: (minutes, risk, is_fail) for the plot."""
    from pyspark.sql import functions as F

    C = F.col
    dev_rows = (
        scored.where(C(WARN) & C(LABEL).isNotNull() & (C(LABEL) == 1.0)).select(DEVICE).limit(1).collect()
    )
    if not dev_rows:
        return None
    dev = dev_rows[0][DEVICE]
    rows = (
        scored.where(C(DEVICE) == dev).select(TS, FAILURE_RISK, FAILED, ANOMALY_SCORE).orderBy(TS).collect()
    )
    step = max(1, len(rows) // max_points)
    t0 = rows[0][TS]
    pts = [
        ((r[TS] - t0).total_seconds() / 3600.0, r[FAILURE_RISK], bool(r[FAILED]), r[ANOMALY_SCORE])
        for i, r in enumerate(rows)
        if i % step == 0 or r[FAILED]
    ]
    return {"device": int(dev), "points": pts}


def summary(report: dict[str, Any]) -> dict[str, Any]:
    h = report["held_out"]["all"]
    m, b = h["model"]["alarms"], h["baseline"]["alarms"]
    bench = report.get("public_benchmark") or {}
    loop = report.get("closed_loop") or {}

    def r4(x: float | None) -> float | None:
        return None if x is None else round(x, 4)

    return {
        "f1": r4(m["f1"]),
        "precision": r4(m["precision"]),
        "recall": r4(m["recall"]),
        "median_lead_min": r4(m["median_lead_min"]),
        "false_alarms_per_100_device_days": r4(m["false_alarms_per_100_device_days"]),
        "baseline_f1": r4(b["f1"]),
        "record_f1": r4(h["model"]["records"]["f1"]),
        "record_roc_auc": r4(h["model"]["records"]["roc_auc"]),
        "baseline_record_f1": r4(h["baseline"]["records"]["f1"]),
        "failures": m["failures"],
        "device_days": r4(m["device_days"]),
        "public_auc": bench.get("auc"),
        "public_auc_published": bench.get("published_auc"),
        "downtime_cut": loop.get("downtime_cut"),
        "horizon_min": report["model"]["params"]["horizon_min"],
        "model_version": report["model"]["version"],
        "threshold": report["model"]["threshold"]["threshold"],
        "hold_min": report["model"]["threshold"].get("hold_min"),
    }


def run(
    out: str,
    scale: str = "full",
    master: str = "local[1]",
    docs: str | None = None,
    trigger_s: float = 30.0,
    params: TrainParams | None = None,
    benchmark: bool = True,
    log: Any = None,
) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from fms_jobs.prediction import benchmark as bench
    from fms_jobs.prediction import closed_loop
    from fms_jobs.quality.rulebook import load_rules
    from fms_jobs.sparkutil.session import LONG_RUNNING_DRIVER_JAVA_OPTIONS, build_session

    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    C = F.col
    params = params or TrainParams()
    sc = SCALES[scale]
    t0 = time.monotonic()
    outp = Path(out)
    fleets = outp / "fleets"
    fleets.mkdir(parents=True, exist_ok=True)
    say(f"[predict-eval] generating fleets ({scale})")
    train_path = fleet_path(sc.train, fleets, trigger_s)
    held_paths = [fleet_path(s, fleets, trigger_s) for s in sc.held_out]
    rules = load_rules()
    min_std = min_std_from_rules(rules)
    conf = {
        "spark.driver.memory": os.environ.get("FMS_PREDICT_DRIVER_MEMORY", "1g"),
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.extraJavaOptions": LONG_RUNNING_DRIVER_JAVA_OPTIONS,
    }
    spark = build_session("fms-predict-eval", master, conf, local_test=True)
    spark.sparkContext.setLogLevel("ERROR")
    try:
        say(f"[predict-eval] training on {sc.train.name} ({sc.train.devices} devices x {sc.train.days} days)")
        model = train(spark, spark.read.parquet(str(train_path)), params, min_std=min_std, log=say)
        model_dir = save(model, spark, str((outp / "models").resolve()))
        say(f"[predict-eval] model {model.version} -> {model_dir}")
        held: dict[str, Any] = {}
        scored = score_fleets(spark, model, [str(p) for p in held_paths], params, min_std)
        for spec in sc.held_out:
            say(f"[predict-eval] held-out {spec.name}")
            ids = (C(DEVICE) >= spec.first_device_id) & (C(DEVICE) < spec.first_device_id + spec.devices)
            held[spec.name] = fleet_metrics(scored.where(ids), params, model.spec.interval_s)
        say("[predict-eval] held-out, all fleets together")
        held["all"] = fleet_metrics(scored, params, model.spec.interval_s)
        timeline = example_timeline(scored)
        scored.unpersist()
        say(f"[predict-eval] closed loop: {sc.closed_loop.devices} devices x {sc.closed_loop.days} days")
        loop = closed_loop.drill(sc.closed_loop, model, min_std=min_std)
        say(f"[predict-eval] closed loop: downtime cut {loop['downtime_cut']}")
        public = None
        if benchmark:
            say("[predict-eval] public benchmark: river Phishing, progressive validation")
            public = bench.run(spark, params, log=say).to_json()
    finally:
        spark.stop()
    report: dict[str, Any] = {
        "model": {**model.meta(), "path": model_dir},
        "fleets": {
            "train": sc.train.to_json(),
            "held_out": [s.to_json() for s in sc.held_out],
            "trigger_s": trigger_s,
        },
        "held_out": held,
        "public_benchmark": public,
        "closed_loop": loop,
        "seconds": round(time.monotonic() - t0, 1),
    }
    report["summary"] = summary(report)
    (outp / "report.json").write_text(json.dumps(report, indent=1, default=str))
    if docs:
        from fms_jobs.prediction.report import write_docs

        write_docs(report, timeline, Path(docs))
        say(f"[predict-eval] report -> {docs}")
    return report

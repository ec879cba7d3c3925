"""Failure prediction end to end on local Spark: simulated fleet -> training -> versioned model -> scoring.

A small fleet (6 devices, 12 hours, many failures) from the real simulator is
written as processed Parquet; the training job's code (what ``python -m
fms_jobs.prediction train`` runs) trains on it and writes
``<out>/<version>/{model,model.json}``; the model is loaded back and scores a
held-out fleet of other devices, and the plain-Python scorer the closed-loop drill
uses (:mod:`fms_jobs.prediction.incremental`, :mod:`fms_jobs.prediction.online`) gives the
same risks and warnings. About a minute on
two busy cores.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.spark]
os.environ["TZ"] = "UTC"
time.tzset()


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    from fms_jobs.sparkutil.session import build_session

    s = build_session(
        "fms-prediction-e2e", "local[2]", {"spark.sql.shuffle.partitions": "2"}, local_test=True
    )
    yield s
    s.stop()


def test_training_job_writes_a_versioned_model_that_scores_other_devices(spark: Any, tmp_path: Path) -> None:
    from fms_jobs.prediction.features import SCORABLE, min_std_from_rules
    from fms_jobs.prediction.fleet import FleetSpec, write_fleet
    from fms_jobs.prediction.labels import LABEL
    from fms_jobs.prediction.train import WARN, TrainParams, load, prepare, save, score, train
    from fms_jobs.quality.rulebook import load_rules
    from fms_jobs.quality.schema import FAILURE_RISK, MODEL_VERSION
    from pyspark.sql import functions as F

    t0 = time.monotonic()
    fleet = write_fleet(FleetSpec("e2e", devices=6, days=0.5, seed=31, failure_rate_per_day=4.0), tmp_path)
    held = write_fleet(
        FleetSpec("e2e-held", devices=3, days=0.5, seed=32, first_device_id=501, failure_rate_per_day=4.0),
        tmp_path,
    )
    params = TrainParams(
        max_iter=8, max_depth=4, validation_share=0.34, threshold_grid=(0.5, 0.8), hold_grid=(0.0, 1.0)
    )
    min_std = min_std_from_rules(load_rules())
    model = train(spark, spark.read.parquet(str(fleet)), params, min_std=min_std)
    out = save(model, spark, str(tmp_path / "models"))

    meta = json.loads((Path(out) / "model.json").read_text())
    assert meta["version"] == model.version and Path(out).name == model.version
    assert meta["threshold"]["threshold"] in params.threshold_grid
    assert meta["threshold"]["hold_min"] in params.hold_grid
    assert meta["report"]["training_rows"]["1"] > 0 and meta["report"]["validation_devices"] >= 1
    assert {"precision", "recall", "f1", "median_lead_min"} <= set(meta["report"]["validation_alarms"])
    assert (Path(out) / "model" / "stages").is_dir()

    loaded = load(spark, out)
    assert loaded.spec == model.spec and loaded.threshold == model.threshold
    prepared = prepare(spark.read.parquet(str(held)), loaded.spec, params.horizon_min, min_std)
    t = loaded.threshold
    scored = score(
        loaded.pipeline, prepared, loaded.spec, loaded.params, t.threshold, loaded.version, t.hold_min
    )
    r = scored.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.col(SCORABLE).cast("int")).alias("scorable"),
        F.min(FAILURE_RISK).alias("lo"),
        F.max(FAILURE_RISK).alias("hi"),
        F.sum(F.when(F.col(SCORABLE) & F.col(FAILURE_RISK).isNull(), 1).otherwise(0)).alias("unscored"),
        F.sum(F.col(WARN).cast("int")).alias("warnings"),
        F.avg(F.when(F.col(LABEL) == 1.0, F.col(FAILURE_RISK))).alias("risk_pos"),
        F.avg(F.when(F.col(LABEL) == 0.0, F.col(FAILURE_RISK))).alias("risk_neg"),
        F.countDistinct(MODEL_VERSION).alias("versions"),
    ).collect()[0]
    assert r["n"] == 3 * 4320 and r["scorable"] > 0 and r["unscored"] == 0
    assert 0.0 <= r["lo"] <= r["hi"] <= 1.0 and r["versions"] == 1
    # learnt something: records before a failure look riskier than the others
    assert r["risk_pos"] > r["risk_neg"]

    # the same model record by record in plain Python (closed-loop drill, later the stream): same
    # risks and warnings, from bounded per-device state
    from fms_jobs.prediction.features import SIGNALS
    from fms_jobs.prediction.incremental import AlarmState, IncrementalFeatures, hold_rows
    from fms_jobs.prediction.online import TreeEnsemble
    from fms_jobs.prediction.train import ALARM_RISK

    online = IncrementalFeatures(loaded.spec, min_std)
    alarms = AlarmState(loaded.spec.rows(loaded.params.smooth_min), hold_rows(loaded.spec, t.hold_min))
    trees = TreeEnsemble.from_mllib(loaded.pipeline.stages[-1])
    cols = ["device_id", "timestamp", "is_fail", *SIGNALS, FAILURE_RISK, ALARM_RISK, WARN]
    worst = 0.0
    for row in scored.select(*cols).orderBy("timestamp", "device_id").collect():
        t_ms = int(row["timestamp"].timestamp() * 1000)
        x = online.update(row["device_id"], t_ms, {c: row[c] for c in SIGNALS}, row["is_fail"])
        risk = None if x is None else trees.probability(x)
        alarm, held = alarms.update(row["device_id"], risk)
        assert (risk is None) == (row[FAILURE_RISK] is None)
        if risk is not None:
            worst = max(worst, abs(risk - row[FAILURE_RISK]), abs(alarm - row[ALARM_RISK]))
        # the online warning flips only where the held risk sits within rounding of the threshold
        warned = held is not None and held >= t.threshold
        assert warned == row[WARN] or (held is not None and abs(held - t.threshold) < 1e-9)
    assert worst < 1e-9
    print(f"e2e training + scoring: {time.monotonic() - t0:.1f} s, threshold {model.threshold.threshold}")

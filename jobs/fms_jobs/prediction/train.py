"""Training: processed records -> labels + features -> Spark MLlib GBT -> threshold -> versioned model.

The devices are split (by a hash of the device id) into a training part and a
validation part. The model learns on the training devices - every positive
record and a sample of the negatives (most records are far from any failure) -
and the validation devices, scored in full, choose the alarm setting - threshold
and debounce (``hold_min``) - from a grid: the most cautious one that keeps
recall and lead time while meeting the precision and false-alarm targets
(:func:`.evaluate.pick_alarm_setting`). Nothing of the held-out fleets is used.

The result is written under ``<out>/<version>/``: ``model/`` (the MLlib
pipeline: feature assembler + classifier) and ``model.json`` (version, feature
spec, horizon, threshold, validation figures, training data summary). ``out`` is
any Hadoop path: HDFS on the cluster, a local directory in tests.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from fms_jobs.prediction.evaluate import (
    AlarmPoint,
    ThresholdChoice,
    alarm_metrics,
    pick_alarm_setting,
    record_metrics,
)
from fms_jobs.prediction.features import DEVICE, SCORABLE, TS, FeatureSpec, add_features
from fms_jobs.prediction.incremental import hold_rows
from fms_jobs.prediction.labels import LABEL, add_labels
from fms_jobs.quality.schema import FAILURE_RISK, MODEL_VERSION

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

WARN = "failure_warning"
ALARM_RISK = "alarm_risk"  # failure_risk averaged over the device's last smooth_min minutes
HELD_RISK = "held_risk"  # the lowest alarm_risk of the device's last hold_min minutes (debounce)
THRESHOLD_GRID = (0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)
HOLD_GRID = (0.0, 2.0, 5.0)  # minutes the alarm risk must stay above the threshold (0: one record)
MODEL_FORMAT = 1


@dataclass(frozen=True)
class TrainParams:
    horizon_min: float = 30.0
    target_precision: float = 0.95
    # the alarm setting is the most cautious one of the grid (highest threshold, then longest hold)
    # that still meets these on the validation devices; false alarms are too rare to be measured
    # there finely, recall and lead time are not: their margin over the targets
    # (F1 >= 0.9, lead >= 10 min) is spent on fewer false alarms
    target_false_alarms: float = 1.0  # per 100 device-days
    min_recall: float = 0.95
    min_lead_min: float = 15.0
    validation_share: float = 0.25
    negative_fraction: float = 0.2
    clear_min: float = 15.0  # an alarm ends after this long without a warning
    smooth_min: float = 2.0  # a warning needs the risk averaged over this long above the threshold
    threshold_grid: tuple[float, ...] = THRESHOLD_GRID  # candidates for the alarm threshold
    hold_grid: tuple[float, ...] = HOLD_GRID  # candidates for the alarm's debounce (minutes)
    max_iter: int = 40
    max_depth: int = 5
    step_size: float = 0.2
    seed: int = 7

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainedModel:
    version: str
    pipeline: PipelineModel
    spec: FeatureSpec
    params: TrainParams
    threshold: ThresholdChoice
    report: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "version": self.version,
            "features": self.spec.names,
            "feature_spec": self.spec.to_json(),
            "params": self.params.to_json(),
            "threshold": self.threshold.to_json(),
            "report": self.report,
        }


def prepare(
    df: DataFrame, spec: FeatureSpec, horizon_min: float, min_std: dict[str, float] | None = None
) -> DataFrame:
    return add_features(add_labels(df, horizon_min), spec, min_std)


def split_devices(df: DataFrame, validation_share: float, seed: int) -> tuple[DataFrame, DataFrame]:
    from pyspark.sql import functions as F

    bucket = F.pmod(F.xxhash64(F.col(DEVICE), F.lit(seed)), F.lit(1000))
    is_val = bucket < F.lit(round(validation_share * 1000))
    return df.where(~is_val), df.where(is_val)


def new_version() -> str:
    return time.strftime("v%Y%m%dT%H%M%SZ", time.gmtime())


def fit(train_rows: DataFrame, spec: FeatureSpec, params: TrainParams) -> PipelineModel:
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import GBTClassifier
    from pyspark.ml.feature import VectorAssembler

    assembler = VectorAssembler(inputCols=spec.names, outputCol="features", handleInvalid="error")
    gbt = GBTClassifier(
        featuresCol="features",
        labelCol=LABEL,
        maxIter=params.max_iter,
        maxDepth=params.max_depth,
        stepSize=params.step_size,
        seed=params.seed,
        maxBins=64,
    )
    return Pipeline(stages=[assembler, gbt]).fit(train_rows)


def probability_of_failure(probability: Any) -> Any:
    """Element 1 of an ML probability vector, as a column (MLlib's vector_to_array, on the JVM).

    pyspark.ml.functions wraps the same JVM function but imports pandas, which the jobs do not need.
    """
    from pyspark import SparkContext
    from pyspark.sql.column import Column, _to_java_column

    sc = SparkContext._active_spark_context
    assert sc is not None and sc._jvm is not None
    arr = Column(
        sc._jvm.org.apache.spark.ml.functions.vector_to_array(_to_java_column(probability), "float64")
    )
    return arr[1]


def score(
    pipeline: PipelineModel,
    df: DataFrame,
    spec: FeatureSpec,
    params: TrainParams,
    threshold: float | None = None,
    version: str | None = None,
    hold_min: float = 0.0,
) -> DataFrame:
    """df (prepared) + failure_risk (scorable rows), alarm_risk, held_risk [+ warning, model_version]."""
    from pyspark.sql import functions as F

    C = F.col
    # Every row goes through the model and the risk is kept for the scorable ones: a filter on
    # `scorable` would be pushed down into the feature projections and inline them all again.
    assembler = pipeline.stages[0]
    assembler.setHandleInvalid("keep")  # NaN for the features a non-scorable row lacks
    scored = pipeline.transform(df)
    risk = F.when(C(SCORABLE), probability_of_failure(C("probability")))
    out = add_alarm_risk(scored.select(*df.columns, risk.alias(FAILURE_RISK)), spec, params.smooth_min)
    out = add_held_risk(out, spec, hold_min)
    if threshold is not None:
        out = out.withColumn(WARN, warning(threshold))
    if version is not None:
        out = out.withColumn(MODEL_VERSION, F.lit(version))
    return out


def add_alarm_risk(df: DataFrame, spec: FeatureSpec, smooth_min: float) -> DataFrame:
    """alarm_risk: failure_risk averaged over the device's last smooth_min minutes (scorable rows)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    C = F.col
    recent = Window.partitionBy(DEVICE).orderBy(TS).rowsBetween(1 - spec.rows(smooth_min), 0)
    return df.withColumn(ALARM_RISK, F.when(C(SCORABLE), F.avg(C(FAILURE_RISK)).over(recent)))


def add_held_risk(df: DataFrame, spec: FeatureSpec, hold_min: float, name: str = HELD_RISK) -> DataFrame:
    """held_risk: the lowest alarm_risk of the device's last hold_min minutes, null unless all have one.

    A warning is held_risk >= threshold: the alarm risk stayed there for hold_min in a row (a
    debounce; hold_min 0 = the record's own alarm risk). Same rule as incremental.AlarmState.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    C = F.col
    k = hold_rows(spec, hold_min)
    if k == 1:
        return df.withColumn(name, C(ALARM_RISK))
    last = Window.partitionBy(DEVICE).orderBy(TS).rowsBetween(1 - k, 0)
    held = F.when(F.count(C(ALARM_RISK)).over(last) == F.lit(k), F.min(C(ALARM_RISK)).over(last))
    return df.withColumn(name, held)


def warning(threshold: float, held_col: str = HELD_RISK) -> Any:
    from pyspark.sql import functions as F

    return F.coalesce(F.col(SCORABLE) & (F.col(held_col) >= F.lit(float(threshold))), F.lit(False))


def train(
    spark: SparkSession,
    processed: DataFrame,
    params: TrainParams | None = None,
    spec: FeatureSpec | None = None,
    min_std: dict[str, float] | None = None,
    version: str | None = None,
    log: Any = None,
) -> TrainedModel:
    from pyspark.sql import functions as F

    C = F.col
    params = params or TrainParams()
    spec = spec or FeatureSpec()
    say = log or (lambda *_: None)
    t0 = time.monotonic()
    prepared = prepare(processed, spec, params.horizon_min, min_std).cache()
    train_part, val_part = split_devices(prepared, params.validation_share, params.seed)
    labelled = train_part.where(C(SCORABLE) & C(LABEL).isNotNull())
    sample = labelled.sampleBy(LABEL, {0.0: params.negative_fraction, 1.0: 1.0}, seed=params.seed).cache()
    counts = {float(r[LABEL]): int(r["count"]) for r in sample.groupBy(LABEL).count().collect()}
    say(f"training rows: {counts} (negatives sampled at {params.negative_fraction})")
    pipeline = fit(sample, spec, params)
    sample.unpersist()
    say(f"fitted in {time.monotonic() - t0:.0f} s")
    val_scored = score(pipeline, val_part, spec, params)
    holds = {h: f"_held_{i}" for i, h in enumerate(params.hold_grid)}
    for h, name in holds.items():
        val_scored = add_held_risk(val_scored, spec, h, name)
    val_scored = val_scored.cache()
    points: list[AlarmPoint] = []
    for h, name in holds.items():
        for t in params.threshold_grid:
            a = alarm_metrics(
                val_scored.withColumn(WARN, warning(t, name)),
                WARN,
                params.horizon_min,
                params.clear_min,
                spec.interval_s,
            )
            pt = AlarmPoint(
                t, h, a["precision"], a["recall"], a["false_alarms_per_100_device_days"], a["median_lead_min"]
            )
            points.append(pt)
            say(
                f"  hold {h:g} min, threshold {t:.2f}: alarm precision {pt.precision:.3f}"
                f" recall {pt.recall:.3f} false alarms/100 dd {pt.false_alarms_per_100_device_days}"
                f" median lead {pt.median_lead_min}"
            )
    choice = pick_alarm_setting(
        points, params.target_precision, params.target_false_alarms, params.min_recall, params.min_lead_min
    )
    say(
        f"threshold {choice.threshold:.3f}, hold {choice.hold_min:g} min: alarm precision"
        f" {choice.precision:.3f}, recall {choice.recall:.3f} (targets met: {choice.target_met})"
    )
    val_warn = val_scored.withColumn(WARN, warning(choice.threshold, holds[choice.hold_min]))
    report = {
        "training_rows": {str(int(k)): v for k, v in counts.items()},
        "validation_devices": val_part.select(DEVICE).distinct().count(),
        "threshold_curve": [p.to_json() for p in points],
        "validation_records": record_metrics(val_warn.where(C(SCORABLE)), WARN, FAILURE_RISK),
        "validation_alarms": alarm_metrics(
            val_warn, WARN, params.horizon_min, params.clear_min, spec.interval_s
        ),
        "train_seconds": round(time.monotonic() - t0, 1),
    }
    val_scored.unpersist()
    prepared.unpersist()
    return TrainedModel(version or new_version(), pipeline, spec, params, choice, report)


def save(model: TrainedModel, spark: SparkSession, out: str) -> str:
    """Write <out>/<version>/model and model.json; returns the version directory."""
    from fms_jobs.sparkutil.hadoopfs import HadoopFS

    base = f"{out.rstrip('/')}/{model.version}"
    model.pipeline.write().overwrite().save(f"{base}/model")
    fs = HadoopFS(spark, base)
    fs.write_text(f"{base}/model.json", json.dumps(model.meta(), indent=1, sort_keys=True))
    return base


def load(spark: SparkSession, version_dir: str) -> TrainedModel:
    from pyspark.ml import PipelineModel

    from fms_jobs.sparkutil.hadoopfs import HadoopFS

    base = version_dir.rstrip("/")
    text = HadoopFS(spark, base).read_text(f"{base}/model.json")
    if text is None:
        raise FileNotFoundError(f"{base}/model.json")
    meta = json.loads(text)
    t = meta["threshold"]
    return TrainedModel(
        meta["version"],
        PipelineModel.load(f"{base}/model"),
        FeatureSpec.from_json(meta["feature_spec"]),
        TrainParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["params"].items()}),
        ThresholdChoice(**t),
        meta.get("report", {}),
    )

"""The streaming job: Kafka ``fms.sensor.raw`` -> four-dimension validation -> Parquet lake + dead letters.

Query plan (one streaming query, one checkpoint)::

    kafka -> classify (stateless rules as column expressions) -+-> every row ---------------------+
                                                               +-> candidates                     |
                                                                   -> withWatermark(event_time)   |
                                                                   -> dropDuplicates(device, time)|
                                                                   -> survivor ids ---------------+-> union
                                                                                          -> foreachBatch

Every record of the batch arrives in ``foreachBatch`` once as itself and, if it
survived Spark's stateful duplicate detection (RocksDB state store, checkpointed
with the batch), once more as a survivor id (Kafka partition, offset). So every
record is accounted for: a candidate that is not a survivor is either behind the
watermark (Spark drops such rows before the state lookup; we re-derive the exact
watermark Spark used from the offset log and dead-letter them as LATE_EVENT) or
a duplicate - nothing disappears silently.

Per batch, :class:`BatchProcessor`:

1. decides each record's outcome: stored / dead-lettered (reason) / duplicate.
   When every candidate survived duplicate detection (the usual batch) the
   survivor flag is the candidate flag and the two views need no join: the
   batch's first pass decides so, and counts the survivors in the same Spark
   job; a batch with duplicates or late rows is decided again, with the join,
   from the cached batch;
2. flags per-device order (OUT_OF_ORDER) and computes the anomaly score against
   the per-device state of the previous batch (:mod:`.state`); the same job
   groups the batch by (device, outcome, reason) for the summary, the state and
   the creation times of the stored rows (the e2e latency histogram is computed
   on the driver once the commit time is known - no job after publishing);
3. writes the processed rows (seed 004 schema, Parquet+Snappy, partitioned by
   year/month/day/hour) and the dead letters (original bytes, reason) through
   :class:`fms_jobs.streaming.publish.BatchPublisher` - idempotent per batch id;
4. publishes the dead letters to the ``fms.sensor.dlq`` topic (at-least-once,
   keyed by the source coordinates ``topic-partition-offset`` so a consumer can
   drop the copies a replayed batch may add; a marker file skips the topic write
   when only the commit was lost);
5. saves the per-device state, exports the batch's metrics, and checks
   conservation: in = stored + dead-lettered + duplicates.

Exactly-once: Spark writes batch N's offsets before running it and its commit
only after ``foreachBatch`` returned; a crash re-runs batch N with the same
offsets, the same state-store version, the same watermark and the same
per-device state file, and the publisher replaces whatever the crashed attempt
left. Hence each input record is in the lake once - stored or dead-lettered.

Poison pills: no single record may block a batch. A write that fails is retried
on its own batch only after telling a record from the infrastructure:

* a probe writes one all-null row with the output's schema next to the batch's
  staging directory (the dead-letter topic: its partitions' offsets are read);
  if that fails too, the output is down (HDFS, brokers): the batch fails and
  Spark retries it later, as before;
* otherwise the failing frame is bisected by (Kafka partition, offset) - each
  half written to a scratch directory, or sent to the topic - down to the
  records whose write fails on their own: 2k*log2(n) writes for k bad records
  among n, only on the failure path; more than MAX_UNWRITABLE_PER_OUTPUT
  records, a failure that no single record reproduces or an exhausted time
  budget re-raise the original error;
* the batch is decided, counted and written again (same batch id, staging
  rewritten) with those records forced to dead letter, reason UNWRITABLE,
  detail ``<output>: <error class>: <message>``; their dead-letter row is
  raw-only (original bytes, key, Kafka coordinates, reason) with the typed
  values that could be the cause null. If even that row cannot be written the
  batch fails. Conservation, per-device counts, metrics and state follow the
  final outcome; ``fms_stream_unwritable_records_total{output}`` counts them.

The source is one topic (``kafka.topic``), so (partition, offset) identifies a
record of the batch.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fms_jobs.lake import PARTITION_COLUMNS
from fms_jobs.quality.reasons import DEAD_LETTER_DIMENSIONS, Dimension, Disposition, ReasonCode, WriteReason
from fms_jobs.quality.reference import WATERMARK_DETAIL
from fms_jobs.quality.rulebook import QualityRules
from fms_jobs.quality.schema import (
    CREATED_HEADER,
    DEVICE_COLUMN,
    FAIL_COLUMN,
    READING_ROW_COLUMNS,
    READINGS,
    TEMPERATURE_COLUMN,
    TIME_COLUMN,
)
from fms_jobs.quality.spark_rules import classify, output_name
from fms_jobs.sparkutil.hadoopfs import HadoopFS
from fms_jobs.sparkutil.session import REBASE_CONF
from fms_jobs.streaming.config import StreamConfig, kafka_client_options
from fms_jobs.streaming.metrics import StreamMetrics
from fms_jobs.streaming.publish import BatchPublisher, Publication
from fms_jobs.streaming.state import BatchAggregate, DeviceStateStore, DeviceStats, merge
from fms_jobs.streaming.watchdog import StallWatchdog

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger(__name__)

STORED, DEAD, DUP = "stored", "dead_letter", "duplicate"
UNWRITABLE = WriteReason.UNWRITABLE
# Poison-pill isolation (see the module documentation). Beyond these bounds a failed write is not
# blamed on records: the batch fails as before. The time budget stays well below the stall watchdog.
OUTPUTS = ("processed", "dlq", "dlq_topic")
MAX_UNWRITABLE_PER_OUTPUT = 50
MAX_WRITE_ROUNDS = 3
ISOLATION_BUDGET_S = 300.0
DETAIL_MAX_CHARS = 200
SIGNAL_COLUMNS = {s: output_name(s) for s in READINGS}

# Columns of the processed table (seed 004 + quality, lineage and latency columns).
PROCESSED_COLUMNS = (
    *READING_ROW_COLUMNS,
    "temperature_fahrenheit",
    "anomaly_flag",
    "anomaly_score",
    "day_of_week",
    "is_weekend",
    "quality_completeness",
    "quality_accuracy",
    "quality_consistency",
    "quality_timeliness",
    "quality_flags",
    "created_at",
    "ingested_at",
    "processed_at",
    "kafka_partition",
    "kafka_offset",
    "batch_id",
    "rules_version",
    *PARTITION_COLUMNS,
)
DLQ_COLUMNS = (
    "reason",
    "detail",
    "dimension",
    "rules_version",
    "raw_value",
    "raw_key",
    "raw_size",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp",
    "created_at",
    DEVICE_COLUMN,
    "event_time",
    "batch_id",
    "dead_lettered_at",
    *PARTITION_COLUMNS,
)


# --------------------------------------------------------------------------- plan


def read_source(spark: SparkSession, cfg: StreamConfig) -> DataFrame:
    if cfg.source == "parquet":
        from pyspark.sql import types as T

        schema = T.StructType(
            [
                T.StructField("key", T.BinaryType()),
                T.StructField("value", T.BinaryType()),
                T.StructField("topic", T.StringType()),
                T.StructField("partition", T.IntegerType()),
                T.StructField("offset", T.LongType()),
                T.StructField("timestamp", T.TimestampType()),
                T.StructField("timestampType", T.IntegerType()),
                T.StructField(
                    "headers",
                    T.ArrayType(
                        T.StructType(
                            [T.StructField("key", T.StringType()), T.StructField("value", T.BinaryType())]
                        )
                    ),
                ),
            ]
        )
        # one file per micro-batch: a replay keeps the batch boundaries it was recorded with
        return spark.readStream.schema(schema).option("maxFilesPerTrigger", "1").parquet(str(cfg.source_path))
    k = cfg.kafka
    reader = (
        spark.readStream.format("kafka")
        .options(**kafka_client_options(k))
        .option("subscribe", k.topic)
        .option("startingOffsets", k.starting_offsets)
        .option("failOnDataLoss", str(k.fail_on_data_loss).lower())
        .option("includeHeaders", "true")
    )
    if k.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(k.max_offsets_per_trigger))
    if k.min_partitions:
        reader = reader.option("minPartitions", str(k.min_partitions))
    return reader.load()


def created_ms_column(headers: str = "headers", fallback: str = "timestamp") -> Column:
    """Creation time from the ``fms-created-ms`` header, else the Kafka record timestamp."""
    from pyspark.sql import functions as F

    h = F.element_at(F.filter(F.col(headers), lambda x: x["key"] == F.lit(CREATED_HEADER)), 1)
    from_header = F.decode(h["value"], "UTF-8").cast("long")
    return F.coalesce(from_header, F.unix_millis(F.col(fallback)))


def build_stream(spark: SparkSession, cfg: StreamConfig, rules: QualityRules) -> DataFrame:
    """The streaming DataFrame handed to foreachBatch (all rows + duplicate-detection survivors)."""
    from pyspark.sql import functions as F

    raw = read_source(spark, cfg).select(
        "key", "value", "topic", "partition", "offset", "timestamp", "headers"
    )
    base = classify(raw, rules).withColumn("created_ms", created_ms_column()).drop("headers")
    all_rows = base.withColumn("_all", F.lit(True))
    # Only candidates take part in duplicate detection. Rejected rows get the epoch as their dedup
    # time: they never move the watermark and Spark drops them as late before the state store.
    # (A projection, not a filter: Catalyst would inline the whole rule tree into a pushed-down filter.)
    epoch = F.lit("1970-01-01 00:00:00").cast("timestamp")
    dedup_time = F.when(F.col("q_reason").isNull(), F.col("event_time")).otherwise(epoch)
    survivors = (
        base.select("topic", "partition", "offset", DEVICE_COLUMN, dedup_time.alias("_dedup_time"))
        .withWatermark("_dedup_time", f"{rules.duplicate_watermark_seconds} seconds")
        .dropDuplicates([DEVICE_COLUMN, "_dedup_time"])
        .select(
            "topic",
            "partition",
            "offset",
            F.lit(False).alias("_all"),
            (F.col("_dedup_time") > epoch).alias("_b_cand"),
        )
    )
    return all_rows.unionByName(survivors, allowMissingColumns=True)


# --------------------------------------------------------------------------- batch


@dataclass
class BatchSummary:
    batch_id: int
    records_in: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)
    passed: dict[str, int] = field(default_factory=lambda: {d.value: 0 for d in Dimension})
    clean: int = 0
    devices: dict[int, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    watermark_ms: int = 0
    e2e_count: int = 0
    e2e_sum_s: float = 0.0
    files: int = 0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step (profiling)
    unwritable: dict[str, int] = field(default_factory=dict)  # isolated poison pills by output

    def mark(self, phase: str, since: float) -> float:
        now = time.time()
        self.phases[phase] = round(self.phases.get(phase, 0.0) + now - since, 3)
        return now

    @property
    def conserved(self) -> bool:
        return self.records_in == self.stored + sum(self.dead_lettered.values()) + self.duplicates

    def as_metrics(self) -> dict[str, Any]:
        return {
            "in": self.records_in,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered,
            "flags": self.flags,
            "passed": self.passed,
            "clean": self.clean,
            "conserved": self.conserved,
            "devices": self.devices,
            "phases": self.phases,
            "unwritable": self.unwritable,
        }


def read_offset_metadata(fs: HadoopFS, checkpoint: str, batch_id: int) -> dict[str, Any] | None:
    text = fs.read_text(f"{checkpoint.rstrip('/')}/offsets/{batch_id}")
    if not text:
        return None
    lines = text.splitlines()
    return json.loads(lines[1]) if len(lines) > 1 and lines[1].startswith("{") else None


class BatchProcessor:
    """The foreachBatch function (see the module documentation)."""

    def __init__(
        self,
        spark: SparkSession,
        cfg: StreamConfig,
        rules: QualityRules,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self.spark = spark
        self.cfg = cfg
        self.rules = rules
        self.metrics = metrics or StreamMetrics(per_device=cfg.metrics.per_device)
        self.ckpt = cfg.paths.checkpoint.rstrip("/")
        self.fs_ckpt = HadoopFS(spark, self.ckpt)
        self.processed = BatchPublisher(HadoopFS(spark, cfg.paths.processed), cfg.paths.processed)
        self.dlq = BatchPublisher(HadoopFS(spark, cfg.paths.dlq), cfg.paths.dlq)
        self.state = DeviceStateStore(self.fs_ckpt, f"{self.ckpt}/fms_state")
        self.summaries: list[BatchSummary] = []
        self.signals = list(rules.anomaly.signals)
        self._batch_aggs: list[BatchAggregate] = []
        self._created_ms: list[int] = []  # creation times (ms) of the stored rows of the batch
        self._offsets_seen: tuple[int, dict[str, Any] | None] = (-2, None)  # (batch id, its offset metadata)
        # one-line base64 in the dead-letter topic, whatever the session defaults are
        spark.conf.set("spark.sql.chunkBase64String.enabled", "false")
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        # timestamps of any year written as they are (see sparkutil.session.REBASE_CONF)
        for k, v in REBASE_CONF.items():
            spark.conf.set(k, v)
        stall = cfg.stall_restart_seconds
        self.isolation_budget_s = min(ISOLATION_BUDGET_S, stall / 3) if stall else ISOLATION_BUDGET_S

    # ------------------------------------------------------------------ watermark
    def late_watermark_ms(self, batch_id: int) -> tuple[int, int]:
        """(watermark Spark used to drop late rows in this batch, eviction watermark of this batch)."""
        cur = read_offset_metadata(self.fs_ckpt, self.ckpt, batch_id) or {}
        # an offset-log entry never changes once written: the previous batch's, read last time, is kept
        if batch_id > 0 and self._offsets_seen[0] == batch_id - 1:
            prev = self._offsets_seen[1]
        else:
            prev = read_offset_metadata(self.fs_ckpt, self.ckpt, batch_id - 1) if batch_id > 0 else None
        self._offsets_seen = (batch_id, cur or None)
        evict = int(cur.get("batchWatermarkMs", 0))
        late = int((prev or cur).get("batchWatermarkMs", 0))
        return late, evict

    # ------------------------------------------------------------------ decisions
    @staticmethod
    def _survivor_counts(df: DataFrame) -> DataFrame:
        """One row: survivors of duplicate detection that were candidates (``surv``) and any others.

        Not an action of its own: it rides along with the batch's single aggregation (_aggregate),
        which decides whether the join-free decision of the same pass was right.
        """
        from pyspark.sql import functions as F

        C = F.col
        return df.where(~C("_all")).agg(
            F.sum(F.when(C("_b_cand"), 1).otherwise(0)).alias("surv"),
            F.sum(F.when(~C("_b_cand"), 1).otherwise(0)).alias("other"),
        )

    def _decide(
        self,
        df: DataFrame,
        batch_id: int,
        late_wm_ms: int,
        state: dict[int, DeviceStats],
        counts: dict[str, int] | None = None,
        unwritable: Mapping[tuple[int, int], str] | None = None,
    ) -> DataFrame:
        """Outcomes; ``unwritable`` (partition, offset) -> detail forces records to UNWRITABLE."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        C = F.col
        rows = df.where(C("_all"))
        if unwritable:
            forced_df = self.spark.createDataFrame(
                [(p, o, d) for (p, o), d in sorted(unwritable.items())],
                "partition int, offset long, _unwritable string",
            )
            rows = rows.join(F.broadcast(forced_df), ["partition", "offset"], "left")
        else:
            rows = rows.withColumn("_unwritable", F.lit(None).cast("string"))
        forced = C("_unwritable").isNotNull()
        cand = C("q_reason").isNull()
        # Fast path: when every candidate survived duplicate detection (the usual case) the
        # survivor flag equals the candidate flag and the join is not needed. Without counts the
        # fast path is assumed; process() checks it with the counts of the same pass (fast_path_holds).
        if counts is None or fast_path_holds(counts):
            j = rows.withColumn("_survivor", cand)
        else:
            surv = df.where(~C("_all")).select("topic", "partition", "offset", F.lit(True).alias("_survivor"))
            j = rows.join(surv, ["topic", "partition", "offset"], "left")
        survivor = C("_survivor").eqNullSafe(F.lit(True))
        behind = F.unix_micros(C("event_time")) <= F.lit(late_wm_ms * 1000)
        j = j.select(
            "*",
            F.when(forced, F.lit(DEAD))
            .when(~cand, F.lit(DEAD))
            .when(survivor, F.lit(STORED))
            .when(behind, F.lit(DEAD))
            .otherwise(F.lit(DUP))
            .alias("outcome"),
            F.when(forced, F.lit(UNWRITABLE.value))
            .when(~cand, C("q_reason"))
            .when(survivor, F.lit(None))
            .when(behind, F.lit(ReasonCode.LATE_EVENT.value))
            .otherwise(F.lit(ReasonCode.DUPLICATE.value))
            .alias("reason"),
            F.when(forced, C("_unwritable"))
            .when(~cand, C("q_detail"))
            .when(~survivor & behind, F.lit(WATERMARK_DETAIL))
            .alias("detail"),
            (cand & ~survivor & behind).alias("_behind"),
        )
        # per-device state of the previous batch (small; broadcast)
        sig = self.signals
        st_schema = T.StructType(
            [T.StructField(DEVICE_COLUMN, T.IntegerType()), T.StructField("st_n", T.LongType())]
            + [T.StructField("st_max_us", T.LongType())]
            + [T.StructField(f"st_mean_{s}", T.DoubleType()) for s in sig]
            + [T.StructField(f"st_std_{s}", T.DoubleType()) for s in sig]
        )
        st_rows = [
            (dev, s.n, s.max_event_us, *[s.mean.get(x) for x in sig], *[s.std(x) for x in sig])
            for dev, s in state.items()
        ]
        st_df = self.spark.createDataFrame(st_rows, st_schema)
        j = j.join(F.broadcast(st_df), DEVICE_COLUMN, "left")
        is_stored = C("outcome") == F.lit(STORED)
        ev_us = F.unix_micros(C("event_time"))
        ordered = (
            Window.partitionBy(DEVICE_COLUMN)
            .orderBy("partition", "offset")
            .rowsBetween(Window.unboundedPreceding, -1)
        )
        whole = Window.partitionBy(DEVICE_COLUMN)
        prev_max = F.greatest(C("st_max_us"), F.max(F.when(is_stored, ev_us)).over(ordered))
        a = self.rules.anomaly
        warm = a.warmup_records
        batch_n = F.count(F.when(is_stored, F.lit(1))).over(whole)
        zs: list[Column] = []
        for s in sig:
            x = C(SIGNAL_COLUMNS[s])
            b_mean = F.avg(F.when(is_stored, x)).over(whole)
            b_std = F.stddev_pop(F.when(is_stored, x)).over(whole)
            use_state = C("st_n") >= F.lit(warm)
            mean = F.when(use_state, C(f"st_mean_{s}")).when(batch_n >= F.lit(max(warm, 2)), b_mean)
            std = F.when(use_state, C(f"st_std_{s}")).when(batch_n >= F.lit(max(warm, 2)), b_std)
            zs.append(F.abs(x - mean) / F.greatest(std, F.lit(a.min_stddev[s])))
        score = F.coalesce(F.greatest(*zs) if len(zs) > 1 else zs[0], F.lit(0.0))
        j = j.select(
            "*",
            (is_stored & prev_max.isNotNull() & (ev_us < prev_max)).alias("_ooo"),
            F.when(is_stored, F.round(score, 4)).alias("anomaly_score"),
        )
        ooo = C("_ooo")
        flags = F.when(ooo, F.concat(C("q_flags"), F.array(F.lit(ReasonCode.OUT_OF_ORDER.value)))).otherwise(
            C("q_flags")
        )
        return j.select(
            "*",
            flags.alias("quality_flags"),
            C("q_completeness").alias("quality_completeness"),
            (C("q_accuracy") & ~forced).alias("quality_accuracy"),
            (C("q_consistency") & (C("outcome") != F.lit(DUP)) & ~ooo).alias("quality_consistency"),
            (C("q_timeliness") & ~C("_behind")).alias("quality_timeliness"),
            (C(FAIL_COLUMN) | (C("anomaly_score") >= F.lit(a.z_threshold))).alias("anomaly_flag"),
        )

    # ------------------------------------------------------------------ outputs
    def processed_frame(self, j: DataFrame, batch_id: int, processed_at_ms: int) -> DataFrame:
        from pyspark.sql import functions as F

        C = F.col
        ts = C("event_time")
        dow_iso = ((F.dayofweek(ts) + F.lit(5)) % F.lit(7)) + F.lit(1)  # Monday=1 .. Sunday=7
        return j.where(C("outcome") == F.lit(STORED)).select(
            C(DEVICE_COLUMN).cast("int").alias(DEVICE_COLUMN),
            ts.alias(TIME_COLUMN),
            *[C(SIGNAL_COLUMNS[s]).cast("double").alias(SIGNAL_COLUMNS[s]) for s in READINGS],
            C(FAIL_COLUMN),
            F.round(C(TEMPERATURE_COLUMN) * F.lit(9.0 / 5.0) + F.lit(32.0), 4).alias(
                "temperature_fahrenheit"
            ),
            C("anomaly_flag"),
            C("anomaly_score"),
            dow_iso.alias("day_of_week"),
            (dow_iso >= F.lit(6)).alias("is_weekend"),
            C("quality_completeness"),
            C("quality_accuracy"),
            C("quality_consistency"),
            C("quality_timeliness"),
            C("quality_flags"),
            F.timestamp_millis(C("created_ms")).alias("created_at"),
            C("arrival_time").alias("ingested_at"),
            F.timestamp_millis(F.lit(processed_at_ms)).alias("processed_at"),
            C("partition").alias("kafka_partition"),
            C("offset").alias("kafka_offset"),
            F.lit(batch_id).cast("long").alias("batch_id"),
            F.lit(self.rules.rules_version).alias("rules_version"),
            F.year(ts).alias("year"),
            F.month(ts).alias("month"),
            F.dayofmonth(ts).alias("day"),
            F.hour(ts).alias("hour"),
        )

    def dlq_frame(self, j: DataFrame, batch_id: int, processed_at_ms: int) -> DataFrame:
        from pyspark.sql import functions as F

        C = F.col
        keep = C("outcome") == F.lit(DEAD)
        if self.rules.duplicates_dead_letter_copy:
            keep = keep | (C("outcome") == F.lit(DUP))
        dim = F.lit(None).cast("string")
        for reason, dimension in DEAD_LETTER_DIMENSIONS.items():
            dim = F.when(C("reason") == F.lit(reason), F.lit(dimension.value)).otherwise(dim)
        return j.where(keep).select(
            *self._dead_letter_columns(
                C("reason"),
                C("detail"),
                dim,
                F.timestamp_millis(C("created_ms")),
                C(DEVICE_COLUMN).cast("int"),
                C("event_time"),
                batch_id,
                processed_at_ms,
            )
        )

    def _dead_letter_columns(
        self,
        reason: Column,
        detail: Column,
        dimension: Column,
        created_at: Column,
        device_id: Column,
        event_time: Column,
        batch_id: int,
        processed_at_ms: int,
    ) -> list[Column]:
        """DLQ_COLUMNS: the verdict and typed values given, the original bytes and Kafka coordinates
        of the row, partitioned by the Kafka timestamp (shared by dlq_frame and unwritable_frame)."""
        from pyspark.sql import functions as F

        C = F.col
        kts = C("arrival_time")
        return [
            reason.alias("reason"),
            detail.alias("detail"),
            dimension.alias("dimension"),
            F.lit(self.rules.rules_version).alias("rules_version"),
            C("value").alias("raw_value"),
            C("key").alias("raw_key"),
            C("q_size").alias("raw_size"),
            C("topic").alias("kafka_topic"),
            C("partition").alias("kafka_partition"),
            C("offset").alias("kafka_offset"),
            kts.alias("kafka_timestamp"),
            created_at.alias("created_at"),
            device_id.alias(DEVICE_COLUMN),
            event_time.alias("event_time"),
            F.lit(batch_id).cast("long").alias("batch_id"),
            F.timestamp_millis(F.lit(processed_at_ms)).alias("dead_lettered_at"),
            F.year(kts).alias("year"),
            F.month(kts).alias("month"),
            F.dayofmonth(kts).alias("day"),
            F.hour(kts).alias("hour"),
        ]

    def unwritable_frame(self, j: DataFrame, batch_id: int, processed_at_ms: int) -> DataFrame:
        """Raw-only dead letters of the records no output accepted (UNWRITABLE), in DLQ_COLUMNS.

        Original bytes, key, Kafka coordinates and timestamp, reason and detail; the typed values
        that could have been the cause (device_id, event_time, created_at from a header) are null,
        so this row cannot fail for the same reason. Partitioned by the Kafka timestamp as usual.
        """
        from pyspark.sql import functions as F

        C = F.col
        return j.where(C("_unwritable").isNotNull()).select(
            *self._dead_letter_columns(
                F.lit(UNWRITABLE.value),
                C("_unwritable"),
                F.lit(UNWRITABLE.dimension.value),
                F.lit(None).cast("timestamp"),
                F.lit(None).cast("int"),
                F.lit(None).cast("timestamp"),
                batch_id,
                processed_at_ms,
            )
        )

    def dead_letter_rows(
        self, j: DataFrame, batch_id: int, processed_at_ms: int, any_unwritable: bool
    ) -> DataFrame:
        """The batch's dead-letter rows: dlq_frame of the records, raw-only rows of UNWRITABLE ones."""
        if not any_unwritable:
            return self.dlq_frame(j, batch_id, processed_at_ms)
        from pyspark.sql import functions as F

        regular = self.dlq_frame(j.where(F.col("_unwritable").isNull()), batch_id, processed_at_ms)
        return regular.unionByName(self.unwritable_frame(j, batch_id, processed_at_ms))

    def dlq_topic_frame(self, dlq: DataFrame) -> DataFrame:
        from pyspark.sql import functions as F

        C = F.col
        limit = self.cfg.dlq_topic_max_value_bytes
        key = F.concat_ws(
            "-", C("kafka_topic"), C("kafka_partition").cast("string"), C("kafka_offset").cast("string")
        )
        envelope = F.struct(
            C("reason"),
            C("detail"),
            C("dimension"),
            C("rules_version"),
            F.struct(
                C("kafka_topic").alias("topic"),
                C("kafka_partition").alias("partition"),
                C("kafka_offset").alias("offset"),
                F.unix_millis(C("kafka_timestamp")).alias("timestamp_ms"),
            ).alias("source"),
            C(DEVICE_COLUMN),
            F.date_format(C("event_time"), "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'").alias("event_time"),
            C("raw_size").alias("size"),
            (C("raw_size") > F.lit(limit)).alias("truncated"),
            one_line_base64(F.substring(C("raw_value"), 1, limit)).alias("value_b64"),
            one_line_base64(C("raw_key")).alias("key_b64"),
            C("batch_id"),
        )
        headers = F.array(
            F.struct(F.lit("fms-reason").alias("key"), F.encode(C("reason"), "UTF-8").alias("value")),
            F.struct(
                F.lit(CREATED_HEADER).alias("key"),
                # no created_at (an UNWRITABLE dead letter): the Kafka timestamp, as without the header
                F.encode(
                    F.unix_millis(F.coalesce(C("created_at"), C("kafka_timestamp"))).cast("string"), "UTF-8"
                ).alias("value"),
            ),
        )
        return dlq.select(key.alias("key"), F.to_json(envelope).alias("value"), headers.alias("headers"))

    # ------------------------------------------------------------------ the batch
    def __call__(self, df: DataFrame, batch_id: int) -> None:
        # Start and end ("batch N: in=...") in the journal: a batch cut off by a crash shows as
        # started but not ended, and the restarted driver starts the same id again (replay).
        log.info("batch %d: started", batch_id)
        self.process(df, batch_id)

    def process(self, df: DataFrame, batch_id: int) -> BatchSummary:
        from pyspark import StorageLevel

        t0 = time.time()
        processed_at_ms = int(t0 * 1000)
        summary = BatchSummary(batch_id)
        late_wm, evict_wm = self.late_watermark_ms(batch_id)
        summary.watermark_ms = evict_wm
        state = self.state.state_before(batch_id)
        df.persist(StorageLevel.MEMORY_AND_DISK)
        j: DataFrame | None = None
        t = summary.mark("prepare", t0)
        # (partition, offset) -> (output, detail) of the records no output accepts (poison pills)
        unwritable: dict[tuple[int, int], tuple[str, str]] = {}
        # candidates and survivors of duplicate detection, known after the batch's first pass
        counts: dict[str, int] | None = None
        try:
            for attempt in range(MAX_WRITE_ROUNDS):
                if attempt:
                    # Decide, count and write the batch again with the isolated records dead-lettered:
                    # same batch id, the staging directories rewritten, the topic re-sent.
                    summary = BatchSummary(batch_id, watermark_ms=evict_wm, phases=dict(summary.phases))
                    self._restart_outputs(batch_id)
                forced = {key: detail for key, (_, detail) in unwritable.items()}
                while True:
                    if j is not None:
                        j.unpersist()
                    j = self._decide(df, batch_id, late_wm, state, counts, forced)
                    j = j.persist(StorageLevel.MEMORY_AND_DISK)
                    # The first pass is the batch's one Spark job before the writes: it reads Kafka,
                    # classifies, deduplicates (state store), decides without the survivor join and
                    # counts, survivors included. Only a batch with duplicates or late rows is then
                    # decided again with the join (from the cached batch) - as many jobs as before.
                    first_pass = counts is None
                    rows, seen = self._aggregate(j, df if first_pass else None)
                    if first_pass:
                        counts = seen
                        t = summary.mark("read_classify_dedup", t)
                        if not fast_path_holds(counts):
                            continue
                    break
                self._summarise(rows, summary, batch_id)
                t = summary.mark("decide_and_count", t)
                if summary.records_in == 0:
                    self._finish(summary, t0)
                    return summary
                failed = self._write_outputs(j, summary, batch_id, processed_at_ms, bool(forced))
                t = summary.mark("writes", t)
                if not failed:
                    break
                first = next(iter(failed.values()))[0]
                if attempt == MAX_WRITE_ROUNDS - 1 or any(
                    not isinstance(e, Exception) for e, _ in failed.values()
                ):
                    raise first
                unwritable.update(self._isolate(batch_id, failed, unwritable))
                t = summary.mark("isolate", t)
            summary.unwritable = dict(Counter(output for output, _ in unwritable.values()))
            if unwritable:
                log.warning(
                    "batch %d: %d unwritable record(s) dead-lettered as %s (by output: %s)",
                    batch_id,
                    len(unwritable),
                    UNWRITABLE.value,
                    summary.unwritable,
                )
            n_dlq = sum(summary.dead_lettered.values()) + self._dup_copies(summary)
            # publishing is a series of NameNode round trips per dataset: both datasets side by side
            published: dict[str, Publication] = {}
            publish: dict[str, Callable[[], None]] = {}
            # with nothing left to store after isolating poison pills, an earlier attempt's files of
            # this batch (a write that failed only this time) must still be replaced - by none
            if summary.stored or (unwritable and self.processed.read_manifest(batch_id)):
                publish["publish.processed"] = lambda: published.update(p=self.processed.publish(batch_id))
            if n_dlq:
                publish["publish.dlq"] = lambda: published.update(d=self.dlq.publish(batch_id))
            summary.phases.update(run_side_by_side(publish))
            pubs = list(published.values())
            summary.files = sum(len(p.files) for p in pubs)
            commit_ms = max([p.committed_at_ms for p in pubs], default=int(time.time() * 1000))
            t = summary.mark("publish", t)
            # the latency histogram from the creation times collected by the batch's pass: no Spark job
            if summary.stored:
                self._latency(commit_ms, summary)
            self._save_state(batch_id, state)
            t = summary.mark("latency_and_state", t)
        finally:
            if j is not None:
                j.unpersist()
            df.unpersist()
        self._finish(summary, t0)
        return summary

    def _dup_copies(self, summary: BatchSummary) -> int:
        return summary.duplicates if self.rules.duplicates_dead_letter_copy else 0

    def _dlq_topic_active(self) -> bool:
        return self.cfg.dlq_topic_enabled and self.cfg.source == "kafka"

    def _write_outputs(
        self, j: DataFrame, summary: BatchSummary, batch_id: int, processed_at_ms: int, any_unwritable: bool
    ) -> dict[str, tuple[BaseException, DataFrame]]:
        """Write the batch's outputs to staging / the topic; output name -> (error, its frame) of failures."""
        stored = self.processed_frame(j, batch_id, processed_at_ms)
        dlq = self.dead_letter_rows(j, batch_id, processed_at_ms, any_unwritable)
        n_dlq = sum(summary.dead_lettered.values()) + self._dup_copies(summary)
        # The outputs are independent Spark jobs of one or two tasks each, reading the cached
        # batch: run them side by side so a batch costs the slowest write, not their sum.
        writes: dict[str, Callable[[], None]] = {}
        if summary.stored:
            writes["writes.processed"] = lambda: self._write_processed(stored, batch_id)
        if n_dlq:
            writes["writes.dlq"] = lambda: self._write_dlq(dlq, batch_id)
            if self._dlq_topic_active():
                writes["writes.dlq_topic"] = lambda: self._publish_dlq_topic(dlq, batch_id)
        errors: dict[str, BaseException] = {}
        for step, seconds in run_side_by_side(writes, errors).items():
            summary.phases[step] = round(summary.phases.get(step, 0.0) + seconds, 3)
        frames = {"processed": stored, "dlq": dlq, "dlq_topic": dlq}
        failed: dict[str, tuple[BaseException, DataFrame]] = {}
        for step, e in errors.items():
            output = step.split(".", 1)[1]
            log.error("batch %d: writing %s failed: %s", batch_id, output, error_summary(e))
            failed[output] = (e, frames[output])
        return failed

    def _restart_outputs(self, batch_id: int) -> None:
        """Before writing a batch again: no staged file and no topic marker of the earlier round."""
        self.processed.discard_staging(batch_id)
        self.dlq.discard_staging(batch_id)
        if self._dlq_topic_active():
            self.fs_ckpt.delete(self._dlq_topic_marker(batch_id), False)

    # ------------------------------------------------------------------ poison pills
    def _isolate(
        self,
        batch_id: int,
        failed: Mapping[str, tuple[BaseException, DataFrame]],
        known: Mapping[tuple[int, int], tuple[str, str]],
    ) -> dict[tuple[int, int], tuple[str, str]]:
        """The records that make the failed writes fail; re-raises when the output itself is at fault."""
        deadline = time.monotonic() + self.isolation_budget_s
        found: dict[tuple[int, int], tuple[str, str]] = {}
        for output in sorted(failed, key=OUTPUTS.index):
            error, frame = failed[output]
            for (partition, offset), e in self._isolate_output(batch_id, output, error, frame, deadline):
                if (partition, offset) in known:
                    log.error(
                        "batch %d: even the raw dead letter of partition=%d offset=%d cannot be written "
                        "to %s (%s); the batch fails",
                        batch_id,
                        partition,
                        offset,
                        output,
                        error_summary(e),
                    )
                    raise error
                detail = f"{output}: {error_summary(e)}"[:DETAIL_MAX_CHARS]
                log.warning(
                    "batch %d: record partition=%d offset=%d cannot be written to %s (%s): dead-lettered "
                    "as %s",
                    batch_id,
                    partition,
                    offset,
                    output,
                    error_summary(e),
                    UNWRITABLE.value,
                )
                found.setdefault((partition, offset), (output, detail))
        return found

    def _isolate_output(
        self, batch_id: int, output: str, error: BaseException, frame: DataFrame, deadline: float
    ) -> list[tuple[tuple[int, int], BaseException]]:
        """(partition, offset) and error of each record of ``frame`` whose write fails on its own."""
        try:
            self._probe(output, batch_id, frame)
        except Exception as probe_error:
            log.error(
                "batch %d: %s is not writable at all (probe: %s): an infrastructure fault; the batch "
                "fails and is retried",
                batch_id,
                output,
                error_summary(probe_error),
            )
            raise error from probe_error
        try:
            keys = sorted({(int(r[0]), int(r[1])) for r in frame.select(*KEY_COLUMNS).collect()})
        except Exception as keys_error:
            log.error("batch %d: the %s rows' coordinates cannot be read; the batch fails", batch_id, output)
            raise error from keys_error

        def attempt(lo: int, hi: int) -> BaseException | None:
            try:
                self._write_scratch(output, batch_id, frame.where(key_range(keys[lo], keys[hi - 1])))
            except Exception as e:
                return e
            return None

        try:
            bad = find_unwritable(len(keys), attempt, error, MAX_UNWRITABLE_PER_OUTPUT, deadline)
        except IsolationLimit as limit:
            log.error("batch %d: %s: %s; the batch fails", batch_id, output, limit)
            raise error from limit
        finally:
            self._drop_scratch(output, batch_id)
        if not bad:
            log.error(
                "batch %d: the %s write failed but no single record reproduces it; the batch fails",
                batch_id,
                output,
            )
            raise error
        return [(keys[i], e) for i, e in bad]

    def _probe(self, output: str, batch_id: int, frame: DataFrame) -> None:
        """Fails when the output is not writable at all (not because of a record).

        Parquet: one all-null row with the frame's schema through the same writer, into the
        scratch directory. Topic: its partitions' offsets, read through Spark's Kafka source.
        """
        from pyspark.sql import types as T

        if output == "dlq_topic":
            k = self.cfg.kafka
            (
                self.spark.read.format("kafka")
                .options(**kafka_client_options(k))
                .option("subscribe", k.dlq_topic)
                .option("startingOffsets", "latest")
                .option("endingOffsets", "latest")
                .load()
                .count()
            )
            return
        schema = T.StructType([T.StructField(f.name, f.dataType, True) for f in frame.schema.fields])
        row = self.spark.createDataFrame([tuple(None for _ in schema.fields)], schema)
        try:
            self._write_scratch(output, batch_id, row)
        finally:
            self._drop_scratch(output, batch_id)

    def _scratch_dir(self, output: str, batch_id: int) -> str:
        publisher = self.processed if output == "processed" else self.dlq
        return publisher.scratch_dir(batch_id)

    def _write_scratch(self, output: str, batch_id: int, frame: DataFrame) -> None:
        if output == "processed":
            self._write_processed_to(frame, self._scratch_dir(output, batch_id))
        elif output == "dlq":
            self._write_dlq_to(frame, self._scratch_dir(output, batch_id))
        else:
            # Re-sends the records of each half: the topic is at-least-once already and keyed by the
            # source coordinates, so its consumers drop the copies.
            self._send_dlq_topic(frame)

    def _drop_scratch(self, output: str, batch_id: int) -> None:
        if output != "dlq_topic":
            publisher = self.processed if output == "processed" else self.dlq
            publisher.fs.delete(self._scratch_dir(output, batch_id), True)

    def _write_processed(self, stored: DataFrame, batch_id: int) -> None:
        self._write_processed_to(stored, self.processed.staging_dir(batch_id))

    def _write_processed_to(self, stored: DataFrame, path: str) -> None:
        n_files = self.cfg.output_files_per_batch
        spread = stored.coalesce(1) if n_files == 1 else stored.repartition(n_files, *PARTITION_COLUMNS)
        (
            spread.sortWithinPartitions(*PARTITION_COLUMNS, DEVICE_COLUMN, TIME_COLUMN)
            .write.mode("overwrite")
            .partitionBy(*PARTITION_COLUMNS)
            .parquet(path)
        )

    def _write_dlq(self, dlq: DataFrame, batch_id: int) -> None:
        self._write_dlq_to(dlq, self.dlq.staging_dir(batch_id))

    def _write_dlq_to(self, dlq: DataFrame, path: str) -> None:
        dlq.coalesce(1).write.mode("overwrite").partitionBy(*PARTITION_COLUMNS).parquet(path)

    def _dimensions(self) -> dict[str, Column]:
        from pyspark.sql import functions as F

        C = F.col
        return {
            Dimension.COMPLETENESS.value: C("quality_completeness"),
            Dimension.ACCURACY.value: C("quality_accuracy"),
            Dimension.CONSISTENCY.value: C("quality_consistency"),
            Dimension.TIMELINESS.value: C("quality_timeliness"),
        }

    def _flag_names(self) -> list[str]:
        return [r.value for r in ReasonCode if self.rules.disposition(r) is Disposition.FLAG]

    def _aggregate(self, j: DataFrame, df: DataFrame | None) -> tuple[list[Any], dict[str, int]]:
        """The decided batch grouped by (device, outcome, reason), in one Spark job.

        Returns the groups and the counts ``cand`` (candidates), ``surv`` and ``other`` (survivors of
        duplicate detection, from ``df`` when given; else 0). Each group carries what the summary, the
        per-device state and the latency histogram need: the stored rows' sums and creation times.
        """
        from pyspark.sql import functions as F

        C = F.col

        def as_int(c: Column) -> Column:
            return F.sum(F.when(c, F.lit(1)).otherwise(F.lit(0)))

        dims = self._dimensions()
        clean = reduce_and(list(dims.values()))
        is_stored = C("outcome") == F.lit(STORED)
        aggs = [F.count(F.lit(1)).alias("n"), as_int(C("q_reason").isNull()).alias("cand")]
        aggs += [as_int(F.coalesce(c, F.lit(False))).alias(f"p_{k}") for k, c in dims.items()]
        aggs.append(as_int(F.coalesce(clean, F.lit(False))).alias("clean"))
        aggs += [as_int(F.array_contains(C("quality_flags"), f)).alias(f"f_{f}") for f in self._flag_names()]
        aggs.append(F.max(F.when(is_stored, F.unix_micros(C("event_time")))).alias("max_us"))
        for s in self.signals:
            x = C(SIGNAL_COLUMNS[s])
            aggs.append(F.sum(F.when(is_stored, x)).alias(f"s_{s}"))
            aggs.append(F.sum(F.when(is_stored, x * x)).alias(f"q_{s}"))
        # creation times of the stored rows (8 bytes a record): the e2e latency needs the commit
        # time, known only after publishing, and a second Spark job for it cost more than this
        aggs.append(F.collect_list(F.when(is_stored, C("created_ms"))).alias("created_ms"))
        groups = j.groupBy(DEVICE_COLUMN, "outcome", "reason").agg(*aggs).withColumn("_counts", F.lit(False))
        if df is not None:
            groups = groups.unionByName(
                self._survivor_counts(df).withColumn("_counts", F.lit(True)), allowMissingColumns=True
            )
        out: list[Any] = []
        counts = {"cand": 0, "surv": 0, "other": 0}
        for r in groups.collect():
            if r["_counts"]:
                counts["surv"], counts["other"] = int(r["surv"] or 0), int(r["other"] or 0)
            else:
                counts["cand"] += int(r["cand"])
                out.append(r)
        return out, counts

    def _summarise(self, rows: list[Any], summary: BatchSummary, batch_id: int) -> None:
        """The summary, per-device counts, aggregates for the state and creation times of the groups."""
        dims = self._dimensions()
        flag_names = self._flag_names()
        batch_aggs: list[BatchAggregate] = []
        created: list[int] = []
        devices: dict[int, dict[str, Any]] = defaultdict(
            lambda: {
                "in": 0,
                STORED: 0,
                "dead_lettered": 0,
                DUP: 0,
                "clean": 0,
                "passed": {k: 0 for k in dims},
            }
        )
        for r in rows:
            n = int(r["n"])
            summary.records_in += n
            summary.clean += int(r["clean"])
            for k in dims:
                summary.passed[k] += int(r[f"p_{k}"])
            for f in flag_names:
                if r[f"f_{f}"]:
                    summary.flags[f] = summary.flags.get(f, 0) + int(r[f"f_{f}"])
            outcome = r["outcome"]
            if outcome == STORED:
                summary.stored += n
                created.extend(r["created_ms"])
            elif outcome == DUP:
                summary.duplicates += n
            else:
                summary.dead_lettered[r["reason"]] = summary.dead_lettered.get(r["reason"], 0) + n
            dev = r[DEVICE_COLUMN]
            if dev is not None:
                d = devices[int(dev)]
                d["in"] += n
                d["clean"] += int(r["clean"])
                d["dead_lettered" if outcome == DEAD else outcome] += n
                for k in dims:
                    d["passed"][k] += int(r[f"p_{k}"])
                if outcome == STORED:
                    batch_aggs.append(
                        BatchAggregate(
                            int(dev),
                            n,
                            int(r["max_us"]),
                            {s: float(r[f"s_{s}"]) for s in self.signals},
                            {s: float(r[f"q_{s}"]) for s in self.signals},
                        )
                    )
        summary.devices = dict(devices)
        self._batch_aggs = batch_aggs
        self._created_ms = created
        if not summary.conserved:
            log.error("batch %d: conservation violated: %s", batch_id, summary)

    def _save_state(self, batch_id: int, state: dict[int, DeviceStats]) -> None:
        """This batch's per-device aggregates (collected by _summarise) merged into the state."""
        aggs = self._batch_aggs
        if aggs:
            new = merge(state, aggs, self.rules.anomaly.ewm_alpha, self.signals)
            self.state.save(batch_id, new, changed={a.device_id for a in aggs if a.n > 0})

    def _latency(self, commit_ms: int, summary: BatchSummary) -> None:
        """e2e latency (creation -> commit of the Parquet files) of the batch's stored rows."""
        hist = latency_histogram(self._created_ms, commit_ms, self.metrics.e2e.buckets)
        n = summary.stored
        if n:
            summary.e2e_count = n
            summary.e2e_sum_s = hist.sum_ms / 1000.0
            self.metrics.e2e.add(hist.le_counts, n, summary.e2e_sum_s)

    def _dlq_topic_marker(self, batch_id: int) -> str:
        return f"{self.ckpt}/fms_dlq_topic/{batch_id:012d}.done"

    def _publish_dlq_topic(self, dlq: DataFrame, batch_id: int) -> None:
        marker = self._dlq_topic_marker(batch_id)
        if self.fs_ckpt.exists(marker):
            return
        self._send_dlq_topic(dlq)
        self.fs_ckpt.write_text(marker, str(int(time.time() * 1000)))
        if batch_id % 50 == 0:
            for f in self.fs_ckpt.ls(f"{self.ckpt}/fms_dlq_topic"):
                stem = f.path.rsplit("/", 1)[-1].split(".", 1)[0]
                if stem.isdigit() and int(stem) < batch_id - 200:
                    self.fs_ckpt.delete(f.path, False)

    def _send_dlq_topic(self, dlq: DataFrame) -> None:
        (
            self.dlq_topic_frame(dlq)
            .write.format("kafka")
            .options(**kafka_client_options(self.cfg.kafka))
            .option("topic", self.cfg.kafka.dlq_topic)
            .option("kafka.acks", "all")
            .save()
        )

    def _finish(self, summary: BatchSummary, t0: float) -> None:
        summary.seconds = time.time() - t0
        m = self.metrics
        m.record_batch(summary.as_metrics())
        if summary.dead_lettered and self.cfg.dlq_topic_enabled and self.cfg.source == "kafka":
            m.dlq_topic_records.inc(sum(summary.dead_lettered.values()))
        m.batch_duration.observe(summary.seconds)
        m.last_progress.set(time.time())
        m.last_batch_id.set(summary.batch_id)
        if summary.watermark_ms:
            m.watermark.set(summary.watermark_ms / 1000.0)
        self.summaries.append(summary)
        del self.summaries[:-1000]
        if summary.records_in:
            log.info(
                "batch %d: in=%d stored=%d dead_lettered=%d duplicates=%d files=%d e2e_mean=%.2fs %.2fs %s",
                summary.batch_id,
                summary.records_in,
                summary.stored,
                sum(summary.dead_lettered.values()),
                summary.duplicates,
                summary.files,
                (summary.e2e_sum_s / summary.e2e_count) if summary.e2e_count else math.nan,
                summary.seconds,
                summary.phases,
            )


def fast_path_holds(counts: Mapping[str, int]) -> bool:
    """Every candidate survived duplicate detection and nothing else did: no survivor join needed."""
    return counts["cand"] == counts["surv"] and not counts["other"]


@dataclass
class LatencyHistogram:
    le_counts: list[int]  # rows with latency <= each bucket bound
    sum_ms: int


def latency_histogram(
    created_ms: Iterable[int | None], commit_ms: int, buckets: Sequence[float]
) -> LatencyHistogram:
    """Cumulative bucket counts (bounds in seconds) and sum of ``commit_ms - created`` (ms)."""
    lat = sorted(commit_ms - c for c in created_ms if c is not None)
    return LatencyHistogram([bisect.bisect_right(lat, b * 1000.0) for b in buckets], sum(lat))


def one_line_base64(col: Column) -> Column:
    """Base64 on one line: Spark versions without spark.sql.chunkBase64String.enabled wrap it
    every 76 characters (MIME style), which strict decoders (Java's, Go's) refuse."""
    from pyspark.sql import functions as F

    return F.regexp_replace(F.base64(col), "[\\r\\n]", "")


def run_side_by_side(
    steps: Mapping[str, Callable[[], None]], errors: dict[str, BaseException] | None = None
) -> dict[str, float]:
    """Run independent batch steps in parallel threads; seconds per step; the first error is raised.

    With ``errors`` nothing is raised: every failed step's error is put there under its name.

    Spark schedules jobs submitted from several driver threads concurrently (each thread is its
    own JVM thread in PySpark's pinned-thread mode; ``InheritableThread`` keeps the job
    properties and releases the JVM thread - it needs an active SparkContext, plain threads
    serve steps without Spark). One step runs in the calling thread.
    """
    import threading

    from pyspark import InheritableThread, SparkContext

    thread_class = InheritableThread if SparkContext._active_spark_context is not None else threading.Thread

    seconds: dict[str, float] = {}
    failures: list[tuple[str, BaseException]] = []

    def timed(name: str, fn: Callable[[], None]) -> None:
        t = time.time()
        try:
            fn()
        except BaseException as e:  # re-raised in the caller's thread below
            failures.append((name, e))
        finally:
            seconds[name] = round(time.time() - t, 3)

    items = list(steps.items())
    # daemon: a step stuck in a Spark call must not keep a driver that the stall watchdog ends alive
    threads = [
        thread_class(target=timed, args=item, name=f"fms-{item[0]}", daemon=True) for item in items[1:]
    ]
    for th in threads:
        th.start()
    if items:
        timed(*items[0])
    for th in threads:
        th.join()
    if failures:
        if errors is None:
            raise failures[0][1]
        errors.update(failures)
    return seconds


# --------------------------------------------------------------------------- poison pills

KEY_COLUMNS = ("kafka_partition", "kafka_offset")


class IsolationLimit(RuntimeError):
    """Too many unwritable records, or no time left: the output is at fault, not a few records."""


def find_unwritable(
    n: int,
    attempt: Callable[[int, int], BaseException | None],
    error: BaseException,
    max_records: int,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
) -> list[tuple[int, BaseException]]:
    """(index, error) of the keys, among n sorted keys, whose write fails on its own - by bisection.

    The write of all n keys failed with ``error``; ``attempt(lo, hi)`` writes keys[lo:hi] and returns
    its error (None when it worked). A failing range is halved until single keys remain; a range that
    works holds no unwritable record. k unwritable keys cost at most 2k*ceil(log2 n) attempts (the
    rows written add up to about 2n per unwritable key). Raises :class:`IsolationLimit` beyond
    ``max_records`` keys or past ``deadline`` (a ``clock`` time). An empty result means that no
    single key reproduces the failure.
    """
    bad: list[tuple[int, BaseException]] = []
    failing: list[tuple[int, int, BaseException]] = [(0, n, error)] if n else []
    while failing:
        lo, hi, err = failing.pop()
        if hi - lo == 1:
            bad.append((lo, err))
            if len(bad) > max_records:
                raise IsolationLimit(f"more than {max_records} records cannot be written")
            continue
        mid = (lo + hi) // 2
        for a, b in ((mid, hi), (lo, mid)):  # the lower half ends on top: searched first
            if clock() > deadline:
                raise IsolationLimit(f"isolating unwritable records took too long ({len(bad)} found)")
            e = attempt(a, b)
            if e is not None:
                failing.append((a, b, e))
    return sorted(bad, key=lambda x: x[0])


def key_range(lo: tuple[int, int], hi: tuple[int, int]) -> Column:
    """lo <= (kafka_partition, kafka_offset) <= hi, lexicographically."""
    from pyspark.sql import functions as F

    p, o = (F.col(c) for c in KEY_COLUMNS)
    after_lo = (p > F.lit(lo[0])) | ((p == F.lit(lo[0])) & (o >= F.lit(lo[1])))
    before_hi = (p < F.lit(hi[0])) | ((p == F.lit(hi[0])) & (o <= F.lit(hi[1])))
    return after_lo & before_hi


def error_summary(e: BaseException) -> str:
    """``<error class>: <first line of the message>`` of the root cause of a (Spark) error.

    The root of a failed write's Java cause chain (Spark's error class, e.g.
    INCONSISTENT_BEHAVIOR_CROSS_VERSION.WRITE_ANCIENT_DATETIME, else the exception class), not the
    generic "Job aborted due to stage failure" around it.
    """
    name, message = type(e).__name__, str(e)
    try:
        cause = getattr(e, "java_exception", None)
        if cause is not None:
            for _ in range(32):
                nxt = cause.getCause()
                if nxt is None:
                    break
                cause = nxt
            error_class = None
            try:
                error_class = cause.getErrorClass()
            except Exception:  # not a SparkThrowable
                error_class = None
            name = str(error_class or cause.getClass().getName())
            message = str(cause.getMessage() or "")
        else:
            get_class = getattr(e, "getErrorClass", None)
            error_class = get_class() if callable(get_class) else None
            name = str(error_class or name)
    except Exception:  # pragma: no cover - a gateway problem: the Python side's text will do
        pass
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    if first.startswith("[") and "] " in first:  # Spark repeats the error class in front
        first = first.split("] ", 1)[1]
    return f"{name}: {first}" if first else name


def reduce_and(cols: list[Column]) -> Column:
    out = cols[0]
    for c in cols[1:]:
        out = out & c
    return out


# --------------------------------------------------------------------------- query


def start_query(
    spark: SparkSession, cfg: StreamConfig, rules: QualityRules, processor: BatchProcessor | None = None
) -> tuple[StreamingQuery, BatchProcessor]:
    processor = processor or BatchProcessor(spark, cfg, rules)
    stream = build_stream(spark, cfg, rules)
    writer = (
        stream.writeStream.queryName(cfg.query_name)
        .option("checkpointLocation", cfg.paths.checkpoint)
        .foreachBatch(processor)
    )
    if cfg.trigger.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=cfg.trigger.processing_time)
    return writer.start(), processor


def kafka_lag(latest: str | None, end: str | None) -> int:
    """Records between the end offset of the last batch and the newest offsets (Kafka source JSON)."""
    if not latest or not end:
        return 0
    lat, done = json.loads(latest), json.loads(end)
    total = 0
    for topic, parts in lat.items():
        for part, off in parts.items():
            total += max(0, int(off) - int(done.get(topic, {}).get(part, off)))
    return total


def progress_listener(metrics: StreamMetrics, watchdog: StallWatchdog | None = None) -> Any:
    """Query events -> metrics; every progress report (a batch done, or idle) feeds the watchdog."""
    from pyspark.sql.streaming import StreamingQueryListener

    class _Listener(StreamingQueryListener):  # type: ignore[misc]
        def onQueryStarted(self, event: Any) -> None:
            log.info("query started: %s (run %s)", event.id, event.runId)
            # The stall limit is for micro-batches: the session's own start (slow on a loaded host,
            # 18 s in one CI run) must not use it up before the first batch has begun.
            if watchdog is not None:
                watchdog.beat(f"query started at {event.timestamp}")

        def onQueryProgress(self, event: Any) -> None:
            p = event.progress
            if watchdog is not None:
                watchdog.beat(f"batch {p.batchId} at {p.timestamp}")
            try:
                metrics.input_rate.set(float(p.inputRowsPerSecond or 0.0))
                metrics.processed_rate.set(float(p.processedRowsPerSecond or 0.0))
                lag = sum(kafka_lag(src.latestOffset, src.endOffset) for src in p.sources)
                metrics.kafka_lag.set(lag)
                for step, ms in (p.durationMs or {}).items():
                    metrics.phase_seconds.labels(phase=f"query.{step}").inc(float(ms) / 1000.0)
                # duplicate detection's state store, summed over its tasks (task time, not wall time):
                # evicting keys behind the watermark scans the whole store every batch
                for op in p.stateOperators or []:
                    for name, ms in (
                        ("updates", op.allUpdatesTimeMs),
                        ("removals", op.allRemovalsTimeMs),
                        ("commit", op.commitTimeMs),
                    ):
                        metrics.phase_seconds.labels(phase=f"state.{name}").inc(float(ms or 0) / 1000.0)
            except Exception:  # pragma: no cover - NaN or missing in idle progress
                log.debug("progress metrics skipped", exc_info=True)

        def onQueryIdle(self, event: Any) -> None:
            metrics.last_progress.set(time.time())
            if watchdog is not None:
                watchdog.beat(f"idle at {event.timestamp}")

        def onQueryTerminated(self, event: Any) -> None:
            log.warning("query terminated: %s exception=%s", event.id, event.exception)

    return _Listener()

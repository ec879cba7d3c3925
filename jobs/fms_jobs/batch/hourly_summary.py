"""Hourly summary (seed 004 ``hourly_summary``) of a closed hour, idempotent; compacts the hour's files.

For hour H (UTC)::

    python -m fms_jobs.batch.hourly_summary --processed hdfs:///fms/processed --dlq hdfs:///fms/dlq \\
        --output hdfs:///fms/curated/hourly_summary --checkpoint hdfs:///fms/checkpoints/stream \\
        --hour 2024-01-15T14
    python -m fms_jobs.batch.hourly_summary ... --closed-hours 3   # the last 3 closed hours (systemd timer)
    python -m fms_jobs.batch.hourly_summary ... --closed-hours 3 --hour 2024-01-15T14   # --hour wins
    python -m fms_jobs.batch.hourly_summary ... --hour 2024-01-15T14 --assume-closed     # before it closed

Steps, each safe to repeat:

1. **closed?** H is closed when ``now >= H + 1h + grace`` (grace defaults to the
   rules' max lateness + 5 min) and no file of the hour belongs to a micro-batch
   the streaming query has not committed yet (from its checkpoint's commit log).
   ``--assume-closed`` skips the clock test (drills, tests), never the commit test.
2. **compact**: the hour's committed files are rewritten as one file sorted by
   (device_id, timestamp) - cheap device-level pruning through Parquet
   statistics. A compaction manifest (``_compactions/<hour>.json``) written
   before any file moves lets an interrupted run roll forward or back, so rows
   are never lost or doubled.
3. **summarise**: per device - record count, avg/min/max/stddev of every sensor,
   motor averages, failures, anomalies, flagged records, dead letters attributed
   to the device and hour, and ``data_quality_score`` = clean stored records /
   (stored + dead-lettered) records. The hour's dead letters are those with an
   event time in H among the ones that arrived in Kafka (the dead-letter
   partition) from H's start until its end + max lateness + 1 h; a future-dated
   record that arrived before H began counts in no summary (it stays in the DLQ
   with reason FUTURE_EVENT). Written as exactly one file per hour,
   ``year=/month=/day=/summary-<YYYYMMDDHH>.snappy.parquet`` (seed 004:
   partitioned by year/month/day): re-running replaces exactly that file.
4. **fingerprint**: the names and sizes of the input files are recorded in
   ``_runs/<hour>.json``; a re-run over unchanged inputs changes nothing at all.

On success the node_exporter textfile ``fms_hourly.prom`` gets
``fms_hourly_last_success_timestamp_seconds``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fms_jobs.lake import (
    Hour,
    committed_files,
    compacted_file_name,
    compaction_manifest,
    compaction_staging,
    last_committed_batch,
)
from fms_jobs.quality.schema import DEVICE_COLUMN, FAIL_COLUMN, MOTOR_COLUMNS, SENSOR_COLUMNS, TIME_COLUMN
from fms_jobs.sparkutil.hadoopfs import FileInfo, HadoopFS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = (
    DEVICE_COLUMN,
    "hour",
    "record_count",
    "avg_temperature",
    "min_temperature",
    "max_temperature",
    "temp_stddev",
    "avg_humidity",
    "min_humidity",
    "max_humidity",
    "humidity_stddev",
    "avg_pressure",
    "min_pressure",
    "max_pressure",
    "pressure_stddev",
    "avg_motor1_rpm",
    "avg_motor2_rpm",
    "avg_motor3_rpm",
    "fail_count",
    "anomaly_count",
    "flagged_count",
    "clean_count",
    "dead_letter_count",
    "duplicate_count",
    "data_quality_score",
    "rules_version",
    "year",
    "month",
    "day",
)
# seed 004 names the standard deviations by hand (temp_, not temperature_)
STDDEV_NAME = dict(zip(SENSOR_COLUMNS, ("temp_stddev", "humidity_stddev", "pressure_stddev"), strict=True))


class NotClosed(RuntimeError):
    pass


@dataclass
class HourResult:
    hour: str
    status: str  # summarised | unchanged | empty | not_closed
    rows: int = 0
    devices: int = 0
    input_files: int = 0
    compacted_from: int = 0
    summary_file: str | None = None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class HourlySummaryJob:
    def __init__(
        self,
        spark: SparkSession,
        processed: str,
        dlq: str,
        output: str,
        checkpoint: str | None,
        grace: timedelta,
        dlq_horizon: timedelta = timedelta(hours=1),
        compact: bool = True,
    ) -> None:
        self.spark = spark
        self.processed = processed.rstrip("/")
        self.dlq = dlq.rstrip("/")
        self.output = output.rstrip("/")
        self.checkpoint = checkpoint
        self.grace = grace
        self.dlq_horizon = dlq_horizon
        self.compact_enabled = compact
        self.fs_p = HadoopFS(spark, self.processed)
        self.fs_d = HadoopFS(spark, self.dlq)
        self.fs_o = HadoopFS(spark, self.output)
        self.fs_c = HadoopFS(spark, checkpoint) if checkpoint else None
        spark.conf.set("spark.sql.session.timeZone", "UTC")

    # ------------------------------------------------------------------ helpers
    def _last_batch(self) -> int | None:
        if self.fs_c is None or self.checkpoint is None:
            return None
        return last_committed_batch(self.fs_c, self.checkpoint)

    def _dlq_files(self, hour: Hour, last_batch: int | None) -> list[FileInfo]:
        out: list[FileInfo] = []
        t = hour.start
        while t < hour.end + self.dlq_horizon:
            ok, _ = committed_files(self.fs_d, f"{self.dlq}/{Hour(t).partition()}", last_batch)
            out += ok
            t += timedelta(hours=1)
        return out

    @staticmethod
    def fingerprint(files: list[FileInfo]) -> str:
        h = hashlib.sha256()
        for f in sorted(files, key=lambda x: x.path):
            h.update(f"{f.path.rsplit('/', 1)[-1]}:{f.size}\n".encode())
        return h.hexdigest()

    def run_record_path(self, hour: Hour) -> str:
        return f"{self.output}/_runs/{hour.key}.json"

    def summary_path(self, hour: Hour) -> str:
        return f"{self.output}/{hour.day_partition()}/summary-{hour.key}.snappy.parquet"

    # ------------------------------------------------------------------ compaction
    def recover(self, hour: Hour) -> str | None:
        """Finish or undo an interrupted compaction of this hour."""
        text = self.fs_p.read_text(compaction_manifest(self.processed, hour))
        if not text:
            return None
        doc = json.loads(text)
        if doc.get("state") == "done":
            return None
        outputs = doc["outputs"]
        if all(self.fs_p.exists(o) for o in outputs):
            for p in doc["inputs"]:
                self.fs_p.delete(p, False)
            action = "rolled forward"
        else:
            for o in outputs:
                self.fs_p.delete(o, False)
            action = "rolled back"
        doc["state"] = "done"
        self.fs_p.write_text(compaction_manifest(self.processed, hour), json.dumps(doc))
        self.fs_p.delete(compaction_staging(self.processed, hour), True)
        log.warning("hour %s: interrupted compaction %s", hour, action)
        return action

    def compact(self, hour: Hour, files: list[FileInfo]) -> list[FileInfo]:
        """Rewrite the hour's committed files as one sorted file; returns the new file list."""
        part_dir = f"{self.processed}/{hour.partition()}"
        stage = compaction_staging(self.processed, hour)
        df = self.spark.read.parquet(*[f.path for f in files])
        df.repartition(1).sortWithinPartitions(DEVICE_COLUMN, TIME_COLUMN).write.mode("overwrite").parquet(
            stage
        )
        staged = sorted(f.path for f in self.fs_p.files(stage) if f.path.endswith(".parquet"))
        run = uuid.uuid4().hex[:8]
        outputs = [f"{part_dir}/{compacted_file_name(hour, run, i)}" for i in range(len(staged))]
        doc = {"hour": hour.key, "state": "moving", "inputs": [f.path for f in files], "outputs": outputs}
        self.fs_p.write_text(compaction_manifest(self.processed, hour), json.dumps(doc))
        for src, dst in zip(staged, outputs, strict=True):
            if not self.fs_p.rename(src, dst):
                raise OSError(f"cannot move {src} -> {dst}")
        for f in files:
            self.fs_p.delete(f.path, False)
        doc["state"] = "done"
        self.fs_p.write_text(compaction_manifest(self.processed, hour), json.dumps(doc))
        self.fs_p.delete(stage, True)
        return [f for f in self.fs_p.ls(part_dir) if not f.is_dir and f.path.endswith(".parquet")]

    # ------------------------------------------------------------------ summary
    def summarise(self, hour: Hour, files: list[FileInfo], dlq_files: list[FileInfo]) -> DataFrame:
        from pyspark.sql import functions as F

        C = F.col
        rows = self.spark.read.option("basePath", self.processed).parquet(*[f.path for f in files])
        clean = (
            C("quality_completeness")
            & C("quality_accuracy")
            & C("quality_consistency")
            & C("quality_timeliness")
        )
        aggs = [F.count(F.lit(1)).alias("record_count")]
        for s in SENSOR_COLUMNS:
            aggs += [
                F.avg(s).alias(f"avg_{s}"),
                F.min(s).alias(f"min_{s}"),
                F.max(s).alias(f"max_{s}"),
                F.stddev_samp(s).alias(STDDEV_NAME[s]),
            ]
        aggs += [F.avg(m).alias(f"avg_{m}") for m in MOTOR_COLUMNS]
        aggs += [
            F.sum(F.when(C(FAIL_COLUMN), 1).otherwise(0)).cast("long").alias("fail_count"),
            F.sum(F.when(C("anomaly_flag"), 1).otherwise(0)).cast("long").alias("anomaly_count"),
            F.sum(F.when(F.size(C("quality_flags")) > 0, 1).otherwise(0)).cast("long").alias("flagged_count"),
            F.sum(F.when(clean, 1).otherwise(0)).cast("long").alias("clean_count"),
            F.max("rules_version").alias("rules_version"),
        ]
        stored = rows.groupBy(DEVICE_COLUMN).agg(*aggs)
        if dlq_files:
            d = self.spark.read.option("basePath", self.dlq).parquet(*[f.path for f in dlq_files])
            d = d.where(
                C(DEVICE_COLUMN).isNotNull()
                & (C("event_time") >= F.lit(hour.start))
                & (C("event_time") < F.lit(hour.end))
            )
            dl = d.groupBy(DEVICE_COLUMN).agg(
                F.sum(F.when(C("reason") != F.lit("DUPLICATE"), 1).otherwise(0))
                .cast("long")
                .alias("dead_letter_count"),
                F.sum(F.when(C("reason") == F.lit("DUPLICATE"), 1).otherwise(0))
                .cast("long")
                .alias("duplicate_count"),
            )
            out = stored.join(dl, DEVICE_COLUMN, "full")
        else:
            out = stored.select(
                "*",
                F.lit(0).cast("long").alias("dead_letter_count"),
                F.lit(0).cast("long").alias("duplicate_count"),
            )
        zero = F.lit(0).cast("long")
        out = out.select(
            *[
                c
                for c in out.columns
                if c not in ("record_count", "clean_count", "dead_letter_count", "duplicate_count")
            ],
            F.coalesce(C("record_count"), zero).alias("record_count"),
            F.coalesce(C("clean_count"), zero).alias("clean_count"),
            F.coalesce(C("dead_letter_count"), zero).alias("dead_letter_count"),
            F.coalesce(C("duplicate_count"), zero).alias("duplicate_count"),
        )
        denom = C("record_count") + C("dead_letter_count")
        out = out.select(
            "*",
            F.when(denom > 0, F.round(C("clean_count") / denom, 6)).alias("data_quality_score"),
            F.lit(hour.start).cast("timestamp").alias("hour"),
            F.lit(hour.start.year).alias("year"),
            F.lit(hour.start.month).alias("month"),
            F.lit(hour.start.day).alias("day"),
        )
        out = out.select(*[C(c) for c in SUMMARY_COLUMNS])
        return out.withColumn(DEVICE_COLUMN, C(DEVICE_COLUMN).cast("int")).orderBy(DEVICE_COLUMN)

    def _write_summary(self, hour: Hour, df: DataFrame) -> str:
        stage = f"{self.output}/_tmp/{hour.key}"
        df.drop("year", "month", "day").coalesce(1).write.mode("overwrite").parquet(stage)
        staged = [f.path for f in self.fs_o.files(stage) if f.path.endswith(".parquet")]
        if len(staged) != 1:
            raise OSError(f"expected one summary file in {stage}, found {len(staged)}")
        final = self.summary_path(hour)
        self.fs_o.mkdirs(final.rsplit("/", 1)[0])
        if self.fs_o.exists(final):
            self.fs_o.delete(final, False)
        if not self.fs_o.rename(staged[0], final):
            raise OSError(f"cannot move {staged[0]} -> {final}")
        self.fs_o.delete(stage, True)
        return final

    # ------------------------------------------------------------------ one hour
    def run_hour(
        self, hour: Hour, now: datetime | None = None, force: bool = False, assume_closed: bool = False
    ) -> HourResult:
        """``assume_closed``: skip the clock test (not the uncommitted-batch test) of step 1."""
        now = now or datetime.now(UTC)
        if not assume_closed and now < hour.end + self.grace:
            return HourResult(
                str(hour), "not_closed", detail=f"closes at {hour.end + self.grace:%Y-%m-%dT%H:%M}Z"
            )
        self.recover(hour)
        last = self._last_batch()
        part_dir = f"{self.processed}/{hour.partition()}"
        files, pending = committed_files(self.fs_p, part_dir, last)
        if pending:
            return HourResult(str(hour), "not_closed", detail=f"{len(pending)} files of uncommitted batches")
        dlq_files = self._dlq_files(hour, last)
        if not files and not dlq_files:
            return HourResult(str(hour), "empty")
        compacted_from = 0
        if self.compact_enabled and len(files) > 1:
            compacted_from = len(files)
            files = self.compact(hour, files)
        fp = self.fingerprint(files + dlq_files)
        previous = self.fs_o.read_text(self.run_record_path(hour))
        if (
            not force
            and previous
            and json.loads(previous).get("fingerprint") == fp
            and self.fs_o.exists(self.summary_path(hour))
        ):
            return HourResult(
                str(hour), "unchanged", input_files=len(files), summary_file=self.summary_path(hour)
            )
        if not files:
            return HourResult(str(hour), "empty", detail="only dead letters")
        summary = self.summarise(hour, files, dlq_files).cache()
        try:
            n_rows = summary.count()
            path = self._write_summary(hour, summary)
            records = summary.agg({"record_count": "sum"}).collect()[0][0] or 0
        finally:
            summary.unpersist()
        run = {
            "hour": str(hour),
            "fingerprint": fp,
            "inputs": [f.path.rsplit("/", 1)[-1] for f in files],
            "dlq_inputs": len(dlq_files),
            "devices": n_rows,
            "records": int(records),
            "computed_at": datetime.now(UTC).isoformat(),
        }
        self.fs_o.write_text(self.run_record_path(hour), json.dumps(run))
        return HourResult(str(hour), "summarised", int(records), n_rows, len(files), compacted_from, path)


def write_textfile(directory: str, results: list[HourResult]) -> None:
    """node_exporter textfile collector output (atomic rename)."""
    os.makedirs(directory, exist_ok=True)
    now = time.time()
    done = [r for r in results if r.status in ("summarised", "unchanged", "empty")]
    lines = [
        "# HELP fms_hourly_last_success_timestamp_seconds Unix time of the last successful hourly run",
        "# TYPE fms_hourly_last_success_timestamp_seconds gauge",
        f"fms_hourly_last_success_timestamp_seconds {now:.3f}",
        "# HELP fms_hourly_hours_processed Hours handled by the last run, by status",
        "# TYPE fms_hourly_hours_processed gauge",
    ]
    for status in ("summarised", "unchanged", "empty", "not_closed"):
        lines.append(
            f'fms_hourly_hours_processed{{status="{status}"}} {sum(r.status == status for r in results)}'
        )
    if done:
        latest = max(Hour.parse(r.hour).start for r in done)
        lines += [
            "# HELP fms_hourly_last_hour_timestamp_seconds Start of the newest hour summarised",
            "# TYPE fms_hourly_last_hour_timestamp_seconds gauge",
            f"fms_hourly_last_hour_timestamp_seconds {latest.timestamp():.0f}",
        ]
    tmp = os.path.join(directory, ".fms_hourly.prom.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    # node_exporter reads it as its own user; the job's unit runs with UMask=0027.
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(directory, "fms_hourly.prom"))


def _hour_arg(text: str) -> Hour:
    return Hour.parse(text)


_hour_arg.__name__ = "hour"  # argparse: "invalid hour value: 'x'"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fms_jobs.batch.hourly_summary",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--processed", required=True)
    p.add_argument("--dlq", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--checkpoint", help="the streaming query's checkpoint (to skip uncommitted batches)")
    p.add_argument(
        "--hour",
        action="append",
        type=_hour_arg,
        help="hour to summarise, e.g. 2024-01-15T14 (repeatable); overrides --closed-hours, so an hour "
        "can be re-run by appending --hour to the timer's command line (@hourly-summary.args)",
    )
    p.add_argument(
        "--closed-hours",
        type=int,
        help="summarise the N most recent closed hours (ignored when --hour is given)",
    )
    p.add_argument(
        "--assume-closed",
        action="store_true",
        help="with --hour only: summarise the hour even if it has not closed yet by the clock (drills, "
        "tests - after the producers stopped and the stream drained); files of uncommitted "
        "micro-batches are still refused",
    )
    p.add_argument("--grace-minutes", type=float, default=None, help="default: rules max lateness + 5 min")
    p.add_argument("--rules", help="quality rules file (for the default grace)")
    p.add_argument("--force", action="store_true", help="recompute even when the inputs did not change")
    p.add_argument("--no-compact", action="store_true")
    p.add_argument("--textfile-dir", help="node_exporter textfile collector directory")
    p.add_argument("--master")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    a = p.parse_args(argv)
    if not a.hour and a.closed_hours is None:
        p.error("one of the arguments --hour --closed-hours is required")
    if a.assume_closed and not a.hour:
        p.error("--assume-closed needs --hour (it never applies to --closed-hours)")
    return a


def select_hours(
    hours: list[Hour] | None, closed_hours: int | None, now: datetime, grace: timedelta
) -> list[Hour]:
    """The hours to run: the explicit ``--hour`` list (in the order given, repeats dropped) if any,
    else the ``closed_hours`` most recent hours closed at ``now`` (oldest first)."""
    if hours:
        return list(dict.fromkeys(hours))
    newest_closed = Hour.containing(now - grace - timedelta(hours=1))
    return [Hour(newest_closed.start - timedelta(hours=i)) for i in range(closed_hours or 0)][::-1]


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from fms_jobs.quality.rulebook import load_rules
    from fms_jobs.sparkutil.session import build_session

    rules = load_rules(a.rules)
    grace = (
        timedelta(minutes=a.grace_minutes)
        if a.grace_minutes is not None
        else timedelta(seconds=rules.max_lateness_seconds + 300)
    )
    now = datetime.now(UTC)
    if a.hour and a.closed_hours is not None:
        log.info("--hour given: --closed-hours %d is ignored", a.closed_hours)
    hours = select_hours(a.hour, a.closed_hours, now, grace)
    spark = build_session("fms-hourly-summary", a.master)
    job = HourlySummaryJob(
        spark,
        a.processed,
        a.dlq,
        a.output,
        a.checkpoint,
        grace,
        dlq_horizon=timedelta(seconds=rules.max_lateness_seconds + 3600),
        compact=not a.no_compact,
    )
    results = [job.run_hour(h, now, a.force, assume_closed=a.assume_closed) for h in hours]
    for r in results:
        print(json.dumps(r.__dict__, default=str))
    if a.textfile_dir:
        write_textfile(a.textfile_dir, results)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Recompute one hour's summary from the stored rows and compare it with the hourly job's file.

Run on the Spark master by tests/lab/test_lab_pipeline.py with spark-submit (local mode)::

    spark-submit --master 'local[1]' hourly_recompute.py PROCESSED DLQ SUMMARY_FILE 2026-12-01T10 4200

Written without fms_jobs on purpose: an independent reading of seed 004's hourly_summary
(per device: counts, sensor statistics, failures, dead letters and duplicates of the hour,
data_quality_score = clean stored / (stored + dead-lettered)). The dead letters of hour H are those
with an event time in H that arrived in Kafka (the dead-letter partition) from H's start until
its end + DLQ_HORIZON_S (the job's max lateness + 1 h). Prints one JSON line;
exit 0 when every device's figures agree, 2 when not.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime, timedelta

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

SENSORS = {"temperature": "temp_stddev", "humidity": "humidity_stddev", "pressure": "pressure_stddev"}
MOTORS = ("motor1_rpm", "motor2_rpm", "motor3_rpm")
QUALITY = ("quality_completeness", "quality_accuracy", "quality_consistency", "quality_timeliness")


def expected(
    spark: SparkSession, processed: str, dlq: str, start: datetime, horizon_s: int
) -> dict[int, dict]:
    end = start + timedelta(hours=1)
    arrived = F.make_timestamp("year", "month", "day", "hour", F.lit(0), F.lit(0))
    part = f"{processed}/year={start.year}/month={start.month}/day={start.day}/hour={start.hour}"
    rows = spark.read.parquet(part)
    clean = F.lit(True)
    for q in QUALITY:
        clean = clean & F.col(q)
    aggs = [F.count(F.lit(1)).alias("record_count")]
    for s, sd in SENSORS.items():
        aggs += [F.avg(s).alias(f"avg_{s}"), F.min(s).alias(f"min_{s}"), F.max(s).alias(f"max_{s}")]
        aggs.append(F.stddev_samp(s).alias(sd))
    aggs += [F.avg(m).alias(f"avg_{m}") for m in MOTORS]
    aggs += [
        F.sum(F.col("is_fail").cast("long")).alias("fail_count"),
        F.sum(F.col("anomaly_flag").cast("long")).alias("anomaly_count"),
        F.sum((F.size("quality_flags") > 0).cast("long")).alias("flagged_count"),
        F.sum(clean.cast("long")).alias("clean_count"),
    ]
    stored = {r["device_id"]: r.asDict() for r in rows.groupBy("device_id").agg(*aggs).collect()}
    dead = (
        spark.read.parquet(dlq)
        .where(F.col("device_id").isNotNull() & (F.col("event_time") >= start) & (F.col("event_time") < end))
        .where((arrived >= start) & (arrived < end + timedelta(seconds=horizon_s)))
        .groupBy("device_id")
        .agg(
            F.sum((F.col("reason") != "DUPLICATE").cast("long")).alias("dead_letter_count"),
            F.sum((F.col("reason") == "DUPLICATE").cast("long")).alias("duplicate_count"),
        )
        .collect()
    )
    out: dict[int, dict] = {int(k): v for k, v in stored.items()}
    for r in dead:
        row = out.setdefault(int(r["device_id"]), {"record_count": 0, "clean_count": 0})
        row.update(dead_letter_count=r["dead_letter_count"], duplicate_count=r["duplicate_count"])
    for row in out.values():
        row.setdefault("dead_letter_count", 0)
        row.setdefault("duplicate_count", 0)
        denom = row["record_count"] + row["dead_letter_count"]
        row["data_quality_score"] = round(row["clean_count"] / denom, 6) if denom else None
    return out


def same(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)  # type: ignore[arg-type]
    return a == b


def main() -> int:
    processed, dlq, summary_file, hour, horizon_s = sys.argv[1:6]
    start = datetime.strptime(hour, "%Y-%m-%dT%H")
    spark = SparkSession.builder.appName("fms-lab-hourly-recompute").getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    want = expected(spark, processed, dlq, start, int(horizon_s))
    got = {int(r["device_id"]): r.asDict() for r in spark.read.parquet(summary_file).collect()}
    mismatches = []
    for device in sorted(set(want) | set(got)):
        w, g = want.get(device), got.get(device)
        if w is None or g is None:
            mismatches.append({"device_id": device, "only_in": "summary" if w is None else "recomputation"})
            continue
        for col, value in w.items():
            if col != "device_id" and not same(value, g.get(col)):
                diff = {"column": col, "expected": value, "summary": g.get(col)}
                mismatches.append({"device_id": device, **diff})
    records = sum(r["record_count"] for r in want.values())
    jvm_path = spark._jvm.org.apache.hadoop.fs.Path(summary_file)  # type: ignore[union-attr]
    status = jvm_path.getFileSystem(spark._jsc.hadoopConfiguration()).getFileStatus(jvm_path)  # type: ignore[union-attr]
    hours = {str(r["hour"]) for r in got.values()}
    print(
        json.dumps(
            {
                "hour": hour,
                "devices": len(want),
                "stored_devices": sum(1 for r in want.values() if r["record_count"] > 0),
                "summary_mtime_ms": status.getModificationTime(),
                "records": records,
                "summary_hours": sorted(hours),
                "mismatches": len(mismatches),
                "examples": mismatches[:5],
            },
            default=str,
        )
    )
    spark.stop()
    return 0 if not mismatches and records > 0 else 2


if __name__ == "__main__":
    sys.exit(main())

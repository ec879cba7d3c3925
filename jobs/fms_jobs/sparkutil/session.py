"""SparkSession construction shared by the jobs and the tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Parquet datetimes in the proleptic Gregorian calendar, as they are, in both directions. Our Parquet
# is written and read only by Spark 3.5+ (no Spark 2.x, no legacy Hive), so no rebasing is needed;
# Spark's default (EXCEPTION) fails the whole write on one timestamp before 1900 (INT96) or date
# before 1582 - a record with such a `time` is dead-lettered with its event_time, and then blocked
# every retry of its micro-batch.
REBASE_CONF: dict[str, str] = {
    "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.datetimeRebaseModeInRead": "CORRECTED",
    "spark.sql.parquet.int96RebaseModeInRead": "CORRECTED",
}

# Settings every FMS job relies on (overridable per job).
BASE_CONF: dict[str, str] = {
    **REBASE_CONF,
    "spark.sql.session.timeZone": "UTC",
    # the rules rely on non-ANSI casts (an impossible timestamp casts to null instead of failing the batch)
    "spark.sql.ansi.enabled": "false",
    "spark.sql.parquet.compression.codec": "snappy",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    # RocksDB keeps the duplicate-detection state off-heap and checkpoints it incrementally
    "spark.sql.streaming.stateStore.providerClass": (
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
    ),
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
    # Counting the store's rows costs a lookup per insert and per eviction (Spark's tuning advice for
    # large stores); the count is only a metric. The duplicate keys of 15 minutes (the watermark) are
    # millions of rows at thousands of records/s.
    "spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows": "false",
    "spark.sql.adaptive.enabled": "true",
    # one-line base64 (the dead-letter topic carries the original bytes base64-encoded)
    "spark.sql.chunkBase64String.enabled": "false",
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    "spark.hadoop.parquet.enable.summary-metadata": "false",
    # Every micro-batch closes a dozen small HDFS files (offset and commit logs, state changelogs,
    # manifests, Parquet parts). A close whose last block the DataNode has not reported to the
    # NameNode yet - usually a few ms away - is retried after 400 ms by default. First retry after
    # 50 ms instead, with the same total patience (50 ms * (2^8 - 1) ~ 400 ms * (2^5 - 1)).
    "spark.hadoop.dfs.client.block.write.locateFollowingBlock.initial.delay.ms": "50",
    "spark.hadoop.dfs.client.block.write.locateFollowingBlock.retries": "8",
}

# The driver JVM of a local session that lives for minutes on a few thousand rows (the tests):
# the C1 compiler and the serial collector, as the platform's short-lived Kafka and HDFS tool JVMs
# (kafka_tools_jvm_opts). Most of such a session's CPU is JIT compilation and G1's concurrent
# threads, not the queries: tests/unit/test_quality_spark_parity.py took 56.6 CPU-seconds with
# G1 and C2, 48.3 with the serial collector, 32.0 with both the serial collector and C1 only.
SHORT_LIVED_DRIVER_JAVA_OPTIONS = "-Dderby.system.home=/tmp -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
# A local session that computes for long (make predict-eval: training, the benchmark's timings)
# keeps the optimising compiler and G1.
LONG_RUNNING_DRIVER_JAVA_OPTIONS = "-Dderby.system.home=/tmp -XX:+UseG1GC"

LOCAL_TEST_CONF: dict[str, str] = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "2g",
    "spark.sql.streaming.minBatchesToRetain": "20",
    "spark.driver.extraJavaOptions": SHORT_LIVED_DRIVER_JAVA_OPTIONS,
}


def build_session(
    app_name: str,
    master: str | None = None,
    conf: Mapping[str, Any] | None = None,
    jars: Sequence[str] = (),
    local_test: bool = False,
) -> SparkSession:
    from pyspark.sql import SparkSession

    b = SparkSession.builder.appName(app_name)
    if master:
        b = b.master(master)
    merged: dict[str, Any] = dict(BASE_CONF)
    if local_test:
        merged.update(LOCAL_TEST_CONF)
    merged.update(conf or {})
    if jars:
        existing = str(merged.get("spark.jars", ""))
        merged["spark.jars"] = ",".join([j for j in existing.split(",") if j] + list(jars))
    for k, v in merged.items():
        b = b.config(k, str(v))
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel(str(merged.get("fms.log.level", "WARN")))
    return spark

"""One record must never block the stream: poison pills are dead-lettered, the batch commits.

The real streaming query (``start_query``: classify, duplicate detection, ``foreachBatch``) runs
in local Spark over the job's parquet replay source (the Kafka source's schema, no broker), one
micro-batch per scenario (Trigger.AvailableNow):

a) records whose ``time`` is a well-formed timestamp in the years 1000-1899 are dead-lettered as
   LATE_EVENT with their exact event time (Parquet's default rebase mode refused them and failed
   the batch on every retry);
b) a real Spark task failure inside the write job for exactly one record of the processed output
   and one of the dead-letter output: both records are isolated, dead-lettered raw as UNWRITABLE,
   everything else is stored / dead-lettered as usual and the batch commits, conserved;
c) an output that is not writable at all (a file where the processed directory should be) is an
   infrastructure fault, not a poison pill: the batch fails, nothing becomes UNWRITABLE, and the
   batch commits normally once the path is repaired.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fms_jobs.quality.reasons import DEAD_LETTER_DIMENSIONS, WriteReason
from fms_jobs.quality.rulebook import QualityRules, load_rules
from fms_jobs.streaming.config import StreamConfig
from fms_jobs.streaming.job import BatchProcessor, BatchSummary, start_query

pytestmark = [pytest.mark.spark, pytest.mark.slow]
os.environ["TZ"] = "UTC"  # PySpark hands timestamps back as naive local time
time.tzset()

QUERY_TIMEOUT_S = 300
ANCIENT = ("1000-06-15T12:00:00Z", "1582-10-10T00:00:00Z", "1850-01-01T00:00:00Z", "1899-12-31T23:59:59Z")
UNWRITABLE = WriteReason.UNWRITABLE.value


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    from fms_jobs.sparkutil.session import build_session

    s = build_session(
        "fms-it-poison-pill", "local[2]", conf={"spark.sql.shuffle.partitions": "2"}, local_test=True
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def rules() -> QualityRules:
    return load_rules()


# ---------------------------------------------------------------------------- helpers


NOW = datetime.now(UTC).replace(microsecond=0)


def reading(device: int, seconds_ago: int = 0, time_text: str | None = None) -> bytes:
    t = time_text or (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(
        {
            "time": t,
            "DeviceId": device,
            "sensor1": 85.2,
            "sensor2": 92.7,
            "sensor3": 78.5,
            "motor1": 1200,
            "motor2": 850,
            "motor3": 1100,
            "isFail": False,
        }
    ).encode()


def write_source(directory: Path, values: list[bytes]) -> None:
    """Records in the Kafka source's schema: partition 0, offsets 0.., stamped now."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True)
    n = len(values)
    headers = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
    table = pa.table(
        {
            "key": pa.array([b"k%d" % i for i in range(n)], pa.binary()),
            "value": pa.array(values, pa.binary()),
            "topic": ["fms.sensor.raw"] * n,
            "partition": pa.array([0] * n, pa.int32()),
            "offset": pa.array(list(range(n)), pa.int64()),
            "timestamp": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
            "timestampType": pa.array([0] * n, pa.int32()),
            "headers": pa.array([[] for _ in range(n)], headers),
        }
    )
    pq.write_table(table, directory / "part-0.parquet")


def config(lake: Path) -> StreamConfig:
    cfg = StreamConfig()
    cfg.source = "parquet"
    cfg.source_path = str(lake / "raw")
    cfg.dlq_topic_enabled = False
    cfg.paths.processed = str(lake / "processed")
    cfg.paths.dlq = str(lake / "dlq")
    cfg.paths.checkpoint = str(lake / "checkpoint")
    cfg.trigger.available_now = True
    cfg.metrics.port = 0
    return cfg


def run(spark: Any, cfg: StreamConfig, rules: QualityRules, processor: BatchProcessor) -> Any:
    """Run the query to its end; the exception it failed with, or None."""
    from pyspark.errors import StreamingQueryException

    query, _ = start_query(spark, cfg, rules, processor)
    try:
        finished = query.awaitTermination(QUERY_TIMEOUT_S)
    except StreamingQueryException as e:
        return e
    if not finished:
        query.stop()
        pytest.fail(f"the streaming query did not finish within {QUERY_TIMEOUT_S}s")
    return query.exception()


def published(root: Path) -> list[dict[str, Any]]:
    """Rows of the published Parquet files of a dataset (staging and manifests are not data)."""
    import pyarrow.parquet as pq

    files = [f for f in root.rglob("*.parquet") if not any(p.startswith("_") for p in f.parts)]
    rows: list[dict[str, Any]] = []
    for f in files:
        rows += pq.read_table(f, coerce_int96_timestamp_unit="us").to_pylist()
    return rows


def every_parquet_row(root: Path) -> list[dict[str, Any]]:
    """Rows of every Parquet file below root, staging included."""
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for f in root.rglob("*.parquet"):
        rows += pq.read_table(f, coerce_int96_timestamp_unit="us").to_pylist()
    return rows


def batch_of_records(processor: BatchProcessor) -> BatchSummary:
    with_records = [s for s in processor.summaries if s.records_in]
    assert len(with_records) == 1, processor.summaries
    return with_records[0]


def assert_conserved(s: BatchSummary) -> None:
    assert s.conserved, s
    assert s.records_in == s.stored + sum(s.dead_lettered.values()) + s.duplicates


def unwritable_metric(processor: BatchProcessor, output: str) -> float:
    v = processor.metrics.registry.get_sample_value("fms_stream_unwritable_records_total", {"output": output})
    return v or 0.0


# ---------------------------------------------------------------------------- a) ancient timestamps


def test_ancient_event_times_are_dead_lettered_late_and_the_batch_commits(
    spark: Any, rules: QualityRules, tmp_path: Path
) -> None:
    values = [reading(1), reading(2, 1)] + [reading(3, time_text=t) for t in ANCIENT]
    write_source(tmp_path / "raw", values)
    processor = BatchProcessor(spark, config(tmp_path), rules)

    error = run(spark, config(tmp_path), rules, processor)

    assert error is None, f"the batch failed: {error}"
    s = batch_of_records(processor)
    assert_conserved(s)
    assert (s.records_in, s.stored, s.dead_lettered) == (6, 2, {"LATE_EVENT": 4}), s
    assert sorted(r["kafka_offset"] for r in published(tmp_path / "processed")) == [0, 1]
    dead = {r["kafka_offset"]: r for r in published(tmp_path / "dlq")}
    assert sorted(dead) == [2, 3, 4, 5]
    for offset, text in zip(range(2, 6), ANCIENT, strict=True):
        row = dead[offset]
        assert row["reason"] == "LATE_EVENT", row
        assert row["raw_value"] == values[offset]
        # written as it is (proleptic Gregorian, no rebasing): the very instant of the record
        expected = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
        assert row["event_time"] == expected, (row["event_time"], text)
    assert unwritable_metric(processor, "dlq") == 0


# ---------------------------------------------------------------------------- b) injected poison


PROCESSED_POISON = (0, 2)  # a good record: its processed row fails to write
DLQ_POISON = (0, 5)  # a NOT_UTF8 record: its dead-letter row fails to write


def poison(df: Any, key: tuple[int, int], column: str) -> Any:
    """A real task failure inside the write job, for exactly the row of one (partition, offset)."""
    from pyspark.sql import functions as F

    hit = (F.col("kafka_partition") == key[0]) & (F.col("kafka_offset") == key[1])
    return df.withColumn(
        column, F.when(hit, F.raise_error(F.lit("injected poison"))).otherwise(F.col(column))
    )


class Poisoned(BatchProcessor):
    def processed_frame(self, j: Any, batch_id: int, processed_at_ms: int) -> Any:
        return poison(super().processed_frame(j, batch_id, processed_at_ms), PROCESSED_POISON, "device_id")

    def dlq_frame(self, j: Any, batch_id: int, processed_at_ms: int) -> Any:
        return poison(super().dlq_frame(j, batch_id, processed_at_ms), DLQ_POISON, "detail")


def test_a_record_that_fails_its_write_is_isolated_and_the_batch_commits(
    spark: Any, rules: QualityRules, tmp_path: Path
) -> None:
    values = [
        reading(1, 0),  # 0
        reading(2, 0),  # 1
        reading(3, 0),  # 2  processed write fails
        reading(1, 1),  # 3
        b"{not json",  # 4  MALFORMED_JSON
        b"\xff\xfe not utf-8",  # 5  NOT_UTF8, dead-letter write fails
        reading(1, 0),  # 6  duplicate of 0 (one of the two is stored)
        reading(4, 0),  # 7
    ]
    write_source(tmp_path / "raw", values)
    processor = Poisoned(spark, config(tmp_path), rules)

    error = run(spark, config(tmp_path), rules, processor)

    assert error is None, f"the batch failed: {error}"
    s = batch_of_records(processor)
    assert_conserved(s)
    assert (s.records_in, s.stored, s.duplicates) == (8, 4, 1), s
    assert s.dead_lettered == {UNWRITABLE: 2, "MALFORMED_JSON": 1}, s
    assert s.unwritable == {"processed": 1, "dlq": 1}

    stored = {r["kafka_offset"]: r for r in published(tmp_path / "processed")}
    dead = {}
    for r in published(tmp_path / "dlq"):
        assert r["dimension"] == DEAD_LETTER_DIMENSIONS[r["reason"]].value
        dead.setdefault(r["kafka_offset"], []).append(r)
    dup = {0, 6} - set(stored)
    assert len(dup) == 1 and set(stored) == {1, 3, 7} | ({0, 6} - dup), sorted(stored)
    assert [r["reason"] for r in dead.pop(dup.pop())] == ["DUPLICATE"]
    assert [r["reason"] for r in dead.pop(4)] == ["MALFORMED_JSON"]
    assert sorted(dead) == [2, 5], dead
    for key, output in ((PROCESSED_POISON, "processed"), (DLQ_POISON, "dlq")):
        (row,) = dead[key[1]]
        assert row["reason"] == UNWRITABLE and row["dimension"] == "accuracy", row
        assert row["detail"].startswith(f"{output}: ") and "injected poison" in row["detail"], row
        assert len(row["detail"]) <= 200
        assert row["raw_value"] == values[key[1]] and row["raw_key"] == b"k%d" % key[1]
        assert (row["kafka_topic"], row["kafka_partition"]) == ("fms.sensor.raw", key[0])
        assert row["kafka_timestamp"] is not None and row["batch_id"] == 0
        assert row["event_time"] is None and row["device_id"] is None  # raw only
        assert unwritable_metric(processor, output) == 1

    # the isolated record is no longer stored anywhere: not in the counts, not in the device state
    assert s.devices[3]["stored"] == 0 and s.devices[3]["dead_lettered"] == 1
    reg = processor.metrics.registry
    assert reg.get_sample_value("fms_stream_records_stored_total") == 4
    assert reg.get_sample_value("fms_stream_records_dead_lettered_total", {"reason": UNWRITABLE}) == 2
    assert reg.get_sample_value("fms_stream_conservation_errors_total") == 0
    assert 3 not in processor.state.state_before(1) and 1 in processor.state.state_before(1)
    # the scratch writes of the isolation leave nothing behind
    assert not list((tmp_path / "processed").rglob("_staging/*"))
    assert not list((tmp_path / "dlq").rglob("_staging/*"))


# ---------------------------------------------------------------------------- c) infrastructure fault


def test_an_unwritable_output_fails_the_batch_and_nothing_is_blamed_on_records(
    spark: Any, rules: QualityRules, tmp_path: Path
) -> None:
    values = [reading(1), reading(2), reading(3), b"{not json"]
    write_source(tmp_path / "raw", values)
    (tmp_path / "processed").write_text("a file where the processed directory should be\n")
    processor = BatchProcessor(spark, config(tmp_path), rules)

    error = run(spark, config(tmp_path), rules, processor)

    assert error is not None, "the batch must fail when its output cannot be written at all"
    assert not [s for s in processor.summaries if s.records_in], processor.summaries
    assert not [r for r in every_parquet_row(tmp_path / "dlq") if r["reason"] == UNWRITABLE]
    assert unwritable_metric(processor, "processed") == 0
    assert not (tmp_path / "checkpoint" / "commits" / "0").exists()

    # repaired, the same batch is retried from the checkpoint and commits as usual
    (tmp_path / "processed").unlink()
    again = BatchProcessor(spark, config(tmp_path), rules)
    assert run(spark, config(tmp_path), rules, again) is None
    s = batch_of_records(again)
    assert_conserved(s)
    assert (s.batch_id, s.stored, s.dead_lettered) == (0, 3, {"MALFORMED_JSON": 1}), s
    assert sorted(r["kafka_offset"] for r in published(tmp_path / "processed")) == [0, 1, 2]

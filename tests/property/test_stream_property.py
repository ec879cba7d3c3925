"""Property: the real streaming job and the reference give every record the same fate, batch after batch.

Hypothesis draws a short history of micro-batches for a few devices: good readings, exact
and conflicting duplicates (within a batch and across batch boundaries), readings out of
order, event times that jump forward (the watermark follows) and fall behind it, arrival
times on both sides of the timeliness limits, and now and then any raw message from
strategies.py. The history is replayed through the job's own query (``start_query`` with
its foreachBatch, the parquet replay source: one file per micro-batch, with the Kafka
source's schema) into a local lake, and through :class:`ReferencePipeline` batch by batch as
Spark ran them - the empty batches Spark runs to move the watermark included.

Required: no batch fails; every input record is in exactly one place (stored, or a dead
letter with one reason, or a counted duplicate) and nothing is in the lake twice; the
job's fate and reason for each record equal the reference's.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES
from fms_jobs.quality.reference import InputRecord, ReferencePipeline
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import T0_MS, raw_message

pytestmark = [pytest.mark.spark, pytest.mark.slow]

QUERY_TIMEOUT_S = 600
DEVICES = (1, 2, 3, 4)


@st.composite
def histories(draw: st.DrawFn, rules: Any) -> list[list[tuple[bytes, int, int]]]:
    """Batches of (value, arrival ms, Kafka partition)."""
    late_ms = rules.max_lateness_seconds * 1000
    wm_ms = rules.duplicate_watermark_seconds * 1000
    clock = T0_MS  # the broker's clock: arrivals never go far back
    sent: list[dict[str, Any]] = []
    batches: list[list[tuple[bytes, int, int]]] = []
    for _ in range(draw(st.integers(min_value=3, max_value=5))):
        clock += draw(st.sampled_from([1_000, 30_000, wm_ms // 2, wm_ms + 60_000, 3 * wm_ms]))
        batch: list[tuple[bytes, int, int]] = []
        for _ in range(draw(st.integers(min_value=6, max_value=25))):
            kind = draw(st.sampled_from(["good"] * 6 + ["dup", "conflict", "old", "behind", "future", "any"]))
            arrival = clock + draw(st.integers(min_value=0, max_value=2_000))
            if kind == "any":
                batch.append((draw(raw_message(rules)), arrival, draw(st.integers(0, 1))))
                continue
            if kind in ("dup", "conflict") and sent:
                obj = dict(draw(st.sampled_from(sent)))
                if kind == "conflict":
                    obj["sensor1"] = round(obj["sensor1"] + 1.5, 2)
            else:
                lag = {
                    "good": draw(st.integers(min_value=0, max_value=5_000)),
                    "dup": 0,
                    "conflict": 0,
                    "old": draw(st.integers(min_value=60_000, max_value=late_ms)),
                    "behind": late_ms - draw(st.integers(min_value=-5_000, max_value=5_000)),
                    "future": -draw(
                        st.integers(min_value=0, max_value=2 * rules.max_future_skew_seconds * 1000)
                    ),
                }[kind]
                ev = arrival - lag
                obj = {
                    "time": datetime.fromtimestamp(ev / 1000, UTC)
                    .isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
                    "DeviceId": draw(st.sampled_from(DEVICES)),
                    "sensor1": round(draw(st.floats(min_value=20.0, max_value=90.0)), 2),
                    "sensor2": 50.0,
                    "sensor3": 80.0,
                    "motor1": 1200,
                    "motor2": 850,
                    "motor3": 1100,
                    "isFail": False,
                }
                sent.append(obj)
            batch.append((json.dumps(obj).encode(), arrival, obj["DeviceId"] % 2))
        batches.append(batch)
    return batches


def write_batches(src: Path, batches: list[list[tuple[bytes, int, int]]]) -> list[list[InputRecord]]:
    """One Parquet file per micro-batch (oldest first), Kafka offsets per partition in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src.mkdir(parents=True)
    next_offset = [0, 0]
    out: list[list[InputRecord]] = []
    headers = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
    for i, batch in enumerate(batches):
        recs = []
        for value, arrival, part in batch:
            recs.append(InputRecord(value, arrival, part, next_offset[part]))
            next_offset[part] += 1
        recs.sort(key=lambda r: (r.partition, r.offset))
        n = len(recs)
        table = pa.table(
            {
                "key": pa.array([b"k"] * n, pa.binary()),
                "value": pa.array([r.value for r in recs], pa.binary()),
                "topic": ["fms.sensor.raw"] * n,
                "partition": pa.array([r.partition for r in recs], pa.int32()),
                "offset": pa.array([r.offset for r in recs], pa.int64()),
                "timestamp": pa.array(
                    [datetime.fromtimestamp(r.arrival_ms / 1000, UTC) for r in recs],
                    pa.timestamp("us", tz="UTC"),
                ),
                "timestampType": pa.array([1] * n, pa.int32()),
                "headers": pa.array([[] for _ in range(n)], headers),
            }
        )
        path = src / f"batch-{i:04d}.parquet"
        pq.write_table(table, path)
        os.utime(path, (1_000_000 + i, 1_000_000 + i))  # the replay order is the files' age
        out.append(recs)
    return out


def run_job(spark: Any, rules: Any, lake: Path) -> None:
    from fms_jobs.streaming.config import StreamConfig
    from fms_jobs.streaming.job import BatchProcessor, start_query

    cfg = StreamConfig()
    cfg.source = "parquet"
    cfg.source_path = str(lake / "raw")
    cfg.dlq_topic_enabled = False
    cfg.paths.processed = str(lake / "processed")
    cfg.paths.dlq = str(lake / "dlq")
    cfg.paths.checkpoint = str(lake / "checkpoint")
    cfg.trigger.available_now = True
    cfg.metrics.port = 0
    query, _ = start_query(spark, cfg, rules, BatchProcessor(spark, cfg, rules))
    assert query.awaitTermination(QUERY_TIMEOUT_S), "the query did not finish"
    assert query.exception() is None, f"a batch failed: {query.exception()}"


def lake_fates(lake: Path) -> tuple[dict[tuple[int, int], tuple[str, int]], list[tuple[int, int]]]:
    """{(partition, offset): (fate, batch id)} from the published files, and every key seen (doubles too)."""
    import pyarrow.parquet as pq

    fates: dict[tuple[int, int], tuple[str, int]] = {}
    keys: list[tuple[int, int]] = []
    for dataset in ("processed", "dlq"):
        root = lake / dataset
        files = [
            f
            for f in root.rglob("*.parquet")
            if not any(p.startswith("_") for p in f.relative_to(root).parts)
        ]
        for f in files:
            for r in pq.read_table(f, columns=None).to_pylist():
                key = (r["kafka_partition"], r["kafka_offset"])
                keys.append(key)
                fate = "STORED" if dataset == "processed" else r["reason"]
                fates[key] = (fate, r["batch_id"])
    return fates, keys


def test_job_and_reference_agree_batch_after_batch(spark: Any, rules: Any, tmp_path: Path) -> None:
    tried: list[int] = []
    outcomes: Counter[str] = Counter()
    spark_batches: list[tuple[int, int]] = []  # (micro-batches Spark ran, files replayed)

    @settings(max_examples=3 * EXAMPLES)
    @given(history=histories(rules))
    def same_fates(history: list[list[tuple[bytes, int, int]]]) -> None:
        # kept until pytest cleans tmp_path: Spark's state-store maintenance still lists old checkpoints
        lake = Path(tempfile.mkdtemp(prefix="lake-", dir=tmp_path))
        batches = write_batches(lake / "raw", history)
        run_job(spark, rules, lake)
        fates, keys = lake_fates(lake)
        records = [r for b in batches for r in b]
        assert len(keys) == len(set(keys)), "a record is in the lake twice"
        missing = [(r.partition, r.offset) for r in records if (r.partition, r.offset) not in fates]
        assert not missing, f"records neither stored nor dead-lettered: {missing}"
        # the reference, batch by batch as Spark ran them (no-data batches included)
        by_batch: dict[int, list[InputRecord]] = defaultdict(list)
        for r in records:
            by_batch[fates[(r.partition, r.offset)][1]].append(r)
        last = max(int(p.name) for p in (lake / "checkpoint" / "commits").iterdir() if p.name.isdigit())
        model = ReferencePipeline(rules)
        diffs = []
        for b in range(last + 1):
            for o in model.run_batch(by_batch.get(b, [])):
                want = "STORED" if o.stored else (o.reason.value if o.reason else "?")
                got = fates[(o.record.partition, o.record.offset)][0]
                if want != got:
                    diffs.append((b, o.record.partition, o.record.offset, o.record.value[:120], want, got))
        assert model.totals.conserved
        tried.append(len(records))
        outcomes.update(f for f, _ in fates.values())
        spark_batches.append((last + 1, len(batches)))
        assert not diffs, f"job and reference differ on {len(diffs)} records: {diffs[:5]}"

    same_fates()
    print(f"\nhistories: {len(tried)}, records: {sum(tried)}, fates: {dict(outcomes)}")
    print(f"micro-batches run / files replayed per history: {spark_batches}")

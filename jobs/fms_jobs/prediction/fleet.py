"""Simulated fleets in the processed table's shape, for training and evaluation off the cluster.

The real simulator (:class:`fms_jobs.simulator.FleetSimulator`) produces the raw
records a collector would send; every record is parsed back from its JSON bytes
and renamed to the processed columns (:data:`fms_jobs.quality.schema.PROCESSED_COLUMN`),
as the stream stores a good record. The stream's ``anomaly_score`` /
``anomaly_flag`` (the EWMA z-score baseline) are computed exactly as the
stream computes them - per-device statistics before each micro-batch, merged
with :func:`fms_jobs.streaming.state.merge` after it - with micro-batches of
``trigger_s`` seconds of event time (the lab's stream triggers every 30 s).

Nothing of the simulator's internals (health state, progress) is written: the
model sees what the lake holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fms_jobs.quality.rulebook import QualityRules, load_rules
from fms_jobs.quality.schema import DEVICE_ID, IS_FAIL, PROCESSED_COLUMN, READINGS, TIME
from fms_jobs.simulator.fleet import FleetSimulator, SimulatorConfig
from fms_jobs.streaming.state import BatchAggregate, DeviceStats, merge

DAY_MS = 86_400_000
# 2026-12-01T00:00:00Z: a fixed virtual clock, so a fleet is a pure function of its spec
DEFAULT_START_MS = 1_796_083_200_000
ANOMALY_SCORE = "anomaly_score"
ANOMALY_FLAG = "anomaly_flag"


@dataclass(frozen=True)
class FleetSpec:
    """A simulated fleet: devices, duration and device profile."""

    name: str
    devices: int
    days: float
    seed: int
    failure_rate_per_day: float = 0.5
    noise_scale: float = 1.0
    degradation_minutes: tuple[float, float] = (20.0, 90.0)
    first_device_id: int = 1
    interval_s: float = 10.0
    start_ms: int = DEFAULT_START_MS

    def simulator_config(self) -> SimulatorConfig:
        return SimulatorConfig(
            devices=self.devices,
            first_device_id=self.first_device_id,
            interval_s=self.interval_s,
            seed=self.seed,
            bad_share=0.0,
            start_ms=self.start_ms,
            failure_rate_per_day=self.failure_rate_per_day,
            noise_scale=self.noise_scale,
            degradation_minutes=self.degradation_minutes,
        )

    @property
    def records(self) -> int:
        return int(self.days * DAY_MS / (self.interval_s * 1000)) * self.devices

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StreamAnomalyScorer:
    """The stream's per-device EWMA z-score, micro-batch by micro-batch (BatchProcessor._decide)."""

    rules: QualityRules
    state: dict[int, DeviceStats] = field(default_factory=dict)

    def score_batch(self, rows: Sequence[dict[str, Any]]) -> list[tuple[float, bool]]:
        """(anomaly_score, anomaly_flag) of each raw row of one micro-batch, then update the state."""
        a = self.rules.anomaly
        sig = list(a.signals)
        warm = a.warmup_records
        by_dev: dict[int, list[int]] = {}
        for i, r in enumerate(rows):
            by_dev.setdefault(int(r[DEVICE_ID]), []).append(i)
        out: list[tuple[float, bool]] = [(0.0, False)] * len(rows)
        aggs: list[BatchAggregate] = []
        for dev, idx in by_dev.items():
            n = len(idx)
            sums = {s: math.fsum(float(rows[i][s]) for i in idx) for s in sig}
            sums2 = {s: math.fsum(float(rows[i][s]) ** 2 for i in idx) for s in sig}
            st = self.state.get(dev)
            mean: dict[str, float] | None = None
            std: dict[str, float] | None = None
            if st is not None and st.n >= warm:
                mean, std = dict(st.mean), {s: st.std(s) for s in sig}
            elif n >= max(warm, 2):
                mean = {s: sums[s] / n for s in sig}
                std = {s: math.sqrt(max(0.0, sums2[s] / n - mean[s] ** 2)) for s in sig}
            for i in idx:
                r = rows[i]
                score = 0.0
                if mean is not None and std is not None:
                    score = max(abs(float(r[s]) - mean[s]) / max(std[s], a.min_stddev[s]) for s in sig)
                score = round(score, 4)
                out[i] = (score, bool(r[IS_FAIL]) or score >= a.z_threshold)
            max_us = max(int(rows[i]["_event_ms"]) for i in idx) * 1000
            aggs.append(BatchAggregate(dev, n, max_us, sums, sums2))
        self.state = merge(self.state, aggs, a.ewm_alpha, sig)
        return out


def processed_rows(
    spec: FleetSpec,
    trigger_s: float = 30.0,
    rules: QualityRules | None = None,
    on_batch: Callable[[FleetSimulator, int], None] | None = None,
) -> Iterable[dict[str, Any]]:
    """The fleet's records as processed rows (raw JSON -> processed columns + the stream's score).

    ``on_batch(simulator, batch_end_ms)`` runs after each micro-batch (the closed-loop drill acts there).
    """
    rules = rules or load_rules()
    sim = FleetSimulator(spec.simulator_config(), rules)
    scorer = StreamAnomalyScorer(rules)
    total = spec.records
    trigger_ms = int(trigger_s * 1000)
    batch: list[dict[str, Any]] = []
    batch_end = spec.start_ms + trigger_ms
    for rec in sim.records(total):
        assert rec.event_ms is not None
        if rec.event_ms >= batch_end:
            yield from _emit(batch, scorer)
            batch = []
            if on_batch is not None:
                on_batch(sim, batch_end)
            while rec.event_ms >= batch_end:
                batch_end += trigger_ms
        obj = json.loads(rec.value)
        obj["_event_ms"] = rec.event_ms
        batch.append(obj)
    yield from _emit(batch, scorer)


def _emit(batch: list[dict[str, Any]], scorer: StreamAnomalyScorer) -> Iterable[dict[str, Any]]:
    if not batch:
        return
    for obj, (score, flag) in zip(batch, scorer.score_batch(batch), strict=True):
        row = {PROCESSED_COLUMN[k]: obj[k] for k in (DEVICE_ID, *READINGS, IS_FAIL)}
        row[PROCESSED_COLUMN[TIME]] = obj["_event_ms"]
        row[ANOMALY_SCORE] = score
        row[ANOMALY_FLAG] = flag
        yield row


def arrow_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field(PROCESSED_COLUMN[DEVICE_ID], pa.int32()),
            pa.field(PROCESSED_COLUMN[TIME], pa.timestamp("ms", tz="UTC")),
            *[pa.field(PROCESSED_COLUMN[r], pa.float64()) for r in READINGS],
            pa.field(PROCESSED_COLUMN[IS_FAIL], pa.bool_()),
            pa.field(ANOMALY_SCORE, pa.float64()),
            pa.field(ANOMALY_FLAG, pa.bool_()),
        ]
    )


def write_fleet(
    spec: FleetSpec,
    out_dir: str | Path,
    trigger_s: float = 30.0,
    rules: QualityRules | None = None,
    chunk_rows: int = 200_000,
) -> Path:
    """Write the fleet as Parquet files under out_dir/<spec.name>/ (the processed columns used here)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    target = Path(out_dir) / spec.name
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.parquet"):
        old.unlink()
    cols: dict[str, list[Any]] = {f.name: [] for f in schema}
    part = 0

    def flush() -> None:
        nonlocal part, cols
        if not cols[schema[0].name]:
            return
        table = pa.table({k: pa.array(v, type=schema.field(k).type) for k, v in cols.items()}, schema=schema)
        pq.write_table(table, target / f"part-{part:05d}.parquet", compression="snappy")
        part += 1
        cols = {f.name: [] for f in schema}

    for row in processed_rows(spec, trigger_s, rules):
        for k, v in row.items():
            cols[k].append(v)
        if len(cols[schema[0].name]) >= chunk_rows:
            flush()
    flush()
    (target / "_fleet.json").write_text(json.dumps({**spec.to_json(), "trigger_s": trigger_s}, indent=1))
    return target

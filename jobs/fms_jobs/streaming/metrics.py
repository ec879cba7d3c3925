"""Prometheus metrics of the streaming job's driver (names fixed by the monitoring contract; port 9311)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from fms_jobs.quality.reasons import Dimension

E2E_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300, 600, 1800)
BATCH_BUCKETS: tuple[float, ...] = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300)


class BulkHistogram(Collector):
    """A histogram fed with pre-aggregated bucket counts (Spark computes them; no per-row observe())."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.buckets = tuple(buckets)
        self._cumulative = [0] * len(self.buckets)  # observations <= bucket bound
        self._count = 0
        self._sum = 0.0
        self._lock = threading.Lock()

    def add(self, le_counts: Sequence[int], count: int, total: float) -> None:
        """le_counts[i] = observations <= buckets[i] in this batch; count/total over all observations."""
        if len(le_counts) != len(self.buckets):
            raise ValueError("bucket count mismatch")
        with self._lock:
            self._cumulative = [a + int(b) for a, b in zip(self._cumulative, le_counts, strict=True)]
            self._count += int(count)
            self._sum += float(total)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            buckets = [(repr(float(b)), c) for b, c in zip(self.buckets, self._cumulative, strict=True)]
            buckets.append(("+Inf", self._count))
            fam = HistogramMetricFamily(self.name, self.documentation)
            fam.add_metric([], buckets, self._sum)
        yield fam

    def describe(self) -> Iterable[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation)]


class LastValueGauge(Collector):
    """A gauge exported only once a value was set: a driver that has not judged a record yet
    exports no quality score rather than a score of 0, which would page someone
    (FmsQualityScoreLow) every time the stream starts or restarts."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self._value: float | None = None

    def set(self, value: float) -> None:
        self._value = float(value)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        fam = GaugeMetricFamily(self.name, self.documentation)
        if self._value is not None:
            fam.add_metric([], self._value)
        yield fam

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [GaugeMetricFamily(self.name, self.documentation)]


class StreamMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, per_device: bool = True) -> None:
        self.registry = registry or CollectorRegistry()
        self.per_device = per_device
        r = self.registry
        self.records_in = Counter("fms_stream_records_in", "Records read from Kafka", registry=r)
        self.stored = Counter(
            "fms_stream_records_stored", "Records committed to the processed Parquet", registry=r
        )
        self.dead_lettered = Counter(
            "fms_stream_records_dead_lettered", "Records dead-lettered, by reason", ["reason"], registry=r
        )
        self.duplicates = Counter(
            "fms_stream_duplicates", "Duplicate (DeviceId, time) records counted and not stored", registry=r
        )
        self.flagged = Counter(
            "fms_stream_records_flagged",
            "Stored records carrying a quality flag, by flag",
            ["flag"],
            registry=r,
        )
        self.pass_ratio = Gauge(
            "fms_stream_quality_pass_ratio",
            "Share of the last batch's records passing each quality dimension",
            ["dimension"],
            registry=r,
        )
        self.score = LastValueGauge(
            "fms_stream_quality_score",
            "Share of the last batch's records passing all four dimensions",
        )
        r.register(self.score)
        self.e2e = BulkHistogram(
            "fms_stream_e2e_latency_seconds",
            "Record creation at the collector to the commit of the Parquet files holding it",
            E2E_BUCKETS,
        )
        r.register(self.e2e)
        self.last_progress = Gauge(
            "fms_stream_last_progress_timestamp_seconds",
            "Unix time of the last completed micro-batch (the driver's start until the first one)",
            registry=r,
        )
        # From 0 the stall alert (time() - this > bound) fired on every start whose first batch
        # took longer than its `for:` - seen on a fresh lab while the first batch read the backlog.
        # A driver that never completes a batch still pages, the stall bound after its start.
        self.last_progress.set(time.time())
        self.batch_duration = Histogram(
            "fms_stream_batch_duration_seconds", "Micro-batch duration", buckets=BATCH_BUCKETS, registry=r
        )
        self.input_rate = Gauge(
            "fms_stream_input_rows_per_second", "Input rate reported by the last query progress", registry=r
        )
        self.processed_rate = Gauge(
            "fms_stream_processed_rows_per_second",
            "Processing rate reported by the last query progress",
            registry=r,
        )
        self.kafka_lag = Gauge(
            "fms_stream_kafka_lag_records",
            "Records beyond the last micro-batch: newest offsets seen at its start minus its end offsets "
            "(non-zero only when maxOffsetsPerTrigger caps a batch; the bench computes the full lag)",
            registry=r,
        )
        self.last_batch_id = Gauge(
            "fms_stream_last_batch_id", "Id of the last committed micro-batch", registry=r
        )
        self.batch_rows = Gauge(
            "fms_stream_last_batch_records", "Records in the last micro-batch", registry=r
        )
        self.watermark = Gauge(
            "fms_stream_watermark_timestamp_seconds",
            "Event-time watermark used by duplicate detection",
            registry=r,
        )
        self.conservation_errors = Counter(
            "fms_stream_conservation_errors",
            "Micro-batches where in != stored + dead-lettered + duplicates (must stay 0)",
            registry=r,
        )
        self.unwritable = Counter(
            "fms_stream_unwritable_records",
            "Records an output of their micro-batch refused (poison pills), isolated and dead-lettered "
            "raw as UNWRITABLE, by the output that refused them (processed, dlq, dlq_topic)",
            ["output"],
            registry=r,
        )
        self.dlq_topic_records = Counter(
            "fms_stream_dlq_topic_records", "Dead letters published to the dead-letter topic", registry=r
        )
        self.phase_seconds = Counter(
            "fms_stream_batch_phase_seconds",
            "Seconds per micro-batch step, summed over batches: the foreachBatch steps in order "
            "(prepare, read_classify_dedup, decide_and_count, writes, isolate - only when a write failed "
            "and the batch was decided and written again without its poison pills -, publish, "
            "latency_and_state), "
            "their parallel parts (writes.*, publish.*, after_publish.*) and Spark's own durations from the "
            "query progress (query.*; query.addBatch is the whole foreachBatch) and the duplicate "
            "detection state store's task time (state.updates, state.removals, state.commit)",
            ["phase"],
            registry=r,
        )
        self.device_records = Counter(
            "fms_stream_device_records",
            "Records per device and outcome (stored, dead_lettered, duplicate)",
            ["device_id", "outcome"],
            registry=r,
        )
        self.device_score = Gauge(
            "fms_stream_device_quality_score",
            "Share of the device's records in its last batch passing all four dimensions",
            ["device_id"],
            registry=r,
        )
        self.device_pass_ratio = Gauge(
            "fms_stream_device_quality_pass_ratio",
            "Share of the device's records in its last batch passing each dimension",
            ["device_id", "dimension"],
            registry=r,
        )

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        if port:
            start_http_server(port, addr=addr, registry=self.registry)

    def record_batch(self, summary: Mapping[str, Any]) -> None:
        """Apply one batch summary (see BatchSummary.as_metrics)."""
        self.records_in.inc(summary["in"])
        self.stored.inc(summary["stored"])
        self.duplicates.inc(summary["duplicates"])
        for reason, n in summary["dead_lettered"].items():
            self.dead_lettered.labels(reason=reason).inc(n)
        for flag, n in summary["flags"].items():
            self.flagged.labels(flag=flag).inc(n)
        if summary["in"]:
            for d in Dimension:
                self.pass_ratio.labels(dimension=d.value).set(summary["passed"][d.value] / summary["in"])
            self.score.set(summary["clean"] / summary["in"])
        for output, n in summary.get("unwritable", {}).items():
            self.unwritable.labels(output=output).inc(n)
        if not summary["conserved"]:
            self.conservation_errors.inc()
        self.batch_rows.set(summary["in"])
        for phase, seconds in summary.get("phases", {}).items():
            self.phase_seconds.labels(phase=phase).inc(seconds)
        if self.per_device:
            for dev, d in summary["devices"].items():
                dev_s = str(dev)
                for outcome in ("stored", "dead_lettered", "duplicate"):
                    if d[outcome]:
                        self.device_records.labels(device_id=dev_s, outcome=outcome).inc(d[outcome])
                if d["in"]:
                    self.device_score.labels(device_id=dev_s).set(d["clean"] / d["in"])
                    for dim in Dimension:
                        self.device_pass_ratio.labels(device_id=dev_s, dimension=dim.value).set(
                            d["passed"][dim.value] / d["in"]
                        )

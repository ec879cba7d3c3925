"""What the benchmark measures: the stream driver's Prometheus metrics (parsed, histogram
quantiles, slopes) and a topic's end offsets."""

from __future__ import annotations

import math
import urllib.parse
import urllib.request
from collections.abc import Mapping

Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, timeout: float = 10.0) -> Snapshot:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return parse_metrics(r.read().decode())


def parse_metrics(text: str) -> Snapshot:
    """Prometheus text exposition -> {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Snapshot = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def value(snap: Mapping, name: str, **labels: str) -> float:
    return snap.get((name, tuple(sorted(labels.items()))), 0.0)


def histogram(snap: Mapping, name: str) -> list[tuple[float, float]]:
    rows = [(dict(lbl).get("le"), v) for (n, lbl), v in snap.items() if n == f"{name}_bucket"]
    return sorted((math.inf if le == "+Inf" else float(le), v) for le, v in rows if le is not None)


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus-style histogram_quantile over cumulative (le, count) buckets (linear within a bucket).

    A rank in the +Inf bucket gives the highest finite bound, like Prometheus; no observations -> None.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le


def delta_buckets(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Cumulative buckets of the observations between snapshot a and b; [] after a counter reset."""
    before = dict(a)
    out = [(le, c - before.get(le, 0.0)) for le, c in b]
    if any(c < 0 for _, c in out):
        return []
    return out


def slope_se(points: list[tuple[float, float]]) -> float:
    """Standard error of the least-squares slope (0 when there are fewer than three points)."""
    n = len(points)
    if n < 3:
        return 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    if not den:
        return 0.0
    b = slope(points)
    ssr = sum((y - (my + b * (x - mx))) ** 2 for x, y in points)
    return math.sqrt(ssr / (n - 2) / den)


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points; 0 for fewer than two distinct x."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / den if den else 0.0


BATCHES = "fms_stream_batch_duration_seconds_count"
RECORDS_IN = "fms_stream_records_in_total"
CAPPED_LAG = "fms_stream_kafka_lag_records"
E2E = "fms_stream_e2e_latency_seconds"


def end_offsets(bootstrap: str, topic: str, kafka_conf: Mapping[str, str]) -> int:
    """Sum of the topic's end offsets (librdkafka, from this machine)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "fms-bench-probe", **kafka_conf})
    try:
        meta = c.list_topics(topic, timeout=10)
        parts = meta.topics[topic].partitions
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        c.close()

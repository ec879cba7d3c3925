#!/usr/bin/env python3
"""Pipeline benchmark: the highest sustained rate with flat consumer lag, e2e latency, Kafka's ceiling.

Two modes share one measurement loop:

* ``--mode loopback`` (self-contained, this machine): a single KRaft broker from the artifact
  mirror (tests/support/kafka_broker.py), the streaming job as its own process
  (``python -m fms_jobs.streaming --master local[2]``), and ``fms-collector`` simulator
  processes as load generators;
* ``--mode lab`` (``make bench``): the deployed lab. Without options everything comes from the
  running lab's state (``scripts/lab`` hosts.json, for ``--lab-env``): the brokers' client
  listener (``<kafka host>:9092``), the stream driver's metrics (``http://<spark_master>:9311``),
  load generators run as root over the lab's ssh config on the collector hosts
  (``/opt/fms-jobs/venv/bin/fms-collector --config /etc/fms/collector.yml``: the deployed
  collector's Kafka settings and credentials), end offsets are read on the first collector host
  with the same credentials, and Kafka's perf tool runs on the first broker with
  ``/etc/kafka/admin.properties``. ``--bootstrap``, ``--stream-metrics-url``,
  ``--collector-exec`` and ``--kafka-exec`` override the derived values. When the metrics URL does
  not answer from this machine they are read on the stream's host over ssh (``--metrics-exec``).

Before the first rate the stream is warmed up: a priming load runs until it has completed
``--warm-batches`` micro-batches (the first batches of a fresh JVM are much slower), then drains.

For every rate (rising): start the load, wait ``--warmup`` seconds, then measure between two
micro-batch completions at least ``--window`` seconds (and ``--min-batches`` batches) apart, so
the consumed count covers whole batches: the produced rate from the topic's end offsets, the
consumed rate from ``fms_stream_records_in_total``, the consumer lag (end offsets minus the
stream's position) right after each batch completion, and the e2e latency percentiles from the
delta of the ``fms_stream_e2e_latency_seconds`` histogram over those batches (record creation at
the collector -> commit of the Parquet files holding it). A rate is *sustained* when the
generators delivered >= 90 % of the target, the stream consumed >= 95 % of what was produced and
the lag did not grow (slope <= max(50, 2 % of the rate) records/s), both within the measurement's
noise: the lag right after a batch is what arrived while it ran, so it swings by a batch's worth
of records when batch durations vary, and two standard errors of the lag's slope are allowed
(negligible with a few-second trigger; large with slow batches on a busy machine - look at
``lag_slope_se_per_s`` and widen ``--window``). Then the load stops and the stream drains
(loopback: end offsets == records in; lab: two batch completions, the last one not capped by
maxOffsetsPerTrigger). The run stops after the first rate that is not sustained (or when
``--max-minutes`` of rate steps are used up). Kafka's own ``kafka-producer-perf-test.sh`` with
the collector's producer settings gives the ceiling on the same broker(s).

Writes ``<out>/bench-<timestamp>.json`` and ``<out>/latency-vs-rate-<timestamp>.png`` and prints
one JSON line last: sustained_msgs_per_s, e2e_p50_ms, e2e_p95_ms, e2e_p99_ms,
kafka_ceiling_msgs_per_s (+ context). Every wait is bounded; only loopback/lab addresses are used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fmsops.platform_contract import load as load_platform
from fmsops.procs import stop_group
from lab.state import host_groups

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
# The pipeline's topics and the producer ceiling's scratch topic: platform.yml `topics`.
RAW, DLQ, CEILING = (load_platform().topic(key).name for key in ("raw", "dlq", "bench_ceiling"))

Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# ------------------------------------------------------------------------------- metrics


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


# ------------------------------------------------------------------------------- results


@dataclass
class Step:
    target_rate: float
    generators: int
    produced_rate: float = 0.0
    consumed_rate: float = 0.0
    window_s: float = 0.0
    batches: int = 0
    lag_start: float = 0.0
    lag_end: float = 0.0
    lag_slope_per_s: float = 0.0
    lag_slope_se_per_s: float = 0.0
    lag_points: list[tuple[float, float]] = field(default_factory=list)
    e2e_p50_ms: float | None = None
    e2e_p95_ms: float | None = None
    e2e_p99_ms: float | None = None
    e2e_samples: int = 0
    batch_mean_s: float | None = None
    # mean seconds per micro-batch of each step of the stream (fms_stream_batch_phase_seconds_total)
    batch_phases_s: dict[str, float] = field(default_factory=dict)
    # CPU cores busy during the window: the whole machine and each lab host (lab mode, same machine)
    cpu_cores: dict[str, float] = field(default_factory=dict)
    drained: bool = False
    sustained: bool = False
    generator_bound: bool = False
    note: str = ""


PHASES = "fms_stream_batch_phase_seconds_total"
# the foreachBatch steps in order; their sum is query.addBatch
SEQUENTIAL_PHASES = (
    "prepare",
    "read_classify_dedup",
    "decide_and_count",
    "writes",
    "publish",
    "latency_and_state",
)


def phase_means(a: Snapshot, b: Snapshot, batches: int) -> dict[str, float]:
    """Mean seconds per micro-batch of every phase between two snapshots (+ Spark's overhead).

    ``spark_overhead`` is what a trigger costs beyond the job's own steps: offset and commit logs,
    planning, handing the batch to Python (query.triggerExecution - the sequential steps), so the
    stacked steps add up to the trigger's whole duration.
    """
    if batches <= 0:
        return {}
    out: dict[str, float] = {}
    for (name, labels), v in b.items():
        phase = dict(labels).get("phase")
        if name == PHASES and phase:
            out[phase] = round((v - a.get((name, labels), 0.0)) / batches, 3)
    if "query.triggerExecution" in out:
        ours = sum(out.get(p, 0.0) for p in SEQUENTIAL_PHASES)
        out["spark_overhead"] = round(max(0.0, out["query.triggerExecution"] - ours), 3)
    return dict(sorted(out.items()))


LAB_CGROUPS = (  # scripts/lab/hosts.py puts each host in <mount>/fms-lab/<host>
    ("/sys/fs/cgroup/cpuacct/fms-lab/*/cpuacct.usage", 1e-9),  # cgroup v1: ns
    ("/sys/fs/cgroup/fms-lab/*/cpu.stat", 1e-6),  # cgroup v2: usage_usec
)


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far: the machine (``machine``, busy time of /proc/stat) and each lab host."""
    import glob

    out: dict[str, float] = {}
    for pattern, scale in LAB_CGROUPS:
        for path in glob.glob(pattern):
            host = Path(path).parent.name
            try:
                text = Path(path).read_text()
            except OSError:
                continue
            if path.endswith("cpu.stat"):
                m = re.search(r"^usage_usec (\d+)", text, re.MULTILINE)
                if not m:
                    continue
                text = m.group(1)
            out.setdefault(host, int(text.strip()) * scale)
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        out["machine"] = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    except (OSError, ValueError, IndexError):
        pass
    return out


def cores_used(a: Mapping[str, float], b: Mapping[str, float], seconds: float) -> dict[str, float]:
    if seconds <= 0:
        return {}
    return {k: round((b[k] - a[k]) / seconds, 2) for k in sorted(b) if k in a}


def decide(
    target: float,
    produced_rate: float,
    consumed_rate: float,
    lag_slope_per_s: float,
    batches: int,
    e2e_samples: int,
    lag_slope_se: float = 0.0,
) -> tuple[bool, bool, str]:
    """(sustained, generator_bound, note) of one rate step: sustained when note == "".

    `lag_slope_se` (records/s) is the measurement's noise: consumption and lag growth are judged
    within two standard errors of the lag's slope.
    """
    if batches < 1:
        return False, False, "no micro-batch completed within the window (the stream stalled)"
    noise = 2.0 * max(0.0, lag_slope_se)
    generator_bound = produced_rate < 0.9 * target
    keeps_up = consumed_rate >= 0.95 * produced_rate - noise
    flat = lag_slope_per_s <= max(50.0, 0.02 * target) + noise
    if generator_bound:
        note = "the load generators did not reach the target (raise --rate-per-generator or add hosts)"
    elif not keeps_up:
        note = "the stream consumed less than 95 % of what was produced"
    elif not flat:
        note = "consumer lag grew during the window"
    elif e2e_samples <= 0:
        note = "no e2e latency observations in the window"
    else:
        note = ""
    return (not note), generator_bound, note


@dataclass
class Result:
    mode: str
    started: str
    settings: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    kafka_ceiling_msgs_per_s: float | None = None
    kafka_ceiling_detail: str = ""
    warmup: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def best(self) -> Step | None:
        ok = [s for s in self.steps if s.sustained]
        return max(ok, key=lambda s: (s.target_rate, s.produced_rate)) if ok else None

    def summary(self) -> dict[str, Any]:
        best = self.best()

        def ms(v: float | None) -> float | None:
            return round(v, 1) if v is not None else None

        out: dict[str, Any] = {
            # the offered load of the highest sustained step (what the stream kept up with)
            "sustained_msgs_per_s": round(best.produced_rate, 1) if best else 0.0,
            "e2e_p50_ms": ms(best.e2e_p50_ms) if best else None,
            "e2e_p95_ms": ms(best.e2e_p95_ms) if best else None,
            "e2e_p99_ms": ms(best.e2e_p99_ms) if best else None,
            "kafka_ceiling_msgs_per_s": self.kafka_ceiling_msgs_per_s,
            "mode": self.mode,
            "steps": len(self.steps),
            "sustained_target_msgs_per_s": best.target_rate if best else None,
            "first_unsustained_msgs_per_s": next(
                (s.target_rate for s in self.steps if not s.sustained), None
            ),
        }
        if best and self.kafka_ceiling_msgs_per_s:
            out["share_of_kafka_ceiling"] = round(best.produced_rate / self.kafka_ceiling_msgs_per_s, 4)
        return out


def plot(result: Result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    summ = result.summary()
    fig, ((ax, ax2), (ax3, ax4)) = plt.subplots(2, 2, figsize=(14, 10))
    steps = result.steps
    x_all = [s.target_rate for s in steps]
    log_x = bool(x_all) and max(x_all) / max(min(x_all), 1e-9) >= 10
    lat = [s for s in steps if s.e2e_p50_ms is not None]
    for attr, style in (("e2e_p50_ms", "o-"), ("e2e_p95_ms", "s-"), ("e2e_p99_ms", "^-")):
        pts = [(s.target_rate, getattr(s, attr) / 1000.0) for s in lat if getattr(s, attr) is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, label=attr.replace("e2e_", "").replace("_ms", ""))
    for a in (ax, ax2):
        for s in steps:
            if not s.sustained:
                a.axvline(s.target_rate, color="red", alpha=0.3, label="not sustained")
        if log_x:
            a.set_xscale("log")
        a.set_xlabel("target rate (records/s)")
        a.grid(True, which="both", alpha=0.3)
    ax.set_ylabel("end-to-end latency (s): creation -> committed Parquet")
    ax.set_title("e2e latency percentiles per rate step")
    if steps:
        ax2.plot(x_all, [s.produced_rate for s in steps], "o-", label="produced (topic end offsets)")
        ax2.plot(x_all, [s.consumed_rate for s in steps], "s-", label="consumed (stream records in)")
        ax2.plot(x_all, x_all, ":", color="grey", label="target")
    if result.kafka_ceiling_msgs_per_s:
        ax2.axhline(result.kafka_ceiling_msgs_per_s, color="purple", ls="--", label="Kafka producer ceiling")
        ax2.set_yscale("log")
        ax2.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax2.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax2.set_ylabel("records/s")
    ax2.set_title("throughput per rate step")
    plot_phases(ax3, steps)
    plot_cpu(ax4, steps)
    for a in (ax, ax2):
        handles, labels = a.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=True))
        if uniq:
            a.legend(uniq.values(), uniq.keys(), fontsize=8, loc="best")
    p50 = summ["e2e_p50_ms"]
    fig.suptitle(
        f"FMS pipeline benchmark ({result.mode}, {result.started}): sustained "
        f"{summ['sustained_msgs_per_s']} msg/s, e2e p50 "
        f"{'n/a' if p50 is None else f'{p50 / 1000:.1f} s'}, Kafka ceiling "
        f"{summ['kafka_ceiling_msgs_per_s']} msg/s"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stacked_bars(ax: Any, labels: list[str], series: dict[str, list[float]]) -> None:
    """One stacked bar per label; every series (legend name -> heights) that is not all zero."""
    bottom = [0.0] * len(labels)
    for name, heights in series.items():
        if any(heights):
            ax.bar(labels, heights, bottom=bottom, label=name)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]


def plot_phases(ax: Any, steps: list[Step]) -> None:
    """Stacked bars: where a micro-batch's time goes at each rate step (the profile)."""
    shown = [s for s in steps if s.batch_phases_s]
    phases = (*SEQUENTIAL_PHASES, "spark_overhead")
    stacked_bars(
        ax,
        [f"{s.target_rate:g}" for s in shown],
        {phase: [s.batch_phases_s.get(phase, 0.0) for s in shown] for phase in phases},
    )
    ax.set_xlabel("target rate (records/s)")
    ax.set_ylabel("seconds per micro-batch (mean)")
    ax.set_title("where a micro-batch's time goes")
    ax.grid(True, axis="y", alpha=0.3)
    if shown:
        ax.legend(fontsize=8, loc="upper left")


def plot_cpu(ax: Any, steps: list[Step]) -> None:
    """Stacked bars: CPU cores each lab host used per rate step, against the machine's cores."""
    shown = [s for s in steps if s.cpu_cores]
    labels = [f"{s.target_rate:g}" for s in shown]
    hosts = sorted({h for s in shown for h in s.cpu_cores if h != "machine"})
    stacked_bars(
        ax, labels, {h.removeprefix("fms-lab-"): [s.cpu_cores.get(h, 0.0) for s in shown] for h in hosts}
    )
    if shown:
        ax.plot(labels, [s.cpu_cores.get("machine", 0.0) for s in shown], "k^-", label="whole machine busy")
        ax.axhline(os.cpu_count() or 1, color="red", ls="--", label=f"{os.cpu_count()} cores")
        ax.legend(fontsize=7, loc="upper left")
    ax.set_xlabel("target rate (records/s)")
    ax.set_ylabel("CPU cores busy (window mean)")
    ax.set_title("CPU per lab host")
    ax.grid(True, axis="y", alpha=0.3)


# ------------------------------------------------------------------------------- environments


class Environment:
    bootstrap: str
    metrics_url: str
    exact_lag = False  # the stream read the topic from its first offset (lag = offsets - records in)

    def snapshot(self) -> Snapshot:
        """The streaming driver's metrics now."""
        return scrape(self.metrics_url)

    def end_offsets(self) -> int:
        raise NotImplementedError

    def start_generators(
        self, rate: float, n: int, devices: int, first_id: int, seconds: float, seed: int
    ) -> list[Any]:
        raise NotImplementedError

    def stop_generators(self, procs: list[Any], timeout: float) -> None:
        raise NotImplementedError

    def kafka_ceiling(self, records: int, record_size: int, partitions: int) -> tuple[float | None, str]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def collector_args(
    bootstrap: str, rate: float, devices: int, first: int, seconds: float, seed: int
) -> list[str]:
    return [
        "--source",
        "simulator",
        "--bootstrap-servers",
        bootstrap,
        "--devices",
        str(devices),
        "--rate",
        f"{rate:.3f}",
        "--duration",
        f"{seconds:.1f}",
        "--seed",
        str(seed),
        "--metrics-port",
        "0",
        "--first-device-id",
        str(first),
        "--log-level",
        "WARNING",
    ]


def generator_slices(rate: float, n: int, devices: int, first_id: int) -> list[tuple[float, int, int]]:
    """(rate, devices, first device id) per generator: the fleet split into n contiguous slices."""
    n = max(1, min(n, devices))
    base, extra = divmod(devices, n)
    out, first = [], first_id
    for i in range(n):
        count = base + (1 if i < extra else 0)
        out.append((rate * count / devices, count, first))
        first += count
    return out


# the collector's producer settings (fms_jobs/collector/config.py KafkaConfig defaults)
PERF_PROPS = "acks=all enable.idempotence=true compression.type=zstd linger.ms=20 batch.size=1000000"


def parse_perf(output: str) -> float | None:
    """records/sec of kafka-producer-perf-test's final summary line (the one with percentiles).

    The tool prints interval lines ("N records sent, R records/sec (...), A ms avg latency, M ms max
    latency.") every 5 s and one summary line that adds "... 50th, ... 95th, ..."; an interrupted
    run has no summary line -> None.
    """
    best = None
    for line in output.splitlines():
        if "records sent" in line and "records/sec" in line and "50th" in line:
            try:
                best = float(line.split(",")[1].strip().split()[0])
            except (IndexError, ValueError):
                continue
    return best


def parse_offsets(output: str, topic: str) -> int | None:
    """Sum of `topic:partition:offset` lines (kafka-get-offsets.sh, the lab probe); None if none."""
    total, seen = 0, False
    for line in output.splitlines():
        m = re.fullmatch(rf"{re.escape(topic)}:(\d+):(\d+)", line.strip())
        if m:
            total += int(m.group(2))
            seen = True
    return total if seen else None


class Loopback(Environment):
    exact_lag = True

    def __init__(self, work: Path, stream_conf: list[str], trigger: str, max_offsets: int) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        from support.kafka_broker import KafkaBroker  # type: ignore[import-not-found]

        self.work = work
        self.stream: subprocess.Popen[bytes] | None = None
        self.stream_log_path = work / "stream.log"
        self.broker = KafkaBroker(
            work / "kafka", heap="1g", properties={"auto.create.topics.enable": "false"}
        ).start()
        try:
            self._start(stream_conf, trigger, max_offsets)
        except BaseException:
            self.close()
            raise

    def _start(self, stream_conf: list[str], trigger: str, max_offsets: int) -> None:
        work = self.work
        self.bootstrap = self.broker.bootstrap
        self.kafka_conf: dict[str, str] = {}
        self.broker.create_topic(RAW, partitions=6)
        self.broker.create_topic(DLQ, partitions=1)
        port = _free_port()
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        # metrics on loopback only (the CLI has no address flag; the config file has)
        conf_file = work / "stream.yml"
        conf_file.write_text(json.dumps({"metrics": {"addr": "127.0.0.1", "port": port}}))
        cmd = [
            PY,
            "-m",
            "fms_jobs.streaming",
            "--config",
            str(conf_file),
            "--master",
            "local[2]",
            "--local-jars",
            "--bootstrap-servers",
            self.bootstrap,
            "--processed",
            str(work / "lake" / "processed"),
            "--dlq",
            str(work / "lake" / "dlq"),
            "--checkpoint",
            str(work / "lake" / "checkpoint"),
            "--trigger",
            trigger,
            "--max-offsets-per-trigger",
            str(max_offsets),
            "--conf",
            "spark.sql.shuffle.partitions=4",
            "--conf",
            "spark.ui.enabled=false",
            "--conf",
            "spark.driver.memory=2g",
            "--conf",
            "spark.driver.host=127.0.0.1",
            "--conf",
            "spark.driver.bindAddress=127.0.0.1",
        ]
        for c in stream_conf:
            cmd += ["--conf", c]
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO / "jobs"), os.environ.get("PYTHONPATH", "")) if p
        )
        self.child_env = env
        with self.stream_log_path.open("wb") as log:
            self.stream = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True
            )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.stream.poll() is not None:
                raise RuntimeError(f"streaming job exited early:\n{self.stream_log_tail()}")
            try:
                scrape(self.metrics_url, timeout=2)
                return
            except OSError:
                time.sleep(1)
        raise RuntimeError(f"streaming job metrics did not come up within 300 s:\n{self.stream_log_tail()}")

    def stream_log_tail(self, lines: int = 40) -> str:
        try:
            text = self.stream_log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no stream log)"
        keep = [t for t in text if "py4j.clientserver" not in t]
        return "\n".join(keep[-lines:])

    def end_offsets(self) -> int:
        return end_offsets(self.bootstrap, RAW, self.kafka_conf)

    def start_generators(
        self, rate: float, n: int, devices: int, first_id: int, seconds: float, seed: int
    ) -> list[Any]:
        procs = []
        for i, (r, count, first) in enumerate(generator_slices(rate, n, devices, first_id)):
            args = collector_args(self.bootstrap, r, count, first, seconds, seed + i)
            procs.append(
                subprocess.Popen(
                    [PY, "-m", "fms_jobs.collector", *args],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd=REPO,
                    env=self.child_env,
                    start_new_session=True,
                )
            )
        return procs

    def stop_generators(self, procs: list[Any], timeout: float) -> None:
        for p in procs:
            stop_group(p, timeout)

    def kafka_ceiling(self, records: int, record_size: int, partitions: int) -> tuple[float | None, str]:
        self.broker.create_topic(CEILING, partitions=partitions)
        try:
            res = self.broker.run_tool(
                "kafka-producer-perf-test.sh",
                "--topic",
                CEILING,
                "--num-records",
                str(records),
                "--record-size",
                str(record_size),
                "--throughput",
                "-1",
                "--producer-props",
                f"bootstrap.servers={self.bootstrap}",
                *PERF_PROPS.split(),
                timeout=600,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None, "kafka-producer-perf-test.sh did not finish within 600 s"
        lines = res.stdout.strip().splitlines()
        return parse_perf(res.stdout), lines[-1] if lines else res.stderr[-300:]

    def close(self) -> None:
        if self.stream is not None:
            stop_group(self.stream, 60)
        self.broker.stop()


# ------------------------------------------------------------------------------- the lab

# Role defaults (roles/kafka/defaults/main.yml, ansible/group_vars/all.yml,
# roles/fms_pipeline/defaults/main.yml); the lab overrides none of them. The
# ports are the platform contract's (platform.yml), which those defaults use.
LAB_KAFKA_CLIENT_PORT = load_platform().port("kafka_client")
LAB_COLLECTOR_UNIT = "fms-collector.service"
LAB_STREAM_METRICS_PORT = load_platform().port("stream_metrics")
LAB_VENV = "/opt/fms-jobs/venv"
LAB_COLLECTOR_CONFIG = "/etc/fms/collector.yml"
LAB_KAFKA_HOME = "/opt/kafka"
LAB_ADMIN_PROPERTIES = "/etc/kafka/admin.properties"
LAB_COLLECTOR_CMD = f"{LAB_VENV}/bin/fms-collector --config {LAB_COLLECTOR_CONFIG}"
# bench devices next to the deployed fleet (fms_pipeline_collector_devices: 1000 from id 1), inside
# the quality rules' known ids (1-10000), so bench readings never interleave with a fleet device's
LAB_FIRST_DEVICE_ID = 5001

# Sum of a topic's end offsets, run with the collector's venv and config on a collector host: the
# collector's credentials may describe the raw topic (ListOffsets), and the brokers' names and
# TLS certificates only resolve/verify inside the lab network.
OFFSETS_PROBE = """\
import sys
from confluent_kafka import Consumer, TopicPartition
from fms_jobs.collector.config import load_config
from fms_jobs.collector.producer import producer_config
conf = {k: v for k, v in producer_config(load_config(sys.argv[1]).kafka).items()
        if k.split('.')[0] in ('bootstrap', 'security', 'sasl', 'ssl', 'client')}
conf['group.id'] = 'fms-bench-probe'
c = Consumer(conf)
try:
    topic = sys.argv[2]
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    for p in sorted(parts):
        print(f"{topic}:{p}:{c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]}")
finally:
    c.close()
"""


def node_name(name: str) -> str:
    """fms_node_name of an inventory host (ansible/group_vars/all.yml): the name brokers advertise."""
    return re.sub(r"[^a-z0-9.-]", "-", name.lower())


@dataclass
class LabSettings:
    bootstrap: str
    stream_metrics_url: str
    collector_execs: list[str]
    kafka_exec: str
    probe_exec: str
    metrics_exec: str
    kafka_hosts: list[str]
    collector_hosts: list[str]
    stream_host: str


def lab_settings(hosts: Mapping[str, Mapping[str, Any]], env_name: str, ssh_config: Path) -> LabSettings:
    """What bench needs of a running lab, from its host records ({name: {ip, env, role(s)}}).

    SystemExit with what is missing when the env has no kafka, spark_master or collector host.
    """
    recs = sorted(
        (r for r in hosts.values() if r.get("env") == env_name),
        key=lambda r: r["name"],
    )

    def group(g: str) -> list[Mapping[str, Any]]:
        return [r for r in recs if g in host_groups(r)]

    kafka, masters, collectors = group("kafka"), group("spark_master"), group("collector")
    missing = [
        g for g, rs in (("kafka", kafka), ("spark_master", masters), ("collector", collectors)) if not rs
    ]
    if missing:
        raise SystemExit(
            f"bench --mode lab: the running lab (env {env_name}) has no host in group(s) "
            f"{', '.join(missing)}; run `make lab` first (or give --bootstrap, --stream-metrics-url, "
            "--collector-exec and --kafka-exec)"
        )

    def ssh(rec: Mapping[str, Any]) -> str:
        return shlex.join(["ssh", "-F", str(ssh_config), rec["name"]])

    return LabSettings(
        bootstrap=",".join(f"{node_name(r['name'])}:{LAB_KAFKA_CLIENT_PORT}" for r in kafka),
        stream_metrics_url=f"http://{masters[0]['ip']}:{LAB_STREAM_METRICS_PORT}/metrics",
        collector_execs=[ssh(r) for r in collectors],
        kafka_exec=ssh(kafka[0]),
        probe_exec=ssh(collectors[0]),
        metrics_exec=ssh(masters[0]),
        kafka_hosts=[r["name"] for r in kafka],
        collector_hosts=[r["name"] for r in collectors],
        stream_host=masters[0]["name"],
    )


def running_lab(env_name: str) -> tuple[dict[str, dict[str, Any]], Path]:
    """The env's hosts whose container is running, and the lab's ssh config; SystemExit if none."""
    sys.path.insert(0, str(REPO / "scripts"))
    from lab import hosts as lab_hosts  # type: ignore[import-not-found]
    from lab import state as lab_state  # type: ignore[import-not-found]

    everything = lab_state.load_hosts()
    running = {
        n: r
        for n, r in everything.items()
        if r.get("env") == env_name and lab_hosts.nspawn_pid(r) is not None
    }
    if not running:
        where = lab_state.lab_dir()
        raise SystemExit(
            f"bench --mode lab: no lab host of env {env_name} is running (state in {where}); "
            "run `make lab` first, or use --mode loopback"
        )
    return running, lab_state.ssh_config_path()


def resolve_lab_args(a: argparse.Namespace) -> LabSettings | None:
    """Fill the lab options the command line left empty from the running lab's state."""
    needed = (a.bootstrap, a.stream_metrics_url, a.collector_exec, a.kafka_exec)
    if all(needed):
        return None
    running, ssh_config = running_lab(a.lab_env)
    s = lab_settings(running, a.lab_env, ssh_config)
    a.bootstrap = a.bootstrap or s.bootstrap
    a.stream_metrics_url = a.stream_metrics_url or s.stream_metrics_url
    a.collector_exec = a.collector_exec or s.collector_execs
    a.kafka_exec = a.kafka_exec or s.kafka_exec
    a.probe_exec = a.probe_exec or s.probe_exec
    a.metrics_exec = a.metrics_exec or s.metrics_exec
    return s


def remote(exec_argv: list[str], command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a shell command through an exec prefix (`ssh -F <lab ssh config> HOST`): text, never raises."""
    return subprocess.run(
        [*exec_argv, command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


class Lab(Environment):
    """The deployed lab: collectors and the Kafka tools run on lab hosts through an exec prefix."""

    def __init__(self, a: argparse.Namespace) -> None:
        missing = [n for n in ("bootstrap", "stream_metrics_url", "collector_exec") if not getattr(a, n)]
        if missing:
            raise SystemExit(
                "bench --mode lab needs "
                + ", ".join("--" + m.replace("_", "-") for m in missing)
                + "; run `make lab` first (they are derived from the running lab), or use --mode loopback"
            )
        self.bootstrap = a.bootstrap
        self.metrics_url = a.stream_metrics_url
        execs = a.collector_exec if isinstance(a.collector_exec, list) else [a.collector_exec]
        self.collector_execs = [shlex.split(e) for e in execs]
        self.kafka_exec = shlex.split(a.kafka_exec) if a.kafka_exec else None
        self.probe_exec = shlex.split(a.probe_exec) if a.probe_exec else self.collector_execs[0]
        self.kafka_home = a.kafka_home
        self.admin_properties = a.admin_properties
        self.collector_cmd = shlex.split(a.collector_cmd)
        self.collector_config = a.collector_config
        self.kafka_conf: dict[str, str] = {}
        for item in a.kafka_property or []:
            k, _, v = item.partition("=")
            self.kafka_conf[k] = v
        self.metrics_exec: list[str] | None = None
        self.paused: list[list[str]] = []
        try:
            scrape(self.metrics_url)
        except OSError as e:
            # not reachable from here: read them on the stream's host, as the lab tests do
            self.metrics_exec = shlex.split(a.metrics_exec) if a.metrics_exec else None
            try:
                if not self.metrics_exec:
                    raise OSError("no --metrics-exec")
                self.snapshot()
            except (OSError, RuntimeError) as e2:
                raise SystemExit(
                    f"bench --mode lab: the stream's metrics at {self.metrics_url} do not answer ({e}; "
                    f"on the stream host: {e2}); is fms-stream deployed and running? (`scripts/lab.py "
                    "status`; site.yml may only check the pipeline hosts - deploy the pipeline with "
                    "`scripts/lab.py converge --playbook pipeline`)"
                ) from None

    def snapshot(self) -> Snapshot:
        if not self.metrics_exec:
            return scrape(self.metrics_url)
        port = urllib.parse.urlsplit(self.metrics_url).port or LAB_STREAM_METRICS_PORT
        fetch = (
            "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
            f"'http://127.0.0.1:{port}/metrics', timeout=10).read().decode())"
        )
        res = remote(self.metrics_exec, shlex.join(["python3", "-c", fetch]), 60)
        if res.returncode != 0:
            raise OSError(f"metrics via {shlex.join(self.metrics_exec)}: {res.stderr.strip()[-300:]}")
        return parse_metrics(res.stdout)

    def end_offsets(self) -> int:
        if self.kafka_conf:  # client settings given: probe from this machine
            return end_offsets(self.bootstrap, RAW, self.kafka_conf)
        probe = shlex.join(
            [
                f"{LAB_VENV}/bin/python",
                "-c",
                OFFSETS_PROBE,
                self.collector_config or LAB_COLLECTOR_CONFIG,
                RAW,
            ]
        )
        res = remote(self.probe_exec, probe, 60)
        total = parse_offsets(res.stdout, RAW)
        if total is None:
            raise RuntimeError(f"offset probe failed (rc {res.returncode}): {res.stderr.strip()[-500:]}")
        return total

    def start_generators(
        self, rate: float, n: int, devices: int, first_id: int, seconds: float, seed: int
    ) -> list[Any]:
        procs = []
        for i, (r, count, first) in enumerate(generator_slices(rate, n, devices, first_id)):
            args = collector_args(self.bootstrap, r, count, first, seconds, seed + i)
            prefix = self.collector_execs[i % len(self.collector_execs)]
            # `echo $$; exec ...`: the remote PID comes first, so the generator can be stopped by id
            remote = "echo $$; exec " + shlex.join([*self.collector_cmd, *args])
            p = subprocess.Popen(
                [*prefix, remote],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            p.fms_exec = prefix  # type: ignore[attr-defined]
            procs.append(p)
        return procs

    def stop_generators(self, procs: list[Any], timeout: float) -> None:
        for p in procs:
            pid = _first_line(p, 10.0) if p.poll() is None else ""
            if pid.isdigit():
                remote(p.fms_exec, f"kill -TERM {pid} 2>/dev/null || true", 30)
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop_group(p, 10)
            if p.stdout:
                p.stdout.close()

    def pause_standing_collectors(self) -> list[str]:
        """Stop the deployed fms-collector where the generators run; close() starts it again.

        Its steady load (the lab fleet, ~100 msg/s) would otherwise count as the bench's.
        """
        paused = []
        for ex in self.collector_execs:
            unit = LAB_COLLECTOR_UNIT
            res = remote(
                ex, f"systemctl is-active --quiet {unit} && systemctl stop {unit} && echo stopped", 120
            )
            if "stopped" in res.stdout:
                self.paused.append(ex)
                paused.append(shlex.join(ex))
        return paused

    def close(self) -> None:
        for ex in self.paused:
            res = remote(ex, f"systemctl start {LAB_COLLECTOR_UNIT}", 120)
            if res.returncode != 0:
                print(
                    f"bench: could not start {LAB_COLLECTOR_UNIT} again via {shlex.join(ex)}: "
                    f"{res.stderr.strip()[-300:]}",
                    file=sys.stderr,
                )
        self.paused = []

    def _kafka_tool(self, args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        assert self.kafka_exec
        return remote(self.kafka_exec, f"{self.kafka_home}/bin/{args}", timeout)

    def kafka_ceiling(self, records: int, record_size: int, partitions: int) -> tuple[float | None, str]:
        if not self.kafka_exec:
            return None, "no --kafka-exec given"
        admin = shlex.quote(self.admin_properties)
        boot = shlex.quote(self.bootstrap)
        topics = f"kafka-topics.sh --bootstrap-server {boot} --command-config {admin} --topic {CEILING}"
        made = self._kafka_tool(f"{topics} --create --if-not-exists --partitions {partitions}", 180)
        if made.returncode != 0:
            return None, f"creating {CEILING} failed: {made.stderr.strip()[-300:]}"
        try:
            res = self._kafka_tool(
                f"kafka-producer-perf-test.sh --topic {CEILING} --num-records {records} "
                f"--record-size {record_size} --throughput -1 --producer.config {admin} "
                f"--producer-props bootstrap.servers={boot} {PERF_PROPS}",
                900,
            )
        except subprocess.TimeoutExpired:
            return None, "kafka-producer-perf-test.sh did not finish within 900 s"
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._kafka_tool(f"{topics} --delete", 180)
        lines = res.stdout.strip().splitlines()
        return parse_perf(res.stdout), lines[-1] if lines else res.stderr.strip()[-300:]


def _first_line(p: subprocess.Popen[bytes], timeout: float) -> str:
    if p.stdout is None:
        return ""
    ready, _, _ = select.select([p.stdout], [], [], timeout)
    return p.stdout.readline().decode(errors="replace").strip() if ready else ""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------- the loop


class StreamStalled(RuntimeError):
    pass


def wait_batch(env: Environment, after: float, timeout: float, poll: float = 1.0) -> tuple[Snapshot, float]:
    """The first snapshot whose completed-batch count exceeds `after` (and when it was taken)."""
    deadline = time.monotonic() + timeout
    failure = ""
    while True:
        try:
            snap = env.snapshot()
        except OSError as e:  # a missed scrape is retried until the deadline
            snap, failure = {}, f" (last scrape failed: {e})"
        if value(snap, BATCHES) > after:
            return snap, time.monotonic()
        if time.monotonic() >= deadline:
            raise StreamStalled(f"no micro-batch completed within {timeout:.0f} s{failure}")
        time.sleep(poll)


class Position:
    """The stream's consumer lag: end offsets minus the stream's position, from one baseline."""

    def __init__(self, env: Environment, snap: Snapshot, offsets: int) -> None:
        self.in0 = value(snap, RECORDS_IN)
        self.o0 = offsets
        # exact when the stream read the topic from its start; otherwise what the last batch left
        # behind when it was planned (a lower bound) - only the lag's slope is used for decisions
        self.lag0 = offsets - self.in0 if env.exact_lag else value(snap, CAPPED_LAG)

    def lag(self, snap: Snapshot, offsets: int) -> float:
        return max(0.0, self.lag0 + (offsets - self.o0) - (value(snap, RECORDS_IN) - self.in0))


def drain(env: Environment, timeout: float) -> bool:
    """Wait (bounded) until the stream has read what the load produced.

    Loopback (exact lag): end offsets == the stream's records in. Lab: two batch completions after
    the load stopped, the last one not capped by maxOffsetsPerTrigger (the second batch was planned
    after the stop and took everything there was; the deployed fleet keeps batches coming).
    """
    deadline = time.monotonic() + timeout
    try:
        if env.exact_lag:
            while True:
                snap = env.snapshot()
                if env.end_offsets() - value(snap, RECORDS_IN) <= 0:
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(1.0)
        snap = env.snapshot()
        snap, _ = wait_batch(env, value(snap, BATCHES), max(1.0, deadline - time.monotonic()))
        while True:
            snap, _ = wait_batch(env, value(snap, BATCHES), max(1.0, deadline - time.monotonic()))
            if value(snap, CAPPED_LAG) <= 0:
                return True
    except StreamStalled:
        return False


def warm_stream(env: Environment, a: argparse.Namespace) -> dict[str, Any]:
    """Prime a cold stream (JIT, first-batch planning) until it has completed a few batches."""
    rate = float(a.prime_rate or a.rates.split(",")[0])
    t0 = time.monotonic()
    procs = env.start_generators(rate, 1, a.devices, a.first_device_id, a.stream_warmup_timeout + 30, seed=7)
    info: dict[str, Any] = {"rate": rate, "batches": 0}
    try:
        snap = env.snapshot()
        start = value(snap, BATCHES)
        while value(snap, BATCHES) - start < a.warm_batches:
            left = a.stream_warmup_timeout - (time.monotonic() - t0)
            snap, _ = wait_batch(env, value(snap, BATCHES), max(1.0, left))
        info["batches"] = int(value(snap, BATCHES) - start)
    except StreamStalled:
        info["note"] = (
            f"the stream completed fewer than {a.warm_batches} batches in {a.stream_warmup_timeout} s"
        )
    finally:
        env.stop_generators(procs, 30)
    info["drained"] = drain(env, a.drain_timeout)
    info["seconds"] = round(time.monotonic() - t0, 1)
    return info


def run_step(env: Environment, rate: float, a: argparse.Namespace, seed: int) -> Step:
    n = max(1, math.ceil(rate / a.rate_per_generator))
    step = Step(target_rate=rate, generators=n)
    commit_wait = a.window + a.batch_timeout
    procs = env.start_generators(
        rate, n, a.devices, a.first_device_id, a.warmup + commit_wait + a.batch_timeout + 30, seed
    )
    s1 = s2 = None
    cpu1: dict[str, float] = {}
    cpu2: dict[str, float] = {}
    stalled = ""
    try:
        time.sleep(a.warmup)
        snap0 = env.snapshot()
        # window start = a batch completion (the consumed count then covers whole batches)
        s1, t1 = wait_batch(env, value(snap0, BATCHES), a.batch_timeout)
        cpu1 = cpu_seconds()
        o1 = env.end_offsets()
        pos = Position(env, s1, o1)
        points = [(0.0, pos.lag(s1, o1))]
        s2, t2, o2 = s1, t1, o1
        seen = s1
        deadline = t1 + commit_wait
        last_probe = t1
        while (t2 - t1 < a.window or value(s2, BATCHES) - value(s1, BATCHES) < a.min_batches) and (
            time.monotonic() < deadline
        ):
            snap, t = wait_batch(env, value(seen, BATCHES), max(1.0, deadline - time.monotonic()))
            seen = snap
            if t - last_probe >= a.sample_every or t - t1 >= a.window:
                cpu2 = cpu_seconds()
                o = env.end_offsets()
                s2, t2, o2, last_probe = snap, t, o, t
                points.append((t - t1, pos.lag(snap, o)))
    except StreamStalled as e:
        stalled = f"the stream stalled: {e}"
    finally:
        env.stop_generators(procs, 30)
    if s1 is None or s2 is None or s2 is s1:
        step.sustained, step.generator_bound, step.note = decide(rate, 0.0, 0.0, 0.0, 0, 0)
        step.note = stalled or step.note
        step.drained = drain(env, a.drain_timeout)
        return step
    dt = max(1e-6, t2 - t1)
    step.window_s = round(dt, 1)
    step.batches = int(value(s2, BATCHES) - value(s1, BATCHES))
    step.produced_rate = (o2 - o1) / dt
    step.consumed_rate = (value(s2, RECORDS_IN) - value(s1, RECORDS_IN)) / dt
    step.lag_points = [(round(x, 1), y) for x, y in points]
    step.lag_start, step.lag_end = points[0][1], points[-1][1]
    step.lag_slope_per_s = slope(points)
    step.lag_slope_se_per_s = slope_se(points)
    d = delta_buckets(histogram(s1, E2E), histogram(s2, E2E))
    step.e2e_samples = int(d[-1][1]) if d else 0
    for q, attr in ((0.5, "e2e_p50_ms"), (0.95, "e2e_p95_ms"), (0.99, "e2e_p99_ms")):
        v = quantile(d, q)
        setattr(step, attr, v * 1000.0 if v is not None else None)
    bc = value(s2, BATCHES) - value(s1, BATCHES)
    bs = value(s2, "fms_stream_batch_duration_seconds_sum") - value(
        s1, "fms_stream_batch_duration_seconds_sum"
    )
    step.batch_mean_s = bs / bc if bc else None
    step.batch_phases_s = phase_means(s1, s2, step.batches)
    step.cpu_cores = cores_used(cpu1, cpu2, dt)
    step.sustained, step.generator_bound, step.note = decide(
        rate,
        step.produced_rate,
        step.consumed_rate,
        step.lag_slope_per_s,
        step.batches,
        step.e2e_samples,
        step.lag_slope_se_per_s,
    )
    if stalled:
        step.sustained, step.note = False, stalled
    step.drained = drain(env, a.drain_timeout)
    return step


SECRET_KEYS = re.compile(r"password|secret|jaas", re.IGNORECASE)


def public_settings(a: argparse.Namespace) -> dict[str, Any]:
    """The run's options for the result file, client secrets redacted."""
    out = dict(vars(a))
    out["kafka_property"] = [
        f"{k}=***" if SECRET_KEYS.search(k) else f"{k}={v}"
        for k, _, v in (p.partition("=") for p in (a.kafka_property or []))
    ]
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["lab", "loopback"], default=os.environ.get("FMS_BENCH_MODE", "lab"))
    p.add_argument("--rates", default="500,1000,2000,3000,4000,5000,7500,10000,20000,50000")
    p.add_argument("--window", type=float, default=60.0, help="minimum measurement window per rate (s)")
    p.add_argument("--min-batches", type=int, default=4, help="minimum micro-batches per window")
    p.add_argument("--warmup", type=float, default=20.0, help="load before the window of each rate (s)")
    p.add_argument("--batch-timeout", type=float, default=300.0, help="longest wait for one micro-batch (s)")
    p.add_argument("--sample-every", type=float, default=2.0, help="lag sample spacing (s, at batch ends)")
    p.add_argument("--drain-timeout", type=float, default=300.0)
    p.add_argument("--warm-batches", type=int, default=3, help="micro-batches of the priming load")
    p.add_argument("--stream-warmup-timeout", type=float, default=900.0)
    p.add_argument("--prime-rate", type=float, help="priming load (default: the first rate)")
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument(
        "--first-device-id",
        type=int,
        help="first simulated device id (default 1 in loopback; 5001 in the lab, clear of its fleet 1-1000)",
    )
    p.add_argument("--rate-per-generator", type=float, default=10000.0)
    p.add_argument("--max-minutes", type=float, default=45.0, help="time budget for the rate steps")
    p.add_argument("--ceiling-records", type=int, default=2_000_000)
    p.add_argument("--record-size", type=int, default=160, help="bytes; a simulated reading is ~150")
    p.add_argument("--out", default=str(REPO / "build" / "bench"))
    p.add_argument("--keep-going", action="store_true", help="do not stop at the first unsustained rate")
    g = p.add_argument_group("loopback mode")
    g.add_argument("--trigger", default="1 second")
    g.add_argument("--max-offsets-per-trigger", type=int, default=200_000)
    g.add_argument("--stream-conf", action="append", default=[], metavar="KEY=VALUE")
    g.add_argument("--keep-work", action="store_true", help="keep the broker/stream work directory")
    g = p.add_argument_group("lab mode (derived from the running lab when not given)")
    g.add_argument("--lab-env", default=os.environ.get("FMS_BENCH_LAB_ENV", "primary"))
    g.add_argument("--bootstrap", default=os.environ.get("FMS_BENCH_BOOTSTRAP"))
    g.add_argument("--stream-metrics-url", default=os.environ.get("FMS_BENCH_STREAM_METRICS_URL"))
    g.add_argument(
        "--collector-exec",
        default=os.environ.get("FMS_BENCH_COLLECTOR_EXEC"),
        help='command prefix to run a command on a collector host, e.g. "ssh root@10.0.1.10"',
    )
    g.add_argument("--collector-cmd", default=os.environ.get("FMS_BENCH_COLLECTOR_CMD", LAB_COLLECTOR_CMD))
    g.add_argument(
        "--collector-config",
        default=LAB_COLLECTOR_CONFIG,
        help="collector config on the collector host (the end-offset probe's Kafka settings)",
    )
    g.add_argument("--kafka-exec", default=os.environ.get("FMS_BENCH_KAFKA_EXEC"))
    g.add_argument(
        "--keep-collectors",
        action="store_true",
        help=f"leave the deployed {LAB_COLLECTOR_UNIT} running (by default it is stopped during the run "
        "and started again at the end: its load would count as the bench's)",
    )
    g.add_argument("--probe-exec", help="where the end-offset probe runs (default: the first collector)")
    g.add_argument(
        "--metrics-exec",
        help="where to read the stream's metrics (127.0.0.1) when its URL is not reachable from here",
    )
    g.add_argument("--kafka-home", default=os.environ.get("FMS_BENCH_KAFKA_HOME", LAB_KAFKA_HOME))
    g.add_argument("--admin-properties", default=LAB_ADMIN_PROPERTIES, help="on the Kafka host")
    g.add_argument(
        "--kafka-property",
        action="append",
        help="librdkafka setting to probe end offsets from this machine instead, KEY=VALUE",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    rates = [float(r) for r in a.rates.split(",") if r.strip()]
    if a.first_device_id is None:
        a.first_device_id = LAB_FIRST_DEVICE_ID if a.mode == "lab" else 1
    if a.mode == "lab":
        resolve_lab_args(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = Result(a.mode, stamp, public_settings(a))
    work = Path(tempfile.mkdtemp(prefix="fms-bench-")) if a.mode == "loopback" else None
    env: Environment | None = None
    t_start = time.monotonic()
    failed = False
    try:
        env = (
            Loopback(work, a.stream_conf, a.trigger, a.max_offsets_per_trigger)  # type: ignore[arg-type]
            if a.mode == "loopback"
            else Lab(a)
        )
        if isinstance(env, Lab) and not a.keep_collectors:
            paused = env.pause_standing_collectors()
            result.notes.append(f"stopped the deployed {LAB_COLLECTOR_UNIT} during the run: {paused}")
        print(f"bench: stream metrics {env.metrics_url}; warming the stream up", file=sys.stderr, flush=True)
        result.warmup = warm_stream(env, a)
        print(json.dumps({"warmup": result.warmup}), file=sys.stderr, flush=True)
        t_steps = time.monotonic()
        for i, rate in enumerate(rates):
            used = time.monotonic() - t_steps
            if used + a.warmup + a.window > a.max_minutes * 60:
                result.notes.append(f"time budget ({a.max_minutes:g} min) reached before {rate:g} msg/s")
                break
            step = run_step(env, rate, a, seed=1000 * (i + 1))
            result.steps.append(step)
            print(json.dumps({"step": asdict(step)}), file=sys.stderr, flush=True)
            if not step.sustained and not a.keep_going:
                break
        partitions = 6 if a.mode == "loopback" else 12
        ceiling, detail = env.kafka_ceiling(a.ceiling_records, a.record_size, partitions)
        result.kafka_ceiling_msgs_per_s = round(ceiling, 1) if ceiling else None
        result.kafka_ceiling_detail = detail
    except (Exception, KeyboardInterrupt) as e:
        failed = True
        result.notes.append(f"aborted: {type(e).__name__}: {e}")
        print(f"bench: aborted: {type(e).__name__}: {e}", file=sys.stderr)
        if isinstance(env, Loopback):
            print(env.stream_log_tail(), file=sys.stderr)
    finally:
        if env is not None:
            env.close()
        if work is not None:
            if a.keep_work or failed:
                print(f"bench: work directory kept: {work}", file=sys.stderr)
            else:
                shutil.rmtree(work, ignore_errors=True)
    result.duration_s = round(time.monotonic() - t_start, 1)
    doc = {**asdict(result), "summary": result.summary()}
    json_path, png_path = out / f"bench-{stamp}.json", out / f"latency-vs-rate-{stamp}.png"
    json_path.write_text(json.dumps(doc, indent=2, default=str))
    try:
        plot(result, png_path)
    except Exception as e:  # the numbers matter more than the picture
        print(f"plot failed: {e}", file=sys.stderr)
    print(f"bench: wrote {json_path} and {png_path} in {result.duration_s:.0f} s", file=sys.stderr)
    print(json.dumps(result.summary()), flush=True)
    return 1 if failed else 0


def _interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupted)  # clean up (broker, stream, generators) and still report
    sys.exit(main())

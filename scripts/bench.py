#!/usr/bin/env python3
"""Pipeline benchmark: the highest sustained rate with flat consumer lag, e2e latency, Kafka's ceiling.

Two modes share one measurement loop:

* ``--mode loopback`` (self-contained, this machine): a single KRaft broker from the artifact
  mirror (tests/support/kafka_broker.py), the streaming job as its own process
  (``python -m fms_jobs.streaming --master local[2]``), and ``fms-collector`` simulator
  processes as load generators;
* ``--mode lab`` (``make bench``): the deployed lab - give the Kafka bootstrap servers, the
  streaming driver's metrics URL (port 9311) and how to run commands on a collector host and on
  a Kafka host (``--collector-exec "ssh root@10.0.1.10"``, ``--kafka-exec ...``).

For every rate (rising): start the load for warm-up + window seconds; during the window sample
the stream's consumer lag (``fms_stream_kafka_lag_records``), the topic's end offsets (produced
rate) and ``fms_stream_records_in_total`` (consumed rate); the e2e latency percentiles come from
the delta of the ``fms_stream_e2e_latency_seconds`` histogram over the window (record creation at
the collector -> commit of the Parquet files holding it). A rate is *sustained* when the stream
consumed >= 95 % of what was produced, the lag did not grow (slope <= 2 % of the rate) and the
generators reached >= 90 % of the target. The run stops after the first rate that is not
sustained (or the time budget). Kafka's own ``kafka-producer-perf-test.sh`` with the collector's
producer settings gives the ceiling on the same broker(s).

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
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
RAW, DLQ, CEILING = "fms.sensor.raw", "fms.sensor.dlq", "fms.bench.ceiling"


# ------------------------------------------------------------------------------- metrics


def scrape(url: str, timeout: float = 5.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout) as r:
        text = r.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def value(snap: dict, name: str, **labels: str) -> float:
    return snap.get((name, tuple(sorted(labels.items()))), 0.0)


def histogram(snap: dict, name: str) -> list[tuple[float, float]]:
    rows = [(dict(lbl).get("le"), v) for (n, lbl), v in snap.items() if n == f"{name}_bucket"]
    return sorted((math.inf if le == "+Inf" else float(le), v) for le, v in rows if le is not None)


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus-style histogram_quantile over cumulative (le, count) buckets (linear within a bucket)."""
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
    before = dict(a)
    return [(le, c - before.get(le, 0.0)) for le, c in b]


def slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / den if den else 0.0


def end_offsets(bootstrap: str, topic: str, kafka_conf: dict[str, str]) -> int:
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
    lag_start: float = 0.0
    lag_end: float = 0.0
    lag_slope_per_s: float = 0.0
    e2e_p50_ms: float | None = None
    e2e_p95_ms: float | None = None
    e2e_p99_ms: float | None = None
    e2e_samples: int = 0
    batch_mean_s: float | None = None
    sustained: bool = False
    generator_bound: bool = False
    note: str = ""


@dataclass
class Result:
    mode: str
    started: str
    settings: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    kafka_ceiling_msgs_per_s: float | None = None
    kafka_ceiling_detail: str = ""
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ok = [s for s in self.steps if s.sustained]
        best = max(ok, key=lambda s: s.consumed_rate) if ok else None

        def ms(v: float | None) -> float | None:
            return round(v, 1) if v is not None else None

        out = {
            "sustained_msgs_per_s": round(best.consumed_rate, 1) if best else 0.0,
            "e2e_p50_ms": ms(best.e2e_p50_ms) if best else None,
            "e2e_p95_ms": ms(best.e2e_p95_ms) if best else None,
            "e2e_p99_ms": ms(best.e2e_p99_ms) if best else None,
            "kafka_ceiling_msgs_per_s": self.kafka_ceiling_msgs_per_s,
            "mode": self.mode,
            "steps": len(self.steps),
        }
        if best and self.kafka_ceiling_msgs_per_s:
            out["share_of_kafka_ceiling"] = round(best.consumed_rate / self.kafka_ceiling_msgs_per_s, 4)
        return out


def plot(result: Result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s in result.steps if s.e2e_p50_ms is not None]
    fig, ax = plt.subplots(figsize=(8, 5))
    if steps:
        x = [s.target_rate for s in steps]
        for attr, style in (("e2e_p50_ms", "o-"), ("e2e_p95_ms", "s-"), ("e2e_p99_ms", "^-")):
            ax.plot(x, [getattr(s, attr) / 1000.0 for s in steps], style, label=attr.replace("_ms", ""))
        for s in steps:
            if not s.sustained:
                ax.axvline(s.target_rate, color="red", alpha=0.3)
        ax.set_xscale("log")
    ax.set_xlabel("target rate (records/s)")
    ax.set_ylabel("end-to-end latency (s): creation -> committed Parquet")
    summ = result.summary()
    ax.set_title(
        f"FMS pipeline ({result.mode}): sustained {summ['sustained_msgs_per_s']} msg/s, "
        f"Kafka ceiling {summ['kafka_ceiling_msgs_per_s']}"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------- environments


class Environment:
    bootstrap: str
    metrics_url: str
    kafka_conf: dict[str, str]

    def start_generators(self, rate: float, n: int, devices: int, seconds: float, seed: int) -> list[Any]:
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


PERF_PROPS = "acks=all enable.idempotence=true compression.type=zstd linger.ms=20 batch.size=1000000"


def parse_perf(output: str) -> float | None:
    """The records/sec figure of kafka-producer-perf-test's final summary line."""
    best = None
    for line in output.splitlines():
        if "records sent" in line and "records/sec" in line:
            try:
                best = float(line.split(",")[1].strip().split()[0])
            except (IndexError, ValueError):
                continue
    return best


class Loopback(Environment):
    def __init__(self, work: Path, stream_conf: list[str], trigger: str, max_offsets: int) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        from support.kafka_broker import KafkaBroker  # type: ignore[import-not-found]

        self.work = work
        self.broker = KafkaBroker(work / "kafka", heap="1g").start()
        self.bootstrap = self.broker.bootstrap
        self.kafka_conf = {}
        self.broker.create_topic(RAW, partitions=6)
        self.broker.create_topic(DLQ, partitions=1)
        port = _free_port()
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        cmd = [
            PY,
            "-m",
            "fms_jobs.streaming",
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
            "--metrics-port",
            str(port),
            "--max-offsets-per-trigger",
            str(max_offsets),
            "--conf",
            "spark.sql.shuffle.partitions=4",
            "--conf",
            "spark.ui.enabled=false",
            "--conf",
            "spark.driver.memory=2g",
        ]
        for c in stream_conf:
            cmd += ["--conf", c]
        self.stream_log = (work / "stream.log").open("wb")
        self.stream = subprocess.Popen(
            cmd, stdout=self.stream_log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if self.stream.poll() is not None:
                raise RuntimeError(f"streaming job exited early; see {work / 'stream.log'}")
            try:
                scrape(self.metrics_url, timeout=2)
                return
            except OSError:
                time.sleep(1)
        raise RuntimeError("streaming job metrics did not come up within 240 s")

    def start_generators(self, rate: float, n: int, devices: int, seconds: float, seed: int) -> list[Any]:
        procs = []
        for i in range(n):
            per = max(1, devices // n)
            args = collector_args(self.bootstrap, rate / n, per, 1 + i * per, seconds, seed + i)
            procs.append(
                subprocess.Popen(
                    [PY, "-m", "fms_jobs.collector", *args],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd=REPO,
                    start_new_session=True,
                )
            )
        return procs

    def kafka_ceiling(self, records: int, record_size: int, partitions: int) -> tuple[float | None, str]:
        self.broker.create_topic(CEILING, partitions=partitions)
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
        return parse_perf(res.stdout), res.stdout.strip().splitlines()[
            -1
        ] if res.stdout.strip() else res.stderr[-300:]

    def close(self) -> None:
        if self.stream.poll() is None:
            os.killpg(self.stream.pid, signal.SIGTERM)
            try:
                self.stream.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.stream.pid, signal.SIGKILL)
                self.stream.wait(timeout=10)
        self.stream_log.close()
        self.broker.stop()


class Lab(Environment):
    """The deployed lab: collectors and the Kafka perf tool run on lab hosts through an exec prefix."""

    def __init__(self, a: argparse.Namespace) -> None:
        missing = [n for n in ("bootstrap", "stream_metrics_url", "collector_exec") if not getattr(a, n)]
        if missing:
            raise SystemExit(
                "bench --mode lab needs "
                + ", ".join("--" + m.replace("_", "-") for m in missing)
                + " (addresses from `python3 scripts/lab.py status`); or use --mode loopback"
            )
        self.bootstrap = a.bootstrap
        self.metrics_url = a.stream_metrics_url
        self.collector_exec = shlex.split(a.collector_exec)
        self.kafka_exec = shlex.split(a.kafka_exec) if a.kafka_exec else None
        self.kafka_home = a.kafka_home
        self.collector_cmd = shlex.split(a.collector_cmd)
        self.kafka_conf = {}
        for item in a.kafka_property or []:
            k, _, v = item.partition("=")
            self.kafka_conf[k] = v

    def start_generators(self, rate: float, n: int, devices: int, seconds: float, seed: int) -> list[Any]:
        procs = []
        for i in range(n):
            per = max(1, devices // n)
            args = collector_args(self.bootstrap, rate / n, per, 1 + i * per, seconds, seed + i)
            remote = " ".join(shlex.quote(x) for x in [*self.collector_cmd, *args])
            procs.append(
                subprocess.Popen(
                    [*self.collector_exec, remote],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        return procs

    def kafka_ceiling(self, records: int, record_size: int, partitions: int) -> tuple[float | None, str]:
        if not self.kafka_exec:
            return None, "no --kafka-exec given"
        tool = f"{self.kafka_home}/bin/kafka-producer-perf-test.sh"
        props = " ".join([f"bootstrap.servers={self.bootstrap}", *PERF_PROPS.split()])
        extra = (
            f" --producer.config {shlex.quote(os.environ['FMS_BENCH_PRODUCER_CONFIG'])}"
            if os.environ.get("FMS_BENCH_PRODUCER_CONFIG")
            else ""
        )
        remote = (
            f"{tool} --topic {CEILING} --num-records {records} --record-size {record_size} "
            f"--throughput -1 --producer-props {props}{extra}"
        )
        res = subprocess.run(
            [*self.kafka_exec, remote], capture_output=True, text=True, timeout=900, check=False
        )
        return parse_perf(res.stdout), (res.stdout.strip().splitlines() or [res.stderr[-300:]])[-1]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------- the loop


def wait_all(procs: list[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        left = max(0.1, deadline - time.monotonic())
        try:
            p.wait(timeout=left)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)


def run_step(env: Environment, rate: float, a: argparse.Namespace, seed: int) -> Step:
    n = max(1, math.ceil(rate / a.rate_per_generator))
    step = Step(target_rate=rate, generators=n)
    procs = env.start_generators(rate, n, a.devices, a.warmup + a.window + 2, seed)
    try:
        time.sleep(a.warmup)
        s1 = scrape(env.metrics_url)
        o1, t1 = end_offsets(env.bootstrap, RAW, env.kafka_conf), time.monotonic()
        in1 = value(s1, "fms_stream_records_in_total")
        lag0 = value(s1, "fms_stream_kafka_lag_records")
        lags: list[tuple[float, float]] = []
        while time.monotonic() - t1 < a.window:
            # lag = lag at the window start + produced since - consumed since (any trigger size)
            snap = scrape(env.metrics_url)
            produced = end_offsets(env.bootstrap, RAW, env.kafka_conf) - o1
            consumed = value(snap, "fms_stream_records_in_total") - in1
            lags.append((time.monotonic() - t1, max(0.0, lag0 + produced - consumed)))
            time.sleep(a.sample_every)
        s2 = scrape(env.metrics_url)
        o2, t2 = end_offsets(env.bootstrap, RAW, env.kafka_conf), time.monotonic()
    finally:
        wait_all(procs, a.warmup + a.window + 60)
    dt = max(1e-6, t2 - t1)
    step.produced_rate = (o2 - o1) / dt
    step.consumed_rate = (
        value(s2, "fms_stream_records_in_total") - value(s1, "fms_stream_records_in_total")
    ) / dt
    step.lag_start = lags[0][1] if lags else 0.0
    step.lag_end = lags[-1][1] if lags else 0.0
    step.lag_slope_per_s = slope(lags)
    d = delta_buckets(
        histogram(s1, "fms_stream_e2e_latency_seconds"), histogram(s2, "fms_stream_e2e_latency_seconds")
    )
    step.e2e_samples = int(d[-1][1]) if d else 0
    for q, attr in ((0.5, "e2e_p50_ms"), (0.95, "e2e_p95_ms"), (0.99, "e2e_p99_ms")):
        v = quantile(d, q)
        setattr(step, attr, v * 1000.0 if v is not None else None)
    bc = value(s2, "fms_stream_batch_duration_seconds_count") - value(
        s1, "fms_stream_batch_duration_seconds_count"
    )
    bs = value(s2, "fms_stream_batch_duration_seconds_sum") - value(
        s1, "fms_stream_batch_duration_seconds_sum"
    )
    step.batch_mean_s = bs / bc if bc else None
    step.generator_bound = step.produced_rate < 0.9 * rate
    flat = step.lag_slope_per_s <= max(50.0, 0.02 * rate)
    keeps_up = step.consumed_rate >= 0.95 * step.produced_rate
    step.sustained = flat and keeps_up and not step.generator_bound and step.e2e_samples > 0
    if step.generator_bound:
        step.note = "the load generators did not reach the target (add --rate-per-generator or hosts)"
    elif not flat:
        step.note = "consumer lag grew during the window"
    # drain before the next step (bounded)
    deadline = time.monotonic() + a.drain_timeout
    while time.monotonic() < deadline:
        backlog = end_offsets(env.bootstrap, RAW, env.kafka_conf) - o1
        done = value(scrape(env.metrics_url), "fms_stream_records_in_total") - in1
        if lag0 + backlog - done <= max(100.0, rate * 0.5):
            break
        time.sleep(2)
    return step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["lab", "loopback"], default=os.environ.get("FMS_BENCH_MODE", "lab"))
    p.add_argument("--rates", default="500,1000,2000,5000,10000,20000,50000")
    p.add_argument("--window", type=float, default=60.0, help="measurement window per rate (s)")
    p.add_argument("--warmup", type=float, default=20.0)
    p.add_argument("--sample-every", type=float, default=2.0)
    p.add_argument("--drain-timeout", type=float, default=180.0)
    p.add_argument("--devices", type=int, default=1000)
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
    g = p.add_argument_group("lab mode")
    g.add_argument("--bootstrap", default=os.environ.get("FMS_BENCH_BOOTSTRAP"))
    g.add_argument("--stream-metrics-url", default=os.environ.get("FMS_BENCH_STREAM_METRICS_URL"))
    g.add_argument("--collector-exec", default=os.environ.get("FMS_BENCH_COLLECTOR_EXEC"))
    g.add_argument(
        "--collector-cmd",
        default=os.environ.get("FMS_BENCH_COLLECTOR_CMD", "/opt/fms/venv/bin/fms-collector"),
    )
    g.add_argument("--kafka-exec", default=os.environ.get("FMS_BENCH_KAFKA_EXEC"))
    g.add_argument("--kafka-home", default=os.environ.get("FMS_BENCH_KAFKA_HOME", "/opt/kafka"))
    g.add_argument("--kafka-property", action="append", help="client property for offset probes, KEY=VALUE")
    a = p.parse_args(argv)
    rates = [float(r) for r in a.rates.split(",") if r.strip()]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = Result(a.mode, stamp, {k: v for k, v in vars(a).items() if "exec" not in k})
    work = Path(tempfile.mkdtemp(prefix="fms-bench-")) if a.mode == "loopback" else None
    env: Environment | None = None
    t_start = time.monotonic()
    try:
        env = (
            Loopback(work, a.stream_conf, a.trigger, a.max_offsets_per_trigger)  # type: ignore[arg-type]
            if a.mode == "loopback"
            else Lab(a)
        )
        for i, rate in enumerate(rates):
            if (time.monotonic() - t_start) / 60 > a.max_minutes:
                result.notes.append(f"time budget reached before {rate:g} msg/s")
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
    finally:
        if env is not None:
            env.close()
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    doc = {**asdict(result), "summary": result.summary()}
    (out / f"bench-{stamp}.json").write_text(json.dumps(doc, indent=2, default=str))
    try:
        plot(result, out / f"latency-vs-rate-{stamp}.png")
    except Exception as e:  # the numbers matter more than the picture
        print(f"plot failed: {e}", file=sys.stderr)
    print(json.dumps(result.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

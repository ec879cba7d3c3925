"""The command line (fms-bench, python -m fms_tools.bench): options, the rising rates, the result files."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fms_tools.bench
from fms_tools import REPO
from fms_tools.bench.environment import Environment
from fms_tools.bench.lab import (
    LAB_ADMIN_PROPERTIES,
    LAB_COLLECTOR_CMD,
    LAB_COLLECTOR_CONFIG,
    LAB_COLLECTOR_UNIT,
    LAB_FIRST_DEVICE_ID,
    LAB_KAFKA_HOME,
    Lab,
    resolve_lab_args,
)
from fms_tools.bench.loop import run_step, warm_stream
from fms_tools.bench.loopback import Loopback
from fms_tools.bench.plot import plot
from fms_tools.bench.results import Result

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
    p = argparse.ArgumentParser(
        prog="fms-bench",
        description=fms_tools.bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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


def run() -> int:
    """The console entry point: SIGTERM cleans up (broker, stream, generators) and reports, as Ctrl-C."""
    signal.signal(signal.SIGTERM, _interrupted)
    return main()

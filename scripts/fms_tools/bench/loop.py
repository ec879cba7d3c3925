"""The measurement loop: warm the stream up, then per rate load, measure between batch completions, drain."""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from fms_tools.bench.environment import Environment
from fms_tools.bench.metrics import (
    BATCHES,
    CAPPED_LAG,
    E2E,
    RECORDS_IN,
    Snapshot,
    delta_buckets,
    histogram,
    quantile,
    slope,
    slope_se,
    value,
)
from fms_tools.bench.results import Step, cores_used, cpu_seconds, decide, phase_means


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

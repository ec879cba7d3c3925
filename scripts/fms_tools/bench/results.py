"""What a run records: one Step per rate, the sustained-rate decision, the Result and its summary."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fms_tools.bench.metrics import Snapshot


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


LAB_CGROUPS = (  # scripts/fms_tools/lab/hosts.py puts each host in <mount>/fms-lab/<host>
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

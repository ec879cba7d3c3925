"""The run's picture: latency against rate, the stream's time per batch step, CPU per lab host."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fms_tools.bench.results import SEQUENTIAL_PHASES, Result, Step


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

"""What a fault scenario leaves for people to look at: build/chaos/<scenario>.json and a timeline.

The JSON is the scenario's report (the figures its test asserts on) plus its fault events; the
PNG draws the probe's acknowledged writes per second against time with every fault and
recovery marked, so a stall, a gap or a burst after a recovery is seen at a glance.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from lab_support import REPO

OUT = REPO / "build" / "chaos"


def write(
    report: dict,
    events: Sequence[tuple[float, str]],
    ack_times_ms: Iterable[int] = (),
    out: Path = OUT,
    ylabel: str = "acknowledged writes / s (acks=all probe)",
) -> Path:
    """Write <scenario>.json (report + events, wall-clock seconds) and, when there are acks,
    <scenario>.png into `out`; returns the JSON's path."""
    out.mkdir(parents=True, exist_ok=True)
    name = report["scenario"]
    doc = {**report, "events": [{"at": round(t, 3), "what": what} for t, what in events]}
    path = out / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    per_second = Counter(int(ms // 1000) for ms in ack_times_ms)
    if per_second:
        _plot(name, per_second, events, out / f"{name}.png", ylabel)
    return path


def _plot(
    name: str, per_second: Counter, events: Sequence[tuple[float, str]], path: Path, ylabel: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = min(min(per_second), *(int(t) for t, _ in events)) if events else min(per_second)
    end = max(per_second)
    xs = list(range(start, end + 1))
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.plot([x - start for x in xs], [per_second.get(x, 0) for x in xs], lw=1, color="tab:blue")
    ax.set_xlabel("seconds since the scenario started")
    ax.set_ylabel(ylabel)
    top = max(per_second.values())
    for t, what in events:
        colour = "tab:red" if what.startswith(("kill", "cut", "outage")) else "tab:green"
        ax.axvline(t - start, color=colour, lw=0.8, ls="--")
        # labels in axes height, so they stay inside whatever the y scale
        ax.text(
            t - start,
            0.98,
            what,
            rotation=90,
            fontsize=7,
            va="top",
            color=colour,
            transform=ax.get_xaxis_transform(),
        )
    ax.set_ylim(0, top * 1.6)
    typical = sorted(per_second.values())[len(per_second) // 2]
    if top > 20 * max(typical, 1):  # a burst (buffered writes flushed after a cut) would flatten the rest
        ax.set_yscale("symlog", linthresh=max(typical, 1))
    ax.set_title(f"{name}: red = fault, green = recovered")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""Per-device state carried from one micro-batch to the next.

For every device: the newest stored event time (per-device order: a later
record older than it is OUT_OF_ORDER) and exponentially weighted moments of
every anomaly signal (mean and mean of squares; the anomaly score of a record is
its largest z-score against the statistics *before* its batch).

The state after batch N is saved as ``<dir>/devices-<N>.json`` before batch N
is committed; a replay of batch N (after a crash) starts from the newest file
of a batch < N, so the replay computes the same flags and scores.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fms_jobs.sparkutil.hadoopfs import HadoopFS

_NAME = re.compile(r"devices-(\d{12})\.json$")


@dataclass
class DeviceStats:
    n: int = 0
    max_event_us: int | None = None
    mean: dict[str, float] = field(default_factory=dict)
    ex2: dict[str, float] = field(default_factory=dict)

    def std(self, signal: str) -> float:
        m = self.mean.get(signal, 0.0)
        return math.sqrt(max(0.0, self.ex2.get(signal, 0.0) - m * m))

    def to_json(self) -> list[object]:
        return [self.n, self.max_event_us, self.mean, self.ex2]

    @classmethod
    def from_json(cls, v: list) -> DeviceStats:  # type: ignore[type-arg]
        return cls(int(v[0]), None if v[1] is None else int(v[1]), dict(v[2]), dict(v[3]))


@dataclass
class BatchAggregate:
    """Per-device sums over the rows stored by one batch."""

    device_id: int
    n: int
    max_event_us: int
    sums: Mapping[str, float]
    sums2: Mapping[str, float]


def merge(
    state: Mapping[int, DeviceStats], aggs: Iterable[BatchAggregate], alpha: float, signals: Iterable[str]
) -> dict[int, DeviceStats]:
    """New state = old state updated with one batch (EW weight 1-(1-alpha)^n for n new records)."""
    out = dict(state)
    sig = list(signals)
    for a in aggs:
        if a.n <= 0:
            continue
        old = out.get(a.device_id)
        bm = {s: a.sums[s] / a.n for s in sig}
        b2 = {s: a.sums2[s] / a.n for s in sig}
        if old is None or old.n == 0:
            out[a.device_id] = DeviceStats(a.n, a.max_event_us, bm, b2)
            continue
        w = 1.0 - (1.0 - alpha) ** a.n
        mean = {s: (1 - w) * old.mean.get(s, bm[s]) + w * bm[s] for s in sig}
        ex2 = {s: (1 - w) * old.ex2.get(s, b2[s]) + w * b2[s] for s in sig}
        mx = a.max_event_us if old.max_event_us is None else max(old.max_event_us, a.max_event_us)
        out[a.device_id] = DeviceStats(old.n + a.n, mx, mean, ex2)
    return out


class DeviceStateStore:
    def __init__(self, fs: HadoopFS, directory: str, keep: int = 5) -> None:
        self.fs = fs
        self.dir = directory.rstrip("/")
        self.keep = keep
        self.version: int | None = None  # batch whose resulting state is in memory
        self.state: dict[int, DeviceStats] = {}

    def _path(self, batch_id: int) -> str:
        return f"{self.dir}/devices-{batch_id:012d}.json"

    def _versions(self) -> list[int]:
        out = []
        for f in self.fs.ls(self.dir):
            m = _NAME.search(f.path)
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    def state_before(self, batch_id: int) -> dict[int, DeviceStats]:
        """The state after every batch < batch_id."""
        if self.version is not None and self.version < batch_id:
            return self.state
        older = [v for v in self._versions() if v < batch_id]
        if not older:
            self.version, self.state = -1, {}
            return self.state
        text = self.fs.read_text(self._path(older[-1])) or "{}"
        self.state = {int(k): DeviceStats.from_json(v) for k, v in json.loads(text).items()}
        self.version = older[-1]
        return self.state

    def save(self, batch_id: int, state: dict[int, DeviceStats]) -> None:
        self.fs.mkdirs(self.dir)
        doc = {str(k): v.to_json() for k, v in state.items()}
        self.fs.write_text(self._path(batch_id), json.dumps(doc, separators=(",", ":")))
        self.state, self.version = state, batch_id
        versions = self._versions()
        for v in versions[: -self.keep] if len(versions) > self.keep else []:
            self.fs.delete(self._path(v), False)

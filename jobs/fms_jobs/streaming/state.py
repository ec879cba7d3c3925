"""Per-device state carried from one micro-batch to the next.

For every device: the newest stored event time (per-device order: a later
record older than it is OUT_OF_ORDER) and exponentially weighted moments of
every anomaly signal (mean and mean of squares; the anomaly score of a record is
its largest z-score against the statistics *before* its batch).

The state after batch N is saved before batch N is committed: every
``snapshot_every`` batches in full, as ``<dir>/devices-<N>.json``, and otherwise
only the devices that batch N changed, as ``<dir>/changes-<N>.json`` - a batch
costs what it touched, not the whole fleet. The state before batch N is the
newest snapshot of a batch < N with the changes of the batches after it and
before N applied in order, so a replay of batch N (after a crash) starts from
the same state and computes the same flags and scores.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fms_jobs.sparkutil.hadoopfs import HadoopFS

_NAME = re.compile(r"devices-(\d{12})\.json$")
_CHANGES = re.compile(r"changes-(\d{12})\.json$")


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
    def __init__(self, fs: HadoopFS, directory: str, keep: int = 5, snapshot_every: int = 20) -> None:
        self.fs = fs
        self.dir = directory.rstrip("/")
        self.keep = keep
        self.snapshot_every = snapshot_every
        self.version: int | None = None  # batch whose resulting state is in memory
        self.state: dict[int, DeviceStats] = {}

    def _path(self, batch_id: int) -> str:
        return f"{self.dir}/devices-{batch_id:012d}.json"

    def _changes_path(self, batch_id: int) -> str:
        return f"{self.dir}/changes-{batch_id:012d}.json"

    def _listing(self) -> tuple[list[int], list[int]]:
        """Batches with a snapshot, batches with a changes file (one directory listing)."""
        snapshots, changes = [], []
        for f in self.fs.ls(self.dir):
            if m := _NAME.search(f.path):
                snapshots.append(int(m.group(1)))
            elif m := _CHANGES.search(f.path):
                changes.append(int(m.group(1)))
        return sorted(snapshots), sorted(changes)

    def _versions(self) -> list[int]:
        return self._listing()[0]

    def _read(self, path: str) -> dict[int, DeviceStats]:
        text = self.fs.read_text(path) or "{}"
        return {int(k): DeviceStats.from_json(v) for k, v in json.loads(text).items()}

    def state_before(self, batch_id: int) -> dict[int, DeviceStats]:
        """The state after every batch < batch_id."""
        if self.version is not None and self.version < batch_id:
            return self.state
        snapshots, changes = self._listing()
        older = [v for v in snapshots if v < batch_id]
        base = older[-1] if older else -1
        state = self._read(self._path(base)) if older else {}
        version = base
        for v in changes:
            if base < v < batch_id:
                state.update(self._read(self._changes_path(v)))
                version = v
        self.state, self.version = state, version
        return self.state

    def save(
        self, batch_id: int, state: dict[int, DeviceStats], changed: Iterable[int] | None = None
    ) -> None:
        """The state after batch_id: in full, or the ``changed`` devices only between snapshots."""
        self.fs.mkdirs(self.dir)
        snapshots, changes = self._listing()
        older = [v for v in snapshots if v < batch_id]
        # depends only on batches < batch_id: a replay of the batch writes the same kind of file
        full = changed is None or not older or batch_id - older[-1] >= self.snapshot_every
        if full:
            doc = {str(k): v.to_json() for k, v in state.items()}
            self.fs.write_text(self._path(batch_id), json.dumps(doc, separators=(",", ":")))
        else:
            doc = {str(k): state[k].to_json() for k in sorted(set(changed or ()))}
            self.fs.write_text(self._changes_path(batch_id), json.dumps(doc, separators=(",", ":")))
        self.state, self.version = state, batch_id
        if not full:
            return
        snapshots = sorted({*snapshots, batch_id})
        kept = snapshots[-self.keep :]
        for v in snapshots[: -self.keep] if len(snapshots) > self.keep else []:
            self.fs.delete(self._path(v), False)
        # changes older than the oldest snapshot kept are never read again
        for v in changes:
            if v < kept[0] or v == batch_id:
                self.fs.delete(self._changes_path(v), False)

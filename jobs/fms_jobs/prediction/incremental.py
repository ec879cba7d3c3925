"""Online features: per-device running state, O(1) per new record, bounded memory per device.

:mod:`.features` computes a record's features offline as differences of running
sums (totals over the device's non-failed readings since its first record) read
back ``k`` rows earlier with ``lag``. Scoring a stream the same way needs, per
device, only the last ``max lag + 1`` of those running totals - not the
device's history: :class:`IncrementalFeatures` keeps them in a fixed-size ring
(one flat ``array('d')`` per device: 1,441 snapshots x 13 totals, about 150 KB
at the default spec), adds one snapshot per record and reads the lags by index.
A micro-batch costs O(its records), whatever the windows' length (an earlier
attempt recomputed each device's 1,440-record history on every micro-batch).

The totals are accumulated in the same order and with the same operations as
Spark's running sums, so the features are the same floating-point numbers as
:func:`.features.add_features` gives (a test holds them equal on a simulated
fleet); ``None`` where the offline row is not ``scorable``.

:class:`AlarmState` is the alarm rule that follows the model
(:func:`.train.score` / :func:`.train.warning`): the risk averaged over the
device's last ``smooth`` records, and a warning once that average has stayed at
or above the threshold for ``hold`` records in a row - also a bounded ring per
device. Pure Python, no Spark: the stream's scorer and the closed-loop drill
share it.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from fms_jobs.prediction.features import DEFAULT_MIN_STD, SIGNALS, FeatureSpec, feature_lags

_NS = len(SIGNALS)
# one snapshot: [n, sum_0 .. sum_5, sumsq_0 .. sumsq_5] over the device's non-failed readings so far
_WIDTH = 1 + 2 * _NS


def hold_rows(spec: FeatureSpec, hold_min: float) -> int:
    """Records in a row a warning needs (AlarmState's ``hold``; hold_min 0 = the record alone)."""
    return spec.rows(hold_min) if hold_min > 0 else 1


@dataclass(frozen=True)
class Record:
    device: int
    t_ms: int
    values: Mapping[str, float]  # processed column -> reading, every column of SIGNALS
    failed: bool


class _Ring:
    """The last ``size`` running-total snapshots of one device (slot = records seen mod size)."""

    __slots__ = ("buf", "last_failed_ms", "seen", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf = array("d", bytes(8 * size * _WIDTH))
        self.seen = 0  # records added (the running totals' row number + 1)
        self.last_failed_ms: int | None = None

    def push(self, values: Mapping[str, float], failed: bool) -> None:
        buf, w = self.buf, _WIDTH
        new = (self.seen % self.size) * w
        if self.seen:
            old = ((self.seen - 1) % self.size) * w
            prev = buf[old : old + w]
        else:
            prev = array("d", bytes(8 * w))
        ok = not failed
        # Spark adds `when(ok, x).otherwise(0.0)`: a failed row adds 0.0, kept so the sums stay bit-equal
        buf[new] = prev[0] + (1.0 if ok else 0.0)
        for j, s in enumerate(SIGNALS):
            x = float(values[s])
            buf[new + 1 + j] = prev[1 + j] + (x if ok else 0.0)
            buf[new + 1 + _NS + j] = prev[1 + _NS + j] + (x * x if ok else 0.0)
        self.seen += 1

    def at(self, k: int) -> int | None:
        """Offset in buf of the snapshot k rows back, None before the device's first record."""
        if k >= self.seen:
            return None
        return ((self.seen - 1 - k) % self.size) * _WIDTH


class IncrementalFeatures:
    """Feature vectors of records as they arrive (per device in time order), as :mod:`.features` has them."""

    def __init__(self, spec: FeatureSpec, min_std: Mapping[str, float] | None = None) -> None:
        self.spec = spec
        self.names = spec.names
        floor = dict(DEFAULT_MIN_STD, **(min_std or {}))
        self.floor = [float(floor[s]) for s in SIGNALS]
        self.ring_size = max(feature_lags(spec)) + 1
        self.devices: dict[int, _Ring] = {}
        sp = spec
        self._b = (sp.rows(sp.baseline_end_min), sp.rows(sp.baseline_start_min))
        self._min_base = sp.rows(sp.min_baseline_minutes)
        self._v = sp.rows(sp.vol_minutes)
        self._levels = [sp.rows(m) for m in sp.level_minutes]
        top = max(sp.slope_minutes)
        # (rows, half, rows of the half in minutes, is the longest)
        self._slopes = [
            (sp.rows(m), sp.rows(m) // 2, sp.rows(m) // 2 * sp.interval_s / 60.0, m == top)
            for m in sp.slope_minutes
        ]
        self._cap = float(sp.baseline_start_min)

    def state_bytes(self) -> int:
        """Memory of the running state, per device (bounded: independent of the records seen)."""
        return self.ring_size * _WIDTH * 8

    def update(self, device: int, t_ms: int, values: Mapping[str, float], failed: bool) -> list[float] | None:
        """Add one record of a device (after its earlier ones); its features, None when not scorable."""
        ring = self.devices.get(device)
        if ring is None:
            ring = self.devices[device] = _Ring(self.ring_size)
        ring.push(values, failed)
        if failed:
            ring.last_failed_ms = t_ms
            return None
        return self._features(ring, t_ms)

    def update_batch(self, records: Iterable[Record]) -> Iterator[tuple[Record, list[float] | None]]:
        """A micro-batch (each device's records in time order): O(records), whatever the history."""
        for r in records:
            yield r, self.update(r.device, r.t_ms, r.values, r.failed)

    def _features(self, ring: _Ring, t_ms: int) -> list[float] | None:
        buf = ring.buf

        # The expressions below are features.py's, term for term (count, mean, std of rows (older, newer]).
        def window(newer: int, older: int) -> tuple[int, int, float] | None:
            a, b = ring.at(newer), ring.at(older)
            if a is None or b is None:
                return None
            return a, b, buf[a] - buf[b]

        def mean(j: int, w: tuple[int, int, float] | None) -> float | None:
            if w is None or w[2] <= 0:
                return None
            a, b, n = w
            return (buf[a + 1 + j] - buf[b + 1 + j]) / n

        def std(j: int, w: tuple[int, int, float] | None) -> float | None:
            m = mean(j, w)
            if m is None or w is None:
                return None
            a, b, n = w
            ex2 = (buf[a + 1 + _NS + j] - buf[b + 1 + _NS + j]) / n
            return math.sqrt(max(ex2 - m * m, 0.0))

        base = window(*self._b)
        if base is None or base[2] < self._min_base:
            return None
        vol = window(0, self._v)
        levels = [window(0, k) for k in self._levels]
        halves = [(window(0, h), window(h, k), dt, top) for k, h, dt, top in self._slopes]
        out: list[float] = []
        for j in range(_NS):
            b_mean, b_std = mean(j, base), std(j, base)
            if b_mean is None or b_std is None:
                return None
            scale = max(b_std, self.floor[j])
            for w in levels:
                m = mean(j, w)
                if m is None:
                    return None
                out.append((m - b_mean) / scale)
            rate = 0.0
            for newer, older, dt, top in halves:
                a, b = mean(j, newer), mean(j, older)
                if a is None or b is None:
                    return None
                per_min = (a - b) / dt
                out.append(per_min / scale)
                if top:
                    rate = per_min
            sd, mv = std(j, vol), mean(j, vol)
            if sd is None or mv is None:
                return None
            out += [sd / scale, mv - b_mean, rate]
        last = ring.last_failed_ms
        out.append(self._cap if last is None else min((t_ms - last) / 60_000.0, self._cap))
        return out


@dataclass
class _Alarm:
    risks: list[float | None]
    smoothed: list[float | None]
    n: int = 0


@dataclass
class AlarmState:
    """Per device: the alarm risk (mean of the last ``smooth`` risks) and the debounced warning.

    ``hold`` = records in a row whose alarm risk must reach the threshold before a warning
    (1: the alarm risk alone). Bounded: ``smooth + hold`` values per device.
    """

    smooth: int
    hold: int = 1
    devices: dict[int, _Alarm] = field(default_factory=dict)

    def update(self, device: int, risk: float | None) -> tuple[float | None, float | None]:
        """Add a record's risk (None: not scorable); (alarm risk, held risk).

        held risk = the lowest alarm risk of the last ``hold`` records, None unless all of them
        have one; a warning is ``held risk >= threshold``.
        """
        a = self.devices.get(device)
        if a is None:
            a = self.devices[device] = _Alarm([None] * self.smooth, [None] * self.hold)
        a.risks[a.n % self.smooth] = risk
        alarm: float | None = None
        if risk is not None:
            k = self.smooth
            # oldest first, the order Spark's window frame sums them in
            vals = [r for i in range(a.n + 1, a.n + 1 + k) if (r := a.risks[i % k]) is not None]
            alarm = sum(vals) / len(vals)
        a.smoothed[a.n % self.hold] = alarm
        a.n += 1
        held: float | None = None
        if a.n >= self.hold and all(v is not None for v in a.smoothed):
            held = min(v for v in a.smoothed if v is not None)
        return alarm, held

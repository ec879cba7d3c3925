"""A fleet of simulated FMS devices producing raw Kafka records.

Devices report round-robin with evenly staggered phases: record ``j`` comes
from device ``j mod n`` at event time ``start + j * interval / n``, so a fleet
of ``n`` devices with reporting interval ``interval`` produces ``n / interval``
records per second of event time, smoothly. A seeded generator decides for
every record whether it is replaced by a bad record and of which kind, so the
whole stream - bytes included - is a pure function of the configuration.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from fms_jobs.quality.rulebook import QualityRules, load_rules
from fms_jobs.quality.schema import TIME
from fms_jobs.simulator.devices import DeviceModel, DeviceProfile, format_time
from fms_jobs.simulator.faults import ALL_KINDS, GOOD, BadKind, dumps, mutate


@dataclass(frozen=True)
class SimRecord:
    device_id: int  # Kafka key: the device the record came from
    value: bytes
    kind: str  # "good" or a BadKind value
    event_ms: int | None  # event time the record claims (None when it cannot be read)
    created_ms: int  # creation time at the collector (Kafka timestamp, latency origin)
    seq: int = 0

    @property
    def key(self) -> bytes:
        return str(self.device_id).encode()


@dataclass
class SimulatorConfig:
    devices: int = 5
    first_device_id: int = 1
    interval_s: float = 10.0  # reporting interval of each device (seeds: 10 s)
    seed: int = 42
    bad_share: float = 0.0  # share of records replaced by bad ones
    bad_kinds: Mapping[str, float] | None = None  # kind -> weight; default every kind equally
    start_ms: int | None = None  # virtual clock start; None -> wall clock at creation
    failure_rate_per_day: float = 0.5
    noise_scale: float = 1.0
    degradation_minutes: tuple[float, float] = (20.0, 90.0)  # device profile: NORMAL -> FAILED lead
    failure_minutes: tuple[float, float] = (5.0, 30.0)  # device profile: time in FAILED before repair
    recent_window: int = 64  # good records remembered for duplicates

    def validate(self) -> None:
        if self.devices < 1:
            raise ValueError("devices must be >= 1")
        if self.interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        if self.interval_s * 1000 < 1:
            raise ValueError("interval_s must be at least 1 ms (event times have ms precision)")
        for name in ("degradation_minutes", "failure_minutes"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high")
        if not 0.0 <= self.bad_share <= 1.0:
            raise ValueError("bad_share must be within [0, 1]")
        for k, w in (self.bad_kinds or {}).items():
            if k not in {b.value for b in BadKind}:
                raise ValueError(f"unknown bad kind {k!r}; known: {[b.value for b in BadKind]}")
            if w < 0:
                raise ValueError(f"weight of {k} must be >= 0")
        if self.bad_kinds is not None and self.bad_share > 0 and sum(self.bad_kinds.values()) <= 0:
            raise ValueError("bad_kinds weights sum to 0")


class FleetSimulator:
    def __init__(self, cfg: SimulatorConfig, rules: QualityRules | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.rules = rules or load_rules()
        self.start_ms = cfg.start_ms if cfg.start_ms is not None else int(time.time() * 1000)
        profile = DeviceProfile(
            failure_rate_per_day=cfg.failure_rate_per_day,
            degradation_minutes=tuple(cfg.degradation_minutes),
            failure_minutes=tuple(cfg.failure_minutes),
            noise_scale=cfg.noise_scale,
        )
        self.devices = [DeviceModel(cfg.first_device_id + i, cfg.seed, profile) for i in range(cfg.devices)]
        self.rng = random.Random(f"fms-fleet:{cfg.seed}")
        weights = dict(cfg.bad_kinds) if cfg.bad_kinds is not None else {k.value: 1.0 for k in ALL_KINDS}
        self._kinds = [BadKind(k) for k, w in weights.items() if w > 0]
        self._weights = [weights[k.value] for k in self._kinds]
        self.seq = 0
        self.counts: dict[str, int] = {}
        self._recent: deque[SimRecord] = deque(maxlen=cfg.recent_window)
        self._last_good: dict[int, SimRecord] = {}
        self._ooo_used: set[tuple[int, int]] = set()
        self._api_tick: dict[int, int] = {}
        self._api_last: dict[int, SimRecord] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ timing
    @property
    def rate_per_s(self) -> float:
        return self.cfg.devices / self.cfg.interval_s

    def event_ms(self, seq: int) -> int:
        return self.start_ms + (seq * round(self.cfg.interval_s * 1000)) // self.cfg.devices

    # ------------------------------------------------------------------ records
    def _choose_kind(self) -> BadKind | None:
        if self.cfg.bad_share <= 0 or not self._kinds:
            return None
        if self.rng.random() >= self.cfg.bad_share:
            return None
        return self.rng.choices(self._kinds, self._weights)[0]

    def next_record(self, created_ms: int | None = None) -> SimRecord:
        """The next record of the stream. created_ms defaults to its event time (virtual clock)."""
        seq = self.seq
        self.seq += 1
        dev = self.devices[seq % self.cfg.devices]
        t_ms = self.event_ms(seq)
        created = t_ms if created_ms is None else created_ms
        obj = dev.reading(t_ms)
        kind = self._choose_kind()
        rec = self._build(kind, dev.device_id, obj, t_ms, created, seq)
        self.counts[rec.kind] = self.counts.get(rec.kind, 0) + 1
        return rec

    def _build(
        self, kind: BadKind | None, dev_id: int, obj: dict, t_ms: int, created: int, seq: int
    ) -> SimRecord:
        if kind is BadKind.DUPLICATE:
            if self._recent:
                orig = self.rng.choice(list(self._recent))
                return SimRecord(orig.device_id, orig.value, kind.value, orig.event_ms, created, seq)
            kind = None
        if kind is BadKind.OUT_OF_ORDER:
            last = self._last_good.get(dev_id)
            step = round(self.cfg.interval_s * 1000)
            if last is not None and last.event_ms is not None and step >= 2:
                for _ in range(8):
                    ev = last.event_ms - self.rng.randrange(1, step)
                    if (dev_id, ev) not in self._ooo_used:
                        self._ooo_used.add((dev_id, ev))
                        o = dict(obj)
                        o[TIME] = format_time(ev)
                        return SimRecord(dev_id, dumps(o), kind.value, ev, created, seq)
            kind = None
        if kind is None:
            rec = SimRecord(dev_id, dumps(obj), GOOD, t_ms, created, seq)
            self._recent.append(rec)
            self._last_good[dev_id] = rec
            return rec
        value, ev = mutate(kind, obj, t_ms, created, self.rules, self.rng)
        return SimRecord(dev_id, value, kind.value, ev, created, seq)

    def records(self, count: int, created_ms: int | None = None) -> Iterator[SimRecord]:
        for _ in range(count):
            yield self.next_record(created_ms)

    # ------------------------------------------------------------------ API view
    def device(self, device_id: int) -> DeviceModel | None:
        i = device_id - self.cfg.first_device_id
        if 0 <= i < len(self.devices):
            return self.devices[i]
        return None

    def request_maintenance(self, device_id: int, now_ms: int | None = None) -> bool | None:
        """Service a device now (see DeviceModel.request_maintenance); None for an unknown device."""
        dev = self.device(device_id)
        if dev is None:
            return None
        with self._lock:
            t = dev.last_ms if now_ms is None and dev.last_ms is not None else now_ms
            return dev.request_maintenance(int(time.time() * 1000) if t is None else t)

    def latest(self, device_id: int, now_ms: int | None = None) -> SimRecord | None:
        """The device's most recent reading at wall time now_ms (for the fake HTTP API).

        Device i reports at start + i * interval / n + k * interval. Readings in
        between polls are generated (so the signal evolves the same way) but only
        the newest is returned; at most 1,000 missed readings are replayed.
        """
        dev = self.device(device_id)
        if dev is None:
            return None
        now = int(time.time() * 1000) if now_ms is None else now_ms
        i = device_id - self.cfg.first_device_id
        step = round(self.cfg.interval_s * 1000)
        phase = self.start_ms + (i * step) // self.cfg.devices
        k = (now - phase) // step
        with self._lock:
            if k < 0:
                k = 0
            done = self._api_tick.get(device_id, -1)
            if k > done:
                first = max(done + 1, k - 999)
                rec: SimRecord | None = None
                for tick in range(first, k + 1):
                    t_ms = phase + tick * step
                    obj = dev.reading(t_ms)
                    rec = self._build(self._choose_kind(), device_id, obj, t_ms, now, self.seq)
                    self.seq += 1
                    self.counts[rec.kind] = self.counts.get(rec.kind, 0) + 1
                assert rec is not None
                self._api_last[device_id] = rec
                self._api_tick[device_id] = k
            return self._api_last.get(device_id)

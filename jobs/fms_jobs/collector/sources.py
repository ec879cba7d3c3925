"""Where records come from: the FMS HTTP API (one poll per device and interval) or the simulator."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from fms_jobs.collector.config import HttpConfig, parse_device_ids
from fms_jobs.collector.metrics import CollectorMetrics
from fms_jobs.collector.resilience import Backoff, BreakerState, CircuitBreaker
from fms_jobs.simulator.faults import GOOD
from fms_jobs.simulator.fleet import FleetSimulator

log = logging.getLogger(__name__)


class Sink(Protocol):
    def __call__(self, device_id: int, value: bytes, created_ms: int, source: str) -> None: ...


def now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- simulator


class SimulatorSource:
    """Drives the fleet simulator at a target rate (records/s), paced against the wall clock."""

    def __init__(
        self,
        fleet: FleetSimulator,
        sink: Sink,
        metrics: CollectorMetrics,
        clock_offset_ms: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # ``clock`` is injectable so the pacing can be tested against a clock the test moves,
        # not against how much CPU a loaded machine happens to give the generator.
        self.clock = clock
        self.fleet = fleet
        self.clock_offset_ms = clock_offset_ms
        self.sink = sink
        self.metrics = metrics
        metrics.target_rate.set(fleet.rate_per_s)

    def run(
        self, stop: threading.Event, duration_s: float | None = None, max_records: int | None = None
    ) -> int:
        rate = self.fleet.rate_per_s
        start = self.clock()
        deadline = start + duration_s if duration_s else None
        sent = 0
        while not stop.is_set():
            if max_records is not None and sent >= max_records:
                break
            now = self.clock()
            if deadline is not None and now >= deadline:
                break
            due = start + sent / rate
            if due > now:
                stop.wait(min(due - now, 0.5))
                continue
            # catch up in small bursts without sleeping
            burst = min(1000, int((now - due) * rate) + 1)
            if max_records is not None:
                burst = min(burst, max_records - sent)
            for _ in range(burst):
                rec = self.fleet.next_record(created_ms=now_ms() + self.clock_offset_ms)
                if rec.kind != GOOD:
                    self.metrics.bad_injected.labels(kind=rec.kind).inc()
                self.sink(rec.device_id, rec.value, rec.created_ms, "simulator")
                sent += 1
        return sent


# --------------------------------------------------------------------------- HTTP


@dataclass
class FetchResult:
    status: str  # ok | not_found | failed | breaker_open
    body: bytes | None = None
    attempts: int = 0


class HttpClient(Protocol):
    def get(self, url: str, timeout: float) -> Any: ...


class HttpPoller:
    """Polls ``url_template`` for every device once per interval, in a thread pool.

    Per attempt: timeout; on a connection error, timeout or 5xx it retries up to
    ``retries`` times with exponential backoff and jitter. One circuit breaker
    guards the API: consecutive failures open it, and while open no request is
    sent (devices are skipped and counted) until a half-open trial succeeds.
    A 404 (unknown device) is neither retried nor counted against the breaker.
    """

    def __init__(
        self,
        cfg: HttpConfig,
        sink: Sink,
        metrics: CollectorMetrics,
        session: HttpClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.sink = sink
        self.metrics = metrics
        if session is None:
            import requests

            s = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(4, cfg.workers))
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            session = s
        self.session = session
        self.backoff = Backoff(cfg.backoff_base_s, 2.0, cfg.backoff_max_s)
        self.breaker = CircuitBreaker(
            cfg.breaker_failure_threshold,
            cfg.breaker_reset_s,
            cfg.breaker_half_open_calls,
            clock=clock,
            on_change=lambda st: metrics.breaker_state.set(int(st)),
        )
        self._stop = threading.Event()
        self._sleep = sleep or (lambda s: self._stop.wait(s))
        self._rng = rng or random.Random()
        self._last: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self.device_ids: list[int] = []
        self.sent = 0

    def url(self, device_id: int) -> str:
        return self.cfg.url_template.format(base_url=self.cfg.base_url.rstrip("/"), device_id=device_id)

    def discover(self) -> list[int]:
        ids = parse_device_ids(self.cfg.devices)
        if ids is not None:
            return ids
        resp = self.session.get(self.cfg.base_url.rstrip("/") + "/devices", timeout=self.cfg.timeout_s)
        if resp.status_code != 200:
            raise RuntimeError(f"device discovery failed: HTTP {resp.status_code}")
        found = resp.json().get("devices", [])
        return [int(x) for x in found]

    def fetch(self, device_id: int) -> FetchResult:
        url = self.url(device_id)
        attempts = 0
        for attempt in range(self.cfg.retries + 1):
            if self._stop.is_set():
                break
            if not self.breaker.allow():
                self.metrics.api_errors.labels(reason="breaker_open").inc()
                return FetchResult("breaker_open", attempts=attempts)
            attempts += 1
            t0 = time.perf_counter()
            reason: str | None = None
            try:
                resp = self.session.get(url, timeout=self.cfg.timeout_s)
                code = int(resp.status_code)
                if code == 200:
                    body = resp.content
                    self.metrics.api_duration.observe(time.perf_counter() - t0)
                    self.breaker.record_success()
                    return FetchResult("ok", body, attempts)
                if code == 404:
                    self.metrics.api_duration.observe(time.perf_counter() - t0)
                    self.metrics.api_errors.labels(reason="http_4xx").inc()
                    self.breaker.record_success()  # the API itself is healthy
                    return FetchResult("not_found", attempts=attempts)
                reason = "http_5xx" if code >= 500 or code == 429 else "http_4xx"
            except Exception as e:  # requests raises many types; classify by name
                name = type(e).__name__.lower()
                reason = "timeout" if "timeout" in name else "connection"
            self.metrics.api_duration.observe(time.perf_counter() - t0)
            self.metrics.api_errors.labels(reason=reason).inc()
            if reason == "http_4xx":
                self.breaker.record_success()
                return FetchResult("failed", attempts=attempts)
            self.breaker.record_failure()
            if attempt < self.cfg.retries:
                self._sleep(self.backoff.delay(attempt, self._rng))
        return FetchResult("failed", attempts=attempts)

    def poll_device(self, device_id: int) -> bool:
        res = self.fetch(device_id)
        if res.status != "ok" or res.body is None:
            return False
        if self.cfg.skip_unchanged:
            with self._lock:
                if self._last.get(device_id) == res.body:
                    self.metrics.unchanged_skipped.inc()
                    return False
                self._last[device_id] = res.body
        self.sink(device_id, res.body, now_ms(), "http")
        with self._lock:
            self.sent += 1
        return True

    def run(
        self, stop: threading.Event, duration_s: float | None = None, max_records: int | None = None
    ) -> int:
        """Poll every device once per interval until stopped. Returns records handed to the sink."""
        self.device_ids = self.discover()
        log.info("polling %d devices every %.1fs", len(self.device_ids), self.cfg.interval_s)
        start = time.monotonic()
        deadline = start + duration_s if duration_s else None
        cycle = 0
        with ThreadPoolExecutor(max_workers=self.cfg.workers, thread_name_prefix="fms-poll") as pool:
            while not stop.is_set() and not self._stop.is_set():
                cycle_start = start + cycle * self.cfg.interval_s
                if self.breaker.state is BreakerState.OPEN:
                    wait = self.breaker.seconds_until_retry()
                    log.warning("FMS API circuit open; next trial in %.1fs", wait)
                list(pool.map(self.poll_device, self.device_ids))
                if max_records is not None and self.sent >= max_records:
                    break
                cycle += 1
                next_start = start + cycle * self.cfg.interval_s
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if next_start <= now:  # overran the interval: start the next cycle at once, re-anchored
                    start, cycle = now, 0
                    log.warning("poll cycle took longer than the interval (%.1fs)", now - cycle_start)
                    continue
                if stop.wait(next_start - now):
                    break
        return self.sent

    def stop(self) -> None:
        self._stop.set()

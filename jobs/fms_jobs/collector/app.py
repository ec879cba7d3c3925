"""The collector process: one source -> Kafka, with metrics and a clean shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fms_jobs.collector.config import CollectorConfig
from fms_jobs.collector.metrics import CollectorMetrics
from fms_jobs.collector.producer import RecordProducer
from fms_jobs.collector.sources import HttpClient, HttpPoller, SimulatorSource, now_ms
from fms_jobs.quality.rulebook import load_rules
from fms_jobs.simulator.fleet import FleetSimulator, SimulatorConfig

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    produced: int
    delivered: int
    failed: int
    pending: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.pending == 0


def simulator_config(cfg: CollectorConfig) -> SimulatorConfig:
    s = cfg.simulator
    interval = s.devices / s.rate if s.rate else float(s.interval_s or 10.0)
    return SimulatorConfig(
        devices=s.devices,
        first_device_id=s.first_device_id,
        interval_s=interval,
        seed=s.seed,
        bad_share=s.bad_share,
        bad_kinds=s.bad_kinds,
        failure_rate_per_day=s.failure_rate_per_day,
        start_ms=now_ms() + round(s.clock_offset_s * 1000) if s.clock_offset_s else None,
    )


class Collector:
    def __init__(
        self,
        cfg: CollectorConfig,
        metrics: CollectorMetrics | None = None,
        producer_factory: Callable[[dict[str, Any]], Any] | None = None,
        http_session: HttpClient | None = None,
    ) -> None:
        cfg.validate()
        self.cfg = cfg
        self.metrics = metrics or CollectorMetrics()
        self.producer = RecordProducer(cfg.kafka, self.metrics, producer_factory)
        self.http_session = http_session
        self.poller: HttpPoller | None = None

    def _sink(self, device_id: int, value: bytes, created_ms: int, source: str) -> None:
        self.producer.send(device_id, value, created_ms, source)

    def run(self, stop: threading.Event | None = None, flush_timeout_s: float = 60.0) -> RunSummary:
        stop = stop or threading.Event()
        t0 = time.monotonic()
        pump_stop = threading.Event()

        def pump() -> None:  # serve delivery reports while the source is producing
            while not pump_stop.is_set():
                self.producer.poll(0.1)

        pumper = threading.Thread(target=pump, name="kafka-delivery", daemon=True)
        pumper.start()
        try:
            if self.cfg.source == "http":
                self.poller = HttpPoller(self.cfg.http, self._sink, self.metrics, session=self.http_session)
                stop_watch = threading.Thread(
                    target=lambda: (stop.wait(), self.poller.stop() if self.poller else None), daemon=True
                )
                stop_watch.start()
                self.poller.run(stop, self.cfg.duration_s, self.cfg.max_records)
            else:
                fleet = FleetSimulator(simulator_config(self.cfg), load_rules(self.cfg.rules_path))
                SimulatorSource(
                    fleet,
                    self._sink,
                    self.metrics,
                    clock_offset_ms=round(self.cfg.simulator.clock_offset_s * 1000),
                ).run(stop, self.cfg.duration_s, self.cfg.max_records)
        finally:
            pump_stop.set()
            pumper.join(timeout=5)
            pending = self.producer.flush(flush_timeout_s)
        summary = RunSummary(
            produced=self.producer.produced,
            delivered=self.producer.delivered,
            failed=self.producer.failed,
            pending=pending,
            seconds=time.monotonic() - t0,
        )
        log.info(
            "collector done: produced=%d delivered=%d failed=%d pending=%d in %.1fs",
            summary.produced,
            summary.delivered,
            summary.failed,
            summary.pending,
            summary.seconds,
        )
        return summary

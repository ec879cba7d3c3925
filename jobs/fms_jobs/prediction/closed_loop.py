"""Closed loop: the same fleet twice, without and with maintenance requested on the model's warnings.

Both runs use the real simulator with the same seed, so they are identical up to
the first maintenance. In the acting run every record is scored as it is
produced (:mod:`.incremental`'s features and alarm rule, :mod:`.online`'s trees),
and when a device's alarm warns (the model's threshold and hold) a maintenance request is
issued; the technician arrives ``response_min`` minutes later and the simulator
services the device then (:meth:`FleetSimulator.request_maintenance`, the
FMS API's ``POST /devices/{id}/maintenance``). A device is not sent a second
request within ``cooldown_min`` minutes. Unplanned downtime = minutes the devices
report ``isFail``; it is counted after the model's warm-up (the baseline window:
before it no model can warn, and a fleet in service has that history).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from fms_jobs.prediction.features import FeatureSpec
from fms_jobs.prediction.fleet import FleetSpec
from fms_jobs.prediction.incremental import AlarmState, IncrementalFeatures, hold_rows
from fms_jobs.prediction.online import TreeEnsemble
from fms_jobs.quality.schema import DEVICE_ID, IS_FAIL, PROCESSED_COLUMN, READINGS
from fms_jobs.simulator.fleet import FleetSimulator


@dataclass
class RunResult:
    acted: bool
    downtime_min: float
    failures: int
    maintenance_requests: int = 0
    planned_repairs: int = 0  # requests that found the device degrading (a failure averted)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in self.__dict__.items()}


class _Actor:
    """The model record by record (features, trees, alarm rule) and the maintenance it requests."""

    def __init__(
        self, model: Any, response_min: float, cooldown_min: float, min_std: dict[str, float] | None
    ) -> None:
        self.feats = IncrementalFeatures(model.spec, min_std)
        self.trees = TreeEnsemble.from_mllib(model.pipeline.stages[-1])
        t = model.threshold
        self.alarms = AlarmState(model.spec.rows(model.params.smooth_min), hold_rows(model.spec, t.hold_min))
        self.threshold = t.threshold
        self.response_ms = int(response_min * 60_000)
        self.cooldown_ms = cooldown_min * 60_000
        self.pending: dict[int, int] = {}  # device -> when the technician arrives
        self.last_request: dict[int, int] = {}
        self.requests = 0

    def service_due(self, sim: FleetSimulator, now_ms: int) -> None:
        for dev in [d for d, at in self.pending.items() if at <= now_ms]:
            sim.request_maintenance(dev, self.pending.pop(dev))

    def observe(self, dev: int, t_ms: int, obj: dict[str, Any], failed: bool) -> None:
        values = {PROCESSED_COLUMN[r]: obj[r] for r in READINGS}
        x = self.feats.update(dev, t_ms, values, failed)
        _, held = self.alarms.update(dev, None if x is None else self.trees.probability(x))
        if held is None or held < self.threshold or dev in self.pending:
            return
        if t_ms - self.last_request.get(dev, -(10**15)) < self.cooldown_ms:
            return
        self.pending[dev] = t_ms + self.response_ms
        self.last_request[dev] = t_ms
        self.requests += 1


def run_fleet(
    spec: FleetSpec,
    model: Any | None,
    response_min: float = 5.0,
    cooldown_min: float = 60.0,
    min_std: dict[str, float] | None = None,
) -> RunResult:
    """One run; model None = nobody acts. model: a TrainedModel (spec, params, threshold, pipeline).

    Both runs go through this one loop, so they differ only in the actor.
    """
    t0 = time.monotonic()
    sim = FleetSimulator(spec.simulator_config())
    actor = None if model is None else _Actor(model, response_min, cooldown_min, min_std)
    # downtime counts after the model's warm-up, the same span in both runs
    feature_spec = FeatureSpec() if model is None else model.spec
    warmup_ms = spec.start_ms + int(feature_spec.baseline_start_min * 60_000)
    was_failed: dict[int, bool] = {}
    failed_records = failures = 0
    for _ in range(spec.records):
        if actor is not None:
            actor.service_due(sim, sim.event_ms(sim.seq))
        rec = sim.next_record()
        obj = json.loads(rec.value)
        dev = int(obj[DEVICE_ID])
        failed = bool(obj[IS_FAIL])
        if failed and rec.event_ms is not None and rec.event_ms >= warmup_ms:
            failed_records += 1
            if not was_failed.get(dev, False):
                failures += 1
        was_failed[dev] = failed
        if actor is not None and rec.event_ms is not None:
            actor.observe(dev, rec.event_ms, obj, failed)
    return RunResult(
        actor is not None,
        failed_records * spec.interval_s / 60.0,
        failures,
        0 if actor is None else actor.requests,
        sum(d.planned_repairs for d in sim.devices),
        time.monotonic() - t0,
    )


def drill(
    spec: FleetSpec, model: Any, response_min: float = 5.0, min_std: dict[str, float] | None = None
) -> dict:
    without = run_fleet(spec, None)
    with_model = run_fleet(spec, model, response_min=response_min, min_std=min_std)
    cut = None
    if without.downtime_min > 0:
        cut = 1.0 - with_model.downtime_min / without.downtime_min
    return {
        "fleet": spec.to_json(),
        "response_min": response_min,
        "without_predictions": without.to_json(),
        "with_predictions": with_model.to_json(),
        "downtime_cut": None if cut is None else round(cut, 4),
    }

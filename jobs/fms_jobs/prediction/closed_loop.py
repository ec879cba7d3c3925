"""Closed loop: the same fleet twice, without and with maintenance requested on the model's warnings.

Both runs use the real simulator with the same seed, so they are identical up to
the first maintenance. In the acting run every record is scored as it is
produced (:mod:`.online`: the model's own features and trees), and when a
device's alarm risk reaches the model's threshold a maintenance request is
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


def run_fleet(
    spec: FleetSpec,
    model: Any | None,
    response_min: float = 5.0,
    cooldown_min: float = 60.0,
    min_std: dict[str, float] | None = None,
) -> RunResult:
    """One run; model None = nobody acts. model: a TrainedModel (spec, params, threshold, pipeline)."""
    t0 = time.monotonic()
    sim = FleetSimulator(spec.simulator_config())
    warmup_ms = spec.start_ms
    feats = ens = alarms = None
    thr = 1.0
    if model is not None:
        feats = IncrementalFeatures(model.spec, min_std)
        ens = TreeEnsemble.from_mllib(model.pipeline.stages[-1])
        alarms = AlarmState(
            model.spec.rows(model.params.smooth_min), hold_rows(model.spec, model.threshold.hold_min)
        )
        thr = model.threshold.threshold
        warmup_ms += int(model.spec.baseline_start_min * 60_000)
    else:
        from fms_jobs.prediction.features import FeatureSpec

        warmup_ms += int(FeatureSpec().baseline_start_min * 60_000)
    pending: dict[int, int] = {}
    last_request: dict[int, int] = {}
    was_failed: dict[int, bool] = {}
    failed_records = failures = requests = 0
    step_ms = round(spec.interval_s * 1000)
    for _ in range(spec.records):
        now = sim.event_ms(sim.seq)
        for dev in [d for d, at in pending.items() if at <= now]:
            sim.request_maintenance(dev, pending.pop(dev))
        rec = sim.next_record()
        obj = json.loads(rec.value)
        dev = int(obj[DEVICE_ID])
        failed = bool(obj[IS_FAIL])
        if failed and rec.event_ms is not None and rec.event_ms >= warmup_ms:
            failed_records += 1
            if not was_failed.get(dev, False):
                failures += 1
        was_failed[dev] = failed
        if feats is None or ens is None or alarms is None or rec.event_ms is None:
            continue
        values = {PROCESSED_COLUMN[r]: obj[r] for r in READINGS}
        x = feats.update(dev, rec.event_ms, values, failed)
        risk = None if x is None else ens.probability(x)
        _, held = alarms.update(dev, risk)
        if held is None or held < thr or dev in pending:
            continue
        if rec.event_ms - last_request.get(dev, -(10**15)) < cooldown_min * 60_000:
            continue
        pending[dev] = rec.event_ms + int(response_min * 60_000)
        last_request[dev] = rec.event_ms
        requests += 1
    planned = sum(d.planned_repairs for d in sim.devices)
    return RunResult(
        model is not None,
        failed_records * step_ms / 60_000.0,
        failures,
        requests,
        planned,
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

"""Signal model of one FMS device.

Each device has its own base levels, a daily cycle (temperature and humidity
follow the shift pattern of the factory), a slow mean-reverting drift, sensor
noise, and a health state machine::

    NORMAL --(hazard)--> DEGRADING --(progress 1 or temperature >= 130 degC)--> FAILED --(repair)--> NORMAL
                             |
                             +--(maintenance request: planned repair)--> NORMAL

While degrading the temperature climbs, the main motor slows down, the cooling
motor works harder and the noise grows - the precursors a failure-prediction
model should learn. In FAILED the device reports isFail=true with stalled
motors. Generated readings always satisfy the packaged quality rules.

Everything is driven by a per-device ``random.Random`` seeded from
``(seed, device_id)``, so a device produces the same readings for the same
sequence of event times regardless of the fleet size or the order of polling.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
FAIL_TEMPERATURE = 130.0


class Health(StrEnum):
    NORMAL = "normal"
    DEGRADING = "degrading"
    FAILED = "failed"


@dataclass(frozen=True)
class DeviceProfile:
    failure_rate_per_day: float = 0.5
    degradation_minutes: tuple[float, float] = (20.0, 90.0)
    failure_minutes: tuple[float, float] = (5.0, 30.0)
    noise_scale: float = 1.0


def format_time(ms: int) -> str:
    """ISO-8601 UTC with millisecond precision when needed: 2024-01-15T14:30:00Z / ...:00.250Z."""
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    frac = ms % 1000
    return f"{base}.{frac:03d}Z" if frac else f"{base}Z"


class DeviceModel:
    def __init__(self, device_id: int, seed: int, profile: DeviceProfile | None = None) -> None:
        self.device_id = device_id
        self.profile = profile or DeviceProfile()
        self.rng = random.Random(f"fms-device:{seed}:{device_id}")
        r = self.rng
        self.temp_base = r.uniform(60.0, 85.0)
        self.hum_base = r.uniform(45.0, 70.0)
        self.pres_base = r.uniform(70.0, 90.0)
        self.m1_base = r.uniform(1150.0, 1250.0)
        self.m2_base = r.uniform(800.0, 900.0)
        self.m3_base = r.uniform(1050.0, 1150.0)
        self.phase_h = r.uniform(0.0, 24.0)
        self.drift = 0.0
        self.health = Health.NORMAL
        self.progress = 0.0
        self.state_until_ms = 0
        self.state_since_ms = 0
        self.last_ms: int | None = None
        self.readings = 0
        self.maintenance_requests = 0
        self.planned_repairs = 0  # maintenance that found the device degrading (a failure averted)

    # -------------------------------------------------------------- health
    def _advance_health(self, t_ms: int, dt_ms: int) -> None:
        p = self.profile
        r = self.rng
        if self.health is Health.NORMAL:
            hazard = p.failure_rate_per_day * dt_ms / DAY_MS
            if r.random() < hazard:
                self.health = Health.DEGRADING
                self.state_since_ms = t_ms
                self.state_until_ms = t_ms + int(r.uniform(*p.degradation_minutes) * 60_000)
        elif self.health is Health.DEGRADING:
            span = max(1, self.state_until_ms - self.state_since_ms)
            self.progress = min(1.0, (t_ms - self.state_since_ms) / span)
            if t_ms >= self.state_until_ms:
                self._fail(t_ms)
        elif t_ms >= self.state_until_ms:
            self.health = Health.NORMAL
            self.progress = 0.0
            self.drift = 0.0

    def _fail(self, t_ms: int) -> None:
        self.health = Health.FAILED
        self.progress = 1.0
        self.state_since_ms = t_ms
        self.state_until_ms = t_ms + int(self.rng.uniform(*self.profile.failure_minutes) * 60_000)

    def request_maintenance(self, t_ms: int) -> bool:
        """A maintenance request at t_ms: a device that is not FAILED is serviced at once.

        Servicing resets the degradation (and the slow drift) and returns the device to NORMAL;
        it draws nothing from the device's random generator, so the readings of a device that was
        NORMAL continue exactly as without the request. A FAILED device is already being repaired
        (unplanned). Returns whether a degrading device was repaired before it failed.
        """
        self.maintenance_requests += 1
        if self.health is Health.FAILED:
            return False
        repaired = self.health is Health.DEGRADING
        if repaired:
            self.planned_repairs += 1
            self.drift = 0.0
        self.health = Health.NORMAL
        self.progress = 0.0
        self.state_since_ms = t_ms
        return repaired

    # -------------------------------------------------------------- readings
    def reading(self, t_ms: int) -> dict[str, Any]:
        """The raw JSON object this device reports at event time t_ms (must be called in time order)."""
        r = self.rng
        dt = 10_000 if self.last_ms is None else max(1, t_ms - self.last_ms)
        self.last_ms = t_ms
        self.readings += 1
        self._advance_health(t_ms, dt)
        # mean-reverting drift, scaled so its variance does not depend on the reporting interval
        k = min(1.0, dt / 3_600_000)
        self.drift = self.drift * (1 - k) + r.gauss(0.0, 1.0) * math.sqrt(k) * 2.0
        hour = (t_ms % DAY_MS) / HOUR_MS
        day = math.sin(2 * math.pi * (hour - self.phase_h) / 24.0)
        x = self.progress if self.health is Health.DEGRADING else 0.0
        noise = self.profile.noise_scale * (1.0 + 3.0 * x)
        temp = self.temp_base + 4.0 * day + self.drift + 55.0 * x * x + r.gauss(0, 0.4) * noise
        hum = self.hum_base - 6.0 * day + 0.5 * self.drift + r.gauss(0, 0.8) * noise
        pres = self.pres_base + 0.3 * self.drift + 15.0 * x + r.gauss(0, 0.3) * noise
        m1 = self.m1_base - 300.0 * x + r.gauss(0, 5.0) * noise
        m2 = self.m2_base + r.gauss(0, 4.0) * noise
        m3 = self.m3_base + 400.0 * x + r.gauss(0, 5.0) * noise
        if self.health is Health.DEGRADING and temp >= FAIL_TEMPERATURE:
            self._fail(t_ms)
        if self.health is Health.FAILED:
            cool = min(1.0, (t_ms - self.state_since_ms) / max(1, self.state_until_ms - self.state_since_ms))
            temp = self.temp_base + 55.0 * (1.0 - 0.7 * cool) + r.gauss(0, 0.5)
            m1 = r.uniform(0.0, 120.0)
            m2 = 0.0
            m3 = r.uniform(0.0, 1500.0)
        is_fail = self.health is Health.FAILED
        if not is_fail:
            temp = min(temp, FAIL_TEMPERATURE - 0.5)
        return {
            "time": format_time(t_ms),
            "DeviceId": self.device_id,
            "sensor1": round(min(max(temp, -39.0), 199.0), 2),
            "sensor2": round(min(max(hum, 0.0), 100.0), 2),
            "sensor3": round(min(max(pres, 0.0), 499.0), 2),
            "motor1": round(max(m1, 0.0)),
            "motor2": round(max(m2, 0.0)),
            "motor3": round(max(m3, 0.0)),
            "isFail": is_fail,
        }

"""Record builders shared by the pipeline unit tests."""

from __future__ import annotations

import json
from typing import Any

# 2024-01-15T14:30:00Z, the seeds' example reading
T0_MS = 1_705_329_000_000
GOOD: dict[str, Any] = {
    "time": "2024-01-15T14:30:00Z",
    "DeviceId": 1,
    "sensor1": 85.2,
    "sensor2": 92.7,
    "sensor3": 78.5,
    "motor1": 1200,
    "motor2": 850,
    "motor3": 1100,
    "isFail": False,
}


def good(**overrides: Any) -> dict[str, Any]:
    """The seeds' example reading with fields replaced (value ... removes the field)."""
    rec = dict(GOOD)
    for k, v in overrides.items():
        if v is ...:
            rec.pop(k, None)
        else:
            rec[k] = v
    return rec


def raw(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=True).encode()

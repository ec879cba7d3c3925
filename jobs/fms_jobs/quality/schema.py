"""The raw reading's fields and the processed (seed 004) column names.

The raw JSON fields are fixed by the FMS API (SPEC §2); rules about them live in
the quality rules file. The processed table's column names are a contract with
the lake's readers, so they live here, not in the rules file.
"""

from __future__ import annotations

from typing import Final

TIME: Final = "time"
DEVICE_ID: Final = "DeviceId"
IS_FAIL: Final = "isFail"
SENSORS: Final = ("sensor1", "sensor2", "sensor3")
MOTORS: Final = ("motor1", "motor2", "motor3")
READINGS: Final = SENSORS + MOTORS

# Raw field -> processed column (seed 004).
PROCESSED_COLUMN: Final[dict[str, str]] = {
    TIME: "timestamp",
    DEVICE_ID: "device_id",
    "sensor1": "temperature",
    "sensor2": "humidity",
    "sensor3": "pressure",
    "motor1": "motor1_rpm",
    "motor2": "motor2_rpm",
    "motor3": "motor3_rpm",
    IS_FAIL: "is_fail",
}
# The processed names the jobs use by themselves, derived so that the map above stays their
# one spelling.
DEVICE_COLUMN: Final = PROCESSED_COLUMN[DEVICE_ID]
TIME_COLUMN: Final = PROCESSED_COLUMN[TIME]
FAIL_COLUMN: Final = PROCESSED_COLUMN[IS_FAIL]
TEMPERATURE_COLUMN: Final = PROCESSED_COLUMN["sensor1"]
SENSOR_COLUMNS: Final = tuple(PROCESSED_COLUMN[s] for s in SENSORS)
MOTOR_COLUMNS: Final = tuple(PROCESSED_COLUMN[m] for m in MOTORS)
# The seed-004 columns of a stored reading, in the processed table's order.
READING_ROW_COLUMNS: Final = (DEVICE_COLUMN, TIME_COLUMN, *SENSOR_COLUMNS, *MOTOR_COLUMNS, FAIL_COLUMN)

# Failure prediction (issue 16): the risk a record's device fails within the model's horizon,
# and the version of the model that scored it.
FAILURE_RISK: Final = "failure_risk"
MODEL_VERSION: Final = "model_version"

# Fields the pipeline cannot do without; the rules file may add more required
# fields, not remove these, and must give them exactly these types.
CANONICAL_TYPES: Final[dict[str, str]] = {
    TIME: "timestamp",
    DEVICE_ID: "integer",
    **{f: "number" for f in READINGS},
    IS_FAIL: "boolean",
}

# Kafka header carrying the record's creation time at the collector, in
# milliseconds since the epoch as ASCII digits. The end-to-end latency of a
# stored row is (commit time of its micro-batch) - (this value).
CREATED_HEADER: Final = "fms-created-ms"
# Header naming the source of the record (simulator | http) - informative.
SOURCE_HEADER: Final = "fms-source"

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1

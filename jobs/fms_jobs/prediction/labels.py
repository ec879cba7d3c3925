"""Labels from the data itself: "this device fails within H minutes".

For every processed record of a device that is not failed, the label is 1 when
a later record of the same device starts a failure (``is_fail`` true after a
record with ``is_fail`` false, or the device's first record) within
``horizon_min`` minutes, 0 when no failure starts within the horizon and the
device's data reaches past it, and null (censored: the future is not in the
data) otherwise. Records of a failed device get a null label: a failure in
progress is not a prediction.

Only column expressions over per-device windows; every frame is O(rows): the
next failure start is a running minimum over the rows *after* a record, written
as a growing frame in descending time order (Spark re-evaluates an
"unbounded following" frame for every row).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fms_jobs.quality.schema import DEVICE_ID, IS_FAIL, PROCESSED_COLUMN, TIME

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

DEVICE = PROCESSED_COLUMN[DEVICE_ID]
TS = PROCESSED_COLUMN[TIME]
FAILED = PROCESSED_COLUMN[IS_FAIL]

# Columns this module adds
FAIL_START = "fail_start"  # this record starts a failure
NEXT_FAILURE_AT = "next_failure_at"  # start of the next failure at or after this record (timestamp)
MINUTES_TO_FAILURE = "minutes_to_failure"
LABEL = "label"  # 1.0 / 0.0 / null (censored or failed)


def add_labels(df: DataFrame, horizon_min: float) -> DataFrame:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    C = F.col
    by_time = Window.partitionBy(DEVICE).orderBy(TS)
    later_first = (
        Window.partitionBy(DEVICE)
        .orderBy(C(TS).desc())
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    whole = Window.partitionBy(DEVICE)
    prev_failed = F.lag(C(FAILED)).over(by_time)
    start = C(FAILED) & ~F.coalesce(prev_failed, F.lit(False))
    out = df.withColumn(FAIL_START, start)
    nxt = F.min(F.when(C(FAIL_START), C(TS))).over(later_first)
    out = out.withColumn(NEXT_FAILURE_AT, nxt)
    minutes = (F.unix_millis(C(NEXT_FAILURE_AT)) - F.unix_millis(C(TS))) / F.lit(60_000.0)
    out = out.withColumn(MINUTES_TO_FAILURE, F.when(~C(FAILED), minutes))
    data_end = F.max(C(TS)).over(whole)
    seen_past_horizon = (F.unix_millis(data_end) - F.unix_millis(C(TS))) >= F.lit(int(horizon_min * 60_000))
    label = (
        F.when(C(FAILED), F.lit(None))
        .when(C(MINUTES_TO_FAILURE) <= F.lit(float(horizon_min)), F.lit(1.0))
        .when(seen_past_horizon, F.lit(0.0))
    )
    return out.withColumn(LABEL, label.cast("double"))

"""Property: Spark's column expressions and the reference decide every possible message alike.

Hypothesis draws raw messages (strategies.py: any bytes, encodings, JSON shapes, numbers at
and beyond every limit, timestamps of every year and format) with arrival times around both
timeliness limits. Each message is judged by the reference (``rules.evaluate``): it must get
exactly one fate - a candidate, or one dead-letter reason - without an exception. Every
message drawn is then judged again by ``classify`` on local Spark, all in one job (a Spark
job per example would cost a second each): the same reason, detail, flags and four
dimensions, for at least MIN_RECORDS messages per run. A mismatch is reported with the
shortest messages that show it.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import EXAMPLES
from fms_jobs.quality.reasons import STATELESS, Dimension
from fms_jobs.quality.rules import evaluate
from hypothesis import given, settings
from strategies import arrival_ms, raw_message

pytestmark = pytest.mark.spark

MIN_RECORDS = 10_000


def spark_verdicts(spark: Any, rules: Any, records: list[tuple[bytes, int]]) -> list[Any]:
    from fms_jobs.quality.spark_rules import classify
    from pyspark.sql import types as T

    rows = [(bytearray(v), datetime.fromtimestamp(a / 1000, UTC), i) for i, (v, a) in enumerate(records)]
    schema = T.StructType(
        [
            T.StructField("value", T.BinaryType()),
            T.StructField("timestamp", T.TimestampType()),
            T.StructField("i", T.LongType()),
        ]
    )
    cols = ["i", "q_reason", "q_detail", "q_flags", *[f"q_{d.value}" for d in Dimension]]
    out = classify(spark.createDataFrame(rows, schema), rules).select(*cols).collect()
    return sorted(out, key=lambda r: r.i)


def python_verdict(value: bytes, arrival: int, rules: Any) -> tuple[Any, ...]:
    e = evaluate(value, arrival, rules)
    return (
        e.primary.reason.value if e.primary else None,
        e.primary.detail if e.primary else None,
        [f.value for f in e.flags],
        *[e.dimensions[d] for d in Dimension],
    )


def test_spark_and_reference_agree_on_every_message(spark: Any, rules: Any) -> None:
    corpus: list[tuple[bytes, int]] = []

    @settings(max_examples=MIN_RECORDS * 3 // 2 * EXAMPLES)  # the search repeats ~30 % of its draws
    @given(value=raw_message(rules), arrival=arrival_ms(rules))
    def one_fate(value: bytes, arrival: int) -> None:
        ev = evaluate(value, arrival, rules)
        assert ev.candidate == (ev.primary is None)
        if ev.primary is not None:
            assert ev.primary.reason in ev.reasons
        corpus.append((value, arrival))

    one_fate()
    distinct = list(dict.fromkeys(corpus))
    print(f"\nmessages tried: {len(corpus)} ({len(distinct)} distinct)")
    assert len(distinct) >= MIN_RECORDS
    got = spark_verdicts(spark, rules, distinct)
    assert len(got) == len(distinct)  # no message lost or doubled by the expressions
    mismatches = []
    for row in got:
        value, arrival = distinct[row.i]
        py = python_verdict(value, arrival, rules)
        sp = (row.q_reason, row.q_detail, list(row.q_flags), *[row[f"q_{d.value}"] for d in Dimension])
        if py != sp:
            mismatches.append((len(value), value[:300], arrival, py, sp))
    mismatches.sort(key=lambda m: m[0])
    reached = Counter(str(r.q_reason) for r in got)
    print(f"reasons reached: {dict(reached)}")
    assert not mismatches, f"{len(mismatches)} of {len(distinct)} differ, shortest: {mismatches[:4]}"
    # the search reached every stateless rule (the good and the bad sides of each)
    stateless = {r.value for r in STATELESS} - {"IMPLAUSIBLE_STATE"}  # a flag, not a reason
    assert stateless | {"None"} <= set(reached), stateless - set(reached)

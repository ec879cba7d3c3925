"""The stateless quality rules as Spark column expressions (no Python UDFs).

:func:`classify` takes a DataFrame with the Kafka source's columns (``value``
binary and ``timestamp``) and adds the verdict of every stateless rule, making
exactly the decisions of :func:`fms_jobs.quality.rules.evaluate` (a parity test
runs both over the same corpus):

* ``value`` is never parsed when it is larger than the limit;
* UTF-8 validity: ``decode`` replaces invalid sequences with U+FFFD, so a
  value is valid UTF-8 exactly when re-encoding the decoded text gives the
  original bytes back;
* the JSON *structure* (one object spanning the whole text, depth, numbers'
  length) is decided by the same regular expressions and bracket scan as
  :func:`fms_jobs.quality.rules.structure_problem` - Jackson reads only the first
  value of a text, so it must not be the judge of what follows it;
* JSON is parsed with ``from_json`` against the typed schema (is every value of
  the right type?); only when that leaves a field null or reports a problem is
  it parsed again with every field as a string (is the field present? is the
  text syntactically JSON?) - present but null in the typed parse means
  WRONG_TYPE. A top-level key given twice is found with ``json_object_keys``;
* the timestamp is matched against the same regular expression as in Python
  (anchored at Java's end of input) and cast to a timestamp (an impossible date
  casts to null).

Added columns (``q_`` = quality): ``q_size``, ``q_reason`` (null for a
candidate), ``q_detail``, ``q_flags`` (array of flag-only reasons),
``q_completeness``, ``q_accuracy``, ``q_consistency``, ``q_timeliness``, plus
the typed values of valid fields under their processed names (``device_id``,
``event_time``, ``temperature`` ...; null when invalid) and ``arrival_time``.
"""

from __future__ import annotations

from functools import reduce
from typing import TYPE_CHECKING

from fms_jobs.quality import rules as py_rules
from fms_jobs.quality.reasons import PRECEDENCE, Disposition, ReasonCode
from fms_jobs.quality.rulebook import FieldRule, QualityRules
from fms_jobs.quality.rules import TIMESTAMP_PATTERN_JAVA
from fms_jobs.quality.schema import DEVICE_ID, PROCESSED_COLUMN, TIME

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import StructType

CORRUPT = "_corrupt_record"
JSON_OPTIONS: dict[str, str] = {
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": CORRUPT,
    "allowNonNumericNumbers": "false",  # NaN/Infinity are not JSON numbers (RFC 8259), nor "NaN" strings
    "allowSingleQuotes": "false",
    "allowUnquotedFieldNames": "false",
    "allowComments": "false",
    "allowNumericLeadingZeros": "false",
    "allowBackslashEscapingAnyCharacter": "false",
    "allowUnquotedControlChars": "false",
}
QUALITY_COLUMNS = (
    "q_size",
    "q_reason",
    "q_detail",
    "q_flags",
    "q_completeness",
    "q_accuracy",
    "q_consistency",
    "q_timeliness",
)


def _spark_type(ftype: str) -> object:
    from pyspark.sql import types as T

    return {
        "timestamp": T.StringType(),
        "integer": T.IntegerType(),
        "number": T.DoubleType(),
        "boolean": T.BooleanType(),
    }[ftype]


def typed_schema(rules: QualityRules) -> StructType:
    from pyspark.sql import types as T

    fields = [T.StructField(f.name, _spark_type(f.type), True) for f in rules.fields]  # type: ignore[arg-type]
    return T.StructType([*fields, T.StructField(CORRUPT, T.StringType(), True)])


def string_schema(rules: QualityRules) -> StructType:
    from pyspark.sql import types as T

    fields = [T.StructField(f.name, T.StringType(), True) for f in rules.fields]
    return T.StructType([*fields, T.StructField(CORRUPT, T.StringType(), True)])


def output_name(field: str) -> str:
    return PROCESSED_COLUMN.get(field, field)


def _any(cols: list[Column]) -> Column:
    from pyspark.sql import functions as F

    return reduce(lambda a, b: a | b, cols) if cols else F.lit(False)


def _all(cols: list[Column]) -> Column:
    from pyspark.sql import functions as F

    return reduce(lambda a, b: a & b, cols) if cols else F.lit(True)


def _compare(col: Column, op: str, value: float | bool) -> Column:
    from pyspark.sql import functions as F

    v = F.lit(value)
    return {
        "==": col == v,
        "!=": col != v,
        "<": col < v,
        "<=": col <= v,
        ">": col > v,
        ">=": col >= v,
    }[op]


def known_device(col: Column, rules: QualityRules) -> Column:
    conds = [col.between(lo, hi) for lo, hi in rules.devices.ranges]
    if rules.devices.ids:
        conds.append(col.isin(sorted(rules.devices.ids)))
    return _any(conds)


def _field_issue(f: FieldRule, s: Column, t: Column, present: Column) -> tuple[Column, Column]:
    """(issue code or null, valid value or null) for one field, mirroring rules._check_field."""
    from pyspark.sql import functions as F

    R = ReasonCode
    if f.type == "timestamp":
        ts = F.when(s.rlike(TIMESTAMP_PATTERN_JAVA), s.cast("timestamp"))
        issue = F.when(~present, F.lit(R.MISSING_FIELD.value)).when(ts.isNull(), F.lit(R.BAD_TIMESTAMP.value))
        return issue, F.when(issue.isNull(), ts)
    if f.type == "boolean":
        issue = F.when(~present, F.lit(R.MISSING_FIELD.value)).when(t.isNull(), F.lit(R.WRONG_TYPE.value))
        return issue, F.when(issue.isNull(), t)
    non_finite = F.lit(False)
    if f.type == "number":
        non_finite = F.isnan(t) | t.isin(float("inf"), float("-inf"))
    out_of_range = F.lit(False)
    if f.min is not None:
        out_of_range = out_of_range | (t < F.lit(f.min))
    if f.max is not None:
        out_of_range = out_of_range | (t > F.lit(f.max))
    issue = (
        F.when(~present, F.lit(R.MISSING_FIELD.value))
        .when(t.isNull(), F.lit(R.WRONG_TYPE.value))
        .when(non_finite, F.lit(R.NOT_FINITE.value))
        .when(out_of_range, F.lit(R.OUT_OF_RANGE.value))
    )
    valid = F.when(~present | t.isNull() | non_finite, F.lit(None)).otherwise(t)
    return issue, valid


def bracket_scan(compact: Column) -> Column:
    """rules.bracket_scan as a fold over the characters: struct(m max depth, c closed, t trailing)."""
    from pyspark.sql import functions as F

    start = F.struct(
        F.lit(0).alias("d"), F.lit(0).alias("m"), F.lit(False).alias("c"), F.lit(False).alias("t")
    )

    def step(acc: Column, ch: Column) -> Column:
        d = acc["d"] + F.when(ch.isin("{", "["), 1).when(ch.isin("}", "]"), -1).otherwise(0)
        return F.when(acc["c"], F.struct(acc["d"], acc["m"], acc["c"], F.lit(True).alias("t"))).otherwise(
            F.struct(
                d.alias("d"), F.greatest(acc["m"], d).alias("m"), (d == 0).alias("c"), F.lit(False).alias("t")
            )
        )

    chars = F.split(compact, "")
    return F.aggregate(chars, start, step)


def stripped_text(text: Column) -> Column:
    """Escape pairs removed, then every string replaced by "" (step 1 of rules.structure_problem)."""
    from pyspark.sql import functions as F

    return F.regexp_replace(F.regexp_replace(text, py_rules.ESCAPE_PAIR_RE, ""), py_rules.STRING_RE, '""')


def structure_scan(s: Column) -> Column:
    """The bracket scan of a stripped text, only for texts that are not a flat object (else null)."""
    from pyspark.sql import functions as F

    r = py_rules
    compact = F.regexp_replace(F.regexp_replace(s, r.WS_RE, ""), r.NOT_BRACKET_RE, "x")
    return F.when(~s.rlike(r.FLAT_OBJECT_RE) & s.rlike(r.OBJECT_START_RE), bracket_scan(compact))


def structure_problem(text: Column, s: Column, scan: Column) -> Column:
    """rules.structure_problem: the MALFORMED_JSON detail or null (text, its stripped form, its scan)."""
    from pyspark.sql import functions as F

    r = py_rules
    return (
        F.when(text.isNull(), F.lit(None))
        .when(s.rlike(r.EMPTY_RE), F.lit(r.DETAIL_EMPTY))
        .when(~s.rlike(r.OBJECT_START_RE), F.lit(r.DETAIL_NOT_OBJECT))
        .when(scan["m"] > F.lit(r.MAX_JSON_DEPTH), F.lit(r.DETAIL_TOO_DEEP))
        .when(~scan["c"], F.lit(r.DETAIL_TRUNCATED))
        .when(scan["t"], F.lit(r.DETAIL_TRAILING))
        .when(s.rlike(r.LONG_NUMBER_RE), F.lit(r.DETAIL_LONG_NUMBER))
    )


def classify(
    df: DataFrame, rules: QualityRules, value_col: str = "value", arrival_col: str = "timestamp"
) -> DataFrame:
    """Add the stateless verdict columns (see module doc) to a DataFrame of raw Kafka records.

    The work is staged in successive projections over ``_q_*`` helper columns
    so that every expensive expression (decode, from_json, regexes) is computed
    once per row - Catalyst does not inline a non-trivial expression into a
    projection that uses it several times.
    """
    from pyspark.sql import functions as F

    R = ReasonCode
    C = F.col
    max_b = rules.max_message_bytes
    # 1. size and encoding (a null value - a tombstone - is treated as empty)
    df = df.select("*", F.coalesce(C(value_col), F.lit(bytearray())).alias("_q_value"))
    df = df.select("*", F.length(C("_q_value")).alias("q_size"))
    df = df.select("*", (C("q_size") > F.lit(max_b)).alias("_q_over"))
    df = df.select("*", F.when(~C("_q_over"), F.decode(C("_q_value"), "UTF-8")).alias("_q_dec"))
    df = df.select(
        "*", (~C("_q_over") & (F.encode(C("_q_dec"), "UTF-8") != C("_q_value"))).alias("_q_not_utf8")
    )
    df = df.select("*", F.when(~C("_q_over") & ~C("_q_not_utf8"), C("_q_dec")).alias("_q_text"))
    # 2. structure (rules.structure_problem), then the parsers
    df = df.select("*", stripped_text(C("_q_text")).alias("_q_s"))
    df = df.select("*", structure_scan(C("_q_s")).alias("_q_scan"))
    df = df.select("*", structure_problem(C("_q_text"), C("_q_s"), C("_q_scan")).alias("_q_struct"))
    json_in = F.when(C("_q_text").isNotNull() & C("_q_struct").isNull(), C("_q_text"))
    # The typed parse alone settles a well-formed record with every field of the right type; only
    # when a field is null (absent, JSON null or not convertible) or the parser complained is the
    # string parse needed, to tell a missing field from a wrong type and bad syntax from bad values.
    df = df.select("*", F.from_json(json_in, typed_schema(rules), JSON_OPTIONS).alias("_q_tp"))
    any_null = _any([C("_q_tp")[f.name].isNull() for f in rules.fields])
    df = df.select("*", (C("_q_tp").isNull() | C("_q_tp")[CORRUPT].isNotNull() | any_null).alias("_q_need"))
    df = df.select(
        "*", F.when(C("_q_need"), F.from_json(json_in, string_schema(rules), JSON_OPTIONS)).alias("_q_sp")
    )
    syntax_bad = json_in.isNotNull() & C("_q_need") & (C("_q_sp").isNull() | C("_q_sp")[CORRUPT].isNotNull())
    df = df.select("*", F.json_object_keys(json_in).alias("_q_keys"))
    keys = C("_q_keys")
    duplicate_key = json_in.isNotNull() & ~syntax_bad & (F.size(keys) != F.size(F.array_distinct(keys)))
    malformed_detail = (
        F.when(C("_q_text").isNull(), F.lit(None))
        .when(C("_q_struct").isNotNull(), C("_q_struct"))
        .when(syntax_bad, F.lit(py_rules.DETAIL_SYNTAX))
        .when(duplicate_key, F.lit(py_rules.DETAIL_DUPLICATE_KEY))
    )
    df = df.select("*", malformed_detail.alias("_q_malformed_detail"))
    df = df.select(
        "*",
        C("_q_malformed_detail").isNotNull().alias("_q_malformed"),
        (C("_q_text").isNotNull() & C("_q_malformed_detail").isNull()).alias("_q_parsed"),
    )
    # 3. every field: issue code and valid value
    field_cols: list[Column] = []
    for i, f in enumerate(rules.fields):
        t_col = C("_q_tp")[f.name]
        present = F.when(C("_q_need"), C("_q_sp")[f.name].isNotNull()).otherwise(F.lit(True))
        issue, val = _field_issue(f, t_col, t_col, present)
        field_cols += [
            F.when(C("_q_parsed"), issue).alias(f"_q_i{i}"),
            F.when(C("_q_parsed"), val).alias(f"_q_v{i}"),
        ]
    df = df.select("*", *field_cols)
    idx = {f.name: i for i, f in enumerate(rules.fields)}

    def issue_of(name: str) -> Column:
        return C(f"_q_i{idx[name]}")

    def valid_of(name: str) -> Column:
        return C(f"_q_v{idx[name]}")

    def has(reason: ReasonCode) -> Column:
        return _any([issue_of(f.name).eqNullSafe(F.lit(reason.value)) for f in rules.fields])

    def fields_with(reason: ReasonCode) -> Column:
        names = [
            F.when(issue_of(f.name).eqNullSafe(F.lit(reason.value)), F.lit(f.name)) for f in rules.fields
        ]
        return F.concat_ws(",", *names)

    # 4. record-level conditions
    device, event = valid_of(DEVICE_ID), valid_of(TIME)
    arrival_us = F.unix_micros(C(arrival_col))
    event_us = F.unix_micros(event)
    future = event.isNotNull() & ((event_us - arrival_us) > F.lit(rules.max_future_skew_seconds * 1_000_000))
    late = (
        event.isNotNull()
        & ~future
        & ((arrival_us - event_us) > F.lit(rules.max_lateness_seconds * 1_000_000))
    )
    rule_hits = [
        (
            r.name,
            _all(
                [valid_of(c.field).isNotNull() & _compare(valid_of(c.field), c.op, c.value) for c in r.when]
            ),
        )
        for r in rules.plausibility
    ]
    cond_exprs: dict[ReasonCode, Column] = {
        R.OVERSIZED: C("_q_over"),
        R.NOT_UTF8: C("_q_not_utf8"),
        R.MALFORMED_JSON: C("_q_malformed"),
        R.MISSING_FIELD: has(R.MISSING_FIELD),
        R.WRONG_TYPE: has(R.WRONG_TYPE),
        R.BAD_TIMESTAMP: has(R.BAD_TIMESTAMP),
        R.NOT_FINITE: has(R.NOT_FINITE),
        R.OUT_OF_RANGE: has(R.OUT_OF_RANGE),
        R.UNKNOWN_DEVICE: device.isNotNull() & ~known_device(device, rules),
        R.FUTURE_EVENT: future,
        R.LATE_EVENT: late,
        R.IMPLAUSIBLE_STATE: _any([hit for _, hit in rule_hits]),
    }
    df = df.select(
        "*",
        *[e.alias(f"_q_c_{r.value}") for r, e in cond_exprs.items()],
        F.concat_ws(",", *[F.when(hit, F.lit(name)) for name, hit in rule_hits]).alias("_q_rules"),
    )

    def cond(r: ReasonCode) -> Column:
        return C(f"_q_c_{r.value}")

    detail: dict[ReasonCode, Column] = {
        R.OVERSIZED: F.concat(C("q_size").cast("string"), F.lit(f" bytes > {max_b}")),
        R.NOT_UTF8: F.lit("invalid UTF-8"),
        R.MALFORMED_JSON: C("_q_malformed_detail"),
        R.UNKNOWN_DEVICE: device.cast("string"),
        R.FUTURE_EVENT: F.lit(f"max_future_skew_seconds={rules.max_future_skew_seconds}"),
        R.LATE_EVENT: F.lit(f"max_lateness_seconds={rules.max_lateness_seconds}"),
        R.IMPLAUSIBLE_STATE: C("_q_rules"),
    }
    for r in (R.MISSING_FIELD, R.WRONG_TYPE, R.BAD_TIMESTAMP, R.NOT_FINITE, R.OUT_OF_RANGE):
        detail[r] = fields_with(r)

    # 5. verdict
    dead = [r for r in PRECEDENCE if r in cond_exprs and rules.disposition(r) is Disposition.DEAD_LETTER]
    flag = [r for r in PRECEDENCE if r in cond_exprs and rules.disposition(r) is Disposition.FLAG]
    reason_col: Column = F.lit(None).cast("string")
    detail_col: Column = F.lit(None).cast("string")
    for r in reversed(dead):  # build the when-chain so the first in precedence wins
        reason_col = F.when(cond(r), F.lit(r.value)).otherwise(reason_col)
        detail_col = F.when(cond(r), detail[r]).otherwise(detail_col)
    flags_col = (
        F.filter(F.array(*[F.when(cond(r), F.lit(r.value)) for r in flag]), lambda x: x.isNotNull())
        if flag
        else F.array().cast("array<string>")
    )
    accuracy = (R.WRONG_TYPE, R.BAD_TIMESTAMP, R.NOT_FINITE, R.OUT_OF_RANGE)
    parsed = C("_q_parsed")
    completeness = ~(cond(R.OVERSIZED) | cond(R.NOT_UTF8) | cond(R.MALFORMED_JSON) | cond(R.MISSING_FIELD))
    out = df.select(
        "*",
        reason_col.alias("q_reason"),
        detail_col.alias("q_detail"),
        flags_col.alias("q_flags"),
        completeness.alias("q_completeness"),
        (parsed & ~_any([cond(r) for r in accuracy])).alias("q_accuracy"),
        (parsed & device.isNotNull() & ~cond(R.UNKNOWN_DEVICE) & ~cond(R.IMPLAUSIBLE_STATE)).alias(
            "q_consistency"
        ),
        (parsed & event.isNotNull() & ~cond(R.LATE_EVENT) & ~cond(R.FUTURE_EVENT)).alias("q_timeliness"),
        *[valid_of(f.name).alias(output_name(f.name)) for f in rules.fields if f.name != TIME],
        event.alias("event_time"),
        C(arrival_col).alias("arrival_time"),
    )
    return out.drop(*[c for c in out.columns if c.startswith("_q_")])

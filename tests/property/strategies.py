"""Hypothesis strategies for raw sensor messages across the whole value space.

A message is built in layers, each able to go wrong on its own: the bytes (any
bytes, other encodings), the JSON text (shapes, whitespace, trailing data,
truncation, duplicate keys, nesting), the fields (missing, null, wrong type,
extra) and the values (numbers at and beyond every limit the rules and the
parsers have, timestamps across all years and formats). Most messages are
close to a real reading, so that the deeper rules (ranges, plausibility,
timeliness) are reached, not only the envelope.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from fms_jobs.quality.rulebook import QualityRules
from hypothesis import strategies as st

T0 = datetime(2024, 1, 15, 14, 30, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)

INT32 = 2**31
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def _number_tokens(lo: float | None, hi: float | None) -> st.SearchStrategy[str]:
    """Number texts around the rule's limits and the parsers' limits (raw JSON tokens)."""
    edges: list[float] = [0.0, -0.0, 1e-320, 1.7976931348623157e308]
    for v in (lo, hi):
        if v is not None:
            edges += [v, v - 1e-9, v + 1e-9, v - 1, v + 1]
    return st.one_of(
        st.sampled_from([repr(float(e)) for e in edges]),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.integers(min_value=-(2**64), max_value=2**64).map(str),
        st.sampled_from(
            [
                "1e999",
                "-1e999",
                "1E400",
                "NaN",
                "Infinity",
                "-Infinity",
                "+1",
                "01",
                "1.",
                ".5",
                "-",
                "1e",
                "0x10",
                "1_000",
                str(INT32 - 1),
                str(INT32),
                str(-INT32),
                str(-INT32 - 1),
                "2.0",
                "1" * 99,
                "1" * 100,
                "1" * 101,
                "9" * 1500,
                "-" + "9" * 100,
            ]
        ),
        st.text(alphabet="0123456789.eE+-", min_size=1, max_size=8),
    )


def _timestamp_texts() -> st.SearchStrategy[str]:
    zones = st.one_of(
        st.just(UTC),
        st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
    )
    dt = st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=zones
    )
    near = st.integers(min_value=-7200_000, max_value=7200_000).map(
        lambda d: (T0 + timedelta(milliseconds=d)).isoformat().replace("+00:00", "Z")
    )

    def fmt(d: datetime, how: int) -> str:
        iso = d.isoformat()
        return [
            iso,
            iso.replace("+00:00", "Z"),
            iso.replace("T", " "),
            iso + "\n",
            iso.replace("+00:00", "Z") + "\n",
            d.replace(tzinfo=None).isoformat(),
            iso[:10],
            iso.replace("T", "t"),
            iso.upper(),
            iso.replace(iso[:4], "\u0662\u0660\u0662\u0664", 1),
        ][how]

    return st.one_of(
        near,
        near.map(lambda s: s + "\n"),
        st.builds(fmt, dt, st.integers(min_value=0, max_value=9)),
        st.sampled_from(
            [
                "2024-01-15T14:30:00Z",
                "2024-02-30T10:00:00Z",
                "2024-01-15T24:00:00Z",
                "2024-01-15T23:59:60Z",
                "2024-01-15T14:30:00.1234567Z",
                "2024-01-15T14:30:00+14:00",
                "2024-01-15T14:30:00+15:00",
                "1850-06-01T00:00:00Z",
                "1000-01-01T00:00:00+14:00",
                "9999-12-31T23:59:59-14:00",
                "0999-12-31T23:59:59Z",
                "",
            ]
        ),
        st.text(max_size=30),
    )


def _field_token(name: str, ftype: str, lo: float | None, hi: float | None) -> st.SearchStrategy[str]:
    """The JSON text of one field's value: mostly valid, sometimes anything."""
    if ftype == "timestamp":
        good = _timestamp_texts().map(json.dumps)
    elif ftype == "boolean":
        good = st.sampled_from(["true", "false"])
    elif ftype == "integer":
        plain = st.integers(min_value=-5, max_value=12_000).map(str)
        good = st.sampled_from([0] * 8 + [1]).flatmap(lambda pick: _number_tokens(lo, hi) if pick else plain)
    else:
        inner = st.floats(
            min_value=lo if lo is not None else -1e6, max_value=hi if hi is not None else 1e6, allow_nan=False
        )
        beyond = st.sampled_from(["1e999", "-1e999", "1E400", "-2e308"])  # beyond the double range
        choices = [inner.map(repr), _number_tokens(lo, hi), beyond]
        good = st.sampled_from([0] * 12 + [1, 2]).flatmap(lambda pick: choices[pick])
    anything = JSON_VALUES.map(lambda v: json.dumps(v))
    quoted = good.map(json.dumps)  # a number or literal given as a string
    rare = st.one_of(quoted, anything, st.just("null"))
    return st.sampled_from([0] * 12 + [1]).flatmap(lambda pick: rare if pick else good)


@st.composite
def record_text(draw: st.DrawFn, rules: QualityRules) -> str:
    """A reading-like JSON text: fields in any order, some missing, extra or repeated, any whitespace."""
    # JSON whitespace mostly; now and then a character that only looks like it
    ws = st.sampled_from(["", " ", "\n", "\t", "\r\n"] * 40 + ["\u00a0", "\x0b", "\u2028"])
    members: list[str] = []
    for f in rules.fields:
        if draw(st.integers(min_value=0, max_value=80)) == 0:
            continue  # missing
        key = f.name if draw(st.integers(min_value=0, max_value=40)) else draw(st.text(max_size=8))
        members.append(
            json.dumps(key) + draw(ws) + ":" + draw(ws) + draw(_field_token(f.name, f.type, f.min, f.max))
        )
    if draw(st.integers(min_value=0, max_value=10)) == 0:
        members.append(json.dumps(draw(st.text(max_size=8))) + ":" + json.dumps(draw(JSON_VALUES)))
    if members and draw(st.integers(min_value=0, max_value=25)) == 0:
        members.append(draw(st.sampled_from(members)))  # a key given twice
    order = draw(st.permutations(range(len(members))))
    text = "{" + draw(ws) + ("," + draw(ws)).join(members[i] for i in order) + draw(ws) + "}"
    return text


@st.composite
def wrapped(draw: st.DrawFn, text: str) -> str:
    """The text as a collector, a network or a broken producer might deliver it."""
    how = draw(st.integers(min_value=0, max_value=40))
    if how == 0:
        return text[: draw(st.integers(min_value=0, max_value=max(0, len(text) - 1)))]  # truncated
    if how == 1:
        return text + draw(st.sampled_from(['{"DeviceId":2}', " garbage}", "]", "\n{}", ",", " x", "}"]))
    if how == 2:
        return draw(st.sampled_from(["[", " ", "\ufeff", "x"])) + text
    if how == 3:
        depth = draw(st.integers(min_value=60, max_value=70))
        return text[:-1] + ',"n":' + "[" * depth + "]" * depth + "}"
    if how == 4:
        i = draw(st.integers(min_value=0, max_value=len(text)))
        return (
            text[:i]
            + draw(st.sampled_from(['"', "\\", "{", "}", "[", "]", ":", ",", "\x00", "\\u"]))
            + text[i:]
        )
    return text


def raw_message(rules: QualityRules) -> st.SearchStrategy[bytes]:
    """Any raw Kafka value: mostly reading-like, sometimes any JSON, any text, any bytes."""
    readings = record_text(rules).flatmap(wrapped)
    utf8 = readings.map(lambda t: t.encode("utf-8", "surrogatepass"))
    return st.one_of(
        utf8,
        utf8,
        utf8,
        utf8,
        utf8,
        utf8,
        readings.map(lambda t: t.encode("utf-16")),
        readings.map(lambda t: t.encode("latin-1", "replace")),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.binary(max_size=40),
        st.just(b"{" * 40 + b"}" * 40),
        st.integers(min_value=rules.max_message_bytes - 2, max_value=rules.max_message_bytes + 2).map(
            lambda n: (b'{"padding":"' + b"x" * n)[: n - 2] + b'"}'
        ),
    )


def arrival_ms(rules: QualityRules) -> st.SearchStrategy[int]:
    """Arrival times around T0, reaching both timeliness limits and beyond."""
    late = rules.max_lateness_seconds * 1000
    skew = rules.max_future_skew_seconds * 1000
    return st.one_of(
        st.integers(min_value=T0_MS - skew - 2000, max_value=T0_MS + late + 2000),
        st.sampled_from([T0_MS + late, T0_MS + late + 1, T0_MS - skew, T0_MS - skew - 1]),
        st.integers(min_value=T0_MS - 86_400_000, max_value=T0_MS + 86_400_000),
    )


def as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()

"""The four quality dimensions as pure functions over plain Python values.

These functions are the specification of the rules: the Spark column
expressions in :mod:`fms_jobs.quality.spark_rules` implement exactly the same
decisions (a parity test runs both over the same corpus). They need nothing but
the standard library, so the collector can pre-check records and the unit tests
can exercise every rule in isolation.

Stages, in order:

1. envelope   - size, UTF-8, JSON object             (completeness)
2. fields     - presence, type, finiteness, range    (completeness, accuracy)
3. device     - known device ids; isFail plausibility (consistency)
4. time       - lateness and future skew vs arrival  (timeliness)

Stateful consistency (duplicates, per-device order) needs memory across
records; :class:`fms_jobs.quality.reference.ReferencePipeline` models it the way
the streaming job does.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fms_jobs.quality.reasons import (
    PRECEDENCE,
    Dimension,
    Disposition,
    ReasonCode,
)
from fms_jobs.quality.rulebook import QualityRules
from fms_jobs.quality.schema import DEVICE_ID, INT32_MAX, INT32_MIN, TIME

# ISO-8601 with an explicit zone, at most microsecond precision. Zone offsets
# are limited to the ones in real use (-14:00..+14:00). ASCII digits only
# ([0-9], not \d: Python's \d matches any Unicode digit). The end anchor differs
# by engine: Python's and Java's ``$`` both accept a final newline, so each
# implementation anchors with its own "end of input" (``\Z`` here, ``\z`` in Java).
TIMESTAMP_BODY = (
    r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])"
)
TIMESTAMP_PATTERN = rf"^{TIMESTAMP_BODY}\Z"
TIMESTAMP_PATTERN_JAVA = rf"^{TIMESTAMP_BODY}\z"
_TS_RE = re.compile(TIMESTAMP_PATTERN)
JSON_WS = " \t\n\r"

# ----- The JSON language both implementations accept (RFC 8259, one object) -----
# Jackson (Spark) parses the first value of a text and ignores what follows; Python's json
# parses the whole text. So the *structure* is decided by the same regular expressions in both
# (here with ``re``, in spark_rules with Spark's regexp functions), and the parsers only
# judge the syntax of a text whose single top-level object spans it all:
#   1. every escape pair (backslash + any character) is removed, then every string is
#      replaced by "" - what remains is structure, numbers, literals and garbage;
#   2. empty -> "empty"; the first character is not '{' -> "not a JSON object";
#   3. brackets are scanned: deeper than MAX_JSON_DEPTH -> "nested deeper than ...",
#      never closed -> "truncated ...", anything after the closing brace -> "trailing data ...";
#   4. a run of number characters longer than MAX_NUMBER_CHARS -> "number longer than ..."
#      (Jackson refuses numbers of more than 1000 digits; a sensor never sends 100);
#   5. the parser's verdict (NaN/Infinity are not JSON numbers) -> "invalid JSON syntax";
#   6. a top-level key given twice -> "duplicate key" (the two parsers keep different copies).
MAX_JSON_DEPTH = 64
MAX_NUMBER_CHARS = 100
ESCAPE_PAIR_RE = r"(?s)\\."
STRING_RE = r'"[^"]*"'
EMPTY_RE = r"^[ \t\n\r]*$"
OBJECT_START_RE = r"^[ \t\n\r]*\{"
# one object, no nested brackets, nothing after it: the usual record, settled without a scan
FLAT_OBJECT_RE = r"^[ \t\n\r]*\{[^{}\[\]]*\}[ \t\n\r]*$"
WS_RE = r"[ \t\n\r]"
NOT_BRACKET_RE = r"[^{}\[\]]"
LONG_NUMBER_RE = rf"[-+0-9.eE]{{{MAX_NUMBER_CHARS + 1}}}"
DETAIL_EMPTY = "empty"
DETAIL_NOT_OBJECT = "not a JSON object"
DETAIL_TOO_DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels"
DETAIL_TRUNCATED = "truncated: the object is not closed"
DETAIL_TRAILING = "trailing data after the object"
DETAIL_LONG_NUMBER = f"number longer than {MAX_NUMBER_CHARS} characters"
DETAIL_SYNTAX = "invalid JSON syntax"
DETAIL_DUPLICATE_KEY = "duplicate key"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def bracket_scan(compact: str) -> tuple[int, bool, bool]:
    """(max depth before the first object closed, closed, trailing data) of a compacted text.

    ``compact`` holds only brackets and ``x`` (one per other character, whitespace removed);
    it starts with '{'. spark_rules.bracket_scan is the same fold as a Spark expression.
    """
    depth = max_depth = 0
    closed = trailing = False
    for ch in compact:
        if closed:
            trailing = True
            continue
        depth += 1 if ch in "{[" else -1 if ch in "}]" else 0
        max_depth = max(max_depth, depth)
        closed = depth == 0
    return max_depth, closed, trailing


def structure_problem(text: str) -> str | None:
    """Steps 1-4 above: the MALFORMED_JSON detail decided before any parser runs, or None."""
    s = re.sub(STRING_RE, '""', re.sub(ESCAPE_PAIR_RE, "", text))
    if re.search(EMPTY_RE, s):
        return DETAIL_EMPTY
    if not re.search(OBJECT_START_RE, s):
        return DETAIL_NOT_OBJECT
    if not re.search(FLAT_OBJECT_RE, s):
        compact = re.sub(NOT_BRACKET_RE, "x", re.sub(WS_RE, "", s))
        max_depth, closed, trailing = bracket_scan(compact)
        if max_depth > MAX_JSON_DEPTH:
            return DETAIL_TOO_DEEP
        if not closed:
            return DETAIL_TRUNCATED
        if trailing:
            return DETAIL_TRAILING
    if re.search(LONG_NUMBER_RE, s):
        return DETAIL_LONG_NUMBER
    return None


class _NotJson(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def parse_object(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """(object, None) or (None, MALFORMED_JSON detail) - the language described above."""
    problem = structure_problem(text)
    if problem is not None:
        return None, problem
    duplicate: list[bool] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        duplicate.append(len(obj) != len(pairs))  # the top-level object is the last call
        return obj

    try:
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError):
        return None, DETAIL_SYNTAX
    if not isinstance(obj, dict):  # pragma: no cover - the structure steps guarantee an object
        return None, DETAIL_NOT_OBJECT
    if duplicate[-1]:
        return None, DETAIL_DUPLICATE_KEY
    return obj, None


@dataclass(frozen=True)
class Issue:
    reason: ReasonCode
    field: str | None = None
    detail: str = ""


@dataclass
class Evaluation:
    """Stateless verdict on one raw record."""

    issues: list[Issue]
    primary: Issue | None
    flags: tuple[ReasonCode, ...]
    dimensions: dict[Dimension, bool]
    record: dict[str, Any] | None = None  # typed values of valid fields
    event_us: int | None = None
    device_id: int | None = None
    raw_size: int = 0

    @property
    def candidate(self) -> bool:
        """True when no dead-letter rule failed: the record may be stored."""
        return self.primary is None

    @property
    def reasons(self) -> tuple[ReasonCode, ...]:
        return tuple(dict.fromkeys(i.reason for i in self.issues))


@dataclass
class _FieldState:
    present: bool = False
    valid: bool = False  # right type and finite (may be out of range)
    value: Any = None
    issue: Issue | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- stage 1


def check_envelope(raw: bytes, rules: QualityRules) -> tuple[dict[str, Any] | None, Issue | None]:
    """Size, encoding and JSON-object checks. Returns (object, None) or (None, issue)."""
    if len(raw) > rules.max_message_bytes:
        return None, Issue(ReasonCode.OVERSIZED, None, f"{len(raw)} bytes > {rules.max_message_bytes}")
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return None, Issue(ReasonCode.NOT_UTF8, None, "invalid UTF-8")
    obj, problem = parse_object(text)
    if obj is None:
        return None, Issue(ReasonCode.MALFORMED_JSON, None, problem or DETAIL_SYNTAX)
    return obj, None


# --------------------------------------------------------------------------- stage 2


def parse_event_time(value: Any) -> int | None:
    """Epoch microseconds of an ISO-8601 timestamp string with zone, else None."""
    if not isinstance(value, str) or not _TS_RE.match(value):
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (dt - _EPOCH) // _US


def _check_field(
    name: str, ftype: str, lo: float | None, hi: float | None, obj: dict[str, Any]
) -> _FieldState:
    st = _FieldState()
    if name not in obj or obj[name] is None:
        st.issue = Issue(ReasonCode.MISSING_FIELD, name)
        return st
    st.present = True
    v = obj[name]
    if ftype == "timestamp":
        us = parse_event_time(v)
        if us is None:
            st.issue = Issue(ReasonCode.BAD_TIMESTAMP, name)
            return st
        st.valid, st.value = True, us
        return st
    if ftype == "boolean":
        if not isinstance(v, bool):
            st.issue = Issue(ReasonCode.WRONG_TYPE, name)
            return st
        st.valid, st.value = True, v
        return st
    if ftype == "integer":
        if isinstance(v, bool) or not isinstance(v, int) or not INT32_MIN <= v <= INT32_MAX:
            st.issue = Issue(ReasonCode.WRONG_TYPE, name)
            return st
        st.valid, st.value = True, v
        x: float = float(v)
    else:  # number
        if isinstance(v, bool) or not isinstance(v, int | float):
            st.issue = Issue(ReasonCode.WRONG_TYPE, name)
            return st
        try:
            x = float(v)
        except OverflowError:  # a JSON integer beyond the double range
            x = math.inf
        if not math.isfinite(x):
            st.issue = Issue(ReasonCode.NOT_FINITE, name)
            return st
        st.valid, st.value = True, x
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        st.issue = Issue(ReasonCode.OUT_OF_RANGE, name)
    return st


def check_fields(obj: dict[str, Any], rules: QualityRules) -> dict[str, _FieldState]:
    return {f.name: _check_field(f.name, f.type, f.min, f.max, obj) for f in rules.fields}


def check_completeness(obj: dict[str, Any], rules: QualityRules) -> list[Issue]:
    """Completeness: every required field present and non-null."""
    return [
        s.issue
        for s in check_fields(obj, rules).values()
        if s.issue is not None and s.issue.reason is ReasonCode.MISSING_FIELD
    ]


def check_accuracy(obj: dict[str, Any], rules: QualityRules) -> list[Issue]:
    """Accuracy: types, timestamp format, finiteness and physical ranges of present fields."""
    return [
        s.issue
        for s in check_fields(obj, rules).values()
        if s.issue is not None and s.issue.reason is not ReasonCode.MISSING_FIELD
    ]


# --------------------------------------------------------------------------- stage 3


def check_known_device(device_id: int | None, rules: QualityRules) -> list[Issue]:
    if device_id is None or rules.devices.contains(device_id):
        return []
    return [Issue(ReasonCode.UNKNOWN_DEVICE, DEVICE_ID, str(device_id))]


def check_plausibility(valid_values: dict[str, Any], rules: QualityRules) -> list[Issue]:
    """isFail vs readings. A rule is violated when all its conditions hold on valid values."""
    broken: list[str] = []
    for rule in rules.plausibility:
        if all(c.field in valid_values and c.holds(valid_values[c.field]) for c in rule.when):
            broken.append(rule.name)
    if not broken:
        return []
    return [Issue(ReasonCode.IMPLAUSIBLE_STATE, None, ",".join(broken))]


def check_consistency(obj: dict[str, Any], rules: QualityRules) -> list[Issue]:
    """Stateless consistency of one parsed record: known device and plausible state."""
    states = check_fields(obj, rules)
    dev = states[DEVICE_ID]
    valid = {k: s.value for k, s in states.items() if s.valid}
    return check_known_device(dev.value if dev.valid else None, rules) + check_plausibility(valid, rules)


# --------------------------------------------------------------------------- stage 4


def check_timeliness(event_us: int | None, arrival_ms: int, rules: QualityRules) -> list[Issue]:
    """Timeliness: event time vs arrival (Kafka record timestamp)."""
    if event_us is None:
        return []
    arrival_us = arrival_ms * 1000
    if event_us - arrival_us > rules.max_future_skew_seconds * 1_000_000:
        detail = f"max_future_skew_seconds={rules.max_future_skew_seconds}"
        return [Issue(ReasonCode.FUTURE_EVENT, TIME, detail)]
    if arrival_us - event_us > rules.max_lateness_seconds * 1_000_000:
        return [Issue(ReasonCode.LATE_EVENT, TIME, f"max_lateness_seconds={rules.max_lateness_seconds}")]
    return []


# --------------------------------------------------------------------------- all stages

_ACCURACY = {ReasonCode.WRONG_TYPE, ReasonCode.BAD_TIMESTAMP, ReasonCode.NOT_FINITE, ReasonCode.OUT_OF_RANGE}
_COMPLETENESS = {
    ReasonCode.OVERSIZED,
    ReasonCode.NOT_UTF8,
    ReasonCode.MALFORMED_JSON,
    ReasonCode.MISSING_FIELD,
}


def _detail(reason: ReasonCode, issues: list[Issue]) -> str:
    mine = [i for i in issues if i.reason is reason]
    if any(i.field is None or i.detail for i in mine):
        return ",".join(i.detail for i in mine if i.detail)
    return ",".join(i.field or "" for i in mine)


def primary_issue(issues: list[Issue], rules: QualityRules) -> Issue | None:
    """The first failing dead-letter rule in precedence order, with a field-list detail."""
    present = {i.reason for i in issues}
    for reason in PRECEDENCE:
        if reason in present and rules.disposition(reason) is Disposition.DEAD_LETTER:
            first = next(i for i in issues if i.reason is reason)
            return Issue(reason, first.field, _detail(reason, issues))
    return None


def evaluate(raw: bytes, arrival_ms: int, rules: QualityRules) -> Evaluation:
    """Evaluate every stateless rule on one raw Kafka value."""
    obj, env_issue = check_envelope(raw, rules)
    dims = dict.fromkeys(Dimension, False)
    if obj is None:
        assert env_issue is not None
        return Evaluation([env_issue], env_issue, (), dims, raw_size=len(raw))
    states = check_fields(obj, rules)
    issues = [s.issue for s in states.values() if s.issue is not None]
    valid = {k: s.value for k, s in states.items() if s.valid}
    dev = valid.get(DEVICE_ID)
    event_us = valid.get(TIME)
    issues += check_known_device(dev, rules)
    issues += check_timeliness(event_us, arrival_ms, rules)
    issues += check_plausibility(valid, rules)
    reasons = {i.reason for i in issues}
    dims[Dimension.COMPLETENESS] = not (reasons & _COMPLETENESS)
    dims[Dimension.ACCURACY] = not (reasons & _ACCURACY)
    dims[Dimension.CONSISTENCY] = dev is not None and not (
        reasons & {ReasonCode.UNKNOWN_DEVICE, ReasonCode.IMPLAUSIBLE_STATE}
    )
    dims[Dimension.TIMELINESS] = event_us is not None and not (
        reasons & {ReasonCode.LATE_EVENT, ReasonCode.FUTURE_EVENT}
    )
    primary = primary_issue(issues, rules)
    flags = tuple(r for r in PRECEDENCE if r in reasons and rules.disposition(r) is Disposition.FLAG)
    return Evaluation(
        issues=issues,
        primary=primary,
        flags=flags,
        dimensions=dims,
        record=valid,
        event_us=event_us,
        device_id=dev,
        raw_size=len(raw),
    )

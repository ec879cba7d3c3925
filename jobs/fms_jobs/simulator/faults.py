"""Named kinds of bad records the simulator can inject.

There is one kind per reason code of the validator, named after it in lower
case, so a test can inject every kind and expect the matching reason, plus the
tricky inputs a review found that once stopped or fooled the stream (named
after what they are; :data:`KIND_REASON` gives the reason each must get). The
mutations keep everything else about the record valid, so exactly one rule
fails.
"""

from __future__ import annotations

import json
import random
from enum import StrEnum
from typing import Any

from fms_jobs.quality.reasons import ReasonCode
from fms_jobs.quality.rulebook import QualityRules
from fms_jobs.quality.schema import DEVICE_ID, INT32_MAX, IS_FAIL, MOTORS, READINGS, SENSORS, TIME
from fms_jobs.simulator.devices import format_time


class BadKind(StrEnum):
    MALFORMED_JSON = "malformed_json"
    NOT_UTF8 = "not_utf8"
    OVERSIZED = "oversized"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_TIMESTAMP = "bad_timestamp"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_DEVICE = "unknown_device"
    FUTURE_EVENT = "future_event"
    LATE_EVENT = "late_event"
    IMPLAUSIBLE_STATE = "implausible_state"
    OUT_OF_ORDER = "out_of_order"
    DUPLICATE = "duplicate"
    # tricky inputs (issue 11): each once stored as good or stopped the lake
    TRAILING_DATA = "trailing_data"  # a record followed by a second object or garbage ending in '}'
    HUGE_NUMBER = "huge_number"  # a valid 1,500-digit number
    DEEP_NESTING = "deep_nesting"  # an extra field nested deeper than the parser's limit
    DUPLICATE_KEY = "duplicate_key"  # a reading given twice with different values
    TIME_NEWLINE = "time_newline"  # a well-formed time followed by a newline
    ANCIENT_TIME = "ancient_time"  # a well-formed time in 1000-1899 (Parquet refused it: a poison pill)

    @property
    def reason(self) -> ReasonCode:
        return KIND_REASON.get(self) or ReasonCode(self.value.upper())


KIND_REASON: dict[BadKind, ReasonCode] = {
    BadKind.TRAILING_DATA: ReasonCode.MALFORMED_JSON,
    BadKind.HUGE_NUMBER: ReasonCode.MALFORMED_JSON,
    BadKind.DEEP_NESTING: ReasonCode.MALFORMED_JSON,
    BadKind.DUPLICATE_KEY: ReasonCode.MALFORMED_JSON,
    BadKind.TIME_NEWLINE: ReasonCode.BAD_TIMESTAMP,
    BadKind.ANCIENT_TIME: ReasonCode.LATE_EVENT,
}


GOOD = "good"
ALL_KINDS: tuple[BadKind, ...] = tuple(BadKind)


def dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=True).encode("utf-8")


def unknown_device_id(rules: QualityRules, rng: random.Random) -> int:
    top = max([hi for _, hi in rules.devices.ranges] + list(rules.devices.ids) + [0])
    for _ in range(100):
        cand = top + 1 + rng.randrange(0, 100_000)
        if cand <= INT32_MAX and not rules.devices.contains(cand):
            return cand
    lows = [lo for lo, _ in rules.devices.ranges] + list(rules.devices.ids) + [1]
    return min(lows) - 1 - rng.randrange(0, 1000)


def _malformed(good: bytes, rng: random.Random) -> bytes:
    variants = [
        lambda: good[: rng.randrange(1, max(2, len(good) - 1))],  # truncated
        lambda: good[:-1] + b",}",  # trailing comma
        lambda: good.replace(b'"', b"'"),  # single quotes
        lambda: b"[" + good + b"]",  # array, not object
        lambda: b"ERROR 503 upstream unavailable",
        lambda: b"",
        lambda: good.replace(b":", b"=", 1),
        lambda: b"null",
    ]
    return rng.choice(variants)()


def _not_utf8(obj: dict[str, Any], rng: random.Random) -> bytes:
    bad = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82", b"\xb0C"])
    marker = '"__X__"'
    obj = dict(obj)
    obj["unit"] = "__X__"
    return dumps(obj).replace(marker.encode(), b'"' + bad + b'"')


def _wrong_type(obj: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    choice = rng.randrange(7)
    if choice == 0:
        f = rng.choice(READINGS)
        obj[f] = str(obj[f])
    elif choice == 1:
        obj[DEVICE_ID] = str(obj[DEVICE_ID])
    elif choice == 2:
        obj[IS_FAIL] = rng.choice(["false", 0, 1, "no"])
    elif choice == 3:
        obj[rng.choice(MOTORS)] = rng.choice([True, False])
    elif choice == 4:
        obj[DEVICE_ID] = obj[DEVICE_ID] + 0.5
    elif choice == 5:
        obj[rng.choice(SENSORS)] = {"value": 1.0}
    else:
        obj[rng.choice(READINGS)] = [1, 2]
    return obj


def _bad_timestamp(obj: dict[str, Any], t_ms: int, rng: random.Random) -> dict[str, Any]:
    iso = format_time(t_ms)
    obj[TIME] = rng.choice(
        [
            t_ms // 1000,  # epoch seconds as a number
            iso.rstrip("Z"),  # no zone
            iso.replace("T", " "),
            iso[:10],
            "2024-02-30T10:00:00Z",  # no such date
            "15/01/2024 14:30:00",
            "yesterday",
            iso.replace("Z", "+25:00"),
        ]
    )
    return obj


def _not_finite(obj: dict[str, Any], rng: random.Random) -> bytes:
    f = rng.choice(READINGS)
    # valid JSON numbers beyond the double range (NaN/Infinity literals are not JSON: MALFORMED_JSON)
    token = rng.choice([b"1e999", b"-1e999", b"1E400", b"-2.5e+308"])
    obj = dict(obj)
    obj[f] = "__X__"
    return dumps(obj).replace(b'"__X__"', token)


def _out_of_range(obj: dict[str, Any], rules: QualityRules, rng: random.Random) -> dict[str, Any]:
    ranged = [f for f in rules.fields if f.type == "number" and (f.min is not None or f.max is not None)]
    f = rng.choice(ranged)
    if f.max is not None and (f.min is None or rng.random() < 0.5):
        obj[f.name] = round(f.max + rng.uniform(1.0, 10.0 * max(1.0, abs(f.max))), 2)
    else:
        assert f.min is not None
        obj[f.name] = round(f.min - rng.uniform(1.0, 100.0), 2)
    return obj


def _implausible(obj: dict[str, Any], rules: QualityRules, rng: random.Random) -> dict[str, Any]:
    rule = rng.choice(rules.plausibility)
    for c in rule.when:
        f = rules.field_rule(c.field)
        if f.type == "boolean":
            obj[c.field] = c.value if c.op == "==" else not c.value
            continue
        v = float(c.value)
        lo = f.min if f.min is not None else v - 100.0
        hi = f.max if f.max is not None else v + 100.0
        if c.op == "==":
            x = v
        elif c.op in (">=", ">"):
            x = rng.uniform(v, hi) if v < hi else v
            if c.op == ">" and x == v:
                x = min(hi, v + 0.5)
        elif c.op in ("<=", "<"):
            x = rng.uniform(lo, v) if lo < v else v
            if c.op == "<" and x == v:
                x = max(lo, v - 0.5)
        else:  # !=
            x = v + 1.0 if v + 1.0 <= hi else v - 1.0
        obj[c.field] = round(x, 2) if f.type == "number" else int(x)
    return obj


def mutate(
    kind: BadKind,
    obj: dict[str, Any],
    t_ms: int,
    created_ms: int,
    rules: QualityRules,
    rng: random.Random,
) -> tuple[bytes, int | None]:
    """Apply a stateless bad kind to a good reading. Returns (bytes, event time ms or None)."""
    obj = dict(obj)
    if kind is BadKind.MALFORMED_JSON:
        return _malformed(dumps(obj), rng), None
    if kind is BadKind.NOT_UTF8:
        return _not_utf8(obj, rng), None
    if kind is BadKind.OVERSIZED:
        size = rules.max_message_bytes + rng.randrange(1, 4096)
        obj["padding"] = ""
        pad = size - len(dumps(obj))
        obj["padding"] = "x" * max(1, pad)
        return dumps(obj), None
    if kind is BadKind.MISSING_FIELD:
        f = rng.choice(rules.required_fields)
        if rng.random() < 0.5:
            del obj[f]
        else:
            obj[f] = None
        return dumps(obj), None
    if kind is BadKind.WRONG_TYPE:
        return dumps(_wrong_type(obj, rng)), None
    if kind is BadKind.BAD_TIMESTAMP:
        return dumps(_bad_timestamp(obj, t_ms, rng)), None
    if kind is BadKind.NOT_FINITE:
        return _not_finite(obj, rng), None
    if kind is BadKind.OUT_OF_RANGE:
        return dumps(_out_of_range(obj, rules, rng)), t_ms
    if kind is BadKind.UNKNOWN_DEVICE:
        obj[DEVICE_ID] = unknown_device_id(rules, rng)
        return dumps(obj), t_ms
    if kind is BadKind.FUTURE_EVENT:
        ev = created_ms + (rules.max_future_skew_seconds + rng.randrange(30, 3600)) * 1000
        obj[TIME] = format_time(ev)
        return dumps(obj), ev
    if kind is BadKind.LATE_EVENT:
        ev = created_ms - (rules.max_lateness_seconds + rng.randrange(30, 7200)) * 1000
        obj[TIME] = format_time(ev)
        return dumps(obj), ev
    if kind is BadKind.IMPLAUSIBLE_STATE:
        return dumps(_implausible(obj, rules, rng)), t_ms
    if kind is BadKind.TRAILING_DATA:
        tail = rng.choice([dumps({**obj, DEVICE_ID: obj[DEVICE_ID] + 1}), b" garbage}", b"\n{}", b"]"])
        return dumps(obj) + tail, None
    if kind is BadKind.HUGE_NUMBER:
        f = rng.choice(READINGS)
        obj[f] = "__X__"
        return dumps(obj).replace(b'"__X__"', b"1" * 1500), None
    if kind is BadKind.DEEP_NESTING:
        depth = rng.randrange(65, 200)
        obj["extra"] = "__X__"
        return dumps(obj).replace(b'"__X__"', b"[" * depth + b"]" * depth), None
    if kind is BadKind.DUPLICATE_KEY:
        f = rng.choice(READINGS)
        text = dumps(obj)
        return text[:-1] + b',"' + f.encode() + b'":' + json.dumps(obj[f] + 1).encode() + b"}", None
    if kind is BadKind.TIME_NEWLINE:
        obj[TIME] = format_time(t_ms) + rng.choice(["\n", "\r\n", " "])
        return dumps(obj), None
    if kind is BadKind.ANCIENT_TIME:
        iso = format_time(t_ms).replace("-02-29T", "-02-28T")  # most of those years had no 29 February
        obj[TIME] = f"{rng.randrange(1000, 1900)}{iso[4:]}"
        return dumps(obj), None
    raise ValueError(f"{kind} is stateful; the fleet simulator produces it")

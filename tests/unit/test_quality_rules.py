"""Every quality rule and reason code, with records that pass and records that fail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fms_jobs.quality.reasons import (
    DIMENSION_OF,
    FIXED_DISPOSITIONS,
    PRECEDENCE,
    Dimension,
    Disposition,
    ReasonCode,
)
from fms_jobs.quality.rulebook import QualityRules
from fms_jobs.quality.rules import (
    check_accuracy,
    check_completeness,
    check_consistency,
    check_envelope,
    check_known_device,
    check_plausibility,
    check_timeliness,
    evaluate,
    parse_event_time,
)
from pipeline_testlib import GOOD, T0_MS, good, raw

ARRIVAL = T0_MS + 2_000  # two seconds after the reading's event time


def reason_of(value: bytes, rules: QualityRules, arrival: int = ARRIVAL) -> ReasonCode | None:
    ev = evaluate(value, arrival, rules)
    return ev.primary.reason if ev.primary else None


def test_good_record_passes_every_dimension(rules: QualityRules) -> None:
    ev = evaluate(raw(GOOD), ARRIVAL, rules)
    assert ev.candidate and ev.primary is None and ev.flags == ()
    assert all(ev.dimensions.values())
    assert ev.device_id == 1
    assert ev.event_us == T0_MS * 1000
    assert ev.record is not None and ev.record["sensor1"] == 85.2


def test_every_reason_has_a_dimension_and_a_disposition(rules: QualityRules) -> None:
    for r in ReasonCode:
        assert r in DIMENSION_OF
        assert rules.disposition(r) in Disposition
    assert set(PRECEDENCE) | {ReasonCode.DUPLICATE} == set(ReasonCode)
    assert all(FIXED_DISPOSITIONS[r] is Disposition.DEAD_LETTER for r in PRECEDENCE[:7])


# ---------------------------------------------------------------- envelope (completeness)


@pytest.mark.parametrize("size_over", [1, 1000])
def test_oversized(rules: QualityRules, size_over: int) -> None:
    obj = good(padding="")
    obj["padding"] = "x" * (rules.max_message_bytes + size_over - len(raw(obj)))
    value = raw(obj)
    assert len(value) == rules.max_message_bytes + size_over
    assert reason_of(value, rules) is ReasonCode.OVERSIZED
    obj["padding"] = "x" * (rules.max_message_bytes - len(raw(good(padding=""))))
    assert len(raw(obj)) == rules.max_message_bytes
    assert reason_of(raw(obj), rules) is None


@pytest.mark.parametrize(
    "bad",
    [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82", b"\xb0C", b"\xf8\x88\x80\x80\x80"],
)
def test_not_utf8(rules: QualityRules, bad: bytes) -> None:
    value = raw(good(unit="@@")).replace(b"@@", bad)
    assert reason_of(value, rules) is ReasonCode.NOT_UTF8


def test_utf8_multibyte_passes(rules: QualityRules) -> None:
    assert reason_of(raw(good(unit="°C 온도 \U0001f321")), rules) is None
    assert reason_of(raw(good(unit="\ufffd")), rules) is None


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"   ",
        b"null",
        b"42",
        b'"text"',
        b"[1, 2]",
        b"[" + raw(GOOD) + b"]",
        b"ERROR 503",
        raw(GOOD)[:-1],
        raw(GOOD)[:40],
        raw(GOOD)[:-1] + b",}",
        raw(GOOD).replace(b'"', b"'"),
        raw(GOOD).replace(b":", b"=", 1),
        b"\xef\xbb\xbf" + raw(GOOD),  # byte order mark
        b'{"time": /* comment */ 1}',
        b'{time: "2024-01-15T14:30:00Z"}',
    ],
)
def test_malformed_json(rules: QualityRules, value: bytes) -> None:
    assert reason_of(value, rules) is ReasonCode.MALFORMED_JSON


def test_json_whitespace_is_fine(rules: QualityRules) -> None:
    assert reason_of(b" \n\t" + raw(GOOD) + b"\r\n ", rules) is None
    obj, issue = check_envelope(raw(GOOD), rules)
    assert issue is None and obj == GOOD


# ---------------------------------------------------------------- fields


@pytest.mark.parametrize("field", list(GOOD))
@pytest.mark.parametrize("how", ["absent", "null"])
def test_missing_field(rules: QualityRules, field: str, how: str) -> None:
    obj = good(**{field: ... if how == "absent" else None})
    assert reason_of(raw(obj), rules) is ReasonCode.MISSING_FIELD
    assert [i.field for i in check_completeness(obj, rules)] == [field]
    assert check_completeness(GOOD, rules) == []


def test_missing_fields_detail_lists_all_in_order(rules: QualityRules) -> None:
    ev = evaluate(raw(good(motor3=..., sensor1=None)), ARRIVAL, rules)
    assert ev.primary is not None and ev.primary.detail == "sensor1,motor3"
    assert not ev.dimensions[Dimension.COMPLETENESS]
    assert ev.dimensions[Dimension.ACCURACY]  # the present fields are accurate


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sensor1", "85.2"),
        ("sensor2", True),
        ("sensor3", {"v": 1}),
        ("motor1", [1200]),
        ("motor2", False),
        ("DeviceId", "1"),
        ("DeviceId", 1.5),
        ("DeviceId", 1.0),
        ("DeviceId", True),
        ("DeviceId", 2**31),
        ("DeviceId", -(2**31) - 1),
        ("isFail", "false"),
        ("isFail", 0),
        ("isFail", "true"),
        ("sensor1", ""),
    ],
)
def test_wrong_type(rules: QualityRules, field: str, value: Any) -> None:
    obj = good(**{field: value})
    assert reason_of(raw(obj), rules) is ReasonCode.WRONG_TYPE
    assert [i.reason for i in check_accuracy(obj, rules)] == [ReasonCode.WRONG_TYPE]


@pytest.mark.parametrize(("field", "value"), [("sensor1", 85), ("motor1", 1200.5), ("DeviceId", 2**31 - 1)])
def test_right_types_pass(make_rules: Callable[..., QualityRules], field: str, value: Any) -> None:
    r = make_rules(devices__ranges=[[1, 2**31 - 1]])
    assert reason_of(raw(good(**{field: value})), r) is None


@pytest.mark.parametrize(
    "value",
    [
        1705329000,
        "2024-01-15T14:30:00",
        "2024-01-15 14:30:00Z",
        "2024-01-15",
        "2024-02-30T10:00:00Z",
        "2024-01-15T25:00:00Z",
        "2024-01-15T14:30:00.1234567Z",
        "2024-01-15T14:30:00+25:00",
        "2024-01-15T14:30:00+15:00",
        "15/01/2024 14:30:00",
        "2024-01-15t14:30:00z",
        "yesterday",
        True,
    ],
)
def test_bad_timestamp(rules: QualityRules, value: Any) -> None:
    assert reason_of(raw(good(time=value)), rules) is ReasonCode.BAD_TIMESTAMP
    assert parse_event_time(value) is None


@pytest.mark.parametrize(
    ("value", "expected_ms"),
    [
        ("2024-01-15T14:30:00Z", T0_MS),
        ("2024-01-15T14:30:00.250Z", T0_MS + 250),
        ("2024-01-15T14:30:00.000001Z", T0_MS),
        ("2024-01-15T23:30:00+09:00", T0_MS),
        ("2024-01-15T09:30:00-05:00", T0_MS),
        ("2024-01-15T14:30:00+00:00", T0_MS),
    ],
)
def test_good_timestamps(rules: QualityRules, value: str, expected_ms: int) -> None:
    us = parse_event_time(value)
    assert us is not None and us // 1000 == expected_ms
    assert reason_of(raw(good(time=value)), rules) is None


@pytest.mark.parametrize("token", [b"1e999", b"-1e999", b"1E400", b"-9.9e+308"])
@pytest.mark.parametrize("field", ["sensor1", "motor3"])
def test_not_finite(rules: QualityRules, token: bytes, field: str) -> None:
    """A valid JSON number beyond the double range is the only non-finite value a record can hold."""
    value = raw(good(**{field: "@@"})).replace(b'"@@"', token)
    assert reason_of(value, rules) is ReasonCode.NOT_FINITE


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"+Infinity", b"-INF"])
def test_non_numeric_literals_are_not_json(rules: QualityRules, token: bytes) -> None:
    """RFC 8259 has no NaN/Infinity; Python's json and Jackson's option would accept some of them."""
    value = raw(good(sensor1="@@")).replace(b'"@@"', token)
    ev = evaluate(value, ARRIVAL, rules)
    assert ev.primary is not None and ev.primary.reason is ReasonCode.MALFORMED_JSON
    assert ev.primary.detail == "invalid JSON syntax"


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        (b"", "empty"),
        (b" \r\n", "empty"),
        (b"null", "not a JSON object"),
        (b"[{}]", "not a JSON object"),
        (b'{"a":1', "truncated: the object is not closed"),
        (b'{"a":"}', "invalid JSON syntax"),  # an unterminated string inside a closed object
        (b'{"a":1}{"b":2}', "trailing data after the object"),
        (b'{"a":1} junk}', "trailing data after the object"),
        (b'{"a":"\\\\"}"}', "trailing data after the object"),  # an escaped backslash ends the string
        (b'{"a":' + b"[" * 64 + b"]" * 64 + b"}", "nested deeper than 64 levels"),
        (b'{"a":' + b"1" * 101 + b"}", "number longer than 100 characters"),
        (b'{"a":1,"a":2}', "duplicate key"),
        (b'{"a":01}', "invalid JSON syntax"),
        (b'{"a":"x\\q"}', "invalid JSON syntax"),
    ],
)
def test_malformed_json_names_the_problem(rules: QualityRules, text: bytes, detail: str) -> None:
    ev = evaluate(text, ARRIVAL, rules)
    assert ev.primary is not None and ev.primary.reason is ReasonCode.MALFORMED_JSON
    assert ev.primary.detail == detail


def test_nesting_and_numbers_within_the_limits_are_accepted(rules: QualityRules) -> None:
    deep = raw(GOOD)[:-1] + b',"n":' + b"[" * 63 + b"]" * 63 + b"}"
    assert reason_of(deep, rules) is None
    assert reason_of(raw(good(motor1="@@")).replace(b'"@@"', b"1" * 100), rules) is ReasonCode.OUT_OF_RANGE
    assert reason_of(raw(GOOD).replace(b'"sensor1"', b'"sensor1" \t\r\n'), rules) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sensor1", -40.01),
        ("sensor1", 200.01),
        ("sensor1", 999.0),
        ("sensor2", -0.5),
        ("sensor2", 150),
        ("sensor3", -1),
        ("sensor3", 500.5),
        ("motor1", -5),
        ("motor2", 6001),
        ("motor3", 99999),
    ],
)
def test_out_of_range(rules: QualityRules, field: str, value: float) -> None:
    assert reason_of(raw(good(**{field: value})), rules) is ReasonCode.OUT_OF_RANGE


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sensor1", -40.0),
        ("sensor1", 129.0),
        ("sensor2", 0),
        ("sensor2", 100.0),
        ("motor1", 0),
        ("motor3", 6000),
    ],
)
def test_range_bounds_are_inclusive(rules: QualityRules, field: str, value: float) -> None:
    assert reason_of(raw(good(**{field: value})), rules) is None


def test_out_of_range_can_be_flagged(make_rules: Callable[..., QualityRules]) -> None:
    r = make_rules(dispositions__OUT_OF_RANGE="flag")
    ev = evaluate(raw(good(sensor2=150)), ARRIVAL, r)
    assert ev.candidate and ev.flags == (ReasonCode.OUT_OF_RANGE,)
    assert not ev.dimensions[Dimension.ACCURACY]


def test_accuracy_precedence_within_record(rules: QualityRules) -> None:
    # wrong type beats a bad timestamp beats non-finite beats out of range, whatever the field order
    value = raw(good(sensor1=999.0, motor1="x", time="bad")).replace(b'"sensor2":92.7', b'"sensor2":1e999')
    ev = evaluate(value, ARRIVAL, rules)
    assert ev.primary is not None and ev.primary.reason is ReasonCode.WRONG_TYPE
    assert set(ev.reasons) == {
        ReasonCode.WRONG_TYPE,
        ReasonCode.BAD_TIMESTAMP,
        ReasonCode.NOT_FINITE,
        ReasonCode.OUT_OF_RANGE,
        ReasonCode.IMPLAUSIBLE_STATE,  # 999 degC is typed and finite, so plausibility still applies
    }


def test_missing_beats_accuracy(rules: QualityRules) -> None:
    assert reason_of(raw(good(sensor1="x", motor2=...)), rules) is ReasonCode.MISSING_FIELD


# ---------------------------------------------------------------- consistency


@pytest.mark.parametrize("device", [0, -3, 10001, 2**31 - 1])
def test_unknown_device(rules: QualityRules, device: int) -> None:
    assert reason_of(raw(good(DeviceId=device)), rules) is ReasonCode.UNKNOWN_DEVICE
    assert check_known_device(device, rules)[0].detail == str(device)


@pytest.mark.parametrize("device", [1, 5, 1000, 10000])
def test_known_device(rules: QualityRules, device: int) -> None:
    assert reason_of(raw(good(DeviceId=device)), rules) is None
    assert check_known_device(device, rules) == []


def test_known_device_list(make_rules: Callable[..., QualityRules]) -> None:
    r = make_rules(devices__ranges=[], devices__ids=[7, 99])
    assert reason_of(raw(good(DeviceId=99)), r) is None
    assert reason_of(raw(good(DeviceId=8)), r) is ReasonCode.UNKNOWN_DEVICE


def test_unknown_device_can_be_flagged(make_rules: Callable[..., QualityRules]) -> None:
    r = make_rules(dispositions__UNKNOWN_DEVICE="flag")
    ev = evaluate(raw(good(DeviceId=77777)), ARRIVAL, r)
    assert ev.candidate and ev.flags == (ReasonCode.UNKNOWN_DEVICE,)
    assert not ev.dimensions[Dimension.CONSISTENCY]


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [
        ({"isFail": False, "sensor1": 130.0}, "overheat_without_failure"),
        ({"isFail": False, "sensor1": 199.9}, "overheat_without_failure"),
        ({"isFail": False, "motor1": 0, "motor2": 0, "motor3": 0}, "motors_stopped_without_failure"),
        (
            {"isFail": False, "sensor1": 150.0, "motor1": 0, "motor2": 0, "motor3": 0},
            "overheat_without_failure,motors_stopped_without_failure",
        ),
    ],
)
def test_implausible_state_is_flagged(rules: QualityRules, overrides: dict[str, Any], rule: str) -> None:
    obj = good(**overrides)
    ev = evaluate(raw(obj), ARRIVAL, rules)
    assert ev.candidate, "IMPLAUSIBLE_STATE only flags by default"
    assert ev.flags == (ReasonCode.IMPLAUSIBLE_STATE,)
    assert not ev.dimensions[Dimension.CONSISTENCY]
    issues = check_consistency(obj, rules)
    assert [i.reason for i in issues] == [ReasonCode.IMPLAUSIBLE_STATE] and issues[0].detail == rule


@pytest.mark.parametrize(
    "overrides",
    [
        {"isFail": True, "sensor1": 150.0},
        {"isFail": False, "sensor1": 129.99},
        {"isFail": True, "motor1": 0, "motor2": 0, "motor3": 0},
        {"isFail": False, "motor1": 0, "motor2": 0, "motor3": 1},
        {
            "isFail": "false",
            "sensor1": 150.0,
        },  # wrong type: rule cannot be evaluated (and WRONG_TYPE decides)
    ],
)
def test_plausible_states(rules: QualityRules, overrides: dict[str, Any]) -> None:
    obj = good(**overrides)
    valid = {k: v for k, v in obj.items() if not isinstance(v, str)}
    assert check_plausibility(valid, rules) == []


def test_implausible_can_dead_letter(make_rules: Callable[..., QualityRules]) -> None:
    r = make_rules(dispositions__IMPLAUSIBLE_STATE="dead_letter")
    ev = evaluate(raw(good(sensor1=140.0)), ARRIVAL, r)
    assert ev.primary is not None and ev.primary.reason is ReasonCode.IMPLAUSIBLE_STATE
    assert ev.primary.detail == "overheat_without_failure"


def test_plausibility_ignores_non_finite(rules: QualityRules) -> None:
    value = raw(good(sensor1="@@")).replace(b'"@@"', b"1e999")
    ev = evaluate(value, ARRIVAL, rules)
    assert ev.primary is not None and ev.primary.reason is ReasonCode.NOT_FINITE
    assert ReasonCode.IMPLAUSIBLE_STATE not in ev.reasons


# ---------------------------------------------------------------- timeliness


def test_late_event(rules: QualityRules) -> None:
    limit = rules.max_lateness_seconds * 1000
    assert reason_of(raw(GOOD), rules, T0_MS + limit) is None
    assert reason_of(raw(GOOD), rules, T0_MS + limit + 1) is ReasonCode.LATE_EVENT
    issues = check_timeliness(T0_MS * 1000, T0_MS + limit + 1, rules)
    assert [i.reason for i in issues] == [ReasonCode.LATE_EVENT]


def test_future_event(rules: QualityRules) -> None:
    skew = rules.max_future_skew_seconds * 1000
    assert reason_of(raw(GOOD), rules, T0_MS - skew) is None
    assert reason_of(raw(GOOD), rules, T0_MS - skew - 1) is ReasonCode.FUTURE_EVENT
    ev = evaluate(raw(GOOD), T0_MS - skew - 1, rules)
    assert not ev.dimensions[Dimension.TIMELINESS] and ev.dimensions[Dimension.ACCURACY]


def test_timeliness_needs_a_time(rules: QualityRules) -> None:
    assert check_timeliness(None, T0_MS, rules) == []
    ev = evaluate(raw(good(time=...)), T0_MS, rules)
    assert not ev.dimensions[Dimension.TIMELINESS]


def test_unknown_device_beats_timeliness(rules: QualityRules) -> None:
    assert reason_of(raw(good(DeviceId=0)), rules, T0_MS + 10**9) is ReasonCode.UNKNOWN_DEVICE


# ---------------------------------------------------------------- dimensions of unparseable records


def test_unparseable_record_fails_every_dimension(rules: QualityRules) -> None:
    ev = evaluate(b"not json", ARRIVAL, rules)
    assert not any(ev.dimensions.values())
    assert ev.record is None and ev.event_us is None


def test_numbers_in_strings_are_wrong_type(rules: QualityRules) -> None:
    # Spark's JSON reader (allowNonNumericNumbers off) and the reference: a string is never a number
    for text in ("Infinity", "NaN", "-INF", "85.2", "inf"):
        assert reason_of(raw(good(sensor1=text)), rules) is ReasonCode.WRONG_TYPE, text

"""The versioned quality rules file: the packaged default loads; every mistake is a clear error."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from fms_jobs.quality.reasons import Disposition, ReasonCode
from fms_jobs.quality.rulebook import RULES_ENV, QualityRules, RulesError, load_rules, rules_from_dict


def test_packaged_rules_load(rules: QualityRules) -> None:
    assert rules.rules_version
    assert rules.max_message_bytes >= 1024
    assert set(rules.required_fields) >= {"time", "DeviceId", "sensor1", "motor3", "isFail"}
    assert rules.devices.contains(1) and not rules.devices.contains(0)
    assert rules.duplicate_watermark_seconds >= rules.max_lateness_seconds + rules.max_future_skew_seconds
    assert rules.disposition(ReasonCode.MALFORMED_JSON) is Disposition.DEAD_LETTER
    assert rules.disposition(ReasonCode.OUT_OF_ORDER) is Disposition.FLAG
    assert rules.disposition(ReasonCode.DUPLICATE) is Disposition.DUPLICATE
    assert rules.fingerprint and len(rules.fingerprint) == 16


def test_env_var_selects_file(
    tmp_path: Path, rules_doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    rules_doc["rules_version"] = "test-env"
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(rules_doc))
    monkeypatch.setenv(RULES_ENV, str(p))
    assert load_rules().rules_version == "test-env"
    assert load_rules(p).source == str(p)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        ("", "file is empty"),
        ("rules_version: [unclosed", "invalid YAML"),
        ("- a list", "must be a mapping"),
    ],
)
def test_file_errors(tmp_path: Path, content: str | None, message: str) -> None:
    p = tmp_path / "rules.yaml"
    if content is not None:
        p.write_text(content)
    with pytest.raises(RulesError, match=message) as ei:
        load_rules(p)
    assert str(p) in str(ei.value)


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node = doc
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if value is ...:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("colour", "blue", r"unknown key\(s\) \['colour'\]"),
        ("rules_version", ..., "rules_version: is required"),
        ("rules_version", "  ", "non-empty string"),
        ("message.max_bytes", "big", "must be an integer"),
        ("message.max_bytes", 10, "must be >= 64"),
        ("fields.sensor1.type", "float", "must be one of"),
        ("fields.sensor1.min", 500.0, "min .* is greater than max"),
        ("fields.isFail.min", 0, "min/max only apply to number or integer fields"),
        ("fields.DeviceId.type", "number", "fields.DeviceId.type: must be 'integer'"),
        ("fields.motor2", ..., "required field 'motor2' is missing"),
        ("fields.sensor1.colour", "x", "unknown key"),
        ("fields.sensor2.max", float("nan"), "finite number"),
        ("devices.ranges", [[10, 1]], r"low \(10\) is greater than high \(1\)"),
        ("devices.ranges", [[1]], r"must be a \[low, high\] pair"),
        ("devices.ranges", [], "no known devices"),
        ("devices.ids", ["a"], "must be an integer"),
        ("consistency.duplicate_watermark_seconds", 60, "must be >= timeliness.max_lateness_seconds"),
        ("timeliness.max_lateness_seconds", 0, "must be >= 1"),
        ("timeliness.max_future_skew_seconds", -1, "must be >= 0"),
        ("dispositions.LATE_EVENT", "flag", "disposition of LATE_EVENT is fixed"),
        ("dispositions.NO_SUCH", "flag", "unknown reason code"),
        ("dispositions.OUT_OF_RANGE", "drop", "must be 'dead_letter' or 'flag'"),
        ("duplicates.dead_letter_copy", "yes", "must be true or false"),
        ("anomaly.signals", ["isFail"], "is not a number field"),
        ("anomaly.ewm_alpha", 0, r"must be in \(0, 1\]"),
        ("anomaly.z_threshold", -1, "must be > 0"),
        ("anomaly.min_stddev.sensor1", 0, "must be > 0"),
        ("anomaly.min_stddev.nothing", 1.0, "not in anomaly.signals"),
        ("consistency.plausibility.0.when.0.field", "nope", "unknown field 'nope'"),
        ("consistency.plausibility.0.when.0.op", "=~", "must be one of"),
        ("consistency.plausibility.0.when.0.value", 1, "value must be true/false"),
        ("consistency.plausibility.0.when.0.op", "<", "boolean fields only support == and !="),
        ("consistency.plausibility.0.when.1.value", "hot", "finite number"),
        ("consistency.plausibility.0.when", [], "non-empty list of conditions"),
        ("consistency.plausibility.1.name", "overheat_without_failure", "duplicate rule name"),
    ],
)
def test_invalid_documents(rules_doc: dict[str, Any], path: str, value: Any, message: str) -> None:
    with pytest.raises(RulesError, match=message) as ei:
        rules_from_dict(_set(rules_doc, path, value), source="bad.yaml")
    assert str(ei.value).startswith("quality rules bad.yaml: ")


def test_disposition_override(rules_doc: dict[str, Any]) -> None:
    doc = _set(rules_doc, "dispositions.OUT_OF_RANGE", "flag")
    r = rules_from_dict(doc)
    assert r.disposition(ReasonCode.OUT_OF_RANGE) is Disposition.FLAG


def test_extra_required_field_allowed(rules_doc: dict[str, Any]) -> None:
    doc = _set(rules_doc, "fields.firmware", {"type": "integer", "min": 1, "max": 99})
    r = rules_from_dict(doc)
    assert "firmware" in r.required_fields
    assert r.field_rule("firmware").max == 99


def test_fingerprint_changes_with_content(rules_doc: dict[str, Any]) -> None:
    a = rules_from_dict(rules_doc)
    b = rules_from_dict(_set(rules_doc, "fields.sensor1.max", 199.0))
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == rules_from_dict(copy.deepcopy(rules_doc)).fingerprint

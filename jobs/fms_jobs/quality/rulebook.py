"""The rulebook: the versioned quality rules file, loaded and validated.

``load_rules()`` reads ``quality_rules.yaml`` (the packaged default, or a path
given by the caller or ``$FMS_QUALITY_RULES``), validates every key and returns
an immutable :class:`QualityRules`. Any problem raises :class:`RulesError`
whose message names the file and the offending key, so an operator sees what to
fix before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fms_jobs.quality.reasons import (
    CONFIGURABLE,
    DEFAULT_DISPOSITIONS,
    FIXED_DISPOSITIONS,
    Disposition,
    ReasonCode,
)
from fms_jobs.quality.schema import CANONICAL_TYPES, INT32_MAX, INT32_MIN

DEFAULT_RULES_PATH = Path(__file__).with_name("quality_rules.yaml")
RULES_ENV = "FMS_QUALITY_RULES"

FIELD_TYPES = ("timestamp", "integer", "number", "boolean")
OPS = ("==", "!=", "<", "<=", ">", ">=")
_TOP_KEYS = {
    "rules_version",
    "message",
    "fields",
    "devices",
    "consistency",
    "timeliness",
    "dispositions",
    "duplicates",
    "anomaly",
}


class RulesError(ValueError):
    """The quality rules file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class FieldRule:
    name: str
    type: str
    min: float | None = None
    max: float | None = None
    unit: str | None = None


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: float | bool

    def holds(self, actual: Any) -> bool:
        v = self.value
        if self.op == "==":
            return bool(actual == v)
        if self.op == "!=":
            return bool(actual != v)
        if self.op == "<":
            return bool(actual < v)
        if self.op == "<=":
            return bool(actual <= v)
        if self.op == ">":
            return bool(actual > v)
        return bool(actual >= v)


@dataclass(frozen=True)
class PlausibilityRule:
    name: str
    when: tuple[Condition, ...]
    description: str = ""


@dataclass(frozen=True)
class KnownDevices:
    ranges: tuple[tuple[int, int], ...]
    ids: frozenset[int]

    def contains(self, device_id: int) -> bool:
        return device_id in self.ids or any(lo <= device_id <= hi for lo, hi in self.ranges)


@dataclass(frozen=True)
class AnomalyRules:
    signals: tuple[str, ...]
    ewm_alpha: float
    z_threshold: float
    warmup_records: int
    min_stddev: Mapping[str, float]


@dataclass(frozen=True)
class QualityRules:
    rules_version: str
    max_message_bytes: int
    fields: tuple[FieldRule, ...]
    devices: KnownDevices
    duplicate_watermark_seconds: int
    plausibility: tuple[PlausibilityRule, ...]
    max_lateness_seconds: int
    max_future_skew_seconds: int
    dispositions: Mapping[ReasonCode, Disposition]
    duplicates_dead_letter_copy: bool
    anomaly: AnomalyRules
    source: str = "<dict>"
    fingerprint: str = field(default="", compare=False)

    def field_rule(self, name: str) -> FieldRule:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def fields_of_type(self, *types: str) -> tuple[FieldRule, ...]:
        return tuple(f for f in self.fields if f.type in types)

    def disposition(self, reason: ReasonCode) -> Disposition:
        if reason in FIXED_DISPOSITIONS:
            return FIXED_DISPOSITIONS[reason]
        return self.dispositions[reason]


def _err(source: str, key: str, msg: str) -> RulesError:
    return RulesError(f"quality rules {source}: {key}: {msg}")


def _mapping(source: str, key: str, value: Any, allowed: set[str] | None = None) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _err(source, key, f"must be a mapping, got {type(value).__name__}")
    if allowed is not None:
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise _err(source, key, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return value


def _int(source: str, key: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(source, key, f"must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise _err(source, key, f"must be >= {minimum}, got {value}")
    return value


def _num(source: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise _err(source, key, f"must be a finite number, got {value!r}")
    return float(value)


def _req(source: str, m: Mapping[str, Any], key: str, prefix: str = "") -> Any:
    if key not in m:
        raise _err(source, f"{prefix}{key}", "is required")
    return m[key]


def _parse_fields(source: str, raw: Any) -> tuple[FieldRule, ...]:
    m = _mapping(source, "fields", raw)
    out: list[FieldRule] = []
    for name, spec in m.items():
        key = f"fields.{name}"
        s = _mapping(source, key, spec, {"type", "min", "max", "unit"})
        ftype = _req(source, s, "type", key + ".")
        if ftype not in FIELD_TYPES:
            raise _err(source, key + ".type", f"must be one of {list(FIELD_TYPES)}, got {ftype!r}")
        lo = hi = None
        if "min" in s or "max" in s:
            if ftype not in ("number", "integer"):
                raise _err(source, key, f"min/max only apply to number or integer fields, not {ftype}")
            lo = _num(source, key + ".min", s["min"]) if "min" in s else None
            hi = _num(source, key + ".max", s["max"]) if "max" in s else None
            if lo is not None and hi is not None and lo > hi:
                raise _err(source, key, f"min ({lo}) is greater than max ({hi})")
        unit = s.get("unit")
        if unit is not None and not isinstance(unit, str):
            raise _err(source, key + ".unit", "must be a string")
        out.append(FieldRule(str(name), str(ftype), lo, hi, unit))
    names = {f.name: f.type for f in out}
    for cname, ctype in CANONICAL_TYPES.items():
        if cname not in names:
            raise _err(source, "fields", f"required field {cname!r} is missing (the pipeline needs it)")
        if names[cname] != ctype:
            raise _err(source, f"fields.{cname}.type", f"must be {ctype!r}, got {names[cname]!r}")
    return tuple(out)


def _parse_devices(source: str, raw: Any) -> KnownDevices:
    m = _mapping(source, "devices", raw, {"ranges", "ids"})
    ranges: list[tuple[int, int]] = []
    raw_ranges = m.get("ranges", []) or []
    if not isinstance(raw_ranges, Sequence) or isinstance(raw_ranges, str):
        raise _err(source, "devices.ranges", "must be a list of [low, high] pairs")
    for i, r in enumerate(raw_ranges):
        key = f"devices.ranges[{i}]"
        if not isinstance(r, Sequence) or isinstance(r, str) or len(r) != 2:
            raise _err(source, key, f"must be a [low, high] pair, got {r!r}")
        lo, hi = _int(source, key, r[0]), _int(source, key, r[1])
        if lo > hi:
            raise _err(source, key, f"low ({lo}) is greater than high ({hi})")
        if lo < INT32_MIN or hi > INT32_MAX:
            raise _err(source, key, "device ids are 32-bit integers")
        ranges.append((lo, hi))
    raw_ids = m.get("ids", []) or []
    if not isinstance(raw_ids, Sequence) or isinstance(raw_ids, str):
        raise _err(source, "devices.ids", "must be a list of integers")
    ids = frozenset(_int(source, f"devices.ids[{i}]", v) for i, v in enumerate(raw_ids))
    if not ranges and not ids:
        raise _err(source, "devices", "no known devices: give ranges and/or ids")
    return KnownDevices(tuple(ranges), ids)


def _parse_plausibility(source: str, raw: Any, fields: tuple[FieldRule, ...]) -> tuple[PlausibilityRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise _err(source, "consistency.plausibility", "must be a list of rules")
    types = {f.name: f.type for f in fields}
    out: list[PlausibilityRule] = []
    seen: set[str] = set()
    for i, rule in enumerate(raw):
        key = f"consistency.plausibility[{i}]"
        r = _mapping(source, key, rule, {"name", "description", "when"})
        name = _req(source, r, "name", key + ".")
        if not isinstance(name, str) or not name:
            raise _err(source, key + ".name", "must be a non-empty string")
        if name in seen:
            raise _err(source, key + ".name", f"duplicate rule name {name!r}")
        seen.add(name)
        when = _req(source, r, "when", key + ".")
        if not isinstance(when, Sequence) or isinstance(when, str) or not when:
            raise _err(source, key + ".when", "must be a non-empty list of conditions")
        conds: list[Condition] = []
        for j, c in enumerate(when):
            ck = f"{key}.when[{j}]"
            cm = _mapping(source, ck, c, {"field", "op", "value"})
            fname = _req(source, cm, "field", ck + ".")
            if fname not in types:
                raise _err(source, ck + ".field", f"unknown field {fname!r}")
            op = _req(source, cm, "op", ck + ".")
            if op not in OPS:
                raise _err(source, ck + ".op", f"must be one of {list(OPS)}, got {op!r}")
            value = _req(source, cm, "value", ck + ".")
            ftype = types[fname]
            if ftype == "boolean":
                if not isinstance(value, bool):
                    raise _err(source, ck + ".value", f"{fname} is boolean; value must be true/false")
                if op not in ("==", "!="):
                    raise _err(source, ck + ".op", "boolean fields only support == and !=")
                conds.append(Condition(fname, op, value))
            elif ftype in ("number", "integer"):
                conds.append(Condition(fname, op, _num(source, ck + ".value", value)))
            else:
                raise _err(source, ck + ".field", f"conditions on {ftype} fields are not supported")
        out.append(PlausibilityRule(name, tuple(conds), str(r.get("description", ""))))
    return tuple(out)


def _parse_dispositions(source: str, raw: Any) -> dict[ReasonCode, Disposition]:
    out = dict(DEFAULT_DISPOSITIONS)
    if raw is None:
        return out
    m = _mapping(source, "dispositions", raw)
    for k, v in m.items():
        key = f"dispositions.{k}"
        try:
            reason = ReasonCode(k)
        except ValueError:
            raise _err(source, key, "unknown reason code") from None
        if reason not in CONFIGURABLE:
            raise _err(
                source,
                key,
                f"the disposition of {reason.value} is fixed; "
                f"configurable: {sorted(r.value for r in CONFIGURABLE)}",
            )
        if v not in (Disposition.DEAD_LETTER.value, Disposition.FLAG.value):
            raise _err(source, key, f"must be 'dead_letter' or 'flag', got {v!r}")
        out[reason] = Disposition(v)
    return out


def _parse_anomaly(source: str, raw: Any, fields: tuple[FieldRule, ...]) -> AnomalyRules:
    m = _mapping(
        source, "anomaly", raw, {"signals", "ewm_alpha", "z_threshold", "warmup_records", "min_stddev"}
    )
    numeric = {f.name for f in fields if f.type == "number"}
    signals = _req(source, m, "signals", "anomaly.")
    if not isinstance(signals, Sequence) or isinstance(signals, str) or not signals:
        raise _err(source, "anomaly.signals", "must be a non-empty list of number fields")
    for s in signals:
        if s not in numeric:
            raise _err(source, "anomaly.signals", f"{s!r} is not a number field")
    alpha = _num(source, "anomaly.ewm_alpha", _req(source, m, "ewm_alpha", "anomaly."))
    if not 0.0 < alpha <= 1.0:
        raise _err(source, "anomaly.ewm_alpha", f"must be in (0, 1], got {alpha}")
    z = _num(source, "anomaly.z_threshold", _req(source, m, "z_threshold", "anomaly."))
    if z <= 0:
        raise _err(source, "anomaly.z_threshold", "must be > 0")
    warm = _int(source, "anomaly.warmup_records", m.get("warmup_records", 0), minimum=0)
    ms_raw = _mapping(source, "anomaly.min_stddev", m.get("min_stddev", {}) or {})
    min_std: dict[str, float] = {}
    for s in signals:
        v = _num(source, f"anomaly.min_stddev.{s}", ms_raw.get(s, 1e-6))
        if v <= 0:
            raise _err(source, f"anomaly.min_stddev.{s}", "must be > 0")
        min_std[s] = v
    extra = sorted(set(ms_raw) - set(signals))
    if extra:
        raise _err(source, "anomaly.min_stddev", f"keys {extra} are not in anomaly.signals")
    return AnomalyRules(tuple(signals), alpha, z, warm, min_std)


def rules_from_dict(data: Any, source: str = "<dict>") -> QualityRules:
    """Validate a parsed rules document and build :class:`QualityRules`."""
    m = _mapping(source, "<top level>", data, _TOP_KEYS)
    version = _req(source, m, "rules_version")
    if not isinstance(version, str | int | float) or isinstance(version, bool) or not str(version).strip():
        raise _err(source, "rules_version", "must be a non-empty string")
    msg = _mapping(source, "message", _req(source, m, "message"), {"max_bytes"})
    max_bytes = _int(source, "message.max_bytes", _req(source, msg, "max_bytes", "message."), minimum=64)
    fields = _parse_fields(source, _req(source, m, "fields"))
    devices = _parse_devices(source, _req(source, m, "devices"))
    cons = _mapping(
        source, "consistency", _req(source, m, "consistency"), {"duplicate_watermark_seconds", "plausibility"}
    )
    wm = _int(
        source,
        "consistency.duplicate_watermark_seconds",
        _req(source, cons, "duplicate_watermark_seconds", "consistency."),
        minimum=1,
    )
    plaus = _parse_plausibility(source, cons.get("plausibility"), fields)
    tl = _mapping(
        source,
        "timeliness",
        _req(source, m, "timeliness"),
        {"max_lateness_seconds", "max_future_skew_seconds"},
    )
    late = _int(
        source,
        "timeliness.max_lateness_seconds",
        _req(source, tl, "max_lateness_seconds", "timeliness."),
        minimum=1,
    )
    fut = _int(
        source,
        "timeliness.max_future_skew_seconds",
        _req(source, tl, "max_future_skew_seconds", "timeliness."),
        minimum=0,
    )
    if wm < late + fut:
        raise _err(
            source,
            "consistency.duplicate_watermark_seconds",
            f"({wm}) must be >= timeliness.max_lateness_seconds + max_future_skew_seconds ({late + fut}), "
            "otherwise a duplicate that passes the timeliness checks could be forgotten",
        )
    disp = _parse_dispositions(source, m.get("dispositions"))
    dup = _mapping(source, "duplicates", m.get("duplicates", {}) or {}, {"dead_letter_copy"})
    dlc = dup.get("dead_letter_copy", True)
    if not isinstance(dlc, bool):
        raise _err(source, "duplicates.dead_letter_copy", "must be true or false")
    anomaly = _parse_anomaly(source, _req(source, m, "anomaly"), fields)
    fp = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return QualityRules(
        rules_version=str(version).strip(),
        max_message_bytes=max_bytes,
        fields=fields,
        devices=devices,
        duplicate_watermark_seconds=wm,
        plausibility=plaus,
        max_lateness_seconds=late,
        max_future_skew_seconds=fut,
        dispositions=disp,
        duplicates_dead_letter_copy=dlc,
        anomaly=anomaly,
        source=source,
        fingerprint=fp,
    )


def load_rules(path: str | os.PathLike[str] | None = None) -> QualityRules:
    """Load and validate the rules (explicit path > $FMS_QUALITY_RULES > packaged default)."""
    p = _rules_path(path)
    try:
        text = _read_rules(p)
    except FileNotFoundError:
        raise RulesError(f"quality rules {p}: file not found") from None
    except OSError as e:
        raise RulesError(f"quality rules {p}: cannot read: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RulesError(f"quality rules {p}: invalid YAML: {e}") from None
    if data is None:
        raise RulesError(f"quality rules {p}: file is empty")
    return rules_from_dict(data, source=str(p))


def load_rules_text(path: str | os.PathLike[str] | None = None) -> str:
    """The raw text of the rules file (shipped to Spark executors as-is)."""
    return _read_rules(_rules_path(path))


def _rules_path(path: str | os.PathLike[str] | None) -> Path:
    return Path(path) if path is not None else Path(os.environ.get(RULES_ENV) or DEFAULT_RULES_PATH)


def _read_rules(p: Path) -> str:
    """The file's text; the packaged default is read as package data, so that it is found when
    fms_jobs is imported from a zip (spark-submit --py-files puts that zip first on the path)."""
    if p == DEFAULT_RULES_PATH:
        # __package__, not __name__: Python 3.11 reads resources of a package only, and the
        # default file sits beside this module in fms_jobs.quality
        return resources.files(__package__).joinpath(DEFAULT_RULES_PATH.name).read_text(encoding="utf-8")
    return p.read_text(encoding="utf-8")


__all__ = [
    "DEFAULT_RULES_PATH",
    "AnomalyRules",
    "Condition",
    "FieldRule",
    "KnownDevices",
    "PlausibilityRule",
    "QualityRules",
    "RulesError",
    "load_rules",
    "rules_from_dict",
]

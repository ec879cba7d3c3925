"""Settings files of the long-running jobs: the one loader the collector and the stream share.

A job's settings are a tree of dataclasses with defaults. :func:`merge_file` lays a YAML file
over it (unknown keys are errors that name the key), :func:`apply_overrides` lays the command
line's ``section.key`` values over that, and :func:`sasl_password` finds the Kafka password.
:class:`KafkaConnection` holds the connection and security keys both jobs accept under
``kafka:``, so one role template vocabulary serves both.

Each job passes its own error class (``ConfigError``, ``StreamConfigError``) and names its own
file in messages, so callers and operators see the same errors as before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

PASSWORD_ENV = "FMS_KAFKA_SASL_PASSWORD"


@dataclass
class KafkaConnection:
    """Where the brokers are and how to authenticate: the same keys for every Kafka client job."""

    bootstrap_servers: str = "127.0.0.1:9092"
    # platform.yml topics.raw; the stand-alone default (Ansible renders the contract's name
    # into the config; tests/static/test_platform_contract.py holds the two equal)
    topic: str = "fms.sensor.raw"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: str | None = None
    sasl_password_file: str | None = None
    ssl_ca_location: str | None = None  # PEM file


def sasl_password(k: KafkaConnection, error: type[ValueError]) -> str | None:
    """The password given inline, else read from ``sasl_password_file``, else ``$FMS_KAFKA_SASL_PASSWORD``."""
    if k.sasl_password:
        return k.sasl_password
    if k.sasl_password_file:
        try:
            return Path(k.sasl_password_file).read_text(encoding="utf-8").strip() or None
        except OSError as e:
            raise error(f"kafka.sasl_password_file: cannot read {k.sasl_password_file}: {e}") from None
    return os.environ.get(PASSWORD_ENV) or None


def merge_file(cfg: Any, path: str | os.PathLike[str], what: str, error: type[ValueError]) -> None:
    """Lay the YAML mapping at ``path`` over the dataclass tree ``cfg``; ``what`` names the file in errors."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise error(f"{what} {path}: file not found") from None
    except yaml.YAMLError as e:
        raise error(f"{what} {path}: invalid YAML: {e}") from None
    if not isinstance(data, Mapping):
        raise error(f"{what} {path}: must be a mapping")
    _merge(cfg, data, "", error)


def _merge(obj: Any, data: Mapping[str, Any], where: str, error: type[ValueError]) -> None:
    names = {f.name for f in fields(obj)}
    for key, value in data.items():
        if key not in names:
            raise error(f"{where}{key}: unknown setting; known: {sorted(names)}")
        current = getattr(obj, key)
        if is_dataclass(current) and not isinstance(current, type):
            if not isinstance(value, Mapping):
                raise error(f"{where}{key}: must be a mapping")
            _merge(current, value, f"{where}{key}.", error)
        else:
            setattr(obj, key, value)


def apply_overrides(cfg: Any, overrides: Mapping[str, Any] | None, error: type[ValueError]) -> None:
    """Set ``{"section.key": value}`` (command-line options) on ``cfg``; ``None`` means not given."""
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node: Any = cfg
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = getattr(node, part)
        if not hasattr(node, parts[-1]):
            raise error(f"unknown override {dotted}")
        setattr(node, parts[-1], value)

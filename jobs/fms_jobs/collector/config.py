"""Collector configuration: a YAML file, overridden by environment and command line.

Example (``/etc/fms/collector.yml``)::

    source: http                       # http | simulator
    kafka:
      bootstrap_servers: "kafka-1:9093,kafka-2:9093"
      topic: fms.sensor.raw
      security_protocol: SASL_SSL
      sasl_mechanism: SCRAM-SHA-512
      sasl_username: fms-collector
      sasl_password_file: /etc/fms/secrets/collector.password   # or $FMS_KAFKA_SASL_PASSWORD
      ssl_ca_location: /etc/fms/tls/ca.crt
      compression: zstd
      linger_ms: 20
    http:
      base_url: "http://fms-api.internal:8080"
      url_template: "{base_url}/devices/{device_id}/latest"
      devices: "1-1000"                # list, "a-b" ranges, or "discover" (GET {base_url}/devices)
      interval_s: 10
    simulator:
      devices: 1000
      rate: 5000                       # records/s (sets each device's interval = devices / rate)
      bad_share: 0.01
    metrics:
      port: 9310

Secrets never live in the file in clear when it can be avoided: the SASL
password comes from ``sasl_password_file`` or ``$FMS_KAFKA_SASL_PASSWORD``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fms_jobs.settings import PASSWORD_ENV, KafkaConnection, apply_overrides, merge_file, sasl_password
from fms_jobs.simulator.faults import BadKind

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
COMPRESSIONS = ("zstd", "lz4", "snappy", "gzip", "none")


class ConfigError(ValueError):
    pass


@dataclass
class KafkaConfig(KafkaConnection):
    """The shared connection keys (fms_jobs.settings) plus the producer's own."""

    client_id: str = "fms-collector"
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_endpoint_identification: bool = True
    acks: str = "all"
    enable_idempotence: bool = True
    compression: str = "zstd"
    linger_ms: int = 20
    batch_size: int = 1_000_000
    batch_num_messages: int = 10_000
    message_timeout_ms: int = 300_000
    queue_max_messages: int = 500_000
    queue_max_kbytes: int = 1_048_576
    extra: dict[str, Any] = field(default_factory=dict)  # passed to librdkafka as-is


@dataclass
class HttpConfig:
    base_url: str = "http://127.0.0.1:8080"
    url_template: str = "{base_url}/devices/{device_id}/latest"
    devices: Any = "1-5"  # list of ids, "a-b,c" ranges, or "discover"
    interval_s: float = 10.0
    timeout_s: float = 3.0
    retries: int = 3
    backoff_base_s: float = 0.2
    backoff_max_s: float = 10.0
    breaker_failure_threshold: int = 5
    breaker_reset_s: float = 30.0
    breaker_half_open_calls: int = 1
    workers: int = 16
    skip_unchanged: bool = True


@dataclass
class SimConfig:
    devices: int = 5
    first_device_id: int = 1
    interval_s: float | None = 10.0
    rate: float | None = None  # records/s; overrides interval_s
    seed: int = 42
    bad_share: float = 0.0
    bad_kinds: dict[str, float] | None = None
    failure_rate_per_day: float = 0.5
    # The simulated devices' clock runs this far ahead (negative: behind) of the host's: a drill for a
    # producer with a wrong clock (its readings must be dead-lettered, the fleet must keep flowing).
    clock_offset_s: float = 0.0


@dataclass
class MetricsConfig:
    port: int = 9310
    addr: str = "0.0.0.0"


@dataclass
class CollectorConfig:
    source: str = "simulator"
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    simulator: SimConfig = field(default_factory=SimConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    duration_s: float | None = None  # stop after this long (None: run until signalled)
    max_records: int | None = None  # stop after this many records were handed to Kafka
    rules_path: str | None = None
    log_level: str = "INFO"

    def validate(self) -> None:
        if self.source not in ("http", "simulator"):
            raise ConfigError(f"source must be 'http' or 'simulator', got {self.source!r}")
        k = self.kafka
        if not k.bootstrap_servers:
            raise ConfigError("kafka.bootstrap_servers is required")
        if k.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(f"kafka.security_protocol must be one of {SECURITY_PROTOCOLS}")
        if k.security_protocol.startswith("SASL"):
            if k.sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigError(f"kafka.sasl_mechanism must be one of {SASL_MECHANISMS}")
            if not k.sasl_username:
                raise ConfigError("kafka.sasl_username is required with SASL")
            if not resolve_password(k):
                raise ConfigError(
                    f"kafka SASL password missing: set kafka.sasl_password_file or ${PASSWORD_ENV}"
                )
        if k.compression not in COMPRESSIONS:
            raise ConfigError(f"kafka.compression must be one of {COMPRESSIONS}")
        if k.acks != "all" and k.enable_idempotence:
            raise ConfigError("kafka.enable_idempotence requires acks=all")
        if self.source == "http":
            h = self.http
            if "{device_id}" not in h.url_template:
                raise ConfigError("http.url_template must contain {device_id}")
            if h.interval_s <= 0 or h.timeout_s <= 0 or h.retries < 0 or h.workers < 1:
                raise ConfigError("http: interval_s and timeout_s must be > 0, retries >= 0, workers >= 1")
            parse_device_ids(h.devices)
        else:
            s = self.simulator
            if s.devices < 1:
                raise ConfigError("simulator.devices must be >= 1")
            if s.rate is not None and s.rate <= 0:
                raise ConfigError("simulator.rate must be > 0")
            if s.rate is None and (s.interval_s is None or s.interval_s <= 0):
                raise ConfigError("simulator: give rate or a positive interval_s")
            if not 0 <= s.bad_share <= 1:
                raise ConfigError("simulator.bad_share must be within [0, 1]")
            if s.bad_kinds is not None:
                known = {k.value for k in BadKind}
                unknown = sorted(set(s.bad_kinds) - known)
                if unknown:
                    raise ConfigError(
                        f"simulator.bad_kinds: unknown kind(s) {unknown}; known: {sorted(known)}"
                    )
                if any(w < 0 for w in s.bad_kinds.values()) or sum(s.bad_kinds.values()) <= 0:
                    raise ConfigError("simulator.bad_kinds: weights must be >= 0 with a positive sum")
        if not 0 <= self.metrics.port <= 65535:
            raise ConfigError("metrics.port must be a TCP port (0 disables)")


def resolve_password(k: KafkaConfig) -> str | None:
    return sasl_password(k, ConfigError)


def parse_device_ids(spec: Any) -> list[int] | None:
    """[1, 2] / "1-1000" / "1-5,9,20-22" -> ids; "discover" -> None (ask the API)."""
    if spec == "discover":
        return None
    ids: list[int] = []
    if isinstance(spec, int) and not isinstance(spec, bool):
        return [spec]
    if isinstance(spec, list):
        for v in spec:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"http.devices: {v!r} is not an integer id")
            ids.append(v)
    elif isinstance(spec, str):
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            try:
                a, b = (int(lo), int(hi)) if sep else (int(part), int(part))
            except ValueError:
                raise ConfigError(f"http.devices: cannot parse {part!r}") from None
            if a > b:
                raise ConfigError(f"http.devices: range {part!r} is reversed")
            ids.extend(range(a, b + 1))
    else:
        raise ConfigError(f"http.devices: unsupported value {spec!r}")
    if not ids:
        raise ConfigError("http.devices: no device ids")
    return list(dict.fromkeys(ids))


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None
) -> CollectorConfig:
    """File (if given) > ``$FMS_KAFKA_BOOTSTRAP_SERVERS`` > command-line overrides, then validate."""
    cfg = CollectorConfig()
    if path is not None:
        merge_file(cfg, Path(path), "collector config", ConfigError)
    env_bootstrap = os.environ.get("FMS_KAFKA_BOOTSTRAP_SERVERS")
    if env_bootstrap:
        cfg.kafka.bootstrap_servers = env_bootstrap
    apply_overrides(cfg, overrides, ConfigError)
    cfg.validate()
    return cfg

"""Streaming job configuration (YAML file + command line).

Example (``/etc/fms/stream.yml``)::

    kafka:
      bootstrap_servers: "kafka-1:9093,kafka-2:9093,kafka-3:9093"
      topic: fms.sensor.raw
      dlq_topic: fms.sensor.dlq
      security_protocol: SASL_SSL
      sasl_mechanism: SCRAM-SHA-512
      sasl_username: fms-stream
      sasl_password_file: /etc/fms/secrets/stream.password    # or $FMS_KAFKA_SASL_PASSWORD
      ssl_ca_location: /etc/fms/tls/ca.crt                    # PEM
      max_offsets_per_trigger: 500000
    paths:
      processed: hdfs://namenode:8020/fms/processed
      dlq: hdfs://namenode:8020/fms/dlq
      checkpoint: hdfs://namenode:8020/fms/checkpoints/stream
    trigger:
      processing_time: "2 seconds"
    metrics:
      port: 9311
    stall_restart_seconds: 900    # no progress this long: exit 2, systemd restarts the job
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fms_jobs.settings import PASSWORD_ENV, KafkaConnection, apply_overrides, merge_file
from fms_jobs.settings import sasl_password as _sasl_password


class StreamConfigError(ValueError):
    pass


@dataclass
class StreamKafka(KafkaConnection):
    """The shared connection keys (fms_jobs.settings) plus the stream's own."""

    # platform.yml topics.dlq; the stand-alone default, held equal like topics.raw
    dlq_topic: str = "fms.sensor.dlq"
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int | None = 500_000
    min_partitions: int | None = None
    fail_on_data_loss: bool = True
    extra: dict[str, str] = field(default_factory=dict)  # any kafka.* client setting


@dataclass
class StreamPaths:
    processed: str = "/tmp/fms/processed"
    dlq: str = "/tmp/fms/dlq"
    checkpoint: str = "/tmp/fms/checkpoints/stream"


@dataclass
class StreamTrigger:
    processing_time: str | None = "2 seconds"
    available_now: bool = False


@dataclass
class StreamMetricsConfig:
    port: int = 9311
    addr: str = "0.0.0.0"
    per_device: bool = True


@dataclass
class StreamConfig:
    kafka: StreamKafka = field(default_factory=StreamKafka)
    paths: StreamPaths = field(default_factory=StreamPaths)
    trigger: StreamTrigger = field(default_factory=StreamTrigger)
    metrics: StreamMetricsConfig = field(default_factory=StreamMetricsConfig)
    source: str = "kafka"  # kafka | parquet (files with the Kafka source's schema; replay/testing)
    source_path: str | None = None
    dlq_topic_enabled: bool = True
    dlq_topic_max_value_bytes: int = (
        65_536  # original bytes beyond this are truncated in the topic (kept in files)
    )
    output_files_per_batch: int = 1
    rules_path: str | None = None
    app_name: str = "fms-stream"
    master: str | None = None
    spark_conf: dict[str, str] = field(default_factory=dict)
    query_name: str = "fms-stream"
    log_level: str = "INFO"
    # no micro-batch progress for this long: the driver exits 2 and systemd restarts it from
    # the checkpoint (streaming/watchdog.py); 0 disables
    stall_restart_seconds: int = 900

    def validate(self) -> None:
        k = self.kafka
        if self.source not in ("kafka", "parquet"):
            raise StreamConfigError("source must be kafka or parquet")
        if self.source == "parquet" and not self.source_path:
            raise StreamConfigError("source_path is required with source: parquet")
        if self.source == "kafka" and not k.bootstrap_servers:
            raise StreamConfigError("kafka.bootstrap_servers is required")
        if k.security_protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise StreamConfigError(
                "kafka.security_protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            )
        if k.security_protocol.startswith("SASL"):
            if not k.sasl_username:
                raise StreamConfigError("kafka.sasl_username is required with SASL")
            if not sasl_password(k):
                raise StreamConfigError(
                    f"kafka SASL password missing: set kafka.sasl_password_file or ${PASSWORD_ENV}"
                )
        if k.max_offsets_per_trigger is not None and k.max_offsets_per_trigger < 1:
            raise StreamConfigError("kafka.max_offsets_per_trigger must be >= 1")
        for name in ("processed", "dlq", "checkpoint"):
            if not getattr(self.paths, name):
                raise StreamConfigError(f"paths.{name} is required")
        if (
            len(
                {
                    self.paths.processed.rstrip("/"),
                    self.paths.dlq.rstrip("/"),
                    self.paths.checkpoint.rstrip("/"),
                }
            )
            < 3
        ):
            raise StreamConfigError("paths.processed, paths.dlq and paths.checkpoint must differ")
        if not self.trigger.available_now and not self.trigger.processing_time:
            raise StreamConfigError("trigger: set processing_time or available_now")
        if self.output_files_per_batch < 1:
            raise StreamConfigError("output_files_per_batch must be >= 1")
        stall = self.stall_restart_seconds
        if isinstance(stall, bool) or not isinstance(stall, int) or stall < 0:
            raise StreamConfigError("stall_restart_seconds must be >= 0 (0 disables the stall watchdog)")


def sasl_password(k: StreamKafka) -> str | None:
    return _sasl_password(k, StreamConfigError)


def kafka_client_options(k: StreamKafka) -> dict[str, str]:
    """``kafka.*`` options for Spark's Kafka source and sink (security included)."""
    opts = {"kafka.bootstrap.servers": k.bootstrap_servers, "kafka.security.protocol": k.security_protocol}
    if k.security_protocol.startswith("SASL"):
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if k.sasl_mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        pw = (sasl_password(k) or "").replace("\\", "\\\\").replace('"', '\\"')
        user = (k.sasl_username or "").replace("\\", "\\\\").replace('"', '\\"')
        opts["kafka.sasl.mechanism"] = k.sasl_mechanism
        opts["kafka.sasl.jaas.config"] = f'{module} required username="{user}" password="{pw}";'
    if k.security_protocol in ("SSL", "SASL_SSL") and k.ssl_ca_location:
        opts["kafka.ssl.truststore.type"] = "PEM"
        opts["kafka.ssl.truststore.location"] = k.ssl_ca_location
    for key, value in k.extra.items():
        opts[key if key.startswith("kafka.") else f"kafka.{key}"] = str(value)
    return opts


def librdkafka_config(k: StreamKafka, client_id: str = "fms-stream") -> dict[str, Any]:
    """The same connection and security settings for a confluent-kafka (librdkafka) client.

    ``kafka.extra`` is not applied: its keys are Java client settings for Spark's Kafka
    source and sink, and many of them mean nothing (or something else) to librdkafka.
    """
    conf: dict[str, Any] = {
        "bootstrap.servers": k.bootstrap_servers,
        "security.protocol": k.security_protocol,
        "client.id": client_id,
    }
    if k.security_protocol.startswith("SASL"):
        conf["sasl.mechanism"] = k.sasl_mechanism
        conf["sasl.username"] = k.sasl_username
        conf["sasl.password"] = sasl_password(k)
    if k.security_protocol in ("SSL", "SASL_SSL") and k.ssl_ca_location:
        conf["ssl.ca.location"] = k.ssl_ca_location
    return conf


def load_stream_config(path: str | None = None, overrides: Mapping[str, Any] | None = None) -> StreamConfig:
    """File (if given) > command-line overrides, then validate."""
    cfg = StreamConfig()
    if path:
        merge_file(cfg, path, "stream config", StreamConfigError)
    apply_overrides(cfg, overrides, StreamConfigError)
    cfg.validate()
    return cfg

"""The Kafka side of the collector: an idempotent, batching, compressing confluent-kafka producer.

Every record is keyed by its DeviceId (so one device's readings stay in one
partition, in order) and carries its creation time twice: as the Kafka record
timestamp (CreateTime) and in the ``fms-created-ms`` header (ASCII epoch ms).
The streaming job measures end-to-end latency from that header to the commit of
the micro-batch that stored the row; the header survives a topic configured
with LogAppendTime, the timestamp is what the timeliness rule calls "arrival".
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from fms_jobs.collector.config import KafkaConfig, resolve_password
from fms_jobs.collector.metrics import CollectorMetrics
from fms_jobs.quality.schema import CREATED_HEADER, SOURCE_HEADER

log = logging.getLogger(__name__)


def producer_config(k: KafkaConfig) -> dict[str, Any]:
    """librdkafka settings for the collector (pure function; unit-tested)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": k.bootstrap_servers,
        "client.id": k.client_id,
        "acks": k.acks,
        "enable.idempotence": k.enable_idempotence,
        # idempotence keeps order with up to 5 in-flight requests per connection
        "max.in.flight.requests.per.connection": 5,
        "compression.type": k.compression,
        "linger.ms": k.linger_ms,
        "batch.size": k.batch_size,
        "batch.num.messages": k.batch_num_messages,
        "message.timeout.ms": k.message_timeout_ms,
        "queue.buffering.max.messages": k.queue_max_messages,
        "queue.buffering.max.kbytes": k.queue_max_kbytes,
        # Java-compatible key hashing: the same DeviceId lands in the same partition whichever client wrote it
        "partitioner": "murmur2_random",
        "security.protocol": k.security_protocol,
    }
    if k.security_protocol.startswith("SASL"):
        conf["sasl.mechanism"] = k.sasl_mechanism
        conf["sasl.username"] = k.sasl_username
        conf["sasl.password"] = resolve_password(k)
    if k.security_protocol in ("SSL", "SASL_SSL"):
        if k.ssl_ca_location:
            conf["ssl.ca.location"] = k.ssl_ca_location
        if k.ssl_certificate_location:
            conf["ssl.certificate.location"] = k.ssl_certificate_location
        if k.ssl_key_location:
            conf["ssl.key.location"] = k.ssl_key_location
        conf["ssl.endpoint.identification.algorithm"] = "https" if k.ssl_endpoint_identification else "none"
    conf.update(k.extra)
    return conf


def redacted(conf: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if "password" in k or "secret" in k else v) for k, v in conf.items()}


class RecordProducer:
    """Thin wrapper adding headers, backpressure and metrics to confluent_kafka.Producer."""

    def __init__(
        self,
        cfg: KafkaConfig,
        metrics: CollectorMetrics,
        producer_factory: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        conf = producer_config(cfg)
        conf["error_cb"] = self._on_error
        if producer_factory is None:
            from confluent_kafka import Producer

            producer_factory = Producer
        self._p = producer_factory(conf)
        self.delivered = 0
        self.failed = 0
        self.produced = 0
        self.fatal: str | None = None
        log.info("kafka producer: %s", redacted(producer_config(cfg)))

    def _on_error(self, err: Any) -> None:
        log.warning("kafka client error: %s", err)
        try:
            if err.fatal():
                self.fatal = str(err)
        except AttributeError:  # pragma: no cover - plain string errors
            pass

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            self.metrics.send_failures.inc()
            log.error("delivery failed: %s", err)
            return
        self.delivered += 1
        self.metrics.records_sent.inc()
        try:
            _, ts = msg.timestamp()
            if ts and ts > 0:
                self.metrics.delivery_latency.observe(max(0.0, time.time() - ts / 1000.0))
        except Exception:  # pragma: no cover - defensive: metrics must never break delivery
            pass

    def send(self, device_id: int | str, value: bytes, created_ms: int, source: str) -> None:
        """Queue one record; blocks (serving delivery reports) while the local queue is full."""
        headers = [(CREATED_HEADER, str(created_ms).encode()), (SOURCE_HEADER, source.encode())]
        key = str(device_id).encode()
        for _ in range(10_000):
            try:
                self._p.produce(
                    self.cfg.topic,
                    value=value,
                    key=key,
                    headers=headers,
                    timestamp=created_ms,
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:
                self._p.poll(0.05)
        else:  # pragma: no cover - the queue never drained in ~8 minutes
            raise RuntimeError("producer queue stayed full")
        self.produced += 1
        self.metrics.records_produced.inc()
        self._p.poll(0)

    def poll(self, timeout: float = 0.0) -> None:
        self._p.poll(timeout)
        with contextlib.suppress(TypeError):  # fakes without __len__
            self.metrics.queue_length.set(len(self._p))

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for outstanding deliveries; returns how many are still pending."""
        remaining = int(self._p.flush(timeout_s))
        self.metrics.queue_length.set(remaining)
        return remaining

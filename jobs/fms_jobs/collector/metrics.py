"""Prometheus metrics of the collector (names fixed by the monitoring contract; port 9310)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records_sent = Counter(
            "fms_collector_records_sent", "Records acknowledged by Kafka (acks=all)", registry=r
        )
        self.send_failures = Counter(
            "fms_collector_send_failures", "Records Kafka did not acknowledge (delivery error)", registry=r
        )
        self.api_duration = Histogram(
            "fms_collector_api_request_duration_seconds",
            "FMS API request duration (every attempt)",
            buckets=API_BUCKETS,
            registry=r,
        )
        self.api_errors = Counter(
            "fms_collector_api_errors",
            "FMS API attempts that failed, by reason (timeout, connection, http_5xx, http_4xx, breaker_open)",
            ["reason"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "fms_collector_circuit_breaker_state",
            "FMS API circuit breaker: 0 closed, 1 half-open, 2 open",
            registry=r,
        )
        self.bad_injected = Counter(
            "fms_collector_bad_records_injected",
            "Bad records the built-in simulator injected, by kind",
            ["kind"],
            registry=r,
        )
        self.records_produced = Counter(
            "fms_collector_records_produced", "Records handed to the Kafka producer", registry=r
        )
        self.unchanged_skipped = Counter(
            "fms_collector_unchanged_skipped",
            "API readings not re-sent because they equal the previous reading of the device",
            registry=r,
        )
        self.delivery_latency = Histogram(
            "fms_collector_delivery_latency_seconds",
            "Record creation to Kafka acknowledgement",
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.queue_length = Gauge(
            "fms_collector_producer_queue_length", "Records waiting in the producer", registry=r
        )
        self.target_rate = Gauge("fms_collector_target_rate", "Simulator target rate (records/s)", registry=r)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        if port:
            start_http_server(port, addr=addr, registry=self.registry)

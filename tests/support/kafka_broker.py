"""The tests' side of the loopback Kafka broker: the broker itself is fms_tools.fmsops.kafka_broker
(the benchmark runs it too); here is what only a test needs, a clean skip without Java, and a
broker JVM as light as the tools' one.

    from support import kafka_broker as kb

    def test_something(tmp_path):
        kb.require_java()
        with kb.KafkaBroker(tmp_path) as broker:
            ...
"""

from __future__ import annotations

from typing import Any

import pytest
from fms_tools.fmsops.kafka_broker import KafkaBroker as _KafkaBroker
from fms_tools.fmsops.kafka_broker import KafkaBrokerError, free_port, java_available, tools_jvm_env

__all__ = [
    "TEST_BROKER_JVM_OPTS",
    "KafkaBroker",
    "KafkaBrokerError",
    "free_port",
    "java_available",
    "require_java",
]

# A test's broker lives for one module and carries a few thousand records: the C1 compiler and the
# serial collector of the kafka role's tools (kafka_tools_jvm_opts) instead of Kafka's server JVM
# defaults (G1, C2) - measured on a start, 20,000 records in and out and 20 s idle: 16.6 -> 10.6
# CPU-seconds for the broker and its tools.
TEST_BROKER_JVM_OPTS = tools_jvm_env().get("KAFKA_JVM_PERFORMANCE_OPTS", "") + " -Djava.awt.headless=true"


class KafkaBroker(_KafkaBroker):
    """fms_tools' loopback broker with TEST_BROKER_JVM_OPTS unless a test passes its own jvm_opts."""

    def __init__(self, *args: Any, jvm_opts: str | None = TEST_BROKER_JVM_OPTS, **kwargs: Any) -> None:
        super().__init__(*args, jvm_opts=jvm_opts, **kwargs)


def require_java() -> None:
    """Skip the calling test when no Java runtime is installed."""
    if not java_available():
        pytest.skip("java is not installed (apt-get install openjdk-17-jre-headless): Kafka needs a JVM")

"""The tests' side of the loopback Kafka broker: the broker itself is fms_tools.fmsops.kafka_broker
(the benchmark runs it too); here is what only a test needs, a clean skip without Java.

    from support import kafka_broker as kb

    def test_something(tmp_path):
        kb.require_java()
        with kb.KafkaBroker(tmp_path) as broker:
            ...
"""

from __future__ import annotations

import pytest
from fms_tools.fmsops.kafka_broker import KafkaBroker, KafkaBrokerError, free_port, java_available

__all__ = ["KafkaBroker", "KafkaBrokerError", "free_port", "java_available", "require_java"]


def require_java() -> None:
    """Skip the calling test when no Java runtime is installed."""
    if not java_available():
        pytest.skip("java is not installed (apt-get install openjdk-17-jre-headless): Kafka needs a JVM")

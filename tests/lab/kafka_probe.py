"""Kafka's own delivery oracle on the lab: VerifiableProducer writes, an independent consumer reads back.

The probe runs on a broker host (where the Kafka tools are) as its own transient systemd unit,
so restarting or killing the kafka service there does not touch it. The producer writes a
dedicated topic (RF 3 where there are three brokers, the cluster's min ISR) with acks=all,
idempotence and unbounded retries, at a fixed rate, and stops by itself after ``max_s``.
``stop()`` ends it (SIGTERM: the tool flushes, then prints its totals), reads the topic back
from the beginning with a console consumer and reports what was acknowledged, what was read,
what is missing and what is there twice. Every acknowledged value must be read back exactly once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

from lab_support import host_ssh, must

PROBE_WORK = "/var/tmp/fms-kafka-probe"
PARTITIONS = 6


def kafka_shell_env() -> str:
    """The tools environment the kafka role writes on each broker (JAVA_HOME, heap, JVM options),
    exported for the Kafka tools run over ssh."""
    return "set -a; . /etc/kafka/tools.env; set +a; "


def admin_args(client: str) -> str:
    """--bootstrap-server/--command-config of the admin client the kafka role writes on each broker."""
    bootstrap = must(
        host_ssh(client, "sed -n 's/^bootstrap.servers=//p' /etc/kafka/admin.properties")
    ).strip()
    assert bootstrap, f"no bootstrap.servers in {client}:/etc/kafka/admin.properties"
    return f"--bootstrap-server {bootstrap} --command-config /etc/kafka/admin.properties"


@dataclass
class ProbeResult:
    acked: set[str]
    failed: list[dict]
    tool: dict
    ack_times_ms: list[int] = field(default_factory=list)  # when each ack came, sorted
    read: Counter = field(default_factory=Counter)

    @property
    def lost(self) -> set[str]:
        return self.acked - set(self.read)

    @property
    def duplicated(self) -> dict[str, int]:
        return {v: n for v, n in self.read.items() if n > 1}

    def summary(self) -> str:
        return (
            f"{len(self.acked)} acked, {len(self.failed)} failed sends, {sum(self.read.values())} read back, "
            f"{len(self.lost)} lost, {len(self.duplicated)} duplicated"
        )

    def figures(self) -> dict[str, int]:
        """The delivery figures a scenario's report carries."""
        return {
            "acked": len(self.acked),
            "failed_sends": len(self.failed),
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
        }

    def assert_nothing_lost_or_duplicated(self) -> None:
        assert self.tool and self.tool.get("acked") == len(self.acked), (self.tool, len(self.acked))
        assert not self.lost, f"{len(self.lost)} acknowledged records were lost, e.g. {sorted(self.lost)[:5]}"
        dup = self.duplicated
        assert not dup, f"{len(dup)} records are in the topic more than once, e.g. {sorted(dup.items())[:5]}"


class KafkaProbe:
    """A bounded VerifiableProducer (acks=all) on ``topic`` from broker host ``client``."""

    def __init__(self, client: str, topic: str, brokers: int, rate: int = 100, max_s: int = 1200) -> None:
        # A topic of this run's own: a run that failed before deleting its topic must not
        # leave records that read back as this run's duplicates (the values restart at 0).
        topic = f"{topic}.{time.strftime('%Y%m%d%H%M%S')}"
        self.client, self.topic, self.rate, self.max_s = client, topic, rate, max_s
        self.rf = min(3, brokers)
        self.unit = f"fms-probe-{topic.replace('.', '-')}"
        self.work = f"{PROBE_WORK}/{topic}"
        self.env = kafka_shell_env()
        self.admin = admin_args(client)
        self.bootstrap = self.admin.split()[1]

    def start(self, wait_s: float = 180) -> None:
        """Create the topic, start the producer and wait until it has records acknowledged."""
        props = "\n".join(
            [
                "acks=all",
                "enable.idempotence=true",
                "retries=2147483647",
                "delivery.timeout.ms=600000",
                "max.block.ms=600000",
            ]
        )
        prepare = (
            f"set -e; {self.env} rm -rf {self.work}; mkdir -p {self.work}; "
            f"cat /etc/kafka/admin.properties > {self.work}/producer.properties; "
            f"printf '%s\\n' '{props}' >> {self.work}/producer.properties; "
            f"timeout 120 /opt/kafka/bin/kafka-topics.sh {self.admin} --create --if-not-exists "
            f"--topic {self.topic} --partitions {PARTITIONS} --replication-factor {self.rf}"
        )
        must(host_ssh(self.client, prepare, timeout_s=180))
        start = (
            f"{self.env} systemd-run --unit={self.unit} -p RuntimeMaxSec={self.max_s + 120} "
            f"-p StandardOutput=file:{self.work}/producer.jsonl "
            f"-p StandardError=file:{self.work}/producer.err "
            '-E JAVA_HOME="$JAVA_HOME" -E KAFKA_HEAP_OPTS="$KAFKA_HEAP_OPTS" '
            '-E KAFKA_JVM_PERFORMANCE_OPTS="$KAFKA_JVM_PERFORMANCE_OPTS" '
            "/opt/kafka/bin/kafka-run-class.sh org.apache.kafka.tools.VerifiableProducer "
            f"--topic {self.topic} --bootstrap-server {self.bootstrap} "
            f"--producer.config {self.work}/producer.properties "
            f"--throughput {self.rate} --max-messages {self.rate * self.max_s}"
        )
        must(host_ssh(self.client, start))
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.acked_so_far() >= self.rate:
                return
            time.sleep(3)
        err = host_ssh(self.client, f"tail -20 {self.work}/producer.err {self.work}/producer.jsonl").stdout
        raise AssertionError(f"the probe producer did not start sending:\n{err}")

    def acked_so_far(self) -> int:
        out = host_ssh(
            self.client, f"grep -c producer_send_success {self.work}/producer.jsonl || true"
        ).stdout
        return int(out.strip() or 0)

    def stop(self) -> ProbeResult:
        """Stop the producer (it flushes, bounded by delivery.timeout.ms) and read the topic back."""
        stop = f"systemctl stop {self.unit}; systemctl reset-failed {self.unit} 2>/dev/null || true"
        host_ssh(self.client, stop, 700)
        events = [
            json.loads(line)
            for line in host_ssh(self.client, f"cat {self.work}/producer.jsonl", 120).stdout.splitlines()
            if line.startswith("{")
        ]
        result = ProbeResult(
            acked={e["value"] for e in events if e.get("name") == "producer_send_success"},
            failed=[e for e in events if e.get("name") == "producer_send_error"],
            tool=next((e for e in events if e.get("name") == "tool_data"), {}),
            ack_times_ms=sorted(e["timestamp"] for e in events if e.get("name") == "producer_send_success"),
        )
        # Everything in the topic, not only len(acked) records: a duplicate must show up. The
        # partitions' end offsets say how many records there are, so the reader stops at the last
        # one instead of idling out; its idle limit only bounds a reader that finds fewer.
        total = self.records_in_topic()
        consume = (
            f"{self.env} timeout 300 /opt/kafka/bin/kafka-console-consumer.sh "
            f"--bootstrap-server {self.bootstrap} "
            f"--consumer.config /etc/kafka/admin.properties --topic {self.topic} --from-beginning "
            f"--max-messages {total} --timeout-ms 60000 2>/dev/null"
        )
        result.read = Counter(host_ssh(self.client, consume, 360).stdout.split()) if total else Counter()
        return result

    def records_in_topic(self) -> int:
        """The sum of the topic's partitions' end offsets (a fresh topic, no compaction, no
        transactions: every offset is one record, duplicates included)."""
        shell = (
            f"{self.env} timeout 120 /opt/kafka/bin/kafka-run-class.sh org.apache.kafka.tools.GetOffsetShell "
            f"{self.admin} --topic {self.topic} --time -1"
        )
        lines = must(host_ssh(self.client, shell, 180)).split()
        offsets = [int(line.rsplit(":", 1)[1]) for line in lines if line.startswith(f"{self.topic}:")]
        assert len(offsets) == PARTITIONS, f"want {PARTITIONS} end offsets of {self.topic}: {lines}"
        return sum(offsets)

    def delete_topic(self) -> None:
        delete = (
            f"{self.env} timeout 120 /opt/kafka/bin/kafka-topics.sh {self.admin} "
            f"--delete --topic {self.topic}"
        )
        host_ssh(self.client, delete, 180)

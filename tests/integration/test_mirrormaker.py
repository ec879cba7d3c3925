"""MirrorMaker 2 (roles/mirrormaker) between two real Kafka brokers on loopback.

Two single-node KRaft brokers stand for the primary and the DR cluster. The role's
mm2.properties template is rendered by Ansible itself (the template module, with the
role's defaults and the platform contract as variables), and MM2 runs in dedicated mode
exactly as the role's unit starts it: kafka-run-class.sh org.apache.kafka.connect.mirror.MirrorMaker
--clusters <target>. The brokers use their PLAINTEXT listener (the role's TLS + SCRAM
settings are rendered for SASL_SSL only; loopback TLS/SCRAM is not exercised here).

Proven, bounded by deadlines:
  - every acked record reaches the target under the same topic name, in the same partition,
    in order, once;
  - a consumer group's committed offsets on the source are translated onto the target
    (checkpoints + sync.group.offsets): a consumer there resumes where the source left off;
  - SIGKILL of MM2 mid-stream and a restart lose nothing, and with exactly-once source
    support (read_committed on the target) deliver nothing twice.
The measured replication latency (target append time - source append time) is printed.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fmsops import platform_contract
from support import kafka_broker as kb

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "mirrormaker"
BIN = Path(sys.executable).parent
CONTRACT = platform_contract.load()
RAW = CONTRACT.topic("raw").name
DLQ = CONTRACT.topic("dlq").name
SOURCE, TARGET = "primary", "dr"  # platform.yml stacks: dr's peer is primary
PARTITIONS = 3
DEVICES = 24
GROUP = "fms-mm2-proof"  # under the contract's fms- consumer group prefix


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[kb.KafkaBroker, kb.KafkaBroker]]:
    kb.require_java()
    base = tmp_path_factory.mktemp("mm2")
    home = kb.install_kafka(base / "dist")
    props = {"auto.create.topics.enable": "false"}
    with (
        kb.KafkaBroker(base / SOURCE, kafka_home=home, heap="384m", properties=props) as source,
        kb.KafkaBroker(base / TARGET, kafka_home=home, heap="384m", properties=props) as target,
    ):
        # As the kafka role creates them on either stack (broker append time on the raw topic).
        for broker in (source, target):
            broker.create_topic(RAW, PARTITIONS, {"message.timestamp.type": "LogAppendTime"})
            broker.create_topic(DLQ, 1)
        yield source, target


def render_properties(tmp_path: Path, source: kb.KafkaBroker, target: kb.KafkaBroker) -> Path:
    """The role's template through ansible-playbook, with the role's defaults and the contract."""
    dest = tmp_path / "mm2.properties"
    overrides = {
        "fms_stack_role": TARGET,
        "fms_environment": "test",
        "mirrormaker_source_bootstrap_servers": source.bootstrap,
        "mirrormaker_target_bootstrap_servers": target.bootstrap,
        "mirrormaker_security_protocol": "PLAINTEXT",
        "mirrormaker_source_password": "",
        "mirrormaker_target_password": "",
        "mirrormaker_replication_factor": 1,
        "mirrormaker_rest_address": "127.0.0.1",
        "mirrormaker_rest_advertised_host": "127.0.0.1",
        "mirrormaker_rest_port": kb.free_port(),
        "fms_ca_cert_path": "/nonexistent/ca.crt",
        "ansible_python_interpreter": sys.executable,
    }
    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "vars_files": [
                str(REPO / "ansible" / "group_vars" / "all.yml"),
                str(ROLE / "defaults" / "main.yml"),
            ],
            "tasks": [
                {"ansible.builtin.assert": {"that": ["mirrormaker_enabled | bool"]}},
                {
                    "ansible.builtin.template": {
                        "src": str(ROLE / "templates" / "mm2.properties.j2"),
                        "dest": str(dest),
                    }
                },
            ],
        }
    ]
    playbook = tmp_path / "render.yml"
    playbook.write_text(json.dumps(play))
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps(overrides))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    res = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", f"@{extra}", str(playbook)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    return dest


class MirrorMaker:
    """MM2 dedicated mode as the role's unit runs it (kafka-run-class.sh + the class)."""

    def __init__(self, kafka_home: Path, properties: Path, workdir: Path) -> None:
        self.kafka_home, self.properties, self.workdir = kafka_home, properties, workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_OPTS", "JMX_PORT", "KAFKA_LOG4J_OPTS")}
        env["LOG_DIR"] = str(self.workdir)
        env["KAFKA_HEAP_OPTS"] = "-Xms128m -Xmx384m"
        env["KAFKA_LOG4J_OPTS"] = f"-Dlog4j2.configurationFile={self.kafka_home}/config/connect-log4j2.yaml"
        out = (self.workdir / "mm2.out").open("ab")
        try:
            self.process = subprocess.Popen(
                [
                    str(self.kafka_home / "bin" / "kafka-run-class.sh"),
                    "org.apache.kafka.connect.mirror.MirrorMaker",
                    str(self.properties),
                    "--clusters",
                    TARGET,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        finally:
            out.close()

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def alive(self) -> None:
        assert self.process is not None and self.process.poll() is None, self.tail()

    def tail(self, lines: int = 80) -> str:
        log = self.workdir / "mm2.out"
        return (
            "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.is_file() else "(no log)"
        )


class Producer:
    """Keyed records (device id -> JSON with a per-device sequence), counting the acked ones."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import Producer as _Producer

        self._producer = _Producer(
            {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5}
        )
        self.seq = Counter[str]()
        self.acked: list[tuple[int, int, str, int]] = []  # partition, offset, device, seq

    def _ack(self, err: Any, msg: Any) -> None:
        if err is None:
            value = json.loads(msg.value())
            self.acked.append((msg.partition(), msg.offset(), value["device"], value["seq"]))

    def produce(self, count: int, seconds: float = 0.0) -> None:
        gap = seconds / count if seconds else 0.0
        for i in range(count):
            device = f"dev-{i % DEVICES:02d}"
            self.seq[device] += 1
            value = json.dumps({"device": device, "seq": self.seq[device]})
            self._producer.produce(RAW, key=device, value=value, on_delivery=self._ack)
            self._producer.poll(0)
            if gap:
                time.sleep(gap)
        assert self._producer.flush(30) == 0, "unacked records after 30 s"


def read_all(bootstrap: str, *, group: str | None = None, timeout: float = 10.0) -> list[Any]:
    """Every committed record of RAW (from the group's position, or the beginning), bounded."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or f"mm2-reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    try:
        if group:
            consumer.subscribe([RAW])
        else:
            consumer.assign([TopicPartition(RAW, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        records, deadline, idle_since = [], time.monotonic() + timeout, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - idle_since < 2.0:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            records.append(msg)
            idle_since = time.monotonic()
        return records
    finally:
        consumer.close()


def wait_for(predicate: Any, timeout: float, what: str, mm2: MirrorMaker) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        mm2.alive()
        time.sleep(1.0)
    raise AssertionError(f"{what} not within {timeout:.0f}s\n{mm2.tail()}")


def end_offsets(bootstrap: str) -> dict[int, int]:
    """Log end offset of every RAW partition ({} while the broker does not answer)."""
    from confluent_kafka import KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = {TopicPartition(RAW, p): OffsetSpec.latest() for p in range(PARTITIONS)}
    try:
        return {
            tp.partition: f.result().offset
            for tp, f in admin.list_offsets(wanted, request_timeout=30).items()
        }
    except KafkaException:
        return {}


def committed(bootstrap: str, group: str) -> dict[int, int]:
    """The group's committed RAW offsets ({} while none, or the broker does not answer)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=30)
        found = futures[group].result().topic_partitions
    except KafkaException:
        return {}
    return {tp.partition: tp.offset for tp in found if tp.topic == RAW and tp.offset >= 0}


def by_partition(records: list[Any]) -> dict[int, list[tuple[str, int]]]:
    out: dict[int, list[tuple[str, int]]] = {}
    for msg in records:
        value = json.loads(msg.value())
        out.setdefault(msg.partition(), []).append((value["device"], value["seq"]))
    return out


def test_mm2_mirrors_in_order_translates_offsets_and_survives_sigkill(
    clusters: tuple[kb.KafkaBroker, kb.KafkaBroker], tmp_path: Path
) -> None:
    source, target = clusters
    started = time.monotonic()
    props = render_properties(tmp_path, source, target)
    text = props.read_text()
    assert "IdentityReplicationPolicy" in text and f"{TARGET}.exactly.once.source.support = enabled" in text

    mm2 = MirrorMaker(source.kafka_home, props, tmp_path)
    mm2.start()
    try:
        # MM2 is up once its heartbeat connector writes to the target.
        wait_for(lambda: read_heartbeats(target), 180, "MM2 heartbeats on the target", mm2)
        print(f"\nMM2 up after {time.monotonic() - started:.1f}s")
        producer = Producer(source.bootstrap)

        # --- phase 1: steady stream, all of it mirrored in order, once
        n1 = 600
        producer.produce(n1, seconds=3.0)
        assert len(producer.acked) == n1
        wait_for(lambda: sum(end_offsets(target).values()) >= n1, 120, f"{n1} records on the target", mm2)
        print(f"phase 1 mirrored at {time.monotonic() - started:.1f}s")
        src, dst = read_all(source.bootstrap), read_all(target.bootstrap)
        assert by_partition(dst) == by_partition(src), (
            "target partitions differ from the source's (order/content)"
        )
        appended = {record_id(m): m.timestamp()[1] for m in src}  # LogAppendTime on either side
        lat = sorted(m.timestamp()[1] - appended[record_id(m)] for m in dst)
        p50, p95 = statistics.median(lat), lat[int(0.95 * (len(lat) - 1))]
        print(f"MM2 replication latency, {len(lat)} records: p50={p50} ms p95={p95} ms max={lat[-1]} ms")

        # --- checkpoints: a group's position on the source is its position on the target
        consumed = consume_some(source.bootstrap, GROUP, n1 // 2)
        src_pos = committed(source.bootstrap, GROUP)
        assert sum(src_pos.values()) == consumed
        dst_pos = wait_for(
            lambda: (lambda c: c if set(c) >= set(src_pos) else None)(committed(target.bootstrap, GROUP)),
            60,
            "the group's translated offsets on the target (checkpoints, sync.group.offsets)",
            mm2,
        )
        resumed = by_partition(read_all(target.bootstrap, group=GROUP))
        remaining = {p: seqs[src_pos.get(p, 0) :] for p, seqs in by_partition(src).items()}
        for p, left in remaining.items():
            got = resumed.get(p, [])
            assert got[len(got) - len(left) :] == left, f"partition {p}: the target consumer skipped records"
        reread = sum(len(resumed.get(p, [])) - len(left) for p, left in remaining.items())
        print(f"group {GROUP}: source offsets {src_pos}, target {dst_pos}, re-read on the target: {reread}")
        # Translation is conservative (never past the source position): at most offset.lag.max re-read.
        assert 0 <= reread <= 100 * PARTITIONS, f"{reread} records re-read after the offset translation"

        print(f"checkpoints proven at {time.monotonic() - started:.1f}s")
        # --- phase 2: SIGKILL MM2 mid-stream, restart, keep producing
        n2 = 1200
        feeder = threading.Thread(target=producer.produce, args=(n2, 6.0), daemon=True)
        feeder.start()
        time.sleep(2.0)
        mm2.kill(signal.SIGKILL)
        killed_at = len(producer.acked)
        mm2.start()
        feeder.join(timeout=60)
        assert not feeder.is_alive()
        total = n1 + n2
        assert len(producer.acked) == total
        wait_for(
            lambda: sum(end_offsets(target).values()) >= total, 60, f"{total} records after the restart", mm2
        )
        dst = read_all(target.bootstrap, timeout=20)
        copies = Counter(tuple(json.loads(m.value()).values()) for m in dst)
        missing = {(d, s) for _, _, d, s in producer.acked} - set(copies)
        duplicated = sum(c - 1 for c in copies.values() if c > 1)
        print(
            f"SIGKILL after {killed_at - n1} of {n2} phase-2 records: acked {total}, on target {len(dst)}, "
            f"missing {len(missing)}, duplicated {duplicated}; test took {time.monotonic() - started:.1f}s"
        )
        assert not missing, f"{len(missing)} acked records never reached the target"
        assert duplicated == 0, f"{duplicated} records were mirrored twice despite exactly-once support"
        assert by_partition(dst) == by_partition(read_all(source.bootstrap)), (
            "order differs after the restart"
        )
    finally:
        mm2.kill(signal.SIGTERM)


def record_id(msg: Any) -> tuple[str, int]:
    value = json.loads(msg.value())
    return value["device"], value["seq"]


def read_heartbeats(target: kb.KafkaBroker) -> bool:
    from confluent_kafka.admin import AdminClient

    topics = AdminClient({"bootstrap.servers": target.bootstrap}).list_topics(timeout=10).topics
    return "heartbeats" in topics and any(t.startswith("mm2-") for t in topics)


def consume_some(bootstrap: str, group: str, count: int) -> int:
    """Read `count` records with `group` and commit (synchronously) where it stopped."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    try:
        consumer.subscribe([RAW])
        got, deadline = 0, time.monotonic() + 30
        while got < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got += 1
                consumer.commit(msg, asynchronous=False)
        assert got == count, f"read {got} of {count} records with {group}"
        return got
    finally:
        consumer.close()

"""MirrorMaker 2 (roles/mirrormaker) between two real Kafka brokers on loopback.

Two single-node KRaft brokers stand for the primary and the DR cluster. The role's
mm2.properties is rendered by Ansible itself (the template module, with the role's defaults
and the platform contract), and MM2 runs in dedicated mode exactly as the role's unit starts
it: kafka-run-class.sh org.apache.kafka.connect.mirror.MirrorMaker <file> --clusters <target>.
The brokers use their PLAINTEXT listener (the TLS + SCRAM lines render for SASL_SSL only, so
loopback TLS/SCRAM is not exercised here).

The oracle is the producer's own acknowledgements: every record it was acked for must be on
the target exactly once (read_committed), in the source's partition and order, including
- records written before MM2 ever ran (a new source partition starts at its beginning),
- records written while MM2 was SIGKILLed mid-stream and restarted (exactly-once source
  support: the role's default).
A consumer group's position on the source is translated onto the target (checkpoints +
sync.group.offsets): a consumer there resumes without skipping a record.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from fms_tools.fmsops.kafka_broker import install_kafka, kafka_archive
from fms_tools.fmsops.platform_contract import load as load_platform
from support import kafka_broker as kb

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "mirrormaker"
JMX_ROLE = REPO / "roles" / "jmx_exporter"
CATALOGUE = REPO / "tests" / "monitoring" / "metric_catalogue.yml"
BIN = Path(sys.executable).parent
CONTRACT = load_platform()
RAW = CONTRACT.topic("raw").name
DLQ = CONTRACT.topic("dlq").name
TARGET = "dr"  # a standby stack (platform.yml stacks.dr.role); its peer is the source
SOURCE = str(CONTRACT.stack(TARGET).peer)  # primary
PARTITIONS = 3
DEVICES = 24
GROUP = "fms-mm2-proof"  # under the contract's fms- consumer group prefix: MM2 checkpoints it
OFFSET_LAG_MAX = 100  # roles/mirrormaker defaults: mirrormaker_offset_lag_max
ROLE_DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
PROVENANCE_HEADER = ROLE_DEFAULTS["mirrormaker_provenance_header"]
T = TypeVar("T")

RecordId = tuple[str, int]  # (device, per-device sequence): unique per produced record


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[kb.KafkaBroker, kb.KafkaBroker]]:
    kb.require_java()
    base = tmp_path_factory.mktemp("mm2")
    home = install_kafka(base / "dist")
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


def render_configs(
    tmp_path: Path, source: kb.KafkaBroker, target: kb.KafkaBroker, target_stack: str = TARGET
) -> tuple[Path, Path]:
    """mm2.properties and the JMX exporter rules through ansible-playbook (role defaults, contract),
    for MM2 into `target_stack`: the standby, or the old primary made the standby for a failback."""
    dest, rules = tmp_path / "mm2.properties", tmp_path / "jmx-mirrormaker.yml"
    overrides = {
        "fms_stack_role": target_stack,
        # What ansible/demote.yml does to a stack whose platform.yml role is active.
        "fms_site_role": "standby",
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
                str(JMX_ROLE / "defaults" / "main.yml"),
            ],
            "tasks": [
                {"ansible.builtin.assert": {"that": ["mirrormaker_enabled | bool"]}},
                {
                    "ansible.builtin.template": {
                        "src": str(ROLE / "templates" / "mm2.properties.j2"),
                        "dest": str(dest),
                    }
                },
                {
                    "ansible.builtin.template": {
                        "src": str(JMX_ROLE / "templates" / "mirrormaker.yml.j2"),
                        "dest": str(rules),
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
    return dest, rules


def jmx_agent_jar() -> Path:
    """The jmx_exporter role's pinned agent, from the artifact mirror the Kafka archive comes from."""
    version = yaml.safe_load((JMX_ROLE / "defaults" / "main.yml").read_text())["jmx_exporter_version"]
    name = f"jmx_prometheus_javaagent-{version}.jar"
    mirror = kafka_archive(build=False).parents[3]  # <mirror>/apache/kafka/<version>/<archive>
    jar = mirror / "maven2" / "io" / "prometheus" / "jmx" / "jmx_prometheus_javaagent" / version / name
    assert jar.is_file(), f"{jar} missing: `fms-artifacts build` mirrors it"
    return jar


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


class MirrorMaker:
    """MM2 dedicated mode as the role's unit runs it (kafka-run-class.sh + the class)."""

    def __init__(
        self, kafka_home: Path, properties: Path, workdir: Path, javaagent: str, target: str = TARGET
    ) -> None:
        self.kafka_home, self.properties, self.workdir, self.target = kafka_home, properties, workdir, target
        self.javaagent = javaagent  # the unit's KAFKA_OPTS: the JMX exporter agent
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_OPTS", "JMX_PORT")}
        env["KAFKA_OPTS"] = self.javaagent
        env["LOG_DIR"] = str(self.workdir)
        env["KAFKA_HEAP_OPTS"] = "-Xms128m -Xmx384m"
        env["KAFKA_LOG4J_OPTS"] = f"-Dlog4j2.configurationFile={self.kafka_home}/config/connect-log4j2.yaml"
        with (self.workdir / "mm2.out").open("ab") as out:
            self.process = subprocess.Popen(
                [
                    str(self.kafka_home / "bin" / "kafka-run-class.sh"),
                    "org.apache.kafka.connect.mirror.MirrorMaker",
                    str(self.properties),
                    "--clusters",
                    self.target,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )

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
        assert self.process is not None and self.process.poll() is None, f"MM2 exited\n{self.tail()}"

    def tail(self, lines: int = 60) -> str:
        log = self.workdir / "mm2.out"
        return (
            "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.is_file() else "(no log)"
        )


class Producer:
    """Keyed records (device -> JSON with a per-device sequence) to RAW; keeps the acked ones."""

    def __init__(self, broker: kb.KafkaBroker, devices: str = "dev") -> None:
        from confluent_kafka import Producer as _Producer

        self.devices = devices  # device name prefix: records of different producers never share an id

        self._producer = _Producer(
            {"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5}
        )
        self.seq = Counter[str]()
        self.acked: list[RecordId] = []
        self.failed = 0

    def _ack(self, err: Any, msg: Any) -> None:
        if err is None:
            self.acked.append(record_id(msg))
        else:
            self.failed += 1

    def produce(self, count: int, seconds: float = 0.0) -> None:
        gap = seconds / count if seconds else 0.0
        for i in range(count):
            device = f"{self.devices}-{i % DEVICES:02d}"
            self.seq[device] += 1
            value = json.dumps({"device": device, "seq": self.seq[device]})
            self._producer.produce(RAW, key=device, value=value, on_delivery=self._ack)
            self._producer.poll(0)
            if gap:
                time.sleep(gap)
        assert self._producer.flush(30) == 0, "unacked records after 30 s"


class Reader:
    """Every committed RAW record of one cluster from the beginning (or `start`), read incrementally."""

    def __init__(self, broker: kb.KafkaBroker, start: dict[int, int] | None = None) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self._consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": f"mm2-oracle-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        start = start if start is not None else dict.fromkeys(range(PARTITIONS), OFFSET_BEGINNING)
        self._consumer.assign([TopicPartition(RAW, p, offset) for p, offset in start.items()])
        self.records: dict[int, list[RecordId]] = {p: [] for p in range(PARTITIONS)}
        self.marked = Counter[RecordId]()  # records that carry MM2's provenance header (mirrored here)

    def poll(self, seconds: float) -> int:
        """Read for up to `seconds`; returns the number of records read so far."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for msg in self._consumer.consume(500, timeout=max(0.05, min(0.5, deadline - time.monotonic()))):
                if not msg.error():
                    self.records[msg.partition()].append(record_id(msg))
                    if any(key == PROVENANCE_HEADER for key, _ in msg.headers() or []):
                        self.marked[record_id(msg)] += 1
        return self.count

    def drain(self, idle: float = 3.0, limit: float = 20.0) -> int:
        """Read until nothing new arrived for `idle` seconds (at most `limit`)."""
        deadline, seen = time.monotonic() + limit, -1
        while self.count != seen and time.monotonic() < deadline:
            seen = self.count
            self.poll(idle)
        return self.count

    @property
    def count(self) -> int:
        return sum(len(r) for r in self.records.values())

    def close(self) -> None:
        self._consumer.close()


def record_id(msg: Any) -> RecordId:
    value = json.loads(msg.value())
    return value["device"], value["seq"]


def wait_for(predicate: Callable[[], T], timeout: float, what: str, mm2: MirrorMaker) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        mm2.alive()
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f}s\n{mm2.tail()}")


def committed(broker: kb.KafkaBroker, group: str) -> dict[int, int]:
    """The group's committed RAW offsets ({} while there are none or the broker does not answer)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    try:
        futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=15)
        found = futures[group].result().topic_partitions
    except KafkaException:
        return {}
    return {tp.partition: tp.offset for tp in found if tp.topic == RAW and tp.offset >= 0}


def commit(broker: kb.KafkaBroker, group: str, offsets: dict[int, int]) -> None:
    """Commit `group`'s RAW position per partition, as a consumer that read that far would."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        consumer.commit(offsets=[TopicPartition(RAW, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def test_mm2_mirrors_every_acked_record_once_translates_offsets_and_survives_sigkill(
    clusters: tuple[kb.KafkaBroker, kb.KafkaBroker], tmp_path: Path
) -> None:
    source, target = clusters
    started = time.monotonic()
    props, rules = render_configs(tmp_path, source, target)
    jmx_port = kb.free_port()
    text = props.read_text()
    assert "IdentityReplicationPolicy" in text
    assert f"{TARGET}.exactly.once.source.support = enabled" in text, "the role's default is exactly-once"

    # --- before MM2 ever ran: records on the source, and a group half way through each partition
    producer = Producer(source)
    n0 = 300
    producer.produce(n0)
    backlog = Reader(source)
    backlog.drain()
    backlog.close()
    assert backlog.count == n0
    commit(source, GROUP, {p: len(records) // 2 for p, records in backlog.records.items()})
    src_pos = committed(source, GROUP)
    assert set(src_pos) == set(range(PARTITIONS)) and 0 < sum(src_pos.values()) < n0, src_pos

    mm2 = MirrorMaker(
        source.kafka_home, props, tmp_path, f"-javaagent:{jmx_agent_jar()}=127.0.0.1:{jmx_port}:{rules}"
    )
    dst = Reader(target)
    mm2.start()
    try:
        # --- phase 1: the backlog plus a live stream, all of it on the target
        n1 = 600
        producer.produce(n1, seconds=3.0)
        wait_for(lambda: dst.poll(1.0) >= n0 + n1, 150, f"{n0 + n1} records on the target", mm2)
        print(f"\nphase 1: {n0 + n1} records mirrored at {time.monotonic() - started:.1f}s")

        # --- checkpoints: the group's source position, translated, is where it resumes on the target
        src_reader = Reader(source)
        src_reader.drain()
        source_records = src_reader.records
        dst_pos = wait_for(
            lambda: (lambda c: c if set(c) >= set(src_pos) else None)(committed(target, GROUP)),
            90,
            "the group's translated offsets on the target (checkpoints, sync.group.offsets)",
            mm2,
        )
        resumed = Reader(target, start=dst_pos)
        resumed.drain()
        resumed.close()
        reread = {}
        for p, records in source_records.items():
            left, got = records[src_pos[p] :], resumed.records[p]
            assert got[len(got) - len(left) :] == left, (
                f"partition {p}: a consumer on the target skips records"
            )
            assert got == records[len(records) - len(got) :], (
                f"partition {p}: not where the source's group was"
            )
            reread[p] = len(got) - len(left)
        print(f"group {GROUP}: source offsets {src_pos}, target {dst_pos}, re-read on the target: {reread}")
        # Translation is conservative (never past the source position), at most offset.lag.max behind.
        assert all(0 <= n <= OFFSET_LAG_MAX for n in reread.values()), (
            f"re-read after the translation: {reread}"
        )

        # --- the JMX exporter rules produce the catalogued names (the alerts and dashboards use them)
        wanted = set(yaml.safe_load(CATALOGUE.read_text())["mirrormaker"])
        metrics = tmp_path / "metrics.txt"  # the last scrape, kept for a failure's diagnosis

        def mm2_names() -> set[str]:
            metrics.write_text(scrape(jmx_port))
            lines = metrics.read_text().splitlines()
            return {line.split("{")[0] for line in lines if line.startswith("kafka_connect_mirror_")}

        found = wait_for(
            lambda: (lambda names: names if names >= wanted else None)(mm2_names()),
            30,
            f"the catalogued MM2 metrics {sorted(wanted)} on the JMX exporter (last scrape: {metrics})",
            mm2,
        )
        assert found == wanted, f"uncatalogued MM2 metrics: {sorted(found - wanted)}"
        print(f"JMX exporter: the {len(wanted)} catalogued MM2 metric names, scraped")

        # --- phase 2: SIGKILL MM2 mid-stream, restart it, keep producing
        n2 = 900
        feeder = threading.Thread(target=producer.produce, args=(n2, 5.0), daemon=True)
        feeder.start()
        time.sleep(2.0)
        mm2.kill(signal.SIGKILL)
        killed = time.monotonic()
        mm2.start()
        feeder.join(timeout=60)
        assert not feeder.is_alive(), "the producer did not finish within 60 s"
        total = n0 + n1 + n2
        assert producer.failed == 0 and len(producer.acked) == total, (producer.failed, len(producer.acked))
        wait_for(lambda: dst.poll(1.0) >= total, 150, f"{total} records after the restart", mm2)
        print(f"every record on the target {time.monotonic() - killed:.1f}s after the SIGKILL")
        dst.drain()  # anything mirrored twice arrives now, not after the assertions
    finally:
        mm2.kill(signal.SIGTERM)
        dst.close()
    src_reader.drain()
    src_reader.close()

    copies = Counter(r for records in dst.records.values() for r in records)
    missing = set(producer.acked) - set(copies)
    duplicated = sum(c - 1 for c in copies.values() if c > 1)
    unexpected = set(copies) - set(producer.acked)
    print(
        f"acked {len(producer.acked)}, on the target {dst.count} ({len(copies)} distinct), "
        f"missing {len(missing)}, duplicated {duplicated}; took {time.monotonic() - started:.1f}s"
    )
    assert not missing, f"{len(missing)} acked records never reached the target, e.g. {sorted(missing)[:5]}"
    assert duplicated == 0, f"{duplicated} records mirrored twice despite exactly-once source support"
    assert not unexpected, f"records on the target that were never acked: {sorted(unexpected)[:5]}"
    assert dst.records == src_reader.records, "target partitions differ from the source's (partition/order)"


def test_failback_reverses_the_flow_without_a_cycle(
    clusters: tuple[kb.KafkaBroker, kb.KafkaBroker], tmp_path: Path
) -> None:
    """Failback on two real clusters: DR was promoted and took writes while the primary, back from its
    outage, took a few of its own; MM2 then runs DR -> primary (the old primary is the standby), and
    afterwards primary -> DR again. With IdentityReplicationPolicy nothing in the topic names marks a
    copy: the provenance header does. Oracle: each producer's acks - at the end every acked record is
    on both clusters exactly once, no copy went back to where it came from, and every copy carries
    the header while no original does.
    Starts from whatever the clusters hold (the test above leaves its records mirrored): both
    clusters are read first, so the counts below are deltas."""
    primary, dr = clusters  # SOURCE (primary) and TARGET (dr) of the test above
    started = time.monotonic()
    for flow in ("forward", "reverse"):
        (tmp_path / flow).mkdir()
    forward_props, forward_rules = render_configs(tmp_path / "forward", primary, dr)
    reverse_props, reverse_rules = render_configs(tmp_path / "reverse", dr, primary, target_stack=SOURCE)
    assert f"{SOURCE}->{TARGET}.transforms = skipMirrored, markMirrored" in forward_props.read_text()
    assert f"{TARGET}->{SOURCE}.enabled = true" in reverse_props.read_text(), "reverse flow: DR -> primary"
    before = {}
    for name, broker in (("primary", primary), ("dr", dr)):
        reader = Reader(broker)
        reader.drain()
        reader.close()
        before[name] = Counter(r for records in reader.records.values() for r in records)

    # --- DR promoted: it takes writes; the primary, healed, takes some of its own before it is demoted
    on_dr, on_primary = Producer(dr, devices="dr"), Producer(primary, devices="healed")
    on_dr.produce(400)
    on_primary.produce(150)

    # --- the primary demoted: MM2 DR -> primary copies back only what DR itself received
    reverse = MirrorMaker(
        primary.kafka_home,
        reverse_props,
        tmp_path / "reverse",
        f"-javaagent:{jmx_agent_jar()}=127.0.0.1:{kb.free_port()}:{reverse_rules}",
        target=SOURCE,
    )
    at_primary = Reader(primary)
    expected = sum(before["primary"].values()) + len(on_primary.acked) + len(on_dr.acked)
    reverse.start()
    try:
        wait_for(lambda: at_primary.poll(1.0) >= expected, 150, f"{expected} records on the primary", reverse)
        at_primary.drain()  # a record copied back twice or a DR copy of the primary's own arrives now
        took = time.monotonic() - started
        print(f"\nreverse flow: {len(on_dr.acked)} DR records on the primary at {took:.1f}s")
    finally:
        reverse.kill(signal.SIGTERM)
    got = Counter(r for records in at_primary.records.values() for r in records)
    back = sum(got[r] - 1 for r in before["primary"] if got[r] > 1)
    assert back == 0, f"{back} of the primary's own records came back from DR (a replication cycle)"
    assert all(got[r] == 1 for r in on_dr.acked), "DR's records are not on the primary exactly once"
    assert got.total() == expected, f"the primary holds {got.total()} records, expected {expected}"
    assert all(at_primary.marked[r] == 1 for r in on_dr.acked) and not any(
        at_primary.marked[r] for r in on_primary.acked
    ), "copies must carry the provenance header and originals must not"

    # --- the switch back: the primary serves again, MM2 primary -> DR resumes where it stopped
    back_home = Producer(primary, devices="back")
    back_home.produce(150)
    forward = MirrorMaker(
        dr.kafka_home,
        forward_props,
        tmp_path / "forward",
        f"-javaagent:{jmx_agent_jar()}=127.0.0.1:{kb.free_port()}:{forward_rules}",
    )
    at_dr = Reader(dr)
    expected_dr = sum(before["dr"].values()) + len(on_dr.acked) + len(on_primary.acked) + len(back_home.acked)
    forward.start()
    try:
        wait_for(lambda: at_dr.poll(1.0) >= expected_dr, 150, f"{expected_dr} records on DR", forward)
        at_dr.drain()
    finally:
        forward.kill(signal.SIGTERM)
    at_primary.drain()
    at_primary.close()
    at_dr.close()
    on_both = {
        name: Counter(r for records in reader.records.values() for r in records)
        for name, reader in (("primary", at_primary), ("dr", at_dr))
    }
    new = on_dr.acked + on_primary.acked + back_home.acked
    print(
        f"after failback: primary {on_both['primary'].total()} records, DR {on_both['dr'].total()}; "
        f"{len(new)} acked during the drill; took {time.monotonic() - started:.1f}s"
    )
    for name, copies in on_both.items():
        assert all(copies[r] == 1 for r in new), f"{name}: an acked record is missing or held twice"
    assert on_both["primary"] == on_both["dr"], "after failback the clusters hold different records"

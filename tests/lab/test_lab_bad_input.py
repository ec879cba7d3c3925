"""No record can stop, fool or skew the running pipeline (issue 11), proven on the lab.

Runs after test_lab_converge.py and before test_lab_pipeline.py (the conftest orders it), on the
converged lab with the deployed collector sending its fleet (devices 1..1000) the whole time.
test_lab_pipeline.py's conservation audit then also covers every record injected here.

* Raw bytes straight into ``fms.sensor.raw`` (not through the collector): a corpus of every
  tricky input - invalid UTF-8, empty and null values, NaN/Infinity literals, a record followed
  by a second object or by garbage ending in '}', 1,500-digit and 100-character numbers,
  nesting beyond and at the depth limit, a duplicate key, a time followed by a newline, years
  1000/1582/1850/1899 (once a poison pill that stopped the lake), numbers beyond the double
  range, an oversized record - plus two records of each tricky simulator kind and good records.
  They are produced from the collector host with the collector's own settings and credentials
  (/etc/fms/collector.yml: SASL/SCRAM over TLS, acks=all, idempotent), with a producer
  timestamp a day ahead: the broker must stamp them (LogAppendTime). Each acknowledged
  (partition, offset) gets its expected fate from the reference rules
  (``fms_jobs.quality.rules.evaluate``) at the broker's timestamp from the delivery report.
* A second, bounded collector on the collector host whose devices' clock runs a day ahead
  (``--clock-offset-seconds 86400``, devices 9001..9020 that the fleet does not use).
* Then, once the stream's commit log is past everything injected: every injected record's dead
  letter on ``fms.sensor.dlq`` has the expected reason, detail, original bytes, key, broker
  timestamp and event time; the good ones (readings of fleet devices) are in the processed lake
  at their Kafka coordinates with their time and the broker's arrival time, and were not
  dead-lettered; every record of the day-ahead collector is dead-lettered as FUTURE_EVENT and none
  is stored (the stream's per-device counters); a batch that read only records produced
  after all of this stored the fleet's readings; the stream never failed a batch (same process,
  NRestarts unchanged, no terminated query, no stall) and isolated no poison pill.

Measured figures (acknowledged counts, dead letters per reason, wait times) are printed for the
CI log (-rP). Every wait is bounded.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import random
import re
import shlex
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from fms_jobs.quality.reasons import ReasonCode
from fms_jobs.quality.rulebook import QualityRules, load_rules
from fms_jobs.quality.rules import Evaluation, evaluate
from fms_jobs.quality.schema import CREATED_HEADER, DEVICE_ID, IS_FAIL, MOTORS, SENSORS, SOURCE_HEADER, TIME
from fms_jobs.simulator.faults import BadKind, dumps, mutate
from kafka_probe import kafka_shell_env
from lab_support import host_ssh, must, outputs

pytestmark = [pytest.mark.lab, pytest.mark.slow]

VENV = "/opt/fms-jobs/venv"
COLLECTOR_CONFIG = "/etc/fms/collector.yml"
COLLECTOR_USER = "fms-collector"
STREAM_CONFIG = "/etc/fms/stream.yml"
KAFKA_BIN = "/opt/kafka/bin"
ADMIN_PROPERTIES = "/etc/kafka/admin.properties"
HDFS = "runuser -u hdfs -- env HADOOP_CONF_DIR=/etc/hadoop /opt/hadoop/bin/hdfs dfs"
REMOTE_SCRIPT = "/var/tmp/fms-lab-bad-input.py"
REMOTE_CORPUS = "/var/tmp/fms-lab-bad-input.json"
LAKE_DIR = "/tmp/fms-lab-bad-input.lake"
DLQ_FILE = "/tmp/fms-lab-bad-input.dlq"

DAY_S = 86_400
# Devices the regular fleet (collector.yml: 1..1000 in the lab) does not use, the rules know (1..10000).
SKEWED_FIRST_ID, SKEWED_DEVICES, SKEWED_RECORDS = 9001, 20, 200
CORPUS_FIRST_ID = 9901
# librdkafka's timestamp type of a record the broker stamped (rd_kafka_timestamp_type_t)
LOG_APPEND_TIME = 2
PROCESS_WITHIN_S = 600  # injected -> the stream's commit log is past it (2-core lab, 30 s trigger)
POLL_S = 10
FATAL_LOG = ("query terminated", "failed at run time", "stall watchdog", "Traceback")
BATCH_LINE = re.compile(r"fms_jobs\.streaming\.job: batch (\d+): in=(\d+) stored=(\d+) dead_lettered=(\d+)")

# On the collector host, as the collector's user, with the collector's settings: `produce CONFIG
# CORPUS` sends the corpus (acks=all) and reports each delivery; both modes print the raw topic's
# end offsets (a Describe the collector's ACL allows).
KAFKA_CLIENT = f"""\
import base64, json, sys
from confluent_kafka import Consumer, Producer, TopicPartition
from fms_jobs.collector.config import load_config
from fms_jobs.collector.producer import producer_config

cfg = load_config(sys.argv[2])
conf = producer_config(cfg.kafka)
topic = cfg.kafka.topic
out = {{"topic": topic}}
if sys.argv[1] == "produce":
    corpus = json.load(open(sys.argv[3]))
    acks = [None] * len(corpus)

    def on_delivery(i):
        def report(err, msg):
            kind, ts = msg.timestamp()
            acks[i] = {{"error": None if err is None else str(err), "partition": msg.partition(),
                       "offset": msg.offset(), "timestamp_type": kind, "timestamp_ms": ts}}
        return report

    producer = Producer({{**conf, "client.id": "fms-lab-bad-input"}})
    for i, item in enumerate(corpus):
        value = None if item["value_b64"] is None else base64.b64decode(item["value_b64"])
        headers = [({CREATED_HEADER!r}, str(item["created_ms"]).encode()),
                   ({SOURCE_HEADER!r}, b"lab-bad-input")]
        producer.produce(topic, value=value, key=item["key"].encode(), headers=headers,
                         timestamp=item["producer_timestamp_ms"], on_delivery=on_delivery(i))
        producer.poll(0)
    out["pending"] = producer.flush(120)
    out["acks"] = acks
    out["settings"] = {{k: conf.get(k) for k in ("acks", "enable.idempotence", "security.protocol",
                                                "sasl.mechanism", "sasl.username")}}
probe = {{k: v for k, v in conf.items() if k.split(".")[0] in ("bootstrap", "security", "sasl", "ssl")}}
consumer = Consumer({{**probe, "group.id": "fms-lab-bad-input-probe", "client.id": "fms-lab-bad-input"}})
try:
    parts = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    out["end_offsets"] = {{p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                          for p in sorted(parts)}}
finally:
    consumer.close()
print(json.dumps(out))
"""


# ---------------------------------------------------------------------------- the corpus


@dataclass
class Item:
    label: str
    key: str
    value: bytes | None  # None: a null value (tombstone)
    intended: str  # the reason the input was made for, or "stored"
    partition: int = -1
    offset: int = -1
    broker_ms: int = 0
    expected: Evaluation | None = None

    @property
    def expected_reason(self) -> str:
        assert self.expected is not None
        return self.expected.primary.reason.value if self.expected.primary else "stored"


def _reading(device_id: int, t_ms: int) -> dict[str, Any]:
    """A good reading (in range, plausible) of one device at t_ms + 123 us.

    Microseconds: no simulated reading (millisecond times) can share its (device, time) key, so a
    good one is never taken for a duplicate of the fleet's.
    """
    t = datetime.fromtimestamp(t_ms / 1000, tz=UTC).replace(microsecond=(t_ms % 1000) * 1000 + 123)
    obj: dict[str, Any] = {TIME: f"{t:%Y-%m-%dT%H:%M:%S.%f}Z", DEVICE_ID: device_id}
    obj.update(dict(zip(SENSORS, (61.5, 48.25, 101.0), strict=True)))
    obj.update(dict(zip(MOTORS, (1210, 845.5, 1100), strict=True)))
    obj[IS_FAIL] = False
    return obj


def _splice(obj: dict[str, Any], field_name: str, token: bytes) -> bytes:
    """The reading's JSON with one field's value replaced by raw bytes (not valid JSON values)."""
    return dumps({**obj, field_name: "__X__"}).replace(b'"__X__"', token)


def build_corpus(rules: QualityRules, now_ms: int, fleet: range) -> list[Item]:
    """Every tricky input of issue 11 and the classic ones, one device id each (9901, ...).

    The good ones are readings of the fleet's last devices: a device the fleet does not have
    would add a stored device to the hour that test_lab_pipeline.py's summary check counts.
    """
    ids = iter(range(CORPUS_FIRST_ID, CORPUS_FIRST_ID + 1000))
    fleet_ids = iter(reversed(fleet))
    items: list[Item] = []

    def add(label: str, intended: str, make: Any) -> None:
        dev = next(fleet_ids) if intended == "stored" else next(ids)
        value = make(_reading(dev, now_ms)) if callable(make) else make
        items.append(Item(label, str(dev), value, intended))

    M = ReasonCode.MALFORMED_JSON.value
    add("good", "stored", dumps)
    add("depth_64_at_the_limit", "stored", lambda o: _splice(o, "extra", b"[" * 63 + b"]" * 63))
    for name, bad in (("ff", b"\xff"), ("surrogate", b"\xed\xa0\x80"), ("overlong", b"\xc0\xaf")):
        add(f"invalid_utf8_{name}", "NOT_UTF8", lambda o, bad=bad: _splice(o, "unit", b'"' + bad + b'"'))
    add("empty_value", M, b"")
    add("null_value_tombstone", M, None)
    add("whitespace_only", M, b" \r\n\t")
    for name, lit in (("nan", b"NaN"), ("infinity", b"Infinity"), ("minus_infinity", b"-Infinity")):
        add(f"literal_{name}", M, lambda o, lit=lit: _splice(o, "sensor1", lit))
    add("second_object", M, lambda o: dumps(o) + dumps({**o, DEVICE_ID: o[DEVICE_ID] + 1}))
    add("record_then_garbage_brace", M, lambda o: dumps(o) + b" garbage}")
    add("garbage_ending_in_brace", M, b"ERROR 503 upstream unavailable }")
    add("array_of_a_record", M, lambda o: b"[" + dumps(o) + b"]")
    add("truncated", M, lambda o: dumps(o)[:-1])
    add("number_1500_digits", M, lambda o: _splice(o, "sensor2", b"1" * 1500))
    add("number_101_chars", M, lambda o: _splice(o, "sensor2", b"1" * 101))
    add("number_100_chars", "OUT_OF_RANGE", lambda o: _splice(o, "sensor2", b"1" * 100))
    add("nested_100_deep", M, lambda o: _splice(o, "extra", b"[" * 100 + b"]" * 100))
    add("duplicate_key", M, lambda o: dumps(o)[:-1] + b',"sensor1":99.5}')
    add("time_newline", "BAD_TIMESTAMP", lambda o: dumps({**o, TIME: o[TIME] + "\n"}))
    add("beyond_double", "NOT_FINITE", lambda o: _splice(o, "motor1", b"1e999"))
    add("beyond_double_neg", "NOT_FINITE", lambda o: _splice(o, "sensor3", b"-2.5e+308"))
    for ts in (
        "1000-01-01T00:00:00Z",
        "1582-10-10T12:00:00Z",
        "1850-06-15T08:30:00Z",
        "1899-12-31T23:59:59Z",
    ):
        add(f"year_{ts[:4]}", "LATE_EVENT", lambda o, ts=ts: dumps({**o, TIME: ts}))
    add("oversized", "OVERSIZED", lambda o: dumps({**o, "padding": "x" * (rules.max_message_bytes + 100)}))
    for kind in (
        BadKind.TRAILING_DATA,
        BadKind.HUGE_NUMBER,
        BadKind.DEEP_NESTING,
        BadKind.DUPLICATE_KEY,
        BadKind.TIME_NEWLINE,
        BadKind.ANCIENT_TIME,
    ):
        for seed in (1, 2):
            rng = random.Random(f"{kind.value}-{seed}")
            add(
                f"sim_{kind.value}_{seed}",
                kind.reason.value,
                lambda o, kind=kind, rng=rng: mutate(kind, o, now_ms, now_ms, rules, rng)[0],
            )
    return items


# ---------------------------------------------------------------------------- lab access


def _run_json(host: str, cmd: str, timeout_s: float = 180) -> dict[str, Any]:
    out = must(host_ssh(host, cmd, timeout_s))
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON line from {host}:\n{out[-2000:]}"
    return json.loads(lines[-1])


def _put(host: str, path: str, data: bytes) -> None:
    blob = base64.b64encode(gzip.compress(data)).decode()
    must(host_ssh(host, f"echo {blob} | base64 -d | gunzip > {path} && chmod 644 {path}"))


def _kafka_client(host: str, *args: str, timeout_s: float = 180) -> dict[str, Any]:
    argv = shlex.join([f"{VENV}/bin/python", REMOTE_SCRIPT, *args])
    return _run_json(host, f"cd /var/tmp && runuser -u {COLLECTOR_USER} -- {argv}", timeout_s)


def _offsets(doc: dict[str, Any]) -> dict[int, int]:
    return {int(p): int(o) for p, o in doc.items()}


def _stream_health(master: str, since_epoch: int) -> dict[str, Any]:
    show = must(host_ssh(master, "systemctl show fms-stream -p MainPID -p NRestarts -p ActiveState"))
    props = dict(ln.split("=", 1) for ln in show.split() if "=" in ln)
    journal = host_ssh(
        master, f"journalctl -u fms-stream --since @{since_epoch} --no-pager -o cat", 120
    ).stdout
    return {
        "pid": props.get("MainPID"),
        "restarts": int(props.get("NRestarts", "-1")),
        "state": props.get("ActiveState"),
        "fatal": [ln[:300] for ln in journal.splitlines() if any(f in ln for f in FATAL_LOG)],
        "unwritable_lines": [ln[:300] for ln in journal.splitlines() if "unwritable record(s)" in ln],
        "batches": {int(m[1]): (int(m[2]), int(m[3]), int(m[4])) for m in BATCH_LINE.finditer(journal)},
    }


def _stream_metrics(master: str, port: int) -> dict[str, float]:
    pattern = (
        r"^fms_stream_(records_stored_total|records_in_total|unwritable_records_total"
        r"|device_records_total\{device_id=\"9[0-9]{3}\")"
    )
    res = host_ssh(master, f"curl -sf http://127.0.0.1:{port}/metrics | grep -E {shlex.quote(pattern)}")
    assert res.returncode in (0, 1), f"the stream's metrics do not answer: {res.stderr[-500:]}"
    out: dict[str, float] = {}
    for line in res.stdout.splitlines():
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


def _device_count(metrics: dict[str, float], device_id: int, outcome: str) -> float:
    return metrics.get(f'fms_stream_device_records_total{{device_id="{device_id}",outcome="{outcome}"}}', 0.0)


def _commit_log(namenode: str, checkpoint: str, topic: str) -> tuple[int, dict[int, int], dict[int, int]]:
    """(last committed batch L, end offsets of batch L-1, of batch L) from the query's checkpoint."""
    c = checkpoint.rstrip("/")
    cmd = (
        f"cd /tmp && L=$({HDFS} -ls -C {c}/commits | sed 's#.*/##' | grep -E '^[0-9]+$' | sort -n | tail -1)"
        f' && echo "commit $L" && {HDFS} -cat {c}/offsets/$((L - 1)) {c}/offsets/$L'
    )
    out = must(host_ssh(namenode, cmd, 120))
    last = int(re.search(r"^commit (\d+)$", out, re.M)[1])  # type: ignore[index]
    # each file: "v1", the batch's metadata, one line per source (the query reads the topic twice:
    # every record and the duplicate-detection survivors) - the least of them per partition
    files = re.split(r'v1\n(?=\{"batchWatermarkMs")', out)[1:]
    ends = []
    for text in files:
        found = re.findall(rf'\{{"{re.escape(topic)}":\{{[^{{}}]*\}}\}}', text)
        sources = [_offsets(json.loads(m)[topic]) for m in found]
        ends.append({p: min(s[p] for s in sources) for p in sources[0]} if sources else {})
    assert len(ends) == 2 and all(ends), (
        f"offsets of batches {last - 1} and {last} not readable:\n{out[-1500:]}"
    )
    return last, ends[0], ends[1]


def _past(committed: dict[int, int], target: dict[int, int]) -> bool:
    return all(committed.get(p, 0) >= o for p, o in target.items())


def _topic_end(broker: str, bootstrap: str, topic: str) -> dict[int, int]:
    """End offsets of a topic, with Kafka's own tool and the admin client settings on a broker."""
    cmd = (
        f"{kafka_shell_env()}{KAFKA_BIN}/kafka-get-offsets.sh"
        f" --bootstrap-server {bootstrap} --command-config {ADMIN_PROPERTIES}"
    )
    out = must(host_ssh(broker, f"{cmd} --topic {topic}", 120))
    return {int(p): int(o) for p, o in re.findall(rf"^{re.escape(topic)}:(\d+):(\d+)$", out, re.M)}


def _consume(broker: str, bootstrap: str, topic: str, ranges: dict[int, tuple[int, int]]) -> dict[int, Any]:
    """Partition -> (values read, stderr tail) of [first, end) of each partition, side by side."""
    jobs = [
        f"{kafka_shell_env()}KAFKA_HEAP_OPTS=-Xmx160m {KAFKA_BIN}/kafka-console-consumer.sh"
        f" --bootstrap-server {bootstrap}"
        f" --consumer.config {ADMIN_PROPERTIES} --topic {topic} --partition {p} --offset {first}"
        f" --max-messages {last - first} --timeout-ms 60000 > {DLQ_FILE}.{p} 2> {DLQ_FILE}.{p}.err &"
        for p, (first, last) in sorted(ranges.items())
    ]
    show = " ".join(
        f"echo '== {p}'; cat {DLQ_FILE}.{p}; echo '== err {p}'; tail -c 1500 {DLQ_FILE}.{p}.err;"
        for p in ranges
    )
    out = must(host_ssh(broker, f"cd /tmp && rm -f {DLQ_FILE}.*; {' '.join(jobs)} wait; {show}", 300))
    found: dict[int, Any] = {}
    for section in re.split(r"^== ", out, flags=re.M)[1:]:
        head, _, body = section.partition("\n")
        if head.startswith("err "):
            found[int(head[4:])] = (found[int(head[4:])][0], body.strip()[-800:])
        else:
            found[int(head)] = ([json.loads(ln) for ln in body.splitlines() if ln.startswith("{")], "")
    return found


def _read_dlq(broker: str, bootstrap: str, dlq_topic: str, start: dict[int, int]) -> list[dict[str, Any]]:
    """Every envelope on the dead-letter topic from `start` to its end now (admin, on a broker).

    A console consumer that comes back short is run again, once.
    """
    end = _topic_end(broker, bootstrap, dlq_topic)
    todo = {p: (start.get(p, 0), last) for p, last in end.items() if last > start.get(p, 0)}
    envelopes: list[dict[str, Any]] = []
    for attempt in range(2):
        if not todo:
            break
        short = {}
        for p, (values, err) in _consume(broker, bootstrap, dlq_topic, todo).items():
            if len(values) == todo[p][1] - todo[p][0]:
                envelopes += values
            else:
                short[p] = f"read {len(values)} of offsets {todo[p]}: {err}"
        assert not short or attempt == 0, f"dead-letter topic partitions not readable: {short}"
        if short:
            print(f"  dead-letter topic read again: {short}")
        todo = {p: todo[p] for p in short}
    return envelopes


def _lake_rows(
    namenode: str, processed: str, hour: datetime, batches: range, wanted: set[tuple[int, int]]
) -> tuple[dict[tuple[int, int], dict[str, Any]], list[str]]:
    """The processed rows at `wanted` (partition, offset) in the files these batches wrote to the
    hour's partition; and the names of the files read."""
    names = ",".join(f"{b:012d}" for b in batches)
    glob = (
        f"{processed}/year={hour.year}/month={hour.month}/day={hour.day}/hour={hour.hour}/part-{{{names}}}-*"
    )
    cmd = (
        f"cd /tmp && rm -rf {LAKE_DIR} && install -d -o hdfs {LAKE_DIR}"
        f" && {HDFS} -get {shlex.quote(glob)} {LAKE_DIR}/ >&2; tar -C {LAKE_DIR} -cz . | base64 -w0"
    )
    blob = base64.b64decode(must(host_ssh(namenode, cmd, 300)))
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    files: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for member in tar.getmembers():
            if not member.name.endswith(".parquet"):
                continue
            files.append(member.name.rsplit("/", 1)[-1])
            f = tar.extractfile(member)
            assert f is not None
            table = pq.read_table(io.BytesIO(f.read()))
            for i, col in enumerate(table.schema):  # INT96 (ns) -> datetime
                if pa.types.is_timestamp(col.type):
                    table = table.set_column(i, col.name, table.column(i).cast(pa.timestamp("us")))
            for row in table.to_pylist():
                key = (row["kafka_partition"], row["kafka_offset"])
                if key in wanted:
                    rows[key] = row
    return rows, sorted(files)


def _naive_utc(us: int | None) -> datetime | None:
    return None if us is None else datetime(1970, 1, 1) + timedelta(microseconds=us)


def _event_time(ev_us: int | None) -> str | None:
    if ev_us is None:
        return None
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ev_us)
    return f"{t:%Y-%m-%dT%H:%M:%S.%f}Z"


# ---------------------------------------------------------------------------- the run


@dataclass
class Run:
    topic_config: str
    settings: dict[str, Any]
    items: list[Item]
    skewed_log: str
    skewed_delivered: int
    skewed_window: tuple[dict[int, int], dict[int, int]]
    injected_at_ms: int
    dead_letters: dict[tuple[int, int], dict[str, Any]]
    before: dict[str, float]
    after: dict[str, float]
    health_before: dict[str, Any]
    health_after: dict[str, Any]
    stored_rows: dict[tuple[int, int], dict[str, Any]]
    lake_files: list[str]
    baseline_batch: int
    processed_batch: int
    later_batch: int
    waits: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def run(converged) -> Run:
    groups = outputs()["inventory_groups"]
    collector, broker = sorted(groups["collector"])[0], sorted(groups["kafka"])[0]
    master, namenode = groups["spark_master"][0], groups["hdfs_namenode"][0]
    stream = yaml.safe_load(must(host_ssh(master, f"cat {STREAM_CONFIG}")))
    kafka, raw_topic, dlq_topic = stream["kafka"], stream["kafka"]["topic"], stream["kafka"]["dlq_topic"]
    rules = load_rules(None)
    assert not stream.get("rules_path"), "the lab's stream uses its own rules file; judge with those"
    waits: dict[str, float] = {}

    must(host_ssh(master, "systemctl is-active fms-stream"))
    must(host_ssh(collector, "systemctl is-active fms-collector"))
    sim = yaml.safe_load(must(host_ssh(collector, f"cat {COLLECTOR_CONFIG}")))["simulator"]
    fleet = range(sim["first_device_id"], sim["first_device_id"] + sim["devices"])
    for ours in (range(SKEWED_FIRST_ID, SKEWED_FIRST_ID + SKEWED_DEVICES), range(CORPUS_FIRST_ID, 10_000)):
        assert not set(ours) & set(fleet), f"devices {ours} are the fleet's ({fleet}): pick others"
        assert rules.devices.contains(ours.start) and rules.devices.contains(ours.stop - 1), ours
    topic_config = must(
        host_ssh(
            broker,
            f"{kafka_shell_env()}{KAFKA_BIN}/kafka-configs.sh --bootstrap-server {kafka['bootstrap_servers']}"
            f" --command-config {ADMIN_PROPERTIES} --describe --topic {raw_topic}",
            120,
        )
    )
    since = int(must(host_ssh(master, "date +%s")).strip())
    health_before = _stream_health(master, since)
    before = _stream_metrics(master, stream["metrics"]["port"])
    dlq_start = _topic_end(broker, kafka["bootstrap_servers"], dlq_topic)
    # a batch after this one reads whatever is produced from now on
    baseline_batch = _commit_log(namenode, stream["paths"]["checkpoint"], raw_topic)[0]

    # a) the corpus, raw, with the collector's settings; the producer's timestamp a day ahead
    _put(collector, REMOTE_SCRIPT, KAFKA_CLIENT.encode())
    now_ms = int(time.time() * 1000)
    items = build_corpus(rules, now_ms, fleet)
    corpus = [
        {
            "key": it.key,
            "value_b64": None if it.value is None else base64.b64encode(it.value).decode(),
            "created_ms": now_ms,
            "producer_timestamp_ms": now_ms + DAY_S * 1000,
        }
        for it in items
    ]
    _put(collector, REMOTE_CORPUS, json.dumps(corpus).encode())
    started = time.monotonic()
    sent = _kafka_client(collector, "produce", COLLECTOR_CONFIG, REMOTE_CORPUS)
    waits["corpus_produce_s"] = time.monotonic() - started
    assert sent["topic"] == raw_topic and sent["pending"] == 0, sent
    for it, ack in zip(items, sent["acks"], strict=True):
        assert ack and ack["error"] is None, f"{it.label} was not acknowledged: {ack}"
        it.partition, it.offset, it.broker_ms = ack["partition"], ack["offset"], ack["timestamp_ms"]
        assert ack["timestamp_type"] == LOG_APPEND_TIME, f"{it.label}: not stamped by the broker: {ack}"
        it.expected = evaluate(it.value or b"", it.broker_ms, rules)
    mine = [it for it in items if it.expected_reason != it.intended]
    assert not mine, "the reference judges these differently from what they were made for: " + ", ".join(
        f"{it.label}: {it.expected_reason} (made for {it.intended})" for it in mine
    )
    print(
        f"\ncorpus: {len(items)} records acknowledged (acks={sent['settings']['acks']}, "
        f"user {sent['settings']['sasl.username']}) in {waits['corpus_produce_s']:.1f}s; expected: "
        f"{dict(Counter(it.expected_reason for it in items))}"
    )

    # b) a second collector whose devices' clock runs a day ahead, bounded
    window_start = _offsets(sent["end_offsets"])
    skewed = (
        f"cd /var/tmp && runuser -u {COLLECTOR_USER} -- {VENV}/bin/fms-collector --config {COLLECTOR_CONFIG}"
        f" --clock-offset-seconds {DAY_S} --max-records {SKEWED_RECORDS} --duration 120"
        f" --devices {SKEWED_DEVICES} --first-device-id {SKEWED_FIRST_ID} --rate 200 --bad-share 0"
        " --seed 11 --metrics-port 0 --log-level INFO 2>&1"
    )
    started = time.monotonic()
    res = host_ssh(collector, skewed, 240)
    waits["skewed_collector_s"] = time.monotonic() - started
    done = re.search(r"collector done: produced=(\d+) delivered=(\d+) failed=(\d+) pending=(\d+)", res.stdout)
    assert res.returncode == 0 and done, (
        f"the day-ahead collector failed (rc={res.returncode}):\n{res.stdout[-3000:]}"
    )
    window_end = _offsets(_kafka_client(collector, "offsets", COLLECTOR_CONFIG)["end_offsets"])
    print(f"day-ahead collector: {done[0]} ({waits['skewed_collector_s']:.1f}s with start-up)")

    # c) wait until the stream's commit log is past everything injected, then one batch more
    started = time.monotonic()
    deadline = started + PROCESS_WITHIN_S
    processed_batch = later_batch = -1
    while True:
        last, prev_end, last_end = _commit_log(namenode, stream["paths"]["checkpoint"], raw_topic)
        if processed_batch < 0 and _past(last_end, window_end):
            processed_batch = last
            waits["until_processed_s"] = time.monotonic() - started
        # (a batch that read records: a stateful query also runs batches without new data)
        if (
            processed_batch >= 0
            and last > processed_batch
            and _past(prev_end, window_end)
            and last_end != prev_end
        ):
            later_batch = last
            waits["until_later_batch_s"] = time.monotonic() - started
            break
        behind = {p: o - last_end.get(p, 0) for p, o in window_end.items() if last_end.get(p, 0) < o}
        print(
            f"  {time.monotonic() - started:4.0f}s: batch {last} committed; "
            + (
                f"behind the injected records by {behind}"
                if behind
                else "past them, waiting for the next batch"
            )
        )
        assert time.monotonic() < deadline, (
            f"the stream did not get past the injected records within {PROCESS_WITHIN_S}s "
            f"(last committed batch {last}, offsets {last_end}, injected up to {window_end}); "
            f"fms-stream: {_stream_health(master, since)}"
        )
        time.sleep(POLL_S)
    print(
        f"stream past the injected records in batch {processed_batch} "
        f"after {waits['until_processed_s']:.0f}s; "
        f"batch {later_batch} (only later records) after {waits['until_later_batch_s']:.0f}s"
    )

    started = time.monotonic()
    envelopes = _read_dlq(broker, kafka["bootstrap_servers"], dlq_topic, dlq_start)
    waits["dlq_read_s"] = time.monotonic() - started
    # at-least-once topic: a retried batch may send an envelope again (same key, same content)
    dead_letters = {
        (e["source"]["partition"], e["source"]["offset"]): e
        for e in envelopes
        if e.get("source", {}).get("topic") == raw_topic
    }
    print(
        f"dead-letter topic: {len(envelopes)} envelopes since the start ({waits['dlq_read_s']:.0f}s to read)"
    )
    good = [it for it in items if it.expected and it.expected.primary is None]
    started = time.monotonic()
    stored_rows, lake_files = _lake_rows(
        namenode,
        stream["paths"]["processed"],
        datetime.fromtimestamp(now_ms / 1000, tz=UTC),
        range(baseline_batch + 1, processed_batch + 1),
        {(it.partition, it.offset) for it in good},
    )
    waits["lake_read_s"] = time.monotonic() - started
    print(f"processed lake: read {lake_files} ({waits['lake_read_s']:.0f}s)")
    return Run(
        topic_config=topic_config,
        settings=sent["settings"],
        items=items,
        skewed_log=done[0],
        skewed_delivered=int(done[2]),
        skewed_window=(window_start, window_end),
        injected_at_ms=now_ms,
        dead_letters=dead_letters,
        before=before,
        after=_stream_metrics(master, stream["metrics"]["port"]),
        health_before=health_before,
        health_after=_stream_health(master, since),
        stored_rows=stored_rows,
        lake_files=lake_files,
        baseline_batch=baseline_batch,
        processed_batch=processed_batch,
        later_batch=later_batch,
        waits=waits,
    )


# ---------------------------------------------------------------------------- the checks


def test_the_raw_topic_is_stamped_by_the_broker(run: Run):
    assert "message.timestamp.type=LogAppendTime" in run.topic_config, run.topic_config
    assert run.settings["acks"] == "all" and run.settings["enable.idempotence"] is True, run.settings
    # every delivery report carried the broker's clock, not the producer's (a day ahead)
    late = [it.label for it in run.items if not 0 <= it.broker_ms - run.injected_at_ms < 120_000]
    assert not late, f"stamped with another clock than the broker's at arrival: {late}"


def _fate(dl: dict[str, Any] | None, row: dict[str, Any] | None) -> str:
    if dl:
        return f"{dl['reason']:15s} {dl.get('detail', '')}"
    if row:
        when = f"device {row['device_id']} at {row['timestamp']}"
        return f"stored in batch {row['batch_id']}: {when}, flags {row['quality_flags']}"
    return "LOST: neither dead-lettered nor stored"


def test_every_injected_record_gets_the_reference_verdict(run: Run):
    wrong: list[str] = []
    got: Counter[str] = Counter()
    for it in run.items:
        ev = it.expected
        assert ev is not None
        dl = run.dead_letters.get((it.partition, it.offset))
        got[_fate(dl, run.stored_rows.get((it.partition, it.offset))).split()[0]] += 1
        where = f"{it.label} ({it.partition}/{it.offset})"
        if ev.primary is None:
            if dl is not None:
                wrong.append(f"{where}: must be stored, was dead-lettered {dl['reason']}: {dl.get('detail')}")
                continue
            row = run.stored_rows.get((it.partition, it.offset))
            want = (ev.device_id, _naive_utc(ev.event_us), _naive_utc(it.broker_ms * 1000))
            got_row = row and (row["device_id"], row["timestamp"], row["ingested_at"])
            if got_row != want:
                wrong.append(f"{where}: stored as (device, time, ingested) {want}? the lake has {got_row}")
            continue
        if dl is None:
            wrong.append(f"{where}: no dead letter (expected {ev.primary.reason.value})")
            continue
        expected = {
            "reason": ev.primary.reason.value,
            "detail": ev.primary.detail,
            "dimension": ev.primary.reason.dimension.value,
            "value": it.value,
            "size": len(it.value or b""),
            "key": it.key.encode(),
            "timestamp_ms": it.broker_ms,
            "device_id": ev.device_id,
            "event_time": _event_time(ev.event_us),
        }
        actual = {
            "reason": dl["reason"],
            "detail": dl.get("detail") or "",
            "dimension": dl.get("dimension"),
            "value": base64.b64decode(dl["value_b64"]) if "value_b64" in dl else None,
            "size": dl.get("size"),
            "key": base64.b64decode(dl.get("key_b64", "")),
            "timestamp_ms": dl["source"]["timestamp_ms"],
            "device_id": dl.get("device_id"),
            "event_time": dl.get("event_time"),
        }
        diff = {k: (expected[k], actual[k]) for k in expected if expected[k] != actual[k]}
        if diff or dl.get("truncated"):
            wrong.append(
                f"{where}: "
                + "; ".join(f"{k}: expected {e!r:.120} got {a!r:.120}" for k, (e, a) in diff.items())
            )
    print(f"\ncorpus outcomes ({len(run.items)} records): {dict(sorted(got.items()))}")
    for it in run.items:
        key = (it.partition, it.offset)
        fate = _fate(run.dead_letters.get(key), run.stored_rows.get(key))
        print(f"  {it.label:32s} {it.partition}/{it.offset:<7d} {fate}")
    assert not wrong, f"{len(wrong)} injected record(s) without their expected fate:\n" + "\n".join(wrong)


def test_a_collector_a_day_ahead_is_dead_lettered_as_future_event(run: Run):
    start, end = run.skewed_window
    ours = {
        k: dl
        for k, dl in run.dead_letters.items()
        if start.get(k[0], 0) <= k[1] < end.get(k[0], 0)
        and SKEWED_FIRST_ID <= (dl.get("device_id") or 0) < SKEWED_FIRST_ID + SKEWED_DEVICES
    }
    reasons = Counter(dl["reason"] for dl in ours.values())
    devices = range(SKEWED_FIRST_ID, SKEWED_FIRST_ID + SKEWED_DEVICES)
    stored = sum(
        _device_count(run.after, d, "stored") - _device_count(run.before, d, "stored") for d in devices
    )
    dead = sum(
        _device_count(run.after, d, "dead_lettered") - _device_count(run.before, d, "dead_lettered")
        for d in devices
    )
    print(
        f"\nday-ahead collector: {run.skewed_log}; "
        f"dead letters of devices {devices.start}..{devices.stop - 1}: "
        f"{dict(reasons)}; the stream counted {dead:.0f} dead-lettered, {stored:.0f} stored"
    )
    assert run.skewed_delivered == SKEWED_RECORDS, run.skewed_log
    assert reasons == {ReasonCode.FUTURE_EVENT.value: SKEWED_RECORDS}, reasons
    details = {dl.get("detail") for dl in ours.values()}
    assert details == {"max_future_skew_seconds=60"}, details
    assert stored == 0 and dead == SKEWED_RECORDS, (stored, dead)


def test_the_fleet_kept_flowing_and_the_stream_never_failed(run: Run):
    h0, h1 = run.health_before, run.health_after
    batches = {b: f"in={i} stored={s} dead-lettered={d}" for b, (i, s, d) in sorted(h1["batches"].items())}
    print(
        f"\nfms-stream: pid {h0['pid']} -> {h1['pid']}, NRestarts {h0['restarts']} -> {h1['restarts']}; "
        f"batches during the module: {batches}"
    )
    print(f"waits: { {k: round(v, 1) for k, v in run.waits.items()} }")
    assert h1["state"] == "active" and h1["pid"] == h0["pid"] and h1["restarts"] == h0["restarts"], (h0, h1)
    assert not h1["fatal"], "the stream's journal reports a failure:\n" + "\n".join(h1["fatal"])
    assert not h1["unwritable_lines"], "records were isolated as UNWRITABLE:\n" + "\n".join(
        h1["unwritable_lines"]
    )
    unwritable = sum(v for k, v in run.after.items() if k.startswith("fms_stream_unwritable_records_total"))
    assert unwritable == sum(
        v for k, v in run.before.items() if k.startswith("fms_stream_unwritable_records_total")
    )
    # the batch after the injection read only records produced after it, and stored the fleet's
    later = h1["batches"].get(run.later_batch)
    assert later is not None, f"no log line of batch {run.later_batch}: {sorted(h1['batches'])}"
    records_in, stored, _ = later
    assert records_in > 0 and stored >= 0.9 * records_in, (
        f"batch {run.later_batch}: in={records_in} stored={stored}"
    )
    grown = run.after["fms_stream_records_stored_total"] - run.before["fms_stream_records_stored_total"]
    assert grown > 0, (run.before, run.after)

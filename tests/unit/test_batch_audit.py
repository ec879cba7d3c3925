"""Pure parts of the conservation audit (fms_jobs.batch.audit): verdict, file selection, loop, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from fms_jobs.batch import audit
from fms_jobs.batch.audit import (
    AuditError,
    AuditResult,
    Gap,
    OffsetRange,
    PartitionFigures,
    audit_until,
    check_config,
    committed_end_offsets,
    edge_gaps,
    exit_code,
    missing_examples,
    parse_args,
    select_files,
)
from fms_jobs.quality.rulebook import DEFAULT_RULES_PATH
from fms_jobs.streaming.config import PASSWORD_ENV, StreamConfig, StreamKafka, librdkafka_config

RANGES = {0: OffsetRange(0, 100), 1: OffsetRange(10, 60), 2: OffsetRange(5, 5)}


def figures(**per_partition: PartitionFigures) -> dict[int, PartitionFigures]:
    return {int(k[1:]): v for k, v in per_partition.items()}


def complete() -> dict[int, PartitionFigures]:
    return figures(
        p0=PartitionFigures(stored=80, dead_lettered=15, duplicates=5, distinct=100, first=0, last=99),
        p1=PartitionFigures(stored=50, distinct=50, first=10, last=59),
    )


# ------------------------------------------------------------------ verdict


def test_conserved_books_balance() -> None:
    r = AuditResult("raw", RANGES, complete(), committed_end={0: 100, 1: 60, 2: 5})
    assert r.records_in == 150 == r.stored + r.dead_lettered + r.duplicates
    assert (r.stored, r.dead_lettered, r.duplicates) == (130, 15, 5)
    assert r.missing == 0 and r.double_counted == 0 and r.balance == 0
    assert r.conserved and r.problems == [] and exit_code(r) == 0
    d = r.to_dict()
    for key in ("records_in", "stored", "dead_lettered", "duplicates", "missing", "double_counted"):
        assert d[key] == getattr(r, key)
    assert d["conserved"] is True
    assert d["partitions"]["0"] == {
        "low": 0,
        "high": 100,
        "lake": 100,
        "stored": 80,
        "dead_lettered": 15,
        "duplicates": 5,
        "missing": 0,
        "double_counted": 0,
        "expired": 0,
        "committed_end": 100,
    }
    assert d["partitions"]["2"]["low"] == d["partitions"]["2"]["high"] == 5
    assert d["partitions"]["2"]["lake"] == 0
    json.dumps(d)  # serialisable as printed


def test_expired_rows_below_low_are_reported_not_an_error() -> None:
    f = complete()
    f[1].expired = 10  # retention removed offsets 0..9 from Kafka; the lake keeps them
    r = AuditResult("raw", RANGES, f, committed_end={})
    assert r.conserved and r.expired == 10 and r.to_dict()["partitions"]["1"]["expired"] == 10
    assert r.stored == 130  # only rows of [low, high) take part in the balance


def test_missing_offsets_split_into_lost_and_not_yet_processed() -> None:
    f = complete()
    f[0] = PartitionFigures(stored=70, dead_lettered=15, duplicates=5, distinct=90, first=0, last=94)
    # the stream committed up to 97 in partition 0: 95..96 are lost, 97..99 still to come
    r = AuditResult("raw", RANGES, f, committed_end={0: 97, 1: 60})
    assert r.missing == 10 and r.not_yet_processed == 3
    assert not r.conserved and exit_code(r) == 2
    assert r.balance == 10
    assert "10 offsets" in r.problems[0] and "3 of them past" in r.problems[0]
    # nothing committed yet: everything missing is still to come; offset log unreadable: unknown (0)
    assert AuditResult("raw", RANGES, f, committed_end={}).not_yet_processed == 10
    assert AuditResult("raw", RANGES, f, committed_end=None).not_yet_processed == 0


def test_transaction_markers_are_offsets_without_a_record() -> None:
    """A topic MirrorMaker 2 writes with exactly-once support: commit markers take offsets."""
    f = complete()
    # partition 0 holds 90 records and 10 commit markers; the lake has every record once
    f[0] = PartitionFigures(stored=72, dead_lettered=13, duplicates=5, distinct=90, first=0, last=98)
    r = AuditResult("raw", RANGES, f, committed_end={0: 100, 1: 60})
    assert r.missing == 10 and r.missing_below_committed_in(0) == 10 and not r.conserved
    r.markers = {0: 10}
    assert r.records_in == 140 == r.stored + r.dead_lettered + r.duplicates
    assert r.missing == 0 and r.balance == 0 and r.conserved
    d = r.to_dict()
    assert d["transaction_markers"] == 10 and d["partitions"]["0"]["markers"] == 10
    # markers explain offsets without a record, never a record the lake lacks
    f[0].distinct, f[0].stored = 85, 67
    assert AuditResult("raw", RANGES, f, committed_end={0: 100, 1: 60}, markers={0: 10}).missing == 5


def test_a_partition_without_any_lake_row_is_all_missing() -> None:
    f = complete()
    del f[1]
    r = AuditResult("raw", RANGES, f)
    assert r.missing == 50 and r.missing_in(1) == 50 and r.stored == 80
    assert r.to_dict()["partitions"]["1"]["lake"] == 0


def test_double_counted_rows() -> None:
    f = complete()
    f[0].stored += 3  # three offsets both stored and dead-lettered (or stored twice)
    f[0].surplus = 3
    r = AuditResult("raw", RANGES, f)
    assert r.missing == 0 and r.double_counted == 3 and r.balance == -3
    assert not r.conserved and "3 rows repeat" in r.problems[0]


def test_rows_beyond_high_or_of_unknown_partitions_break_conservation() -> None:
    f = complete()
    f[1].beyond_high = 2
    r = AuditResult("raw", RANGES, f)
    assert not r.conserved and r.beyond_high == 2 and "high watermark" in r.problems[0]
    assert r.to_dict()["partitions"]["1"]["beyond_high"] == 2
    f = complete()
    f[7] = PartitionFigures(unknown=4)
    r = AuditResult("raw", RANGES, f)
    assert not r.conserved and r.unknown_partition_rows == 4
    assert r.to_dict()["partitions"]["7"]["low"] is None
    assert r.stored == 130  # rows of unknown partitions are not in the balance


# ------------------------------------------------------------------ missing examples


def test_edge_gaps_and_examples() -> None:
    f = figures(p0=PartitionFigures(distinct=90, first=3, last=92))
    ranges = {0: OffsetRange(0, 100), 1: OffsetRange(10, 13), 2: OffsetRange(4, 4)}
    gaps = edge_gaps(ranges, f)
    assert gaps == [Gap(0, 0, 2), Gap(0, 93, 99), Gap(1, 10, 12)]
    interior = [Gap(0, 40, 41)]
    ex = missing_examples(gaps + interior)
    assert ex[:6] == [
        {"partition": 0, "offset": 0},
        {"partition": 0, "offset": 1},
        {"partition": 0, "offset": 2},
        {"partition": 0, "offset": 40},
        {"partition": 0, "offset": 41},
        {"partition": 0, "offset": 93},
    ]
    assert len(ex) == 10 and ex[-1] == {"partition": 0, "offset": 97}
    assert Gap(0, 93, 99).count == 7
    assert missing_examples([Gap(3, 0, 10**9)], limit=3) == [{"partition": 3, "offset": o} for o in range(3)]


def test_committed_end_offsets_from_the_offset_log() -> None:
    entry = (
        "v1\n"
        '{"batchWatermarkMs":0,"batchTimestampMs":1,"conf":{}}\n'
        '{"fms.sensor.raw":{"2":1200,"1":1180,"0":1210}}'
    )
    assert committed_end_offsets(entry, "fms.sensor.raw") == {0: 1210, 1: 1180, 2: 1200}
    assert committed_end_offsets(entry, "other") is None
    assert committed_end_offsets(None, "fms.sensor.raw") is None
    assert committed_end_offsets("v1\n{}\nnot json", "fms.sensor.raw") is None


# ------------------------------------------------------------------ which files count

ROOT = "hdfs://nn:8020/fms/processed"
H = f"{ROOT}/year=2026/month=12/day=1/hour=5"


def test_select_files_counts_committed_batches_and_compacted_files_only() -> None:
    paths = [
        f"{H}/part-000000000003-00000.snappy.parquet",
        f"{H}/part-000000000004-00000.snappy.parquet",  # batch 4: not committed yet
        f"{H}/part-c2026120105-0a1b2c3d-00000.snappy.parquet",  # compacted
        f"{ROOT}/_staging/batch=4/year=2026/month=12/day=1/hour=5/part-00000-x.snappy.parquet",
        f"{ROOT}/_compact/2026120105/part-00000-y.snappy.parquet",
        f"{ROOT}/_manifests/000000000004.json",
        f"{H}/.part-000000000003-00000.snappy.parquet.crc",
        f"{H}/_SUCCESS",
    ]
    sel = select_files(paths, ROOT, last_batch=3)
    assert sel.files == [
        f"{H}/part-000000000003-00000.snappy.parquet",
        f"{H}/part-c2026120105-0a1b2c3d-00000.snappy.parquet",
    ]
    assert sel.uncommitted == [f"{H}/part-000000000004-00000.snappy.parquet"]
    assert sel.compaction_excluded == []
    # nothing committed yet: no batch file counts
    assert select_files(paths, ROOT, last_batch=-1).files == [
        f"{H}/part-c2026120105-0a1b2c3d-00000.snappy.parquet"
    ]


@pytest.mark.parametrize(
    ("outputs_present", "state", "counted"),
    [
        (True, "moving", "outputs"),  # recovery rolls forward: the inputs are about to go
        (False, "moving", "inputs"),  # recovery rolls back: the outputs present are about to go
        (True, "done", "both"),  # finished: the manifest says nothing any more
    ],
)
def test_select_files_resolves_an_interrupted_compaction_like_its_recovery(
    outputs_present: bool, state: str, counted: str
) -> None:
    inputs = [f"{H}/part-000000000001-00000.snappy.parquet", f"{H}/part-000000000002-00000.snappy.parquet"]
    outputs = [
        f"{H}/part-c2026120105-0a1b2c3d-00000.snappy.parquet",
        f"{H}/part-c2026120105-0a1b2c3d-00001.snappy.parquet",
    ]
    present = inputs + (outputs if outputs_present else outputs[:1])
    doc = {"hour": "2026120105", "state": state, "inputs": inputs, "outputs": outputs}
    sel = select_files(present, ROOT, last_batch=9, compactions=[doc])
    if counted == "outputs":
        assert sel.files == outputs and sel.compaction_excluded == inputs
    elif counted == "inputs":
        assert sel.files == inputs and sel.compaction_excluded == outputs[:1]
    else:
        assert sel.files == sorted(present) and sel.compaction_excluded == []


# ------------------------------------------------------------------ re-check loop


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def results(*conserved: bool) -> list[AuditResult]:
    out = []
    for ok in conserved:
        f = complete()
        if not ok:
            f[0].distinct -= 1
            f[0].stored -= 1
        out.append(AuditResult("raw", RANGES, f))
    return out


def test_audit_until_stops_as_soon_as_conserved() -> None:
    clock = FakeClock()
    queue = results(False, False, True, True)
    r = audit_until(lambda: queue.pop(0), wait_seconds=60, interval=5, clock=clock, sleep=clock.sleep)
    assert r.conserved and r.attempts == 3 and clock.sleeps == [5, 5] and r.elapsed_seconds == 10


def test_audit_until_is_bounded() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def never() -> AuditResult:
        calls.append(1)
        clock.t += 2  # each check takes 2 s
        return results(False)[0]

    r = audit_until(never, wait_seconds=20, interval=5, clock=clock, sleep=clock.sleep)
    assert not r.conserved and r.attempts == len(calls) == 3  # t = 2, 9, 16 (+5 > 20: stop)
    assert clock.t - 1000 <= 20


def test_audit_until_once_without_wait() -> None:
    clock = FakeClock()
    r = audit_until(lambda: results(False)[0], clock=clock, sleep=clock.sleep)
    assert r.attempts == 1 and clock.sleeps == []


def test_audit_until_retries_a_failed_attempt_while_time_is_left() -> None:
    clock = FakeClock()
    outcomes: list[Any] = [FileNotFoundError("compacted away"), *results(True)]

    def check() -> AuditResult:
        o = outcomes.pop(0)
        if isinstance(o, Exception):
            raise o
        return o

    assert audit_until(check, wait_seconds=30, interval=5, clock=clock, sleep=clock.sleep).attempts == 2
    with pytest.raises(FileNotFoundError):  # no time left: the failure is the answer
        audit_until(check_raising(FileNotFoundError("x")), clock=clock, sleep=clock.sleep)
    with pytest.raises(AuditError):  # configuration/connectivity: never retried
        audit_until(check_raising(AuditError("topic")), wait_seconds=30, clock=clock, sleep=clock.sleep)


def check_raising(e: Exception) -> Any:
    def check() -> AuditResult:
        raise e

    return check


# ------------------------------------------------------------------ command line and configuration


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--wait-seconds", "-1"], "invalid non-negative number value"),
        (["--interval", "0"], "invalid positive number value"),
        (["--kafka-conf", "novalue"], "--kafka-conf expects KEY=VALUE"),
        (["--conf", "=x"], "--conf expects KEY=VALUE"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_argument_errors_exit_1_not_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 1  # 2 means "not conserved"
    assert message in capsys.readouterr().err


def test_arguments_defaults_and_pairs() -> None:
    a = parse_args([])
    assert a.config == "/etc/fms/stream.yml" and a.wait_seconds == 0 and a.interval == 5
    a = parse_args(
        ["--kafka-conf", "socket.timeout.ms=5000", "--conf", "spark.driver.memory=1g", "--master", "local[1]"]
    )
    assert a.kafka_conf == {"socket.timeout.ms": "5000"} and a.conf == {"spark.driver.memory": "1g"}


def test_librdkafka_config_from_the_stream_config(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    k = StreamKafka(
        bootstrap_servers="k1:9093,k2:9093",
        security_protocol="SASL_SSL",
        sasl_username="fms-stream",
        sasl_password_file=str(pw),
        ssl_ca_location="/etc/fms/tls/ca.crt",
        extra={"ssl.truststore.type": "PEM"},  # Java settings are not librdkafka settings
    )
    assert librdkafka_config(k, "fms-audit") == {
        "bootstrap.servers": "k1:9093,k2:9093",
        "security.protocol": "SASL_SSL",
        "client.id": "fms-audit",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "fms-stream",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/fms/tls/ca.crt",
    }
    assert librdkafka_config(StreamKafka()) == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "PLAINTEXT",
        "client.id": "fms-stream",
    }


def test_check_config() -> None:
    check_config(StreamConfig(), True)
    with pytest.raises(AuditError, match="source: kafka"):
        check_config(StreamConfig(source="parquet", source_path="/x"), True)
    with pytest.raises(AuditError, match="dead_letter_copy: false"):
        check_config(StreamConfig(), False)


def write_config(tmp_path: Path, **doc: Any) -> str:
    p = tmp_path / "stream.yml"
    base: dict[str, Any] = {"paths": {"processed": "/l/p", "dlq": "/l/d", "checkpoint": "/l/c"}}
    base.update(doc)
    p.write_text(yaml.safe_dump(base))
    return str(p)


def no_spark(monkeypatch: pytest.MonkeyPatch) -> None:
    import fms_jobs.sparkutil.session as session

    def fail(*a: object, **k: object) -> None:
        raise AssertionError("no Spark session expected")

    monkeypatch.setattr(session, "build_session", fail)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (None, "file not found"),
        ({"kafka": {"security_protocol": "SASL_SSL", "sasl_username": "u"}}, "password missing"),
        ({"source": "parquet", "source_path": "/x"}, "source: kafka"),
        ({"rules_path": "NODUP"}, "dead_letter_copy: false"),
        ({"rules_path": "/nonexistent/rules.yaml"}, "rules"),
    ],
)
def test_main_configuration_errors_exit_1(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    doc: dict[str, Any] | None,
    message: str,
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    no_spark(monkeypatch)
    if doc is None:
        config = str(tmp_path / "absent.yml")
    else:
        if doc.get("rules_path") == "NODUP":
            rules = yaml.safe_load(Path(DEFAULT_RULES_PATH).read_text())
            rules["duplicates"]["dead_letter_copy"] = False
            (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
            doc = {"rules_path": str(tmp_path / "rules.yaml")}
        config = write_config(tmp_path, **doc)
    assert audit.main(["--config", config]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "fms-audit: configuration error" in out.err and message in out.err


class FakeSpark:
    stopped = False

    def stop(self) -> None:
        self.stopped = True


@pytest.mark.parametrize(("conserved", "code"), [(True, 0), (False, 2)])
def test_main_prints_one_json_object_and_exits_by_the_verdict(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    conserved: bool,
    code: int,
) -> None:
    seen: dict[str, Any] = {}

    def fake_run(spark: Any, cfg: StreamConfig, kafka_conf: dict[str, Any], timeout: float) -> AuditResult:
        seen.update(kafka_conf=kafka_conf, topic=cfg.kafka.topic, timeout=timeout)
        return results(conserved)[0]

    monkeypatch.setattr(audit, "run_audit", fake_run)
    spark = FakeSpark()
    config = write_config(tmp_path, kafka={"bootstrap_servers": "k:9092", "topic": "raw"})
    argv = ["--config", config, "--kafka-conf", "socket.timeout.ms=1000", "--kafka-timeout", "7"]
    assert audit.main(argv, spark=spark) == code  # type: ignore[arg-type]
    doc = json.loads(capsys.readouterr().out)
    assert doc["conserved"] is conserved and doc["records_in"] == 150 and doc["attempts"] == 1
    assert seen == {
        "kafka_conf": {
            "bootstrap.servers": "k:9092",
            "security.protocol": "PLAINTEXT",
            "client.id": "fms-audit",
            "socket.timeout.ms": "1000",
        },
        "topic": "raw",
        "timeout": 7.0,
    }
    assert not spark.stopped  # a session handed in is the caller's to stop


def test_main_kafka_failure_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unreachable(*a: object, **k: object) -> AuditResult:
        raise AuditError("kafka k:9092: Local: Broker transport failure")

    monkeypatch.setattr(audit, "run_audit", unreachable)
    assert audit.main(["--config", write_config(tmp_path)], spark=FakeSpark()) == 1  # type: ignore[arg-type]
    assert "Broker transport failure" in capsys.readouterr().err

"""Pure parts of the streaming and batch jobs: config, Kafka options, state, metrics, lake layout."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from fms_jobs.batch.archive import Dataset, partition_time, s3a_conf
from fms_jobs.batch.hourly_summary import HourResult, write_textfile
from fms_jobs.lake import Hour, batch_file_prefix, batch_of
from fms_jobs.quality.reasons import Dimension
from fms_jobs.sparkutil.jars import KAFKA_CONNECTOR, MissingJars, find_jars, maven_path
from fms_jobs.streaming.config import (
    PASSWORD_ENV,
    StreamConfig,
    StreamConfigError,
    StreamKafka,
    kafka_client_options,
    load_stream_config,
)
from fms_jobs.streaming.metrics import BulkHistogram, StreamMetrics
from fms_jobs.streaming.state import BatchAggregate, DeviceStats, merge
from prometheus_client import generate_latest

# ------------------------------------------------------------------ configuration


def test_stream_config_file_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "s.yml"
    p.write_text(
        yaml.safe_dump(
            {
                "kafka": {"topic": "t", "max_offsets_per_trigger": 1000},
                "trigger": {"processing_time": "5 seconds"},
            }
        )
    )
    cfg = load_stream_config(str(p), {"paths.processed": "/a", "paths.dlq": "/b", "paths.checkpoint": "/c"})
    assert cfg.kafka.topic == "t" and cfg.kafka.max_offsets_per_trigger == 1000
    assert cfg.trigger.processing_time == "5 seconds" and cfg.paths.processed == "/a"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"nope": 1}, "unknown setting"),
        ({"source": "files"}, "source must be"),
        ({"source": "parquet"}, "source_path is required"),
        ({"kafka": {"security_protocol": "SASL_SSL"}}, "sasl_username is required"),
        ({"kafka": {"security_protocol": "SASL_SSL", "sasl_username": "u"}}, "password missing"),
        ({"kafka": {"max_offsets_per_trigger": 0}}, "max_offsets_per_trigger"),
        ({"paths": {"processed": "/x", "dlq": "/x"}}, "must differ"),
        ({"trigger": {"processing_time": None}}, "trigger"),
    ],
)
def test_stream_config_errors(
    tmp_path: Path, doc: dict, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    p = tmp_path / "s.yml"
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(StreamConfigError, match=message):
        load_stream_config(str(p))


def test_kafka_options_sasl_ssl_scram(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text('p"w\n')
    k = StreamKafka(
        bootstrap_servers="k1:9093",
        security_protocol="SASL_SSL",
        sasl_username="fms-stream",
        sasl_password_file=str(pw),
        ssl_ca_location="/etc/fms/tls/ca.crt",
        extra={"request.timeout.ms": "30000"},
    )
    o = kafka_client_options(k)
    assert o["kafka.bootstrap.servers"] == "k1:9093" and o["kafka.security.protocol"] == "SASL_SSL"
    assert o["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert o["kafka.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="fms-stream" password="p\\"w";'
    )
    assert (
        o["kafka.ssl.truststore.type"] == "PEM"
        and o["kafka.ssl.truststore.location"] == "/etc/fms/tls/ca.crt"
    )
    assert o["kafka.request.timeout.ms"] == "30000"
    assert "kafka.sasl.mechanism" not in kafka_client_options(StreamKafka())


def test_the_collector_and_the_stream_read_settings_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One loader (fms_jobs.settings) serves both jobs; each keeps its own error class and file label."""
    from fms_jobs.collector.config import ConfigError, load_config

    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    missing_pw = {
        "security_protocol": "SASL_SSL",
        "sasl_username": "u",
        "sasl_password_file": "/nonexistent/pw",
    }
    p = tmp_path / "c.yml"
    p.write_text(yaml.safe_dump({"kafka": missing_pw}))
    for load, error in ((load_config, ConfigError), (load_stream_config, StreamConfigError)):
        with pytest.raises(error, match=r"kafka\.sasl_password_file: cannot read /nonexistent/pw"):
            load(str(p))
        with pytest.raises(error, match=r"unknown override kafka\.colour"):
            load(None, {"kafka.colour": "blue"})
    with pytest.raises(ConfigError, match=re.escape(f"collector config {tmp_path}/x.yml: file not found")):
        load_config(str(tmp_path / "x.yml"))
    with pytest.raises(StreamConfigError, match=re.escape(f"stream config {tmp_path}/x.yml: file not found")):
        load_stream_config(str(tmp_path / "x.yml"))


def test_default_config_validates() -> None:
    StreamConfig().validate()


# ------------------------------------------------------------------ per-device state


def test_state_merge_new_device_and_ewm_update() -> None:
    sig = ["sensor1"]
    s1 = merge({}, [BatchAggregate(7, 4, 1000, {"sensor1": 40.0}, {"sensor1": 404.0})], 0.5, sig)
    st = s1[7]
    assert st.n == 4 and st.max_event_us == 1000
    assert st.mean["sensor1"] == pytest.approx(10.0) and st.std("sensor1") == pytest.approx(1.0)
    s2 = merge(s1, [BatchAggregate(7, 1, 900, {"sensor1": 20.0}, {"sensor1": 400.0})], 0.5, sig)
    assert s2[7].n == 5 and s2[7].max_event_us == 1000
    assert s2[7].mean["sensor1"] == pytest.approx(15.0)  # weight 1-(1-0.5)^1 = 0.5
    assert s1[7].mean["sensor1"] == pytest.approx(10.0), "merge does not mutate the old state"
    assert DeviceStats.from_json(s2[7].to_json()) == s2[7]


def test_fast_path_only_when_every_candidate_survived_and_nothing_else() -> None:
    from fms_jobs.streaming.job import fast_path_holds

    assert fast_path_holds({"cand": 5, "surv": 5, "other": 0})
    assert not fast_path_holds({"cand": 5, "surv": 4, "other": 0})  # a duplicate or a late row
    assert not fast_path_holds({"cand": 5, "surv": 5, "other": 1})  # a survivor that is no candidate
    assert fast_path_holds({"cand": 0, "surv": 0, "other": 0})  # an empty batch


def test_latency_histogram_matches_the_bucket_rule() -> None:
    """lat = commit - created (ms); a row counts in every bucket whose bound (s) it does not exceed."""
    from fms_jobs.streaming.job import latency_histogram

    h = latency_histogram([9_000, 9_500, 9_900, 10_000, None], 10_000, (0.1, 0.5, 1.0, 5.0))
    # latencies 1000, 500, 100, 0 ms; the null creation time counts in no bucket and no sum
    assert h.le_counts == [2, 3, 4, 4] and h.sum_ms == 1600
    assert latency_histogram([], 1, (1.0,)).le_counts == [0]


# ------------------------------------------------------------------ metrics


def test_bulk_histogram_exposition() -> None:
    m = StreamMetrics(per_device=True)
    m.e2e.add([0] * 3 + [5] * (len(m.e2e.buckets) - 3), 6, 12.5)
    reg = m.registry
    assert reg.get_sample_value("fms_stream_e2e_latency_seconds_count") == 6
    assert reg.get_sample_value("fms_stream_e2e_latency_seconds_sum") == 12.5
    assert reg.get_sample_value("fms_stream_e2e_latency_seconds_bucket", {"le": "0.1"}) == 0
    assert reg.get_sample_value("fms_stream_e2e_latency_seconds_bucket", {"le": "1.0"}) == 5
    assert reg.get_sample_value("fms_stream_e2e_latency_seconds_bucket", {"le": "+Inf"}) == 6
    with pytest.raises(ValueError):
        BulkHistogram("x", "y", (1.0,)).add([1, 2], 2, 1.0)


def test_a_starting_driver_counts_its_start_as_progress() -> None:
    """Until the first batch completes, the stall alert measures from the driver's start, not 1970."""
    import time

    before = time.time()
    r = StreamMetrics().registry
    assert before <= r.get_sample_value("fms_stream_last_progress_timestamp_seconds") <= time.time()


def test_no_quality_score_is_exported_before_a_record_is_judged() -> None:
    """A score of 0 from a driver that has just (re)started would fire FmsQualityScoreLow."""
    m = StreamMetrics()
    empty = {
        "in": 0,
        "stored": 0,
        "duplicates": 0,
        "dead_lettered": {},
        "flags": {},
        "passed": {},
        "clean": 0,
        "conserved": True,
        "devices": {},
    }
    assert m.registry.get_sample_value("fms_stream_quality_score") is None
    m.record_batch(empty)
    assert m.registry.get_sample_value("fms_stream_quality_score") is None, "an empty batch judges nothing"
    text = generate_latest(m.registry).decode()
    assert "# TYPE fms_stream_quality_score gauge" in text and "\nfms_stream_quality_score " not in text
    m.record_batch(
        empty
        | {
            "in": 4,
            "stored": 4,
            "clean": 3,
            "conserved": True,
            "passed": dict.fromkeys((d.value for d in Dimension), 4),
        }
    )
    assert m.registry.get_sample_value("fms_stream_quality_score") == 0.75


def test_record_batch_metrics_contract_names() -> None:
    m = StreamMetrics()
    m.record_batch(
        {
            "in": 10,
            "stored": 7,
            "duplicates": 1,
            "dead_lettered": {"NOT_UTF8": 2},
            "flags": {"OUT_OF_ORDER": 1},
            "passed": {"completeness": 8, "accuracy": 9, "consistency": 7, "timeliness": 10},
            "clean": 6,
            "conserved": True,
            "phases": {"read_classify_dedup": 1.5, "writes": 0.75, "writes.processed": 0.7},
            "devices": {
                3: {
                    "in": 10,
                    "stored": 7,
                    "dead_lettered": 2,
                    "duplicate": 1,
                    "clean": 6,
                    "passed": {"completeness": 8, "accuracy": 9, "consistency": 7, "timeliness": 10},
                }
            },
        }
    )
    r = m.registry
    assert r.get_sample_value("fms_stream_records_in_total") == 10

    assert r.get_sample_value("fms_stream_records_stored_total") == 7
    assert r.get_sample_value("fms_stream_duplicates_total") == 1
    assert r.get_sample_value("fms_stream_records_dead_lettered_total", {"reason": "NOT_UTF8"}) == 2
    assert r.get_sample_value("fms_stream_quality_pass_ratio", {"dimension": "consistency"}) == 0.7
    assert r.get_sample_value("fms_stream_quality_score") == 0.6
    assert r.get_sample_value("fms_stream_device_quality_score", {"device_id": "3"}) == 0.6
    assert (
        r.get_sample_value("fms_stream_device_records_total", {"device_id": "3", "outcome": "duplicate"}) == 1
    )
    assert r.get_sample_value("fms_stream_conservation_errors_total") == 0
    phase = "fms_stream_batch_phase_seconds_total"
    assert r.get_sample_value(phase, {"phase": "read_classify_dedup"}) == 1.5
    assert r.get_sample_value(phase, {"phase": "writes.processed"}) == 0.7
    for name in (
        "fms_stream_batch_duration_seconds_count",
        "fms_stream_last_progress_timestamp_seconds",
        "fms_stream_input_rows_per_second",
    ):
        assert r.get_sample_value(name) is not None


def test_unwritable_records_are_counted_by_output() -> None:
    m = StreamMetrics()
    batch = {
        "in": 3,
        "stored": 1,
        "duplicates": 0,
        "dead_lettered": {"UNWRITABLE": 2},
        "flags": {},
        "passed": {"completeness": 3, "accuracy": 1, "consistency": 3, "timeliness": 3},
        "clean": 1,
        "conserved": True,
        "devices": {},
        "unwritable": {"processed": 1, "dlq": 1},
    }
    m.record_batch(batch)
    m.record_batch({**batch, "unwritable": {"processed": 2}})
    r = m.registry
    assert r.get_sample_value("fms_stream_unwritable_records_total", {"output": "processed"}) == 3
    assert r.get_sample_value("fms_stream_unwritable_records_total", {"output": "dlq"}) == 1
    assert r.get_sample_value("fms_stream_records_dead_lettered_total", {"reason": "UNWRITABLE"}) == 4


# ------------------------------------------------------------------ poison-pill isolation


def _bisect(
    n: int, bad: set[int], **kw: object
) -> tuple[list[tuple[int, BaseException]], list[tuple[int, int]]]:
    from fms_jobs.streaming.job import find_unwritable

    calls: list[tuple[int, int]] = []

    def attempt(lo: int, hi: int) -> BaseException | None:
        calls.append((lo, hi))
        hit = sorted(bad & set(range(lo, hi)))
        return ValueError(f"bad {hit}") if hit else None

    limits: dict[str, object] = {"max_records": 50, "deadline": float("inf")}
    limits.update(kw)
    found = find_unwritable(n, attempt, ValueError("whole batch"), **limits)  # type: ignore[arg-type]
    return found, calls


@pytest.mark.parametrize(
    ("n", "bad"), [(1, {0}), (2, {1}), (7, {3}), (1000, {0, 999}), (1000, {10, 11, 500})]
)
def test_bisection_finds_exactly_the_unwritable_records_in_few_writes(n: int, bad: set[int]) -> None:
    import math

    found, calls = _bisect(n, bad)
    assert [i for i, _ in found] == sorted(bad)
    expected = (lambda i: f"bad [{i}]") if n > 1 else (lambda i: "whole batch")  # a batch of one: its error
    assert all(str(e) == expected(i) for i, e in found), "each record's own error is reported"
    assert len(calls) <= 2 * len(bad) * max(1, math.ceil(math.log2(n)))
    assert all(hi - lo >= 1 for lo, hi in calls)


def test_bisection_gives_up_on_a_failure_no_record_reproduces_and_beyond_its_limits() -> None:
    from fms_jobs.streaming.job import IsolationLimit

    found, calls = _bisect(8, set())  # the whole frame failed, yet every half works: not a record
    assert found == [] and calls == [(4, 8), (0, 4)]
    assert _bisect(0, set()) == ([], [])
    with pytest.raises(IsolationLimit, match="more than 3 records"):
        _bisect(100, set(range(100)), max_records=3)  # an output refusing everything is no poison pill
    ticks = iter(range(100))
    with pytest.raises(IsolationLimit, match="too long"):
        _bisect(1024, {5}, deadline=3, clock=lambda: next(ticks))


def test_error_summary_names_the_root_cause() -> None:
    from fms_jobs.streaming.job import error_summary

    assert error_summary(OSError("disk full\nmore")) == "OSError: disk full"

    class _Java:
        def __init__(self, cls: str, msg: str, cause: object = None, error_class: str | None = None) -> None:
            self.cls, self.msg, self.cause, self.error_class = cls, msg, cause, error_class

        def getCause(self) -> object:  # the Java API
            return self.cause

        def getErrorClass(self) -> str | None:
            if self.error_class is None:
                raise AttributeError("not a SparkThrowable")
            return self.error_class

        def getClass(self) -> object:
            return type("C", (), {"getName": lambda _s: self.cls})()

        def getMessage(self) -> str:
            return self.msg

    class FakePy4JError(Exception):
        def __init__(self, java: _Java) -> None:
            super().__init__("An error occurred while calling o88.parquet")
            self.java_exception = java

    ancient = _Java(
        "org.apache.spark.SparkUpgradeException",
        "[INCONSISTENT_BEHAVIOR_CROSS_VERSION.WRITE_ANCIENT_DATETIME] You may get a different result\n...",
        error_class="INCONSISTENT_BEHAVIOR_CROSS_VERSION.WRITE_ANCIENT_DATETIME",
    )
    task = _Java(
        "org.apache.spark.SparkException", "[TASK_WRITE_FAILED] Task failed", ancient, "TASK_WRITE_FAILED"
    )
    job = _Java("org.apache.spark.SparkException", "Job aborted due to stage failure", task)
    assert error_summary(FakePy4JError(job)) == (
        "INCONSISTENT_BEHAVIOR_CROSS_VERSION.WRITE_ANCIENT_DATETIME: You may get a different result"
    )
    poison = _Java("java.lang.RuntimeException", "injected poison")
    assert (
        error_summary(FakePy4JError(_Java("x", "y", poison))) == "java.lang.RuntimeException: injected poison"
    )


# ------------------------------------------------------------------ lake layout, batch jobs


def test_hour_parsing_and_layout() -> None:
    h = Hour.parse("2024-01-15T14")
    assert (
        h == Hour.parse("2024-01-15T14:00:00Z") == Hour.containing(datetime(2024, 1, 15, 14, 59, tzinfo=UTC))
    )
    assert h.partition() == "year=2024/month=1/day=15/hour=14"
    assert h.day_partition() == "year=2024/month=1/day=15" and h.key == "2024011514"
    assert h.end - h.start == timedelta(hours=1)
    with pytest.raises(ValueError):
        Hour.parse("yesterday")


def test_the_batch_jobs_layout_is_the_lakes() -> None:
    """What the hourly job writes is what the audit, the archive and lake.py recognise."""
    from fms_jobs.batch.archive import partition_time
    from fms_jobs.lake import COMPACT_FILE, compacted_file_name, compaction_manifest, compaction_staging

    h = Hour.parse("2024-01-15T14")
    name = compacted_file_name(h, "0a1b2c3d", 7)
    assert name == "part-c2024011514-0a1b2c3d-00007.snappy.parquet"
    assert COMPACT_FILE.search(f"/lake/{h.partition()}/{name}") and batch_of(f"/x/{name}") is None
    assert compaction_manifest("/lake", h) == "/lake/_compactions/2024011514.json"
    assert compaction_staging("/lake", h) == "/lake/_compact/2024011514"
    assert partition_time(h.partition()) == (h.start, timedelta(hours=1))
    assert partition_time(h.day_partition()) == (h.start.replace(hour=0), timedelta(days=1))


def test_processed_and_summary_tables_keep_their_seed_004_columns() -> None:
    """Read from quality/schema.py now; the names and order are the lake readers' contract."""
    from fms_jobs.batch.hourly_summary import STDDEV_NAME, SUMMARY_COLUMNS
    from fms_jobs.streaming.job import DLQ_COLUMNS, PROCESSED_COLUMNS

    assert PROCESSED_COLUMNS[:10] == (
        "device_id",
        "timestamp",
        "temperature",
        "humidity",
        "pressure",
        "motor1_rpm",
        "motor2_rpm",
        "motor3_rpm",
        "is_fail",
        "temperature_fahrenheit",
    )
    assert "device_id" in DLQ_COLUMNS and SUMMARY_COLUMNS[0] == "device_id"
    stddevs = {"temperature": "temp_stddev", "humidity": "humidity_stddev", "pressure": "pressure_stddev"}
    assert stddevs == STDDEV_NAME


def test_batch_file_names() -> None:
    name = f"/x/year=2024/month=1/day=1/hour=0/{batch_file_prefix(42)}00000.snappy.parquet"
    assert batch_of(name) == 42
    assert batch_of("/x/part-c2024011514-abcd1234-00000.snappy.parquet") is None


def test_archive_helpers() -> None:
    d = Dataset.parse("processed=hdfs:///fms/processed=s3a://bucket/processed/")
    assert (d.name, d.source, d.dest) == ("processed", "hdfs:///fms/processed", "s3a://bucket/processed")
    with pytest.raises(ValueError):
        Dataset.parse("processed=only-one")
    start, length = partition_time("year=2024/month=1/day=15/hour=14")  # type: ignore[misc]
    assert start == datetime(2024, 1, 15, 14, tzinfo=UTC) and length == timedelta(hours=1)
    assert partition_time("year=2024/month=1/day=15")[1] == timedelta(days=1)  # type: ignore[index]
    assert partition_time("misc/dir") is None
    conf = s3a_conf("http://127.0.0.1:5000", True, "ap-northeast-2")
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:5000"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"


def test_hourly_textfile(tmp_path: Path) -> None:
    write_textfile(
        str(tmp_path), [HourResult("2024-01-15T14:00Z", "summarised"), HourResult("x", "not_closed")]
    )
    text = (tmp_path / "fms_hourly.prom").read_text()
    assert "fms_hourly_last_success_timestamp_seconds " in text
    assert 'fms_hourly_hours_processed{status="summarised"} 1' in text
    assert "fms_hourly_last_hour_timestamp_seconds 1705327200" in text


def test_hourly_textfile_is_readable_by_node_exporter_under_the_units_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)  # the fms-hourly-summary unit's UMask
    try:
        write_textfile(str(tmp_path), [HourResult("2024-01-15T14:00Z", "summarised")])
    finally:
        os.umask(old)
    assert (tmp_path / "fms_hourly.prom").stat().st_mode & 0o777 == 0o644


def test_jar_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FMS_SPARK_JARS", raising=False)
    assert (
        maven_path("org.apache.kafka:kafka-clients:3.4.1")
        == "org/apache/kafka/kafka-clients/3.4.1/kafka-clients-3.4.1.jar"
    )
    repo = tmp_path / "m2"
    for c in KAFKA_CONNECTOR:
        f = repo / maven_path(c)
        f.parent.mkdir(parents=True)
        f.write_bytes(b"jar")
    assert len(find_jars(KAFKA_CONNECTOR, [repo])) == len(KAFKA_CONNECTOR)
    with pytest.raises(MissingJars, match="kafka-clients"):
        (repo / maven_path(KAFKA_CONNECTOR[2])).unlink()
        find_jars(KAFKA_CONNECTOR, [repo])
    monkeypatch.setenv("FMS_SPARK_JARS", "/a.jar, /b.jar")
    assert find_jars(KAFKA_CONNECTOR, [repo]) == ["/a.jar", "/b.jar"]


def test_stream_entry_point_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1 only for configuration errors (the unit does not restart those); 2 for run-time failures."""
    import fms_jobs.sparkutil.session as session
    from fms_jobs.streaming import __main__ as stream_main

    assert stream_main.main(["--config", str(tmp_path / "missing.yml")]) == 1

    def unreachable(*_: object, **__: object) -> None:
        raise RuntimeError("All masters are unresponsive! Giving up.")

    monkeypatch.setattr(session, "build_session", unreachable)
    paths = [f"--{name}={tmp_path / name}" for name in ("processed", "dlq", "checkpoint")]
    argv = ["--bootstrap-servers", "127.0.0.1:9", "--metrics-port", "0", *paths]
    assert stream_main.main(argv) == 2


# ------------------------------------------------------------------ parallel batch steps


def test_batch_steps_run_side_by_side_and_the_first_error_is_raised_after_all_finished() -> None:
    import threading

    from fms_jobs.streaming.job import run_side_by_side

    # each step waits for the other: this only completes when they run at the same time
    a_started, b_started = threading.Event(), threading.Event()

    def a() -> None:
        a_started.set()
        assert b_started.wait(10), "step b did not run while step a ran"

    def b() -> None:
        b_started.set()
        assert a_started.wait(10), "step a did not run while step b ran"

    seconds = run_side_by_side({"a": a, "b": b})
    assert set(seconds) == {"a", "b"} and all(v >= 0 for v in seconds.values())

    finished: list[str] = []

    def fails() -> None:
        raise OSError("disk full")

    def slow() -> None:
        time.sleep(0.2)
        finished.append("slow")

    with pytest.raises(OSError, match="disk full"):
        run_side_by_side({"fails": fails, "slow": slow})
    assert finished == ["slow"]
    assert run_side_by_side({}) == {}
    # with an errors dict, every failure is reported by step and none is raised
    errors: dict[str, BaseException] = {}
    seconds = run_side_by_side({"fails": fails, "slow": slow, "ok": lambda: None}, errors)
    assert set(seconds) == {"fails", "slow", "ok"}
    assert list(errors) == ["fails"] and isinstance(errors["fails"], OSError)


def test_batch_steps_run_without_an_active_spark_context_after_one_stopped(monkeypatch) -> None:
    """A stopped SparkContext leaves PySpark's pinned-thread gateway behind; steps must still run."""
    from fms_jobs.streaming.job import run_side_by_side
    from py4j.clientserver import ClientServer
    from pyspark import SparkContext

    monkeypatch.setattr(SparkContext, "_gateway", object.__new__(ClientServer))
    monkeypatch.setattr(SparkContext, "_active_spark_context", None)
    ran: list[str] = []
    seconds = run_side_by_side({"a": lambda: ran.append("a"), "b": lambda: ran.append("b")})
    assert sorted(ran) == ["a", "b"] and set(seconds) == {"a", "b"}


# ------------------------------------------------------------------ stall watchdog


def test_stall_watchdog_fires_only_after_the_limit_without_progress() -> None:
    from fms_jobs.streaming.watchdog import StallWatchdog

    now = [1000.0]
    dog = StallWatchdog(300, clock=lambda: now[0])
    now[0] += 299
    assert dog.stalled() is None
    dog.beat("batch 7")
    now[0] += 300
    assert dog.stalled() is None, "a beat restarts the count"
    now[0] += 1
    reason = dog.stalled()
    assert reason is not None and "301 s" in reason and "batch 7" in reason
    off = StallWatchdog(0, clock=lambda: now[0])
    now[0] += 10**6
    assert off.stalled() is None, "0 disables the watchdog"
    with pytest.raises(ValueError, match=">= 0"):
        StallWatchdog(-1)


@pytest.mark.parametrize("value", [-1, "600", 1.5, True])
def test_stall_restart_seconds_must_be_a_whole_number_of_seconds(value: object) -> None:
    with pytest.raises(StreamConfigError, match="stall_restart_seconds"):
        StreamConfig(stall_restart_seconds=value).validate()  # type: ignore[arg-type]
    assert StreamConfig(stall_restart_seconds=0).stall_restart_seconds == 0


def test_a_hung_stop_is_abandoned_after_its_time() -> None:
    import threading

    from fms_jobs.streaming.__main__ import call_within

    release = threading.Event()
    started = time.monotonic()
    assert call_within(lambda: release.wait(30), 0.3) is False
    assert time.monotonic() - started < 5
    release.set()
    assert call_within(lambda: None, 5) is True

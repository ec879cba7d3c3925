"""fms-bench: the measurement arithmetic, the sustained-rate decision, the lab derivation.

No Kafka, Spark or lab: the metrics come from the streaming job's real Prometheus registry
(fms_jobs.streaming.metrics) rendered to text, the perf-tool and offset lines are real output of
Kafka 4.1.2's kafka-producer-perf-test.sh / kafka-get-offsets.sh.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fms_tools.bench import cli, environment, metrics, plot, results
from fms_tools.bench import lab as bench_lab
from fms_tools.fmsops.platform_contract import load as load_platform
from prometheus_client import generate_latest

# ---------------------------------------------------------------------------- histogram arithmetic

BUCKETS = [(1.0, 10.0), (2.0, 30.0), (5.0, 90.0), (10.0, 100.0), (math.inf, 100.0)]


def test_quantile_interpolates_linearly_inside_the_bucket() -> None:
    # rank 50 lies in (2, 5]: 30 below, 60 inside -> 2 + 3 * (50 - 30) / 60 = 3.0
    assert metrics.quantile(BUCKETS, 0.5) == pytest.approx(3.0)
    # rank 10 is exactly the first bucket's count -> its upper bound
    assert metrics.quantile(BUCKETS, 0.1) == pytest.approx(1.0)
    # rank 5 in the first bucket, whose lower bound is 0
    assert metrics.quantile(BUCKETS, 0.05) == pytest.approx(0.5)
    # rank 95 in (5, 10]: 5 + 5 * (95 - 90) / 10
    assert metrics.quantile(BUCKETS, 0.95) == pytest.approx(7.5)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    buckets = [(1.0, 10.0), (2.0, 50.0), (math.inf, 100.0)]
    assert metrics.quantile(buckets, 0.99) == 2.0


def test_quantile_without_observations_is_none() -> None:
    assert metrics.quantile([], 0.5) is None
    assert metrics.quantile([(1.0, 0.0), (math.inf, 0.0)], 0.5) is None


def test_delta_buckets_subtracts_per_bound_and_rejects_a_reset() -> None:
    before = [(1.0, 5.0), (2.0, 10.0), (math.inf, 12.0)]
    after = [(1.0, 7.0), (2.0, 20.0), (math.inf, 40.0)]
    assert metrics.delta_buckets(before, after) == [(1.0, 2.0), (2.0, 10.0), (math.inf, 28.0)]
    assert metrics.delta_buckets([], after) == after  # first scrape: everything is new
    # the driver restarted between the snapshots: counters went down -> no delta
    assert metrics.delta_buckets(after, before) == []


def _stream_metrics_text(batches: list[tuple[list[int], int, float]], records_in: int) -> str:
    from fms_jobs.streaming.metrics import StreamMetrics

    m = StreamMetrics(per_device=False)
    for le_counts, count, total in batches:
        m.e2e.add(le_counts, count, total)
        m.batch_duration.observe(1.5)
    m.records_in.inc(records_in)
    return generate_latest(m.registry).decode()


def test_percentiles_come_from_the_histogram_delta_of_the_real_stream_metrics() -> None:
    from fms_jobs.streaming.metrics import E2E_BUCKETS

    n = len(E2E_BUCKETS)
    # batch before the window: 100 fast records (all <= 0.1 s)
    fast = ([100] * n, 100, 5.0)
    s1 = metrics.parse_metrics(_stream_metrics_text([fast], 100))
    # the window's batch: 200 records, none <= 5 s, 100 <= 7.5 s, all 200 <= 10 s
    slow_counts = [0 if b <= 5 else (100 if b <= 7.5 else 200) for b in E2E_BUCKETS]
    s2 = metrics.parse_metrics(_stream_metrics_text([fast, (slow_counts, 200, 1700.0)], 300))

    h1, h2 = metrics.histogram(s1, metrics.E2E), metrics.histogram(s2, metrics.E2E)
    assert h2[-1] == (math.inf, 300.0) and len(h2) == n + 1
    d = metrics.delta_buckets(h1, h2)
    assert d[-1] == (math.inf, 200.0)
    # the window's own median: rank 100 of 200 -> the top of (5, 7.5]; the fast batch is excluded
    assert metrics.quantile(d, 0.5) == pytest.approx(7.5)
    assert metrics.quantile(d, 0.99) == pytest.approx(7.5 + 2.5 * (198 - 100) / 100)
    # over everything the median would be wrong (the fast batch drags it down)
    assert metrics.quantile(h2, 0.5) < 7.5
    assert metrics.value(s2, metrics.RECORDS_IN) - metrics.value(s1, metrics.RECORDS_IN) == 200
    assert metrics.value(s2, metrics.BATCHES) == 2


def test_slope_is_the_least_squares_slope() -> None:
    assert metrics.slope([(0, 10), (1, 12), (2, 14), (3, 16)]) == pytest.approx(2.0)
    assert metrics.slope([(0, 5), (10, 5), (20, 5)]) == 0.0
    assert metrics.slope([(0, 0), (1, 3), (2, 1), (3, 4)]) == pytest.approx(1.0)  # 5 / 5
    assert metrics.slope([(0, 100), (10, 50)]) == pytest.approx(-5.0)
    assert metrics.slope([(1, 1)]) == 0.0
    assert metrics.slope([(2, 1), (2, 5)]) == 0.0  # no spread in x


def test_slope_se_is_the_standard_error_of_the_slope() -> None:
    assert metrics.slope_se([(0, 10), (1, 12), (2, 14), (3, 16)]) == 0.0  # on a line: no noise
    assert metrics.slope_se([(0, 1), (5, 9)]) == 0.0  # two points: undefined -> no allowance
    # fit y = x + 0.5 on (0,0),(1,3),(2,1),(3,4): residuals -0.5, 1.5, -1.5, 0.5 -> s^2 = 5/2, den = 5
    assert metrics.slope_se([(0, 0), (1, 3), (2, 1), (3, 4)]) == pytest.approx(math.sqrt(2.5 / 5))


# Lag right after each batch (s, records) of two loopback runs on a busy 2-core machine, ~20 s batches:
# 100/s: the lag swings by a batch's worth and comes back (keeps up); 200/s while another job took
# the CPU: it climbs by ~4000 records in 140 s (falls behind).
LAG_100 = [(0.0, 1828.0), (26.2, 2933.0), (56.9, 3457.0), (82.1, 2898.0), (103.4, 2390.0)]
LAG_200 = [(0.0, 4706.0), (26.3, 5733.0), (64.8, 8222.0), (100.0, 7653.0), (140.4, 8596.0)]


def test_decide_allows_for_batch_noise_but_not_for_growth() -> None:
    se100 = metrics.slope_se(LAG_100)
    assert 5 < se100 < 12
    # consumed 94.6 % over whole batches: within the noise, sustained ...
    assert results.decide(100, 100.07, 94.63, metrics.slope(LAG_100), 4, 9784, se100)[0]
    # ... and judged without it, the same window would fail
    assert not results.decide(100, 100.07, 94.63, metrics.slope(LAG_100), 4, 9784)[0]
    se200 = metrics.slope_se(LAG_200)
    ok, _, note = results.decide(200, 200.08, 172.36, metrics.slope(LAG_200), 4, 24194, se200)
    assert not ok and "95 %" in note
    # the allowance is two standard errors, not more
    assert results.decide(1000, 1000, 900, 0.0, 5, 100, lag_slope_se=25.1)[0]
    assert not results.decide(1000, 1000, 900, 0.0, 5, 100, lag_slope_se=24.9)[0]
    assert results.decide(1000, 1000, 1000, 70.0, 5, 100, lag_slope_se=10.0)[0]
    assert not results.decide(1000, 1000, 1000, 70.1, 5, 100, lag_slope_se=10.0)[0]


# ---------------------------------------------------------------------------- tool output

# kafka-producer-perf-test.sh of Kafka 4.1.2 (--num-records 300000 --record-size 160 --throughput 60000)
PERF_OUTPUT = """\
513 records sent, 102.0 records/sec (0.02 MB/sec), 428.0 ms avg latency, 4832.0 ms max latency.
33304 records sent, 6660.8 records/sec (1.02 MB/sec), 295.8 ms avg latency, 632.0 ms max latency.
75650 records sent, 14992.1 records/sec (2.29 MB/sec), 230.5 ms avg latency, 412.0 ms max latency.
116878 records sent, 23375.6 records/sec (3.57 MB/sec), 184.8 ms avg latency, 471.0 ms max latency.
300000 records sent, 13244.4 records/sec (2.02 MB/sec), 188.32 ms avg latency, 4832.00 ms max latency, \
162 ms 50th, 383 ms 95th, 481 ms 99th, 604 ms 99.9th.
"""


def test_parse_perf_takes_the_final_summary_not_an_interval_line() -> None:
    assert environment.parse_perf(PERF_OUTPUT) == pytest.approx(13244.4)
    assert environment.parse_perf("[2026-12-01 06:00:00] WARN something\n" + PERF_OUTPUT) == pytest.approx(
        13244.4
    )


def test_parse_perf_of_an_interrupted_run_is_none() -> None:
    interrupted = "\n".join(PERF_OUTPUT.splitlines()[:4])
    assert environment.parse_perf(interrupted) is None
    assert environment.parse_perf("") is None
    assert environment.parse_perf("Exception in thread main: TimeoutException\n") is None


def test_parse_offsets_sums_the_topics_partitions() -> None:
    raw, dlq = environment.RAW, environment.DLQ  # platform.yml topics
    out = f"{raw}:0:3885\n{raw}:1:3554\n{dlq}:0:99\n{raw}:2:3611\n"
    assert environment.parse_offsets(out, raw) == 3885 + 3554 + 3611
    assert environment.parse_offsets(f"{raw}x:0:5\n", raw) is None
    assert environment.parse_offsets("Error while executing\n", raw) is None
    assert environment.parse_offsets(f"{raw}:0:0\n", raw) == 0


def test_the_remote_offset_probe_is_valid_python() -> None:
    compile(bench_lab.OFFSETS_PROBE, "<probe>", "exec")


# ---------------------------------------------------------------------------- the decision


def test_decide_sustained() -> None:
    assert results.decide(1000, 1002, 998, 3.0, batches=5, e2e_samples=60_000) == (True, False, "")


def test_decide_generators_below_target() -> None:
    ok, bound, note = results.decide(1000, 850, 850, 0.0, batches=5, e2e_samples=100)
    assert (ok, bound) == (False, True) and "generators" in note


def test_decide_stream_not_keeping_up() -> None:
    ok, bound, note = results.decide(1000, 1000, 940, 0.0, batches=5, e2e_samples=100)
    assert (ok, bound) == (False, False) and "95 %" in note
    assert results.decide(1000, 1000, 950, 0.0, batches=5, e2e_samples=100)[0]


def test_decide_lag_growth_threshold_is_2_percent_with_a_floor_of_50() -> None:
    # high rate: 2 % of 10000 = 200 records/s
    assert results.decide(10000, 10000, 10000, 199.0, 5, 100)[0]
    ok, _, note = results.decide(10000, 10000, 10000, 201.0, 5, 100)
    assert not ok and "lag grew" in note
    # low rate: the floor (50/s) applies, not 2 % of 200 = 4/s
    assert results.decide(200, 200, 200, 49.0, 5, 100)[0]
    assert not results.decide(200, 200, 200, 51.0, 5, 100)[0]
    # a shrinking lag is fine
    assert results.decide(200, 200, 260, -30.0, 5, 100)[0]


def test_decide_without_a_batch_or_latency_is_not_sustained() -> None:
    assert results.decide(1000, 0.0, 0.0, 0.0, batches=0, e2e_samples=0) == (
        False,
        False,
        "no micro-batch completed within the window (the stream stalled)",
    )
    ok, _, note = results.decide(1000, 1000, 1000, 0.0, batches=3, e2e_samples=0)
    assert not ok and "latency" in note


def _step(rate: float, produced: float, sustained: bool, p50: float | None = 900.0) -> results.Step:
    return results.Step(
        target_rate=rate,
        generators=1,
        produced_rate=produced,
        consumed_rate=produced,
        e2e_p50_ms=p50,
        e2e_p95_ms=None if p50 is None else p50 * 2,
        e2e_p99_ms=None if p50 is None else p50 * 3,
        sustained=sustained,
    )


def test_summary_reports_the_highest_sustained_step() -> None:
    r = results.Result("loopback", "t", {})
    r.steps = [_step(200, 201.2, True, 800.0), _step(500, 498.7, True, 1200.0), _step(1000, 700, False)]
    r.kafka_ceiling_msgs_per_s = 12000.0
    s = r.summary()
    assert s["sustained_msgs_per_s"] == 498.7
    assert (s["e2e_p50_ms"], s["e2e_p95_ms"], s["e2e_p99_ms"]) == (1200.0, 2400.0, 3600.0)
    assert s["kafka_ceiling_msgs_per_s"] == 12000.0
    assert s["sustained_target_msgs_per_s"] == 500 and s["first_unsustained_msgs_per_s"] == 1000
    assert s["share_of_kafka_ceiling"] == pytest.approx(498.7 / 12000, abs=1e-4)
    json.dumps(s)


def test_summary_without_a_sustained_step() -> None:
    r = results.Result("lab", "t", {})
    r.steps = [_step(500, 480, False)]
    s = r.summary()
    assert s["sustained_msgs_per_s"] == 0.0 and s["e2e_p50_ms"] is None
    assert "share_of_kafka_ceiling" not in s


def test_generator_slices_split_rate_and_fleet_contiguously() -> None:
    slices = environment.generator_slices(25000, 3, 1000, 5001)
    assert [c for _, c, _ in slices] == [334, 333, 333]
    assert [f for _, _, f in slices] == [5001, 5335, 5668]
    assert sum(r for r, _, _ in slices) == pytest.approx(25000)
    assert environment.generator_slices(100, 5, 2, 1) == [(50.0, 1, 1), (50.0, 1, 2)]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    r = results.Result("loopback", "20261201T000000Z", {})
    r.steps = [_step(200, 201, True), _step(500, 430, False, None)]
    r.steps[0].batch_phases_s = {"read_classify_dedup": 1.2, "writes": 0.8, "spark_overhead": 0.4}
    r.steps[0].cpu_cores = {"fms-lab-kafka-1": 0.3, "fms-lab-spark-worker-1": 0.9, "machine": 1.4}
    r.kafka_ceiling_msgs_per_s = 12000.0
    out = tmp_path / "p.png"
    plot.plot(r, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stacked_bars_stack_each_series_on_the_ones_before_and_skip_empty_ones() -> None:
    bars: list[tuple[str, list[float], list[float]]] = []

    class Axes:
        def bar(self, labels: list[str], heights: list[float], bottom: list[float], label: str) -> None:
            bars.append((label, list(heights), list(bottom)))

    plot.stacked_bars(Axes(), ["500", "1000"], {"a": [1.0, 2.0], "empty": [0.0, 0.0], "b": [0.5, 0.25]})
    assert bars == [("a", [1.0, 2.0], [0.0, 0.0]), ("b", [0.5, 0.25], [1.0, 2.0])]


def test_phase_means_are_per_batch_deltas_with_spark_overhead() -> None:
    def snap(**phases: float) -> metrics.Snapshot:
        return {
            (
                results.PHASES,
                (
                    (
                        "phase",
                        k.replace("__", "."),
                    ),
                ),
            ): v
            for k, v in phases.items()
        }

    a = snap(writes=10.0, query__addBatch=40.0, query__triggerExecution=50.0, writes__dlq=3.0)
    b = snap(writes=14.0, query__addBatch=60.0, query__triggerExecution=74.0, publish=2.0, writes__dlq=5.0)
    means = results.phase_means(a, b, 4)
    assert means == {
        "publish": 0.5,
        "query.addBatch": 5.0,
        "query.triggerExecution": 6.0,
        "spark_overhead": 4.5,  # 6.0 - (writes 1.0 + publish 0.5); parallel parts not counted
        "writes": 1.0,
        "writes.dlq": 0.5,
    }
    assert results.phase_means(a, b, 0) == {}


def test_cores_used_per_host_and_machine_between_two_samples() -> None:
    a = {"machine": 100.0, "fms-lab-kafka-1": 10.0}
    b = {"machine": 130.0, "fms-lab-kafka-1": 16.0, "fms-lab-new-1": 5.0}
    assert results.cores_used(a, b, 20.0) == {"fms-lab-kafka-1": 0.3, "machine": 1.5}
    assert results.cores_used(a, b, 0.0) == {}
    assert results.cpu_seconds()["machine"] > 0  # /proc/stat of this machine


def test_public_settings_redact_client_secrets() -> None:
    a = cli.build_parser().parse_args(
        ["--mode", "loopback", "--kafka-property", "sasl.password=hunter2", "--kafka-property", "x=1"]
    )
    s = cli.public_settings(a)
    assert s["kafka_property"] == ["sasl.password=***", "x=1"]
    assert "hunter2" not in json.dumps(s, default=str)


# ---------------------------------------------------------------------------- lab mode

SSH_CONFIG = Path("/lab/ssh/config")


def lab_hosts() -> dict[str, dict[str, Any]]:
    def rec(name: str, ip: str, roles: list[str], env: str = "primary") -> dict[str, Any]:
        return {"name": name, "ip": ip, "env": env, "role": roles[0], "roles": roles}

    hosts = {
        "kafka-2": rec("kafka-2", "10.10.1.12", ["kafka", "kafka_controller"]),
        "kafka-1": rec("kafka-1", "10.10.1.11", ["kafka", "kafka_controller"]),
        "spark-master-1": rec("spark-master-1", "10.10.2.10", ["spark_master", "hdfs_namenode"]),
        "collector-1": rec("collector-1", "10.10.3.10", ["collector"]),
        "collector-2": rec("collector-2", "10.10.3.11", ["collector"]),
        "dr-kafka-1": rec("dr-kafka-1", "10.20.1.11", ["kafka"], env="dr"),
    }
    # an older record with only "role"
    hosts["monitoring-1"] = {
        "name": "monitoring-1",
        "ip": "10.10.4.10",
        "env": "primary",
        "role": "monitoring",
    }
    return hosts


def test_lab_settings_from_the_host_records() -> None:
    s = bench_lab.lab_settings(lab_hosts(), "primary", SSH_CONFIG)
    # the client listener (kafka_client_port 9092) under the names the brokers advertise
    assert s.bootstrap == "kafka-1:9092,kafka-2:9092"
    assert s.stream_metrics_url == "http://10.10.2.10:9311/metrics"
    assert [shlex.split(e) for e in s.collector_execs] == [
        ["ssh", "-F", "/lab/ssh/config", "collector-1"],
        ["ssh", "-F", "/lab/ssh/config", "collector-2"],
    ]
    assert shlex.split(s.kafka_exec) == ["ssh", "-F", "/lab/ssh/config", "kafka-1"]
    assert s.probe_exec == s.collector_execs[0]
    assert s.kafka_hosts == ["kafka-1", "kafka-2"] and s.stream_host == "spark-master-1"


def test_lab_settings_use_the_hosts_role_when_roles_is_missing() -> None:
    hosts = {
        "k": {"name": "K_1", "ip": "10.0.0.1", "env": "dr", "role": "kafka"},
        "s": {"name": "s", "ip": "10.0.0.2", "env": "dr", "role": "spark_master"},
        "c": {"name": "c", "ip": "10.0.0.3", "env": "dr", "role": "collector"},
    }
    s = bench_lab.lab_settings(hosts, "dr", SSH_CONFIG)
    assert s.bootstrap == "k-1:9092"  # fms_node_name: lower case, [^a-z0-9.-] -> "-"


def test_lab_settings_name_the_missing_groups() -> None:
    hosts = {n: r for n, r in lab_hosts().items() if "collector" not in n}
    with pytest.raises(SystemExit, match=r"group\(s\) collector; run `make lab` first"):
        bench_lab.lab_settings(hosts, "primary", SSH_CONFIG)
    with pytest.raises(SystemExit, match="kafka, spark_master, collector"):
        bench_lab.lab_settings(lab_hosts(), "nonexistent", SSH_CONFIG)


def test_no_running_lab_says_make_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMS_LAB_DIR", str(tmp_path / "no-lab"))
    with pytest.raises(SystemExit, match="run `make lab` first"):
        bench_lab.running_lab("primary")
    # `make bench` = no arguments, lab mode: the same message, before anything is written
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="run `make lab` first"):
        cli.main(["--mode", "lab", "--out", str(out)])
    assert not out.exists()


def test_lab_hosts_that_are_not_running_do_not_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMS_LAB_DIR", str(tmp_path))
    hosts = lab_hosts()
    for rec in hosts.values():
        rec["pid"], rec["pid_start"] = 999_999_999, 1  # no such process: a stopped lab
    (tmp_path / "hosts.json").write_text(json.dumps({"hosts": hosts}))
    with pytest.raises(SystemExit, match="no lab host of env primary is running"):
        bench_lab.running_lab("primary")


def test_resolve_lab_args_fills_only_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_lab, "running_lab", lambda env: (lab_hosts(), SSH_CONFIG))
    a = cli.build_parser().parse_args(["--bootstrap", "kafka-9:9092"])
    bench_lab.resolve_lab_args(a)
    assert a.bootstrap == "kafka-9:9092"
    assert a.stream_metrics_url == "http://10.10.2.10:9311/metrics"
    assert len(a.collector_exec) == 2 and a.kafka_exec.endswith("kafka-1")
    # all given: the lab state is not read at all
    monkeypatch.setattr(bench_lab, "running_lab", lambda env: pytest.fail("lab state read"))
    b = argparse.Namespace(
        bootstrap="b:9092", stream_metrics_url="http://x/metrics", collector_exec="ssh c", kafka_exec="ssh k"
    )
    assert bench_lab.resolve_lab_args(b) is None


def test_lab_defaults_follow_the_roles() -> None:
    import yaml

    repo = Path(__file__).resolve().parents[2]
    pipeline = yaml.safe_load((repo / "roles/fms_pipeline/defaults/main.yml").read_text())
    kafka = yaml.safe_load((repo / "roles/kafka/defaults/main.yml").read_text())
    assert pipeline["fms_pipeline_install_dir"] + "/venv" == bench_lab.LAB_VENV
    assert pipeline["fms_pipeline_venv_dir"] == "{{ fms_pipeline_install_dir }}/venv"
    assert pipeline["fms_pipeline_conf_dir"] + "/collector.yml" == bench_lab.LAB_COLLECTOR_CONFIG
    # the ports: the defaults and the bench both take them from the platform contract
    assert pipeline["fms_pipeline_stream_metrics_port"] == "{{ fms_platform.ports.stream_metrics.port }}"
    assert kafka["kafka_client_port"] == "{{ fms_platform.ports.kafka_client.port }}"
    contract = load_platform()
    assert contract.port("stream_metrics") == bench_lab.LAB_STREAM_METRICS_PORT
    assert contract.port("kafka_client") == bench_lab.LAB_KAFKA_CLIENT_PORT
    assert kafka["kafka_home"] == bench_lab.LAB_KAFKA_HOME
    assert kafka["kafka_conf_dir"] + "/admin.properties" == bench_lab.LAB_ADMIN_PROPERTIES
    fleet_end = (
        pipeline["fms_pipeline_collector_first_device_id"] + pipeline["fms_pipeline_collector_devices"]
    )
    assert fleet_end <= bench_lab.LAB_FIRST_DEVICE_ID


class FakePopen:
    calls: ClassVar[list[list[str]]] = []

    def __init__(self, argv: list[str], **_: Any) -> None:
        FakePopen.calls.append(argv)


def test_lab_generators_run_the_deployed_collector_over_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_lab, "running_lab", lambda env: (lab_hosts(), SSH_CONFIG))
    monkeypatch.setattr(bench_lab, "scrape", lambda url, timeout=10.0: {})
    monkeypatch.setattr(bench_lab.subprocess, "Popen", FakePopen)
    FakePopen.calls = []
    a = cli.build_parser().parse_args(["--mode", "lab"])
    a.first_device_id = bench_lab.LAB_FIRST_DEVICE_ID
    bench_lab.resolve_lab_args(a)
    env = bench_lab.Lab(a)
    env.start_generators(20000, 2, 1000, a.first_device_id, 90, seed=5)
    assert [c[:4] for c in FakePopen.calls] == [
        ["ssh", "-F", "/lab/ssh/config", "collector-1"],
        ["ssh", "-F", "/lab/ssh/config", "collector-2"],
    ]
    remote = FakePopen.calls[0][4]
    assert remote.startswith("echo $$; exec ")
    argv = shlex.split(remote.removeprefix("echo $$; exec "))
    assert argv[:3] == ["/opt/fms-jobs/venv/bin/fms-collector", "--config", "/etc/fms/collector.yml"]
    opts = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert opts["--bootstrap-servers"] == "kafka-1:9092,kafka-2:9092"
    assert opts["--rate"] == "10000.000" and opts["--devices"] == "500"
    assert opts["--first-device-id"] == "5001" and opts["--metrics-port"] == "0"
    assert opts["--source"] == "simulator"


def test_lab_metrics_fall_back_to_the_stream_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics URL not reachable from this machine: read 127.0.0.1:9311 on the spark_master over ssh."""
    monkeypatch.setattr(bench_lab, "running_lab", lambda env: (lab_hosts(), SSH_CONFIG))

    def unreachable(url: str, timeout: float = 10.0) -> metrics.Snapshot:
        raise OSError("No route to host")

    ran: list[list[str]] = []

    def fake_run(argv: list[str], **_: Any) -> Any:
        ran.append(argv)
        return bench_lab.subprocess.CompletedProcess(argv, 0, _stream_metrics_text([], 42), "")

    monkeypatch.setattr(bench_lab, "scrape", unreachable)
    monkeypatch.setattr(bench_lab.subprocess, "run", fake_run)
    a = cli.build_parser().parse_args(["--mode", "lab"])
    bench_lab.resolve_lab_args(a)
    env = bench_lab.Lab(a)
    assert metrics.value(env.snapshot(), metrics.RECORDS_IN) == 42
    assert ran[-1][:4] == ["ssh", "-F", "/lab/ssh/config", "spark-master-1"]
    assert "http://127.0.0.1:9311/metrics" in ran[-1][4]

    # neither way answers: a clear message, not a traceback
    monkeypatch.setattr(
        bench_lab.subprocess,
        "run",
        lambda argv, **_: bench_lab.subprocess.CompletedProcess(argv, 1, "", "refused"),
    )
    with pytest.raises(SystemExit, match="is fms-stream deployed and running"):
        bench_lab.Lab(a)


def test_lab_pauses_the_deployed_collector_and_starts_it_again(tmp_path: Path, monkeypatch) -> None:
    """Only an active collector is stopped, and close() starts exactly those again."""
    log = tmp_path / "systemctl.log"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").write_text(
        f'#!/bin/sh\necho "$@" >> {log}\n'
        '[ "$1" = is-active ] && [ "$FMS_FAKE_ACTIVE" != 1 ] && exit 3\nexit 0\n'
    )
    (fake / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    lab = object.__new__(bench_lab.Lab)
    lab.paused = []
    lab.collector_execs = [["env", "FMS_FAKE_ACTIVE=1", "sh", "-c"], ["env", "FMS_FAKE_ACTIVE=0", "sh", "-c"]]
    assert lab.pause_standing_collectors() == ["env FMS_FAKE_ACTIVE=1 sh -c"]
    lab.close()
    unit = bench_lab.LAB_COLLECTOR_UNIT
    assert log.read_text().splitlines() == [
        f"is-active --quiet {unit}",
        f"stop {unit}",
        f"is-active --quiet {unit}",
        f"start {unit}",
    ]
    lab.close()  # nothing left to start
    assert len(log.read_text().splitlines()) == 4

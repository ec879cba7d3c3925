"""`make bench` on the lab, short: the benchmark machinery end to end on a fresh lab.

Runs after test_lab_pipeline.py (the conftest orders it) on the converged lab. It proves that
the benchmark works against what site.yml deployed - load generators over ssh on the collector
hosts with the deployed credentials, the stream's metrics, end offsets, Kafka's own producer
perf tool on a broker, the JSON result, the PNG, the one-line summary, the deployed collector
started again - not the figures: one modest rate with the lab's 30 s trigger says nothing about
the ceiling. The figures come from a full `make bench` (README, "Benchmark").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lab_support import host_ssh, must, outputs

pytestmark = [pytest.mark.lab, pytest.mark.slow]

RATE = 300  # records/s: well within what the lab sustains at any trigger
SUMMARY_KEYS = (
    "sustained_msgs_per_s",
    "e2e_p50_ms",
    "e2e_p95_ms",
    "e2e_p99_ms",
    "kafka_ceiling_msgs_per_s",
)


def test_bench_measures_a_rate_and_the_kafka_ceiling_and_restores_the_collectors(converged, tmp_path: Path):
    out = tmp_path / "bench"
    cmd = [
        sys.executable,
        "-m",
        "fms_tools.bench",
        "--lab-env=primary",
        f"--rates={RATE}",
        # the lab's stream triggers every 30 s: few, whole batches per window
        "--window=60",
        "--min-batches=2",
        "--warmup=10",
        "--warm-batches=1",
        "--ceiling-records=200000",
        "--max-minutes=10",
        # a stalled stream fails the bench with its own message, well inside this test's timeout
        "--stream-warmup-timeout=300",
        "--batch-timeout=200",
        "--drain-timeout=240",
        f"--out={out}",
    ]
    started = time.monotonic()
    res = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=1800, check=False)
    print(f"\nbench on the lab: rc={res.returncode} in {time.monotonic() - started:.0f}s")
    print(res.stderr[-2500:])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]

    summary = json.loads(res.stdout.strip().splitlines()[-1])  # the last line is the summary
    print(f"summary: {json.dumps(summary)}")
    assert all(k in summary for k in SUMMARY_KEYS), summary
    assert summary["sustained_msgs_per_s"] >= 0.9 * RATE, summary
    p50, p95, p99 = (summary[f"e2e_p{q}_ms"] for q in (50, 95, 99))
    assert 0 < p50 <= p95 <= p99, summary
    assert summary["kafka_ceiling_msgs_per_s"] > summary["sustained_msgs_per_s"], summary

    [result_file] = out.glob("bench-*.json")
    [plot_file] = out.glob("latency-vs-rate-*.png")
    assert plot_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(result_file.read_text())
    step = doc["steps"][0]
    assert step["sustained"] and step["batches"] >= 2, step
    assert step["batch_phases_s"].get("read_classify_dedup", 0) > 0, step["batch_phases_s"]
    assert step["cpu_cores"].get("machine", 0) > 0, step["cpu_cores"]
    assert any(n.startswith("stopped the deployed fms-collector") for n in doc["notes"]), doc["notes"]

    for host in outputs()["inventory_groups"]["collector"]:
        must(host_ssh(host, "systemctl is-active fms-collector"))

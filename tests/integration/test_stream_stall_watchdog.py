"""The streaming driver ends itself (exit 2, for systemd to restart) when a micro-batch hangs.

Real Spark (local mode) in a child process running the job's own entry point; the first
micro-batch is made to block, as one does when the Spark master forgot the application and
no executor ever comes. A control run whose batches complete at once shows that Spark's
progress reports - a completed batch, then the idle query's - keep the watchdog quiet.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fms_jobs.sparkutil.session import SHORT_LIVED_DRIVER_JAVA_OPTIONS

pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# above the time a cold local query takes from its start to its first batch (a few s; more than 12 s
# in one CI run at load ~20, when the limit was 30 s and counted from before the query started)
STALL_LIMIT_S = 45

DRIVER = textwrap.dedent(
    """
    import sys, threading, time
    from fms_jobs.streaming import __main__ as stream_main
    from fms_jobs.streaming import job

    if sys.argv[1] == "hang":
        release = threading.Event()

        def hang(self, df, batch_id):
            print(f"batch {batch_id} hangs", file=sys.stderr, flush=True)
            release.wait(600)

        job.BatchProcessor.process = hang
        stream_main.STOP_AFTER_STALL_S = 15
        sys.exit(stream_main.main(sys.argv[2:]))

    # control: every micro-batch completes at once (the job's own batch speed on a busy machine is
    # not what this measures) and the idle query reports progress; stop it (as systemd would) later
    def quick(self, df, batch_id):
        print(f"batch {batch_id} done", file=sys.stderr, flush=True)

    job.BatchProcessor.process = quick

    def stop_later():
        time.sleep(float(sys.argv[2]))
        import os, signal
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_later, daemon=True).start()
    sys.exit(stream_main.main(sys.argv[3:]))
    """
)


def _source_dir(tmp_path: Path) -> Path:
    """Two raw records in the Kafka source's schema (the job's parquet replay source), written once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "raw"
    if src.exists():
        return src
    src.mkdir()
    now = datetime.now(UTC)
    headers = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
    table = pa.table(
        {
            "key": pa.array([b"1", b"2"], pa.binary()),
            "value": pa.array([b'{"device_id": 1}', b'{"device_id": 2}'], pa.binary()),
            "topic": ["fms.sensor.raw"] * 2,
            "partition": pa.array([0, 0], pa.int32()),
            "offset": pa.array([0, 1], pa.int64()),
            "timestamp": pa.array([now, now], pa.timestamp("us", tz="UTC")),
            "timestampType": pa.array([0, 0], pa.int32()),
            "headers": pa.array([[], []], headers),
        }
    )
    pq.write_table(table, src / "part-0.parquet")
    return src


def _run(tmp_path: Path, mode: list[str], timeout_s: float) -> tuple[int, str, float]:
    lake = tmp_path / mode[0]
    argv = [
        "--master=local[1]",
        f"--processed={lake / 'processed'}",
        f"--dlq={lake / 'dlq'}",
        f"--checkpoint={lake / 'checkpoint'}",
        "--trigger=1 second",
        "--metrics-port=0",
        f"--stall-restart-seconds={STALL_LIMIT_S}",
        "--conf=spark.ui.enabled=false",
        "--conf=spark.sql.shuffle.partitions=1",
        # the tests' short-lived driver JVM (C1, serial collector), as build_session(local_test=True)
        f"--conf=spark.driver.extraJavaOptions={SHORT_LIVED_DRIVER_JAVA_OPTIONS}",
        # idle queries report progress this often (default 10 s, far below production limits)
        "--conf=spark.sql.streaming.noDataProgressEventInterval=2s",
    ]
    config = tmp_path / f"{mode[0]}.yml"
    config.write_text(f"source: parquet\nsource_path: {_source_dir(tmp_path)}\ndlq_topic_enabled: false\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "jobs"), TZ="UTC")
    started = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-c", DRIVER, *mode, f"--config={config}", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return res.returncode, res.stderr, time.monotonic() - started


def _story(err: str) -> str:
    """The driver's own account (batches, watchdog, failures) without Spark's noise."""
    keys = ("batch ", "stall watchdog", "fms-stream:", "query terminated", "failed at run time")
    return "\n".join(ln for ln in err.splitlines() if any(k in ln for k in keys))[-3000:]


def test_a_hung_micro_batch_ends_the_driver_with_exit_2(tmp_path: Path) -> None:
    rc, err, elapsed = _run(tmp_path, ["hang"], timeout_s=300)
    assert "batch 0 hangs" in err, err[-3000:]
    assert rc == 2, f"exit {rc}, expected 2 (systemd restarts on it):\n{err[-3000:]}"
    assert "no micro-batch progress for" in err and f"limit {STALL_LIMIT_S} s" in err, err[-3000:]
    assert elapsed >= STALL_LIMIT_S
    print(f"\nhung batch: driver exited 2 after {elapsed:.0f} s (stall limit {STALL_LIMIT_S} s)")


def test_the_watchdog_stays_quiet_while_batches_complete(tmp_path: Path) -> None:
    # runs for 2.5 stall limits: batch 0 completes, then idle progress keeps the watchdog quiet
    rc, err, elapsed = _run(tmp_path, ["control", str(2.5 * STALL_LIMIT_S)], timeout_s=300)
    assert rc == 0, f"exit {rc}: stopped on request is 0:\n{_story(err)}"
    assert "no micro-batch progress" not in err, err[-3000:]
    assert "batch 0 done" in err, _story(err)
    assert elapsed >= 2.5 * STALL_LIMIT_S

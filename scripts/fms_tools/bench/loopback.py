"""``--mode loopback``: a single KRaft broker, the streaming job and the collectors, all on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fms_tools import REPO
from fms_tools.bench.environment import (
    CEILING,
    DLQ,
    PERF_PROPS,
    RAW,
    Environment,
    collector_args,
    generator_slices,
    parse_perf,
)
from fms_tools.bench.metrics import end_offsets, scrape
from fms_tools.fmsops.kafka_broker import KafkaBroker, free_port
from fms_tools.fmsops.procs import stop_group

PY = sys.executable


class Loopback(Environment):
    exact_lag = True

    def __init__(self, work: Path, stream_conf: list[str], trigger: str, max_offsets: int) -> None:
        self.work = work
        self.stream: subprocess.Popen[bytes] | None = None
        self.stream_log_path = work / "stream.log"
        self.broker = KafkaBroker(
            work / "kafka", heap="1g", properties={"auto.create.topics.enable": "false"}
        ).start()
        try:
            self._start(stream_conf, trigger, max_offsets)
        except BaseException:
            self.close()
            raise

    def _start(self, stream_conf: list[str], trigger: str, max_offsets: int) -> None:
        work = self.work
        self.bootstrap = self.broker.bootstrap
        self.kafka_conf: dict[str, str] = {}
        self.broker.create_topic(RAW, partitions=6)
        self.broker.create_topic(DLQ, partitions=1)
        port = free_port()
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        # metrics on loopback only (the CLI has no address flag; the config file has)
        conf_file = work / "stream.yml"
        conf_file.write_text(json.dumps({"metrics": {"addr": "127.0.0.1", "port": port}}))
        cmd = [
            PY,
            "-m",
            "fms_jobs.streaming",
            "--config",
            str(conf_file),
            "--master",
            "local[2]",
            "--local-jars",
            "--bootstrap-servers",
            self.bootstrap,
            "--processed",
            str(work / "lake" / "processed"),
            "--dlq",
            str(work / "lake" / "dlq"),
            "--checkpoint",
            str(work / "lake" / "checkpoint"),
            "--trigger",
            trigger,
            "--max-offsets-per-trigger",
            str(max_offsets),
            "--conf",
            "spark.sql.shuffle.partitions=4",
            "--conf",
            "spark.ui.enabled=false",
            "--conf",
            "spark.driver.memory=2g",
            "--conf",
            "spark.driver.host=127.0.0.1",
            "--conf",
            "spark.driver.bindAddress=127.0.0.1",
        ]
        for c in stream_conf:
            cmd += ["--conf", c]
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO / "jobs"), os.environ.get("PYTHONPATH", "")) if p
        )
        self.child_env = env
        with self.stream_log_path.open("wb") as log:
            self.stream = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True
            )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.stream.poll() is not None:
                raise RuntimeError(f"streaming job exited early:\n{self.stream_log_tail()}")
            try:
                scrape(self.metrics_url, timeout=2)
                return
            except OSError:
                time.sleep(1)
        raise RuntimeError(f"streaming job metrics did not come up within 300 s:\n{self.stream_log_tail()}")

    def stream_log_tail(self, lines: int = 40) -> str:
        try:
            text = self.stream_log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no stream log)"
        keep = [t for t in text if "py4j.clientserver" not in t]
        return "\n".join(keep[-lines:])

    def end_offsets(self) -> int:
        return end_offsets(self.bootstrap, RAW, self.kafka_conf)

    def start_generators(
        self, rate: float, n: int, devices: int, first_id: int, seconds: float, seed: int
    ) -> list[Any]:
        procs = []
        for i, (r, count, first) in enumerate(generator_slices(rate, n, devices, first_id)):
            args = collector_args(self.bootstrap, r, count, first, seconds, seed + i)
            procs.append(
                subprocess.Popen(
                    [PY, "-m", "fms_jobs.collector", *args],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd=REPO,
                    env=self.child_env,
                    start_new_session=True,
                )
            )
        return procs

    def stop_generators(self, procs: list[Any], timeout: float) -> None:
        for p in procs:
            stop_group(p, timeout)

    def kafka_ceiling(self, records: int, record_size: int, partitions: int) -> tuple[float | None, str]:
        self.broker.create_topic(CEILING, partitions=partitions)
        try:
            res = self.broker.run_tool(
                "kafka-producer-perf-test.sh",
                "--topic",
                CEILING,
                "--num-records",
                str(records),
                "--record-size",
                str(record_size),
                "--throughput",
                "-1",
                "--producer-props",
                f"bootstrap.servers={self.bootstrap}",
                *PERF_PROPS.split(),
                timeout=600,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None, "kafka-producer-perf-test.sh did not finish within 600 s"
        lines = res.stdout.strip().splitlines()
        return parse_perf(res.stdout), lines[-1] if lines else res.stderr[-300:]

    def close(self) -> None:
        if self.stream is not None:
            stop_group(self.stream, 60)
        self.broker.stop()

"""``--mode lab``: the deployed lab, its hosts and settings read from the running lab's state."""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import select
import shlex
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from fms_tools import REPO
from fms_tools.bench.environment import (
    CEILING,
    PERF_PROPS,
    RAW,
    Environment,
    collector_args,
    generator_slices,
    parse_offsets,
    parse_perf,
)
from fms_tools.bench.metrics import Snapshot, end_offsets, parse_metrics, scrape
from fms_tools.fmsops.platform_contract import load as load_platform
from fms_tools.fmsops.procs import stop_group
from fms_tools.lab.state import host_groups

# Role defaults (roles/kafka/defaults/main.yml, ansible/group_vars/all.yml,
# roles/fms_pipeline/defaults/main.yml); the lab overrides none of them. The
# ports are the platform contract's (platform.yml), which those defaults use.
LAB_KAFKA_CLIENT_PORT = load_platform().port("kafka_client")
LAB_COLLECTOR_UNIT = "fms-collector.service"
LAB_STREAM_METRICS_PORT = load_platform().port("stream_metrics")
LAB_VENV = "/opt/fms-jobs/venv"
LAB_COLLECTOR_CONFIG = "/etc/fms/collector.yml"
LAB_KAFKA_HOME = "/opt/kafka"
LAB_ADMIN_PROPERTIES = "/etc/kafka/admin.properties"
LAB_COLLECTOR_CMD = f"{LAB_VENV}/bin/fms-collector --config {LAB_COLLECTOR_CONFIG}"
# bench devices next to the deployed fleet (fms_pipeline_collector_devices: 1000 from id 1), inside
# the quality rules' known ids (1-10000), so bench readings never interleave with a fleet device's
LAB_FIRST_DEVICE_ID = 5001

# Sum of a topic's end offsets, run with the collector's venv and config on a collector host: the
# collector's credentials may describe the raw topic (ListOffsets), and the brokers' names and
# TLS certificates only resolve/verify inside the lab network.
OFFSETS_PROBE = """\
import sys
from confluent_kafka import Consumer, TopicPartition
from fms_jobs.collector.config import load_config
from fms_jobs.collector.producer import producer_config
conf = {k: v for k, v in producer_config(load_config(sys.argv[1]).kafka).items()
        if k.split('.')[0] in ('bootstrap', 'security', 'sasl', 'ssl', 'client')}
conf['group.id'] = 'fms-bench-probe'
c = Consumer(conf)
try:
    topic = sys.argv[2]
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    for p in sorted(parts):
        print(f"{topic}:{p}:{c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]}")
finally:
    c.close()
"""


@functools.cache
def _ansible_names() -> ModuleType:
    """ansible/plugins/filter/fms_names.py, the one home of the rule (plain Python, no Ansible import)."""
    path = REPO / "ansible" / "plugins" / "filter" / "fms_names.py"
    spec = importlib.util.spec_from_file_location("fms_ansible_filter_names", path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def node_name(name: str) -> str:
    """fms_node_name of an inventory host (ansible/group_vars/all.yml): the name brokers advertise."""
    return _ansible_names().fms_node_name(name)


@dataclass
class LabSettings:
    bootstrap: str
    stream_metrics_url: str
    collector_execs: list[str]
    kafka_exec: str
    probe_exec: str
    metrics_exec: str
    kafka_hosts: list[str]
    collector_hosts: list[str]
    stream_host: str


def lab_settings(hosts: Mapping[str, Mapping[str, Any]], env_name: str, ssh_config: Path) -> LabSettings:
    """What bench needs of a running lab, from its host records ({name: {ip, env, role(s)}}).

    SystemExit with what is missing when the env has no kafka, spark_master or collector host.
    """
    recs = sorted(
        (r for r in hosts.values() if r.get("env") == env_name),
        key=lambda r: r["name"],
    )

    def group(g: str) -> list[Mapping[str, Any]]:
        return [r for r in recs if g in host_groups(r)]

    kafka, masters, collectors = group("kafka"), group("spark_master"), group("collector")
    missing = [
        g for g, rs in (("kafka", kafka), ("spark_master", masters), ("collector", collectors)) if not rs
    ]
    if missing:
        raise SystemExit(
            f"bench --mode lab: the running lab (env {env_name}) has no host in group(s) "
            f"{', '.join(missing)}; run `make lab` first (or give --bootstrap, --stream-metrics-url, "
            "--collector-exec and --kafka-exec)"
        )

    def ssh(rec: Mapping[str, Any]) -> str:
        return shlex.join(["ssh", "-F", str(ssh_config), rec["name"]])

    return LabSettings(
        bootstrap=",".join(f"{node_name(r['name'])}:{LAB_KAFKA_CLIENT_PORT}" for r in kafka),
        stream_metrics_url=f"http://{masters[0]['ip']}:{LAB_STREAM_METRICS_PORT}/metrics",
        collector_execs=[ssh(r) for r in collectors],
        kafka_exec=ssh(kafka[0]),
        probe_exec=ssh(collectors[0]),
        metrics_exec=ssh(masters[0]),
        kafka_hosts=[r["name"] for r in kafka],
        collector_hosts=[r["name"] for r in collectors],
        stream_host=masters[0]["name"],
    )


def running_lab(env_name: str) -> tuple[dict[str, dict[str, Any]], Path]:
    """The env's hosts whose container is running, and the lab's ssh config; SystemExit if none."""
    from fms_tools.lab import hosts as lab_hosts
    from fms_tools.lab import state as lab_state

    everything = lab_state.load_hosts()
    running = {
        n: r
        for n, r in everything.items()
        if r.get("env") == env_name and lab_hosts.nspawn_pid(r) is not None
    }
    if not running:
        where = lab_state.lab_dir()
        raise SystemExit(
            f"bench --mode lab: no lab host of env {env_name} is running (state in {where}); "
            "run `make lab` first, or use --mode loopback"
        )
    return running, lab_state.ssh_config_path()


def resolve_lab_args(a: argparse.Namespace) -> LabSettings | None:
    """Fill the lab options the command line left empty from the running lab's state."""
    needed = (a.bootstrap, a.stream_metrics_url, a.collector_exec, a.kafka_exec)
    if all(needed):
        return None
    running, ssh_config = running_lab(a.lab_env)
    s = lab_settings(running, a.lab_env, ssh_config)
    a.bootstrap = a.bootstrap or s.bootstrap
    a.stream_metrics_url = a.stream_metrics_url or s.stream_metrics_url
    a.collector_exec = a.collector_exec or s.collector_execs
    a.kafka_exec = a.kafka_exec or s.kafka_exec
    a.probe_exec = a.probe_exec or s.probe_exec
    a.metrics_exec = a.metrics_exec or s.metrics_exec
    return s


def remote(exec_argv: list[str], command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a shell command through an exec prefix (`ssh -F <lab ssh config> HOST`): text, never raises."""
    return subprocess.run(
        [*exec_argv, command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


class Lab(Environment):
    """The deployed lab: collectors and the Kafka tools run on lab hosts through an exec prefix."""

    def __init__(self, a: argparse.Namespace) -> None:
        missing = [n for n in ("bootstrap", "stream_metrics_url", "collector_exec") if not getattr(a, n)]
        if missing:
            raise SystemExit(
                "bench --mode lab needs "
                + ", ".join("--" + m.replace("_", "-") for m in missing)
                + "; run `make lab` first (they are derived from the running lab), or use --mode loopback"
            )
        self.bootstrap = a.bootstrap
        self.metrics_url = a.stream_metrics_url
        execs = a.collector_exec if isinstance(a.collector_exec, list) else [a.collector_exec]
        self.collector_execs = [shlex.split(e) for e in execs]
        self.kafka_exec = shlex.split(a.kafka_exec) if a.kafka_exec else None
        self.probe_exec = shlex.split(a.probe_exec) if a.probe_exec else self.collector_execs[0]
        self.kafka_home = a.kafka_home
        self.admin_properties = a.admin_properties
        self.collector_cmd = shlex.split(a.collector_cmd)
        self.collector_config = a.collector_config
        self.kafka_conf: dict[str, str] = {}
        for item in a.kafka_property or []:
            k, _, v = item.partition("=")
            self.kafka_conf[k] = v
        self.metrics_exec: list[str] | None = None
        self.paused: list[list[str]] = []
        try:
            scrape(self.metrics_url)
        except OSError as e:
            # not reachable from here: read them on the stream's host, as the lab tests do
            self.metrics_exec = shlex.split(a.metrics_exec) if a.metrics_exec else None
            try:
                if not self.metrics_exec:
                    raise OSError("no --metrics-exec")
                self.snapshot()
            except (OSError, RuntimeError) as e2:
                raise SystemExit(
                    f"bench --mode lab: the stream's metrics at {self.metrics_url} do not answer ({e}; "
                    f"on the stream host: {e2}); is fms-stream deployed and running? (`fms-lab "
                    "status`; site.yml may only check the pipeline hosts - deploy the pipeline with "
                    "`fms-lab converge --playbook pipeline`)"
                ) from None

    def snapshot(self) -> Snapshot:
        if not self.metrics_exec:
            return scrape(self.metrics_url)
        port = urllib.parse.urlsplit(self.metrics_url).port or LAB_STREAM_METRICS_PORT
        fetch = (
            "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
            f"'http://127.0.0.1:{port}/metrics', timeout=10).read().decode())"
        )
        res = remote(self.metrics_exec, shlex.join(["python3", "-c", fetch]), 60)
        if res.returncode != 0:
            raise OSError(f"metrics via {shlex.join(self.metrics_exec)}: {res.stderr.strip()[-300:]}")
        return parse_metrics(res.stdout)

    def end_offsets(self) -> int:
        if self.kafka_conf:  # client settings given: probe from this machine
            return end_offsets(self.bootstrap, RAW, self.kafka_conf)
        probe = shlex.join(
            [
                f"{LAB_VENV}/bin/python",
                "-c",
                OFFSETS_PROBE,
                self.collector_config or LAB_COLLECTOR_CONFIG,
                RAW,
            ]
        )
        res = remote(self.probe_exec, probe, 60)
        total = parse_offsets(res.stdout, RAW)
        if total is None:
            raise RuntimeError(f"offset probe failed (rc {res.returncode}): {res.stderr.strip()[-500:]}")
        return total

    def start_generators(
        self, rate: float, n: int, devices: int, first_id: int, seconds: float, seed: int
    ) -> list[Any]:
        procs = []
        for i, (r, count, first) in enumerate(generator_slices(rate, n, devices, first_id)):
            args = collector_args(self.bootstrap, r, count, first, seconds, seed + i)
            prefix = self.collector_execs[i % len(self.collector_execs)]
            # `echo $$; exec ...`: the remote PID comes first, so the generator can be stopped by id
            remote = "echo $$; exec " + shlex.join([*self.collector_cmd, *args])
            p = subprocess.Popen(
                [*prefix, remote],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            p.fms_exec = prefix  # type: ignore[attr-defined]
            procs.append(p)
        return procs

    def stop_generators(self, procs: list[Any], timeout: float) -> None:
        for p in procs:
            pid = _first_line(p, 10.0) if p.poll() is None else ""
            if pid.isdigit():
                remote(p.fms_exec, f"kill -TERM {pid} 2>/dev/null || true", 30)
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop_group(p, 10)
            if p.stdout:
                p.stdout.close()

    def pause_standing_collectors(self) -> list[str]:
        """Stop the deployed fms-collector where the generators run; close() starts it again.

        Its steady load (the lab fleet, ~100 msg/s) would otherwise count as the bench's.
        """
        paused = []
        for ex in self.collector_execs:
            unit = LAB_COLLECTOR_UNIT
            res = remote(
                ex, f"systemctl is-active --quiet {unit} && systemctl stop {unit} && echo stopped", 120
            )
            if "stopped" in res.stdout:
                self.paused.append(ex)
                paused.append(shlex.join(ex))
        return paused

    def close(self) -> None:
        for ex in self.paused:
            res = remote(ex, f"systemctl start {LAB_COLLECTOR_UNIT}", 120)
            if res.returncode != 0:
                print(
                    f"bench: could not start {LAB_COLLECTOR_UNIT} again via {shlex.join(ex)}: "
                    f"{res.stderr.strip()[-300:]}",
                    file=sys.stderr,
                )
        self.paused = []

    def _kafka_tool(self, args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        assert self.kafka_exec
        return remote(self.kafka_exec, f"{self.kafka_home}/bin/{args}", timeout)

    def kafka_ceiling(self, records: int, record_size: int, partitions: int) -> tuple[float | None, str]:
        if not self.kafka_exec:
            return None, "no --kafka-exec given"
        admin = shlex.quote(self.admin_properties)
        boot = shlex.quote(self.bootstrap)
        topics = f"kafka-topics.sh --bootstrap-server {boot} --command-config {admin} --topic {CEILING}"
        made = self._kafka_tool(f"{topics} --create --if-not-exists --partitions {partitions}", 180)
        if made.returncode != 0:
            return None, f"creating {CEILING} failed: {made.stderr.strip()[-300:]}"
        try:
            res = self._kafka_tool(
                f"kafka-producer-perf-test.sh --topic {CEILING} --num-records {records} "
                f"--record-size {record_size} --throughput -1 --producer.config {admin} "
                f"--producer-props bootstrap.servers={boot} {PERF_PROPS}",
                900,
            )
        except subprocess.TimeoutExpired:
            return None, "kafka-producer-perf-test.sh did not finish within 900 s"
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._kafka_tool(f"{topics} --delete", 180)
        lines = res.stdout.strip().splitlines()
        return parse_perf(res.stdout), lines[-1] if lines else res.stderr.strip()[-300:]


def _first_line(p: subprocess.Popen[bytes], timeout: float) -> str:
    if p.stdout is None:
        return ""
    ready, _, _ = select.select([p.stdout], [], [], timeout)
    return p.stdout.readline().decode(errors="replace").strip() if ready else ""

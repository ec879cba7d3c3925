"""A real single-node Kafka (KRaft, broker + controller) on loopback, for the benchmark and the tests.

It runs the lab-assembled Kafka archive (``fms-artifacts build kafka``) with the
archive's own scripts: ``kafka-storage.sh format`` then ``kafka-server-start.sh``.

Usage::

    from fms_tools.fmsops.kafka_broker import KafkaBroker, java_available

    with KafkaBroker(tmp_path) as broker:    # formats, starts, waits until ready
        broker.create_topic("readings", partitions=3)
        produce_to(broker.bootstrap)         # "127.0.0.1:<free port>"
    # stopped: SIGTERM, then SIGKILL after the grace period

The tests skip cleanly without Java through tests/support/kafka_broker.py.
Everything is bounded: start-up waits at most ``startup_timeout`` seconds and stop waits
``stop_timeout`` seconds before SIGKILL. Listeners bind to 127.0.0.1 on free ports only.

The archive's command-line tools (``kafka-storage.sh format``, ``kafka-topics.sh``, the console
producer and consumer) run with the environment the kafka role gives its own tools (tools.env:
``kafka_tools_heap_size``, ``kafka_tools_jvm_opts``): short-lived JVMs on the C1 compiler and the
serial collector. The broker's JVM keeps Kafka's defaults unless ``jvm_opts`` says otherwise
(the tests pass the same light options: a broker that lives for one test module).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from fms_tools import REPO, artifacts

READY_MARKER = "Kafka Server started"
KAFKA_ROLE_DEFAULTS = REPO / "roles" / "kafka" / "defaults" / "main.yml"


class KafkaBrokerError(RuntimeError):
    """The broker could not be formatted, started or reached in time."""


def java_available() -> bool:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return True
    return shutil.which("java") is not None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def kafka_archive(*, build: bool = True, timeout: float = 900.0) -> Path:
    """Path of the assembled Kafka archive; builds it first (a no-op when up to date)."""
    cli = list(artifacts.COMMAND)
    if build:
        result = subprocess.run(
            [*cli, "build", "kafka"], capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise KafkaBrokerError(f"building the Kafka archive failed:\n{result.stderr[-3000:]}")
    result = subprocess.run([*cli, "path", "kafka"], capture_output=True, text=True, timeout=60, check=True)
    archive = Path(result.stdout.strip().splitlines()[0])
    if not archive.is_file():
        raise KafkaBrokerError(f"{archive} does not exist; run `fms-artifacts build kafka`")
    return archive


def install_kafka(destination: Path, archive: Path | None = None) -> Path:
    """Extract the Kafka archive under `destination`; returns the Kafka home directory."""
    archive = archive or kafka_archive()
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        top = {member.name.split("/", 1)[0] for member in tar.getmembers()}
        if len(top) != 1:
            raise KafkaBrokerError(f"{archive}: expected one top-level directory, found {sorted(top)}")
        tar.extractall(destination, filter="tar")
    home = destination / top.pop()
    if not (home / "bin" / "kafka-server-start.sh").is_file():
        raise KafkaBrokerError(f"{home} has no bin/kafka-server-start.sh")
    return home


def tools_jvm_env() -> dict[str, str]:
    """KAFKA_HEAP_OPTS and KAFKA_JVM_PERFORMANCE_OPTS of the kafka role's tools (its defaults, one home)."""
    import yaml  # local: PyYAML only when a tool runs

    defaults = yaml.safe_load(KAFKA_ROLE_DEFAULTS.read_text(encoding="utf-8"))
    env = {"KAFKA_HEAP_OPTS": f"-Xmx{defaults['kafka_tools_heap_size']}"}
    if defaults.get("kafka_tools_jvm_opts"):
        env["KAFKA_JVM_PERFORMANCE_OPTS"] = str(defaults["kafka_tools_jvm_opts"])
    return env


def _cluster_id() -> str:
    """A Kafka cluster id (base64url of a random UUID, like `kafka-storage.sh random-uuid`).

    Like Kafka's Uuid.randomUuid(), never one starting with '-' (it would parse as an option).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


class KafkaBroker:
    """One combined broker + controller, PLAINTEXT on 127.0.0.1, started from the archive."""

    def __init__(
        self,
        workdir: Path,
        *,
        kafka_home: Path | None = None,
        archive: Path | None = None,
        host: str = "127.0.0.1",
        heap: str = "512m",
        jvm_opts: str | None = None,
        properties: Mapping[str, str] | None = None,
        startup_timeout: float = 120.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.heap = heap
        self.jvm_opts = jvm_opts  # the broker's KAFKA_JVM_PERFORMANCE_OPTS; None keeps Kafka's
        self.extra_properties = dict(properties or {})
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._kafka_home = kafka_home
        self._archive = archive
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.controller_port = 0
        self.cluster_id = ""

    # ----------------------------------------------------------------- layout
    @property
    def kafka_home(self) -> Path:
        if self._kafka_home is None:
            self._kafka_home = install_kafka(self.workdir / "dist", self._archive)
        return self._kafka_home

    @property
    def bootstrap(self) -> str:
        """`host:port` of the PLAINTEXT listener (valid once started)."""
        if not self.port:
            raise KafkaBrokerError("the broker has not been started")
        return f"{self.host}:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def config_file(self) -> Path:
        return self.workdir / "server.properties"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def script(self, name: str) -> Path:
        """Path of a bin/ script, e.g. ``broker.script("kafka-topics.sh")``."""
        return self.kafka_home / "bin" / name

    def env(self) -> dict[str, str]:
        """Environment for the archive's scripts (logs kept in the work directory)."""
        env = dict(os.environ)
        env["LOG_DIR"] = str(self.log_dir)
        for name in ("KAFKA_LOG4J_OPTS", "KAFKA_OPTS", "JMX_PORT", "KAFKA_DEBUG"):
            env.pop(name, None)
        return env

    def tools_env(self) -> dict[str, str]:
        """Environment for the archive's command-line tools: the kafka role's tools.env JVM settings."""
        return {**self.env(), **tools_jvm_env()}

    # -------------------------------------------------------------- lifecycle
    def _properties(self) -> dict[str, str]:
        listeners = f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": listeners,
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
        }
        props.update(self.extra_properties)
        return props

    def format(self) -> None:
        """`kafka-storage.sh format` the data directory with a fresh cluster id."""
        self.cluster_id = self.cluster_id or _cluster_id()
        self.run_tool(
            "kafka-storage.sh", "format", "-t", self.cluster_id, "-c", str(self.config_file), timeout=120
        )

    def start(self) -> KafkaBroker:
        if self.is_running():
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        home = self.kafka_home  # extract before picking ports (slow step)
        self.port = free_port(self.host)
        self.controller_port = free_port(self.host)
        while self.controller_port == self.port:
            self.controller_port = free_port(self.host)
        self.config_file.write_text(
            "".join(f"{k}={v}\n" for k, v in self._properties().items()), encoding="utf-8"
        )
        if not (self.data_dir / "meta.properties").is_file():
            self.format()
        env = self.env()
        env["KAFKA_HEAP_OPTS"] = f"-Xmx{self.heap} -Xms128m"
        if self.jvm_opts is not None:
            env["KAFKA_JVM_PERFORMANCE_OPTS"] = self.jvm_opts
        out = (self.log_dir / "kafka.out").open("ab")
        try:
            self._process = subprocess.Popen(
                [str(home / "bin" / "kafka-server-start.sh"), str(self.config_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workdir,
                start_new_session=True,
            )
        finally:
            out.close()
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        server_log = self.log_dir / "server.log"
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise KafkaBrokerError(f"Kafka exited during start-up (code {code}):\n{self.log_tail()}")
            if (
                server_log.is_file()
                and READY_MARKER in server_log.read_text(errors="replace")
                and self._port_open()
            ):
                return
            time.sleep(0.25)
        raise KafkaBrokerError(
            f"Kafka not ready within {self.startup_timeout:.0f}s on {self.host}:{self.port}:\n"
            f"{self.log_tail()}"
        )

    def _port_open(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL after `stop_timeout` seconds."""
        process, self._process = self._process, None
        atexit.unregister(self.stop)
        if process is None or process.poll() is not None:
            return
        self._signal(process, signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self._signal(process, signal.SIGKILL)
            process.wait(timeout=10)

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)  # the script exec()s java: the group is just our JVM

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ tools
    def run_tool(
        self, name: str, *args: str, input: str | None = None, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a bin/ script of the archive (bounded by `timeout`)."""
        result = subprocess.run(
            [str(self.script(name)), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.tools_env(),
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise KafkaBrokerError(
                f"{name} {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-2000:]}{result.stderr[-3000:]}"
            )
        return result

    def create_topic(self, topic: str, partitions: int = 1, config: Mapping[str, str] | None = None) -> None:
        args = [
            "--bootstrap-server",
            self.bootstrap,
            "--create",
            "--if-not-exists",
            "--topic",
            topic,
            "--partitions",
            str(partitions),
            "--replication-factor",
            "1",
        ]
        for key, value in (config or {}).items():
            args += ["--config", f"{key}={value}"]
        self.run_tool("kafka-topics.sh", *args)

    def produce(self, topic: str, lines: Sequence[str]) -> None:
        """Produce one record per line with kafka-console-producer.sh (acks=all)."""
        self.run_tool(
            "kafka-console-producer.sh",
            "--bootstrap-server",
            self.bootstrap,
            "--topic",
            topic,
            "--producer-property",
            "acks=all",
            input="".join(f"{line}\n" for line in lines),
        )

    def consume(self, topic: str, max_messages: int, timeout_ms: int = 30000) -> list[str]:
        """Read `max_messages` records from the beginning with kafka-console-consumer.sh."""
        result = self.run_tool(
            "kafka-console-consumer.sh",
            "--bootstrap-server",
            self.bootstrap,
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            str(max_messages),
            "--timeout-ms",
            str(timeout_ms),
            timeout=timeout_ms / 1000 + 60,
            check=False,
        )
        return [line for line in result.stdout.splitlines() if line]

    def log_tail(self, lines: int = 60) -> str:
        chunks = []
        for name in ("kafka.out", "server.log"):
            path = self.log_dir / name
            if path.is_file():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                chunks.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(chunks) or "(no Kafka logs)"

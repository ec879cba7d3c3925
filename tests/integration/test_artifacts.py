"""The lab artifact mirror's archives are usable: real Kafka, HDFS and Spark on loopback.

Builds (or reuses) the archives with `fms-artifacts`, then runs each product from its
extracted archive with the archive's own scripts. Every wait is bounded, every process is
stopped in teardown, and every listener binds to 127.0.0.1 on a free port.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from fms_tools import artifacts
from support import kafka_broker as kb

REPO = Path(__file__).resolve().parents[2]
CLI = list(artifacts.COMMAND)
BUILD_TARGETS = ("kafka", "hadoop", "spark", "maven", "jmx")

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


# --------------------------------------------------------------------------- helpers
def run(
    cmd: list[str],
    *,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    input: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, input=input, cwd=cwd, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-5000:]}"
    )
    return result


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def extract(archive: Path, dest: Path) -> Path:
    with tarfile.open(archive) as tar:
        tops = {m.name.split("/", 1)[0] for m in tar.getmembers()}
        assert len(tops) == 1, f"{archive.name}: one top-level directory expected, got {tops}"
        tar.extractall(dest, filter="tar")
    return dest / tops.pop()


def kill_pids(pids: list[int], grace: float = 20.0) -> None:
    """SIGTERM, wait (bounded), SIGKILL — only the processes this test started."""
    alive = [p for p in pids if _alive(p)]
    for pid in alive:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in alive):
        time.sleep(0.2)
    for pid in alive:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of ours counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def pids_with(marker: str) -> list[int]:
    """PIDs whose command line contains `marker` (a path unique to this test)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SPARK_", "PYSPARK_", "HADOOP_", "HDFS_", "KAFKA_")) and k != "PYTHONPATH"
    }
    env.update(extra)
    return env


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def java() -> None:
    kb.require_java()


@pytest.fixture(scope="module")
def archives(java: None) -> dict[str, Path]:
    """Build (or reuse: cached by input manifest) the mirror targets; return archive paths."""
    began = time.monotonic()
    run([*CLI, "build", *BUILD_TARGETS], timeout=3000)
    print(f"artifacts build: {time.monotonic() - began:.1f}s")
    paths = {}
    for target in ("kafka", "hadoop", "spark"):
        out = run([*CLI, "path", target]).stdout.split()
        paths[target] = Path(out[0])
    return paths


@pytest.fixture(scope="module")
def kafka_home(archives: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract(archives["kafka"], tmp_path_factory.mktemp("kafka-dist"))


@pytest.fixture(scope="module")
def hadoop_home(archives: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract(archives["hadoop"], tmp_path_factory.mktemp("hadoop-dist"))


@pytest.fixture(scope="module")
def spark_home(archives: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract(archives["spark"], tmp_path_factory.mktemp("spark-dist"))


# --------------------------------------------------------------------------- checksums
def test_every_archive_has_a_matching_gnu_sha512(archives: dict[str, Path]) -> None:
    for name, archive in archives.items():
        checksum = archive.with_name(archive.name + ".sha512")
        text = checksum.read_text(encoding="ascii")
        match = re.fullmatch(r"([0-9a-f]{128})  (\S+)\n", text)
        assert match, f"{checksum}: not GNU '<hex>  <file>' format: {text!r}"
        assert match.group(2) == archive.name, name
        digest = hashlib.sha512(archive.read_bytes()).hexdigest()
        assert digest == match.group(1), f"{archive} does not match its .sha512"


def test_mirror_verify_and_maven_layout(archives: dict[str, Path]) -> None:
    result = run([*CLI, "verify"], timeout=600)
    assert " 0 bad" in result.stdout, result.stdout
    mirror = archives["kafka"].parents[3]
    jars = sorted((mirror / "maven2").rglob("*.jar"))
    names = {j.name for j in jars}
    for wanted in (
        "spark-sql-kafka-0-10_2.12-",
        "spark-token-provider-kafka-0-10_2.12-",
        "kafka-clients-",
        "commons-pool2-",
        "hadoop-aws-3.3.4",
        "aws-java-sdk-bundle-",
        "jmx_prometheus_javaagent-1.",
    ):
        assert any(n.startswith(wanted) for n in names), f"maven2 lacks {wanted}*: {sorted(names)}"
    for jar in jars:
        sha1 = jar.with_name(jar.name + ".sha1").read_text(encoding="ascii").strip()
        assert sha1 == hashlib.sha1(jar.read_bytes()).hexdigest(), jar


def test_warm_rebuild_is_a_cache_hit(archives: dict[str, Path]) -> None:
    before = {p: p.stat().st_mtime_ns for p in archives.values()}
    began = time.monotonic()
    result = run([*CLI, "build", "kafka", "hadoop", "spark"], timeout=120)
    assert time.monotonic() - began < 30, "a warm build must only check manifests"
    assert result.stderr.count("up to date (") == 3, result.stderr
    assert before == {p: p.stat().st_mtime_ns for p in archives.values()}


def test_serve_publishes_the_mirror_and_reports_a_taken_port(archives: dict[str, Path]) -> None:
    port = kb.free_port()
    server = subprocess.Popen(
        [*CLI, "serve", "--bind", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        kafka = archives["kafka"]
        url = f"http://127.0.0.1:{port}/apache/kafka/{kafka.parent.name}/{kafka.name}.sha512"

        def fetch() -> bytes | None:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    return response.read()
            except OSError:
                return None

        wait_for(lambda: fetch() is not None, 30, "the mirror server to answer")
        assert fetch() == kafka.with_name(kafka.name + ".sha512").read_bytes()
        taken = subprocess.run(
            [*CLI, "serve", "--bind", "127.0.0.1", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert taken.returncode == 2 and "already in use" in taken.stderr, taken.stderr
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


# --------------------------------------------------------------------------- Kafka
def test_kafka_layout(kafka_home: Path) -> None:
    for script in (
        "kafka-run-class.sh",
        "kafka-server-start.sh",
        "kafka-server-stop.sh",
        "kafka-storage.sh",
        "kafka-topics.sh",
        "kafka-configs.sh",
        "kafka-acls.sh",
        "kafka-console-producer.sh",
        "kafka-console-consumer.sh",
        "kafka-consumer-groups.sh",
        "kafka-metadata-quorum.sh",
        "kafka-producer-perf-test.sh",
        "kafka-consumer-perf-test.sh",
        "connect-mirror-maker.sh",
    ):
        path = kafka_home / "bin" / script
        assert path.is_file() and os.access(path, os.X_OK), script
    for conf in ("server.properties", "log4j2.yaml", "tools-log4j2.yaml", "connect-log4j2.yaml"):
        assert (kafka_home / "config" / conf).is_file(), conf
    libs = {p.name for p in (kafka_home / "libs").glob("*.jar")}
    version = kafka_home.name.split("-", 1)[1]
    for jar in (
        f"kafka_2.13-{version}.jar",
        f"kafka-tools-{version}.jar",
        f"kafka-storage-{version}.jar",
        f"connect-mirror-{version}.jar",
        f"connect-runtime-{version}.jar",
    ):
        assert jar in libs, jar
    assert any(n.startswith("log4j-core-2.") for n in libs)
    assert "LAB ASSEMBLY" in (kafka_home / "NOTICE").read_text()


def _kafka_properties(kafka_home: Path, work: Path, node_id: int, port: int, cport: int) -> Path:
    """The shipped config/server.properties with this test's ports, node id and data dir."""
    overrides = {
        "node.id": str(node_id),
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{cport}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "log.dirs": str(work / "data"),
    }
    lines = []
    for line in (kafka_home / "config" / "server.properties").read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(f"{key}={overrides.pop(key)}" if key in overrides else line)
    lines += [f"{k}={v}" for k, v in overrides.items()]
    path = work / "server.properties"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_kafka_broker_from_archive_scripts(kafka_home: Path, tmp_path: Path) -> None:
    """format -> -daemon start -> topic -> produce -> consume -> quorum -> kafka-server-stop.sh."""
    bin_dir = kafka_home / "bin"
    port, cport = kb.free_port(), kb.free_port()
    node_id = 7000 + os.getpid() % 1000  # unique, so kafka-server-stop.sh --node-id only matches ours
    config = _kafka_properties(kafka_home, tmp_path, node_id, port, cport)
    env = clean_env(LOG_DIR=str(tmp_path / "logs"), KAFKA_HEAP_OPTS="-Xmx512m -Xms128m")
    bootstrap = f"127.0.0.1:{port}"

    cluster_id = run([str(bin_dir / "kafka-storage.sh"), "random-uuid"], env=env).stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id), cluster_id
    run(
        [str(bin_dir / "kafka-storage.sh"), "format", "--standalone", "-t", cluster_id, "-c", str(config)],
        env=env,
    )
    try:
        run([str(bin_dir / "kafka-server-start.sh"), "-daemon", str(config)], env=env, timeout=60)
        server_log = tmp_path / "logs" / "server.log"
        wait_for(
            lambda: server_log.is_file() and "Kafka Server started" in server_log.read_text(errors="replace"),
            120,
            "the broker's 'Kafka Server started' log line",
        )
        assert (tmp_path / "logs" / "kafkaServer.out").is_file()  # -daemon console output
        assert (tmp_path / "logs" / "kafkaServer-gc.log").is_file()  # -loggc

        run(
            [
                str(bin_dir / "kafka-topics.sh"),
                "--bootstrap-server",
                bootstrap,
                "--create",
                "--topic",
                "probe",
                "--partitions",
                "1",
                "--replication-factor",
                "1",
            ],
            env=env,
        )
        run(
            [str(bin_dir / "kafka-console-producer.sh"), "--bootstrap-server", bootstrap, "--topic", "probe"],
            env=env,
            input="hello-from-the-lab-archive\n",
        )
        consumed = run(
            [
                str(bin_dir / "kafka-console-consumer.sh"),
                "--bootstrap-server",
                bootstrap,
                "--topic",
                "probe",
                "--from-beginning",
                "--max-messages",
                "1",
                "--timeout-ms",
                "60000",
            ],
            env=env,
            timeout=120,
        )
        assert consumed.stdout.strip() == "hello-from-the-lab-archive"
        quorum = run(
            [
                str(bin_dir / "kafka-metadata-quorum.sh"),
                "--bootstrap-server",
                bootstrap,
                "describe",
                "--status",
            ],
            env=env,
        )
        assert f"LeaderId:               {node_id}" in quorum.stdout, quorum.stdout
        described = run(
            [
                str(bin_dir / "kafka-configs.sh"),
                "--bootstrap-server",
                bootstrap,
                "--entity-type",
                "topics",
                "--entity-name",
                "probe",
                "--describe",
            ],
            env=env,
        )
        assert "probe" in described.stdout

        run([str(bin_dir / "kafka-server-stop.sh"), f"--node-id={node_id}"], env=env)
        wait_for(lambda: not pids_with(str(config)), 60, "the broker to stop after kafka-server-stop.sh")
    finally:
        kill_pids(pids_with(str(config)))


def test_kafka_broker_helper(java: None, archives: dict[str, Path], tmp_path: Path) -> None:
    """The reusable helper other integration tests use (fms_tools.fmsops.kafka_broker)."""
    broker = kb.KafkaBroker(tmp_path, archive=archives["kafka"])
    with broker:
        assert broker.bootstrap.startswith("127.0.0.1:")
        broker.create_topic("helper", partitions=2)
        broker.produce("helper", ["one", "two", "three"])
        assert sorted(broker.consume("helper", 3)) == ["one", "three", "two"]
        pid = broker.pid
        assert pid and _alive(pid)
    assert not broker.is_running() and not _alive(pid)


# --------------------------------------------------------------------------- Hadoop
def test_hadoop_version_and_layout(hadoop_home: Path) -> None:
    version = hadoop_home.name.split("-", 1)[1]
    result = run([str(hadoop_home / "bin" / "hdfs"), "version"], env=clean_env())
    assert result.stdout.splitlines()[0] == f"Hadoop {version}"
    assert run([str(hadoop_home / "bin" / "hadoop"), "version"], env=clean_env()).stdout.startswith("Hadoop ")
    share = hadoop_home / "share" / "hadoop"
    assert (share / "common" / f"hadoop-common-{version}.jar").is_file()
    assert (share / "hdfs" / f"hadoop-hdfs-{version}.jar").is_file()
    assert (share / "hdfs" / f"hadoop-hdfs-client-{version}.jar").is_file()
    assert any((share / "common" / "lib").glob("hadoop-auth-*.jar"))
    assert (share / "hdfs" / "webapps" / "hdfs" / "dfshealth.html").is_file()
    for conf in ("core-site.xml", "hdfs-site.xml", "hadoop-env.sh", "log4j.properties"):
        assert (hadoop_home / "etc" / "hadoop" / conf).is_file(), conf


def _hdfs_conf(hadoop_home: Path, work: Path) -> tuple[Path, dict[str, int]]:
    ports = {name: kb.free_port() for name in ("rpc", "http", "dn", "dn_http", "dn_ipc", "snn_http")}
    conf = work / "conf"
    shutil.copytree(hadoop_home / "etc" / "hadoop", conf)

    def site(props: dict[str, str]) -> str:
        body = "".join(
            f"  <property><name>{k}</name><value>{v}</value></property>\n" for k, v in props.items()
        )
        return f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n'

    (conf / "core-site.xml").write_text(
        site(
            {
                "fs.defaultFS": f"hdfs://127.0.0.1:{ports['rpc']}",
                "hadoop.tmp.dir": str(work / "tmp"),
            }
        )
    )
    (conf / "hdfs-site.xml").write_text(
        site(
            {
                "dfs.namenode.name.dir": str(work / "name"),
                "dfs.datanode.data.dir": str(work / "data"),
                "dfs.replication": "1",
                "dfs.namenode.rpc-bind-host": "127.0.0.1",
                "dfs.namenode.http-address": f"127.0.0.1:{ports['http']}",
                "dfs.namenode.secondary.http-address": f"127.0.0.1:{ports['snn_http']}",
                "dfs.datanode.address": f"127.0.0.1:{ports['dn']}",
                "dfs.datanode.http.address": f"127.0.0.1:{ports['dn_http']}",
                "dfs.datanode.ipc.address": f"127.0.0.1:{ports['dn_ipc']}",
                "dfs.datanode.hostname": "127.0.0.1",
            }
        )
    )
    return conf, ports


def _live_datanodes(http_port: int) -> int:
    url = f"http://127.0.0.1:{http_port}/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            beans = json.load(response)["beans"]
    except (OSError, ValueError, KeyError):
        return 0
    return int(beans[0].get("NumLiveDataNodes", 0)) if beans else 0


def test_hdfs_namenode_datanode_roundtrip(hadoop_home: Path, tmp_path: Path) -> None:
    conf, ports = _hdfs_conf(hadoop_home, tmp_path)
    env = clean_env(
        HADOOP_CONF_DIR=str(conf),
        HADOOP_LOG_DIR=str(tmp_path / "logs"),
        HADOOP_PID_DIR=str(tmp_path / "pids"),
        HADOOP_HEAPSIZE_MAX="512m",
    )
    hdfs = str(hadoop_home / "bin" / "hdfs")
    run([hdfs, "namenode", "-format", "-nonInteractive"], env=env, timeout=120)
    assert (tmp_path / "name" / "current" / "VERSION").is_file()
    try:
        run([hdfs, "--daemon", "start", "namenode"], env=env, timeout=60)
        run([str(hadoop_home / "sbin" / "hadoop-daemon.sh"), "start", "datanode"], env=env, timeout=60)
        status = run([hdfs, "--daemon", "status", "namenode"], env=env)
        assert "namenode is running as process" in status.stdout
        wait_for(lambda: _live_datanodes(ports["http"]) == 1, 120, "one live DataNode in the NameNode's JMX")
        run([hdfs, "dfsadmin", "-safemode", "wait"], env=env, timeout=120)

        # The NameNode web UI is served from share/hadoop/hdfs/webapps (from the -tests jar).
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/dfshealth.html", timeout=10) as page:
            assert page.status == 200 and b"dfshealth" in page.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['dn_http']}/datanode.html", timeout=10) as page:
            assert page.status == 200

        local = tmp_path / "hello.txt"
        local.write_text("hello from the lab hadoop archive\n")
        run([hdfs, "dfs", "-mkdir", "-p", "/fms/probe"], env=env)
        run([hdfs, "dfs", "-put", str(local), "/fms/probe/hello.txt"], env=env)
        cat = run([hdfs, "dfs", "-cat", "/fms/probe/hello.txt"], env=env)
        assert cat.stdout == "hello from the lab hadoop archive\n"
        conf_value = run([hdfs, "getconf", "-confKey", "dfs.replication"], env=env)
        assert conf_value.stdout.strip() == "1"
        report = run([hdfs, "dfsadmin", "-report"], env=env)
        assert "Live datanodes (1)" in report.stdout

        run([hdfs, "--daemon", "stop", "datanode"], env=env, timeout=60)
        run([hdfs, "--daemon", "stop", "namenode"], env=env, timeout=60)
        assert not list((tmp_path / "pids").glob("*.pid"))
    finally:
        kill_pids(pids_with(str(conf)))


# --------------------------------------------------------------------------- Spark
JOB = """
import sys
import pyspark
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("artifact-probe").getOrCreate()
total = spark.range(1, 101).selectExpr("sum(id) AS s").collect()[0].s
print("PYSPARK_FROM", pyspark.__file__)
print("RESULT", spark.version, total)
spark.stop()
"""


def _spark_env(spark_home: Path, work: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        SPARK_LOG_DIR=str(work / "logs"),
        SPARK_PID_DIR=str(work / "pids"),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOCAL_DIRS=str(work / "local"),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        **extra,
    )


def test_spark_layout(spark_home: Path) -> None:
    version = spark_home.name.split("-")[1]
    assert (spark_home / "RELEASE").read_text().startswith(f"Spark {version} built for Hadoop ")
    assert (spark_home / "jars" / f"spark-core_2.12-{version}.jar").is_file()
    assert (spark_home / "python" / "lib" / "pyspark.zip").is_file()
    assert list((spark_home / "python" / "lib").glob("py4j-*-src.zip"))
    for script in (
        "bin/spark-submit",
        "bin/spark-class",
        "sbin/start-master.sh",
        "sbin/start-worker.sh",
        "sbin/stop-master.sh",
        "sbin/stop-worker.sh",
        "sbin/spark-daemon.sh",
    ):
        assert os.access(spark_home / script, os.X_OK), script


def test_spark_submit_local(spark_home: Path, tmp_path: Path) -> None:
    job = tmp_path / "job.py"
    job.write_text(JOB)
    result = run(
        [
            str(spark_home / "bin" / "spark-submit"),
            "--master",
            "local[1]",
            "--conf",
            "spark.ui.enabled=false",
            str(job),
        ],
        env=_spark_env(spark_home, tmp_path),
        timeout=300,
    )
    version = spark_home.name.split("-")[1]
    assert f"RESULT {version} 5050" in result.stdout, result.stdout
    # The driver imported pyspark from the distribution's python/lib/pyspark.zip.
    assert str(spark_home / "python" / "lib" / "pyspark.zip") in result.stdout


def test_spark_standalone_master_worker(spark_home: Path, tmp_path: Path) -> None:
    master_port, master_ui, worker_ui = kb.free_port(), kb.free_port(), kb.free_port()
    env = _spark_env(
        spark_home,
        tmp_path,
        SPARK_MASTER_HOST="127.0.0.1",
        SPARK_MASTER_PORT=str(master_port),
        SPARK_MASTER_WEBUI_PORT=str(master_ui),
        SPARK_WORKER_WEBUI_PORT=str(worker_ui),
        SPARK_WORKER_DIR=str(tmp_path / "work"),
        SPARK_WORKER_CORES="1",
        SPARK_WORKER_MEMORY="1g",
        SPARK_IDENT_STRING=f"fmstest{os.getpid()}",
    )
    master = f"spark://127.0.0.1:{master_port}"
    job = tmp_path / "job.py"
    job.write_text(JOB)

    def alive_workers() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{master_ui}/json/", timeout=5) as response:
                return int(json.load(response).get("aliveworkers", 0))
        except (OSError, ValueError):
            return 0

    try:
        run([str(spark_home / "sbin" / "start-master.sh")], env=env, timeout=60)
        run([str(spark_home / "sbin" / "start-worker.sh"), master], env=env, timeout=60)
        wait_for(lambda: alive_workers() == 1, 120, "one ALIVE worker registered with the master")
        result = run(
            [
                str(spark_home / "bin" / "spark-submit"),
                "--master",
                master,
                "--conf",
                "spark.executor.memory=512m",
                "--conf",
                "spark.ui.enabled=false",
                str(job),
            ],
            env=env,
            timeout=300,
        )
        assert "5050" in result.stdout
        run([str(spark_home / "sbin" / "stop-worker.sh")], env=env, timeout=60)
        run([str(spark_home / "sbin" / "stop-master.sh")], env=env, timeout=60)
        wait_for(
            lambda: not pids_with(str(tmp_path / "work")) and not _master_pids(env),
            60,
            "master and worker to exit",
        )
    finally:
        kill_pids(pids_with(str(tmp_path / "work")) + _master_pids(env))


def _master_pids(env: dict[str, str]) -> list[int]:
    pid_dir = Path(env["SPARK_PID_DIR"])
    pids = []
    for pid_file in pid_dir.glob("spark-*.pid") if pid_dir.is_dir() else []:
        try:
            pid = int(pid_file.read_text().strip())
        except ValueError:
            continue
        if _alive(pid):
            pids.append(pid)
    return pids


KAFKA_JOB = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("kafka-connector-probe").getOrCreate()
rows = (spark.read.format("kafka").option("kafka.bootstrap.servers", sys.argv[1])
        .option("subscribe", sys.argv[2]).option("startingOffsets", "earliest").load()
        .selectExpr("CAST(value AS STRING) AS v").collect())
print("VALUES", sorted(r.v for r in rows))
spark.stop()
"""


def test_spark_reads_kafka_with_mirrored_connector(
    spark_home: Path, archives: dict[str, Path], tmp_path: Path
) -> None:
    """The mirrored spark-sql-kafka jars (Maven layout) work on the assembled Spark."""
    maven2 = archives["kafka"].parents[3] / "maven2"
    wanted = (
        "spark-sql-kafka-0-10_2.12-",
        "spark-token-provider-kafka-0-10_2.12-",
        "kafka-clients-",
        "commons-pool2-",
    )
    jars = sorted(str(j) for j in maven2.rglob("*.jar") if j.name.startswith(wanted))
    assert len(jars) == len(wanted), jars
    job = tmp_path / "kafka_job.py"
    job.write_text(KAFKA_JOB)
    with kb.KafkaBroker(tmp_path / "broker", archive=archives["kafka"]) as broker:
        broker.create_topic("readings")
        broker.produce("readings", ['{"DeviceId": 1}', '{"DeviceId": 2}'])
        result = run(
            [
                str(spark_home / "bin" / "spark-submit"),
                "--master",
                "local[1]",
                "--conf",
                "spark.ui.enabled=false",
                "--jars",
                ",".join(jars),
                str(job),
                broker.bootstrap,
                "readings",
            ],
            env=_spark_env(spark_home, tmp_path),
            timeout=300,
        )
    assert """VALUES ['{"DeviceId": 1}', '{"DeviceId": 2}']""" in result.stdout, result.stdout[-2000:]


# --------------------------------------------------------------------------- Prometheus family
def test_prometheus_family_tarballs_run(archives: dict[str, Path], tmp_path: Path) -> None:
    """node_exporter -> Prometheus scrape, Alertmanager API, promtool (when the Go builds exist)."""
    github = archives["kafka"].parents[3] / "github" / "prometheus"
    tarballs = {p.parents[3].name: p for p in github.glob("*/releases/download/*/*.linux-amd64.tar.gz")}
    if set(tarballs) != {"prometheus", "alertmanager", "node_exporter"}:
        pytest.skip("Prometheus tarballs not built: `fms-artifacts build prometheus` (Go, minutes)")
    homes = {}
    for name, tarball in tarballs.items():
        sums = (tarball.parent / "sha256sums.txt").read_text().split()
        assert sums == [hashlib.sha256(tarball.read_bytes()).hexdigest(), tarball.name], name
        homes[name] = extract(tarball, tmp_path)
    node_port, prom_port, am_port = kb.free_port(), kb.free_port(), kb.free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: node\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{node_port}']\n"
    )
    run([str(homes["prometheus"] / "promtool"), "check", "config", str(config)])
    logs = (tmp_path / "logs.txt").open("w")
    commands = [
        [str(homes["node_exporter"] / "node_exporter"), f"--web.listen-address=127.0.0.1:{node_port}"],
        [str(homes["prometheus"] / "prometheus"), f"--config.file={config}",
         f"--web.listen-address=127.0.0.1:{prom_port}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"],
        [str(homes["alertmanager"] / "alertmanager"),
         f"--config.file={homes['alertmanager'] / 'alertmanager.yml'}",
         f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
         f"--storage.path={tmp_path / 'am'}"],
    ]  # fmt: skip
    procs = [subprocess.Popen(cmd, stdout=logs, stderr=subprocess.STDOUT, cwd=tmp_path) for cmd in commands]

    def get(url: str) -> dict | None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except (OSError, ValueError):
            return None

    def node_up() -> bool:
        body = get(f"http://127.0.0.1:{prom_port}/api/v1/query?query=up")
        result = (body or {}).get("data", {}).get("result", [])
        return bool(result) and result[0]["value"][1] == "1"

    try:
        wait_for(node_up, 90, "Prometheus to scrape node_exporter (up == 1)")
        status = get(f"http://127.0.0.1:{am_port}/api/v2/status")
        assert status and status["cluster"]["status"] == "disabled"
        build = get(f"http://127.0.0.1:{prom_port}/api/v1/status/buildinfo")
        assert build and build["data"]["version"] == tarballs["prometheus"].parent.name.lstrip("v")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        logs.close()

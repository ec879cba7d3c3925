"""Spark standalone: master and workers per node, then the cluster (workers registered, SparkPi,
web UIs without kill links and with ACLs, still readable where the platform reads them)."""

from __future__ import annotations

import json
import uuid

import pytest
from fms_tools.fmsops.platform_contract import load as load_platform
from infra_helpers import http, listening, run

# Ports from the platform contract (platform.yml), the ones the roles configure.
PORT = load_platform().port

JARS = (
    "spark-sql-kafka-0-10_2.12-",
    "spark-token-provider-kafka-0-10_2.12-",
    "kafka-clients-",
    "commons-pool2-",
    "hadoop-aws-",
    "aws-java-sdk-bundle-",
)

PI = """
import random, sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("fms-testinfra-sparkpi").getOrCreate()
n = 200000
def inside(_):
    x, y = random.random(), random.random()
    return 1 if x * x + y * y <= 1 else 0
count = spark.sparkContext.parallelize(range(n), 4).map(inside).reduce(lambda a, b: a + b)
print("PI_ESTIMATE=%f APP_ID=%s" % (4.0 * count / n, spark.sparkContext.applicationId))
spark.stop()
"""


def _master(platform):
    return platform.host(platform.first("spark_master"))


def _defaults(host) -> dict[str, str]:
    out = host.check_output("cat /etc/spark/spark-defaults.conf")
    pairs = (line.split(None, 1) for line in out.splitlines() if line.strip() and not line.startswith("#"))
    return {p[0]: (p[1].strip() if len(p) > 1 else "") for p in pairs}


# --------------------------------------------------------------------------- per node


def test_master_running(platform, spark_master_node):
    host = platform.host(spark_master_node)
    for unit in ("spark-master", "spark-history"):
        assert host.service(unit).is_running and host.service(unit).is_enabled, unit
    for port in (
        PORT("spark_master"),
        PORT("spark_master_ui"),
        PORT("spark_history_ui"),
        PORT("spark_master_jmx_exporter"),
    ):
        assert listening(host, port)


def test_master_recovers_its_applications_after_a_restart(platform, spark_master_node):
    """Recovery state on local disk: the registered workers (and running applications) are
    persisted there, so a restarted master adopts them instead of killing their executors."""
    host = platform.host(spark_master_node)
    env = host.check_output("systemctl show -p Environment spark-master")
    assert "-Dspark.deploy.recoveryMode=FILESYSTEM" in env, env
    directory = env.split("-Dspark.deploy.recoveryDirectory=", 1)[1].split()[0].strip('"')
    listing = host.check_output(f"ls -1 {directory}")
    assert any(name.startswith("worker_") for name in listing.split()), f"no worker persisted in {directory}"


def test_worker_running(platform, spark_worker_node):
    host = platform.host(spark_worker_node)
    assert host.service("spark-worker").is_running and host.service("spark-worker").is_enabled
    assert listening(host, PORT("spark_worker_ui"))


def test_authentication_configured(platform, spark_worker_node):
    host = platform.host(spark_worker_node)
    conf = host.file("/etc/spark/spark-defaults.conf")
    assert conf.mode == 0o640 and conf.group == "spark"
    defaults = _defaults(host)
    assert defaults["spark.authenticate"] == "true"
    assert len(defaults["spark.authenticate.secret"]) >= 32
    assert defaults["spark.network.crypto.enabled"] == "true"
    assert defaults["spark.eventLog.dir"].startswith("hdfs://")


def _assert_ui_security(defaults: dict[str, str]) -> None:
    """No kill links, ACLs on; the platform's user (daemons and pipeline drivers run as spark) is admin."""
    assert defaults["spark.ui.killEnabled"] == "false"
    assert defaults["spark.acls.enable"] == "true"
    assert defaults["spark.history.ui.acls.enable"] == "true"
    assert "spark" in defaults["spark.admin.acls"].split(",")
    assert "spark" in defaults["spark.history.ui.admin.acls"].split(",")


def test_ui_acls_on_and_kill_links_off_on_master(platform, spark_master_node):
    _assert_ui_security(_defaults(platform.host(spark_master_node)))


def test_ui_acls_on_and_kill_links_off_on_worker(platform, spark_worker_node):
    _assert_ui_security(_defaults(platform.host(spark_worker_node)))


def test_connector_jars_installed(platform, spark_worker_node):
    host = platform.host(spark_worker_node)
    listing = host.check_output("ls /opt/spark/jars")
    for prefix in JARS:
        assert prefix in listing, f"{prefix}*.jar missing from $SPARK_HOME/jars"


def test_prometheus_servlet(platform, spark_master_node):
    out = run(
        platform.host(spark_master_node),
        f"curl -sfL http://127.0.0.1:{PORT('spark_master_ui')}/metrics/master/prometheus",
        30,
    )
    assert out.rc == 0 and "metrics_master_aliveWorkers" in out.stdout


# --------------------------------------------------------------------------- cluster


def test_workers_registered(platform):
    master = platform.first("spark_master")
    out = run(
        _master(platform), f"curl -sf http://{platform.node_name(master)}:{PORT('spark_master_ui')}/json/", 30
    )
    state = json.loads(out.stdout)
    alive = {w["host"] for w in state["workers"] if w["state"] == "ALIVE"}
    assert state["status"] == "ALIVE"
    assert alive == {platform.node_name(w) for w in platform.members("spark_worker")}


def test_master_and_history_uis_readable_without_kill_links(platform):
    """The master page lists the running applications (the stream) without kill forms; the master's
    /json (cluster gate, rolling restart) and the history server's REST API answer without a user."""
    host = _master(platform)
    status, page = http(host, f"http://127.0.0.1:{PORT('spark_master_ui')}/")
    assert status == 200, page[:300]
    assert "app/kill" not in page and "driver/kill" not in page
    status, body = http(host, f"http://127.0.0.1:{PORT('spark_master_ui')}/json/")
    assert status == 200 and json.loads(body)["status"] == "ALIVE"
    status, body = http(host, f"http://127.0.0.1:{PORT('spark_history_ui')}/api/v1/applications?limit=1")
    assert status == 200, body[:300]


def test_running_driver_has_acls_and_no_kill_links(platform):
    """The streaming job's driver (first port of spark_driver_ui) took the settings from
    /etc/spark/spark-defaults.conf, and its REST API stays readable."""
    host = _master(platform)
    port = PORT("spark_driver_ui")
    if not listening(host, port):
        pytest.skip(f"no driver UI on port {port} (the streaming job is checked in test_pipeline.py)")
    base = f"http://127.0.0.1:{port}/api/v1/applications"
    status, body = http(host, base)
    assert status == 200, body[:300]
    app_id = json.loads(body)[0]["id"]
    status, body = http(host, f"{base}/{app_id}/environment")
    assert status == 200, body[:300]
    props = dict(json.loads(body)["sparkProperties"])
    assert props["spark.ui.killEnabled"] == "false"
    assert props["spark.acls.enable"] == "true"
    assert "spark" in props["spark.admin.acls"].split(",")


@pytest.mark.slow
def test_sparkpi_completes_and_logs_events(platform):
    """A real (authenticated) job runs on the workers and leaves its event log on HDFS."""
    host = _master(platform)
    script = f"/tmp/fms-testinfra-pi-{uuid.uuid4().hex[:8]}.py"
    host.run(f"cat > {script} <<'PY'\n{PI}\nPY\nchmod 0644 {script}")
    try:
        result = run(
            host,
            "cd /tmp && runuser -u spark -- env SPARK_CONF_DIR=/etc/spark /opt/spark/bin/spark-submit "
            f"--conf spark.executor.memory=512m --conf spark.cores.max=2 {script}",
            timeout=600,
        )
    finally:
        host.run(f"rm -f {script}")
    assert result.rc == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("PI_ESTIMATE="))
    estimate = float(line.split()[0].split("=")[1])
    app_id = line.split("APP_ID=")[1].strip()
    assert 3.0 < estimate < 3.3
    if platform.members("hdfs_namenode"):
        nn = platform.host(platform.first("hdfs_namenode"))
        listing = run(
            nn, "runuser -u hdfs -- /opt/hadoop/bin/hdfs --config /etc/hadoop dfs -ls /spark-logs"
        ).stdout
        assert app_id in listing

"""Monitoring stack: node_exporter (every node), the JMX agents (Kafka, HDFS and
Spark nodes), Prometheus, Alertmanager and Grafana (monitoring nodes).

Per node: services, ports, users, file modes, metrics served. Per cluster (run on
each monitoring node): Prometheus and Alertmanager answer only over HTTPS with a
certificate from the site CA for the node's name, anonymous requests are refused,
every Prometheus target is up (itself and Alertmanager scraped over https), the
rule groups loaded without errors, Prometheus sees Alertmanager at an https URL.
HTTP requests are made on the nodes themselves (python3 is there for Ansible), so
the checks work through a bastion too; the web passwords are read from the files
the prometheus role deployed. Grafana is skipped, saying so, where it was not converged.
"""

from __future__ import annotations

import json

import pytest
from fms_tools.fmsops.platform_contract import load as load_platform
from infra_helpers import SITE_CA, http

# Ports from the platform contract (platform.yml), the ones the roles configure.
PORT = load_platform().port

# group: (agent port (platform.yml, as the jmx_exporter role defaults), a metric the agent must export)
JMX_AGENTS = {
    "kafka": (PORT("kafka_jmx_exporter"), "kafka_server_replicamanager_underreplicatedpartitions"),
    "kafka_controller": (PORT("kafka_jmx_exporter"), "kafka_server_raftmetrics_current_leader"),
    "hdfs_namenode": (PORT("hdfs_namenode_jmx_exporter"), "hadoop_namenode_safemode"),
    "hdfs_datanode": (PORT("hdfs_datanode_jmx_exporter"), "hadoop_datanode_fsdatasetstate_remaining"),
    "spark_master": (PORT("spark_master_jmx_exporter"), "spark_master_aliveworkers"),
    "spark_worker": (PORT("spark_worker_jmx_exporter"), "spark_worker_coresfree"),
}
RULE_GROUPS = {
    "fms-thresholds",
    "fms-pipeline-recording",
    "fms-availability-recording",
    "fms-pipeline-alerts",
    "kafka-alerts",
    "hdfs-alerts",
    "spark-alerts",
    "host-alerts",
    "target-alerts",
    "monitoring-alerts",
}
DASHBOARDS = {"fms-pipeline", "fms-kafka", "fms-hdfs", "fms-spark", "fms-nodes"}


def read_secret(host, path: str) -> str:
    if host.user().name == "root":
        return host.file(path).content_string.strip()
    with host.sudo():
        return host.file(path).content_string.strip()


def _groups_of(platform, name: str) -> set[str]:
    return {g for g, members in platform.groups.items() if name in members}


# --- node_exporter (every node) ------------------------------------------------------------


def test_node_exporter_runs_unprivileged(platform, any_node):
    host = platform.host(any_node)
    service = host.service("node_exporter")
    assert service.is_running and service.is_enabled
    assert host.socket(f"tcp://0.0.0.0:{PORT('node_exporter')}").is_listening
    assert host.process.get(comm="node_exporter").user == "node-exp"


def test_node_exporter_serves_metrics(platform, any_node):
    host = platform.host(any_node)
    status, body = http(host, f"http://127.0.0.1:{PORT('node_exporter')}/metrics")
    assert status == 200
    assert "node_cpu_seconds_total" in body
    assert "node_textfile_scrape_error 0" in body


def test_textfile_collector_directory(platform, any_node):
    directory = platform.host(any_node).file("/var/lib/node_exporter/textfile_collector")
    assert directory.is_directory and directory.group == "fms-metrics"
    assert directory.mode == 0o2775


# --- JMX agents (JVM nodes) -------------------------------------------------------------------


@pytest.mark.parametrize("group", sorted(JMX_AGENTS))
def test_jmx_agent_exports_its_service_metrics(platform, any_node, group):
    if group not in _groups_of(platform, any_node):
        pytest.skip(f"{any_node} is not in {group}")
    host = platform.host(any_node)
    port, metric = JMX_AGENTS[group]
    assert host.socket(f"tcp://0.0.0.0:{port}").is_listening
    status, body = http(host, f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    names = {line.split("{")[0].split(" ")[0] for line in body.splitlines() if not line.startswith("#")}
    assert metric in names, f"{metric} missing on :{port}"
    assert "jmx_scrape_error 0.0" in body


def test_jmx_agent_jar_is_installed(platform, any_node):
    if not _groups_of(platform, any_node) & set(JMX_AGENTS):
        pytest.skip("no JVM service with a JMX agent here")
    host = platform.host(any_node)
    link = host.file("/opt/jmx_exporter/jmx_prometheus_javaagent.jar")
    assert link.is_symlink and host.file(link.linked_to).is_file


# --- Prometheus (monitoring nodes) -----------------------------------------------------------


@pytest.fixture
def prometheus(platform, monitoring_node):
    host = platform.host(monitoring_node)
    return host, ("admin", read_secret(host, "/etc/prometheus/secrets/prometheus.password"))


def _prom(path: str) -> str:
    return f"https://127.0.0.1:{PORT('prometheus')}{path}"


def test_prometheus_service_and_files(prometheus):
    host, (_, password) = prometheus
    service = host.service("prometheus")
    assert service.is_running and service.is_enabled
    assert host.socket(f"tcp://0.0.0.0:{PORT('prometheus')}").is_listening
    assert host.process.get(comm="prometheus").user == "prometheus"
    for path in (
        "prometheus.yml",
        "web.yml",
        "secrets/prometheus.password",
        "secrets/alertmanager.password",
        "tls/server.key",
    ):
        config = host.file(f"/etc/prometheus/{path}")
        assert (config.user, config.group, config.mode) == ("root", "prometheus", 0o640), path
    web = host.file("/etc/prometheus/web.yml").content_string
    assert "$2b$" in web and password not in web
    assert "tls_server_config:" in web and "/etc/prometheus/tls/server.key" in web


def test_prometheus_refuses_anonymous_requests(prometheus):
    host, (user, password) = prometheus
    assert http(host, _prom("/api/v1/targets"), cafile=SITE_CA)[0] == 401
    assert http(host, _prom("/-/ready"), user, "not-the-password", cafile=SITE_CA)[0] == 401
    assert http(host, _prom("/-/ready"), user, password, cafile=SITE_CA)[0] == 200


@pytest.mark.parametrize(
    "component,password_file",
    [
        ("prometheus", "/etc/prometheus/secrets/prometheus.password"),
        ("alertmanager", "/etc/prometheus/secrets/alertmanager.password"),
    ],
)
def test_web_endpoints_answer_only_over_tls_from_the_site_ca(
    platform, monitoring_node, component, password_file
):
    """HTTPS with a certificate the site CA issued for the node's name (what other hosts connect to);
    plain HTTP gets 400 and never reaches the API."""
    host = platform.host(monitoring_node)
    password = read_secret(host, password_file)
    port = PORT(component)
    for address in (platform.node_name(monitoring_node), "127.0.0.1"):
        status, body = http(host, f"https://{address}:{port}/-/ready", "admin", password, cafile=SITE_CA)
        assert status == 200, f"{component} via {address}: {status} {body[:300]}"
    status, body = http(host, f"http://127.0.0.1:{port}/-/ready", "admin", password)
    assert status == 400 and "HTTPS" in body, f"{component} answered plain HTTP: {status} {body[:300]}"


def test_every_prometheus_target_is_up(prometheus):
    host, auth = prometheus
    status, body = http(host, _prom("/api/v1/targets?state=active"), *auth, cafile=SITE_CA)
    assert status == 200
    targets = json.loads(body)["data"]["activeTargets"]
    assert targets, "no active targets"
    down = [
        f"{t['labels']['job']}/{t['labels']['instance']}: {t.get('lastError')}"
        for t in targets
        if t["health"] != "up"
    ]
    assert not down, "targets not up:\n" + "\n".join(down)
    assert {t["labels"]["job"] for t in targets} >= {"node", "prometheus", "alertmanager"}
    plain = [t["scrapeUrl"] for t in targets if t["labels"]["job"] in ("prometheus", "alertmanager")]
    assert all(url.startswith("https://") for url in plain), plain


def test_prometheus_rules_loaded_without_errors(prometheus):
    host, auth = prometheus
    status, body = http(host, _prom("/api/v1/rules"), *auth, cafile=SITE_CA)
    assert status == 200
    groups = json.loads(body)["data"]["groups"]
    assert {g["name"] for g in groups} >= RULE_GROUPS
    broken = [
        f"{g['name']}/{r.get('name')}: {r.get('lastError')}"
        for g in groups
        for r in g["rules"]
        if r.get("health") == "err"
    ]
    assert not broken, "\n".join(broken)


def test_prometheus_sees_alertmanager(prometheus):
    host, auth = prometheus
    status, body = http(host, _prom("/api/v1/alertmanagers"), *auth, cafile=SITE_CA)
    assert status == 200
    active = json.loads(body)["data"]["activeAlertmanagers"]
    assert active, "no active Alertmanager"
    assert all(am["url"].startswith("https://") for am in active), active


# --- Alertmanager (monitoring nodes) ----------------------------------------------------------


def test_alertmanager(platform, monitoring_node):
    host = platform.host(monitoring_node)
    service = host.service("alertmanager")
    assert service.is_running and service.is_enabled
    assert host.socket(f"tcp://0.0.0.0:{PORT('alertmanager')}").is_listening
    assert host.process.get(comm="alertmanager").user == "alertmanager"
    config = host.file("/etc/alertmanager/alertmanager.yml")
    assert (config.group, config.mode) == ("alertmanager", 0o640)
    key = host.file("/etc/alertmanager/tls/server.key")
    assert (key.user, key.group, key.mode) == ("root", "alertmanager", 0o640)
    password = read_secret(host, "/etc/prometheus/secrets/alertmanager.password")
    base = f"https://127.0.0.1:{PORT('alertmanager')}"
    assert http(host, f"{base}/api/v2/status", cafile=SITE_CA)[0] == 401
    status, body = http(host, f"{base}/api/v2/status", "admin", password, cafile=SITE_CA)
    assert status == 200
    assert json.loads(body)["config"]["original"], "Alertmanager has no configuration"
    assert http(host, f"{base}/-/ready", "admin", password, cafile=SITE_CA)[0] == 200


# --- Grafana (monitoring nodes) ----------------------------------------------------------------


def test_grafana(platform, monitoring_node):
    host = platform.host(monitoring_node)
    if not host.package("grafana").is_installed:
        pytest.skip("Grafana was NOT converged on this node (grafana_enabled=false: no package source here)")
    service = host.service("grafana-server")
    assert service.is_running and service.is_enabled
    assert http(host, f"http://127.0.0.1:{PORT('grafana')}/api/health")[0] == 200
    assert http(host, f"http://127.0.0.1:{PORT('grafana')}/api/search")[0] == 401  # anonymous access is off
    password = read_secret(host, "/etc/grafana/admin_password")
    status, body = http(
        host, f"http://127.0.0.1:{PORT('grafana')}/api/search?folderUIDs=fms", "admin", password
    )
    assert status == 200
    assert {d["uid"] for d in json.loads(body)} >= DASHBOARDS
    # the datasource reaches Prometheus over HTTPS, verified against the site CA
    health = f"http://127.0.0.1:{PORT('grafana')}/api/datasources/uid/fms-prometheus/health"
    status, body = http(host, health, "admin", password)
    assert status == 200 and json.loads(body).get("status") == "OK", body[:500]

"""The monitoring roles' templates, rendered by Ansible with the sample
inventory (render/), validated the way the roles validate them on the hosts
(promtool check config / web-config, amtool check-config) and inspected for
the behaviour the platform relies on."""

from __future__ import annotations

import configparser
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ROLES, load_yaml, render, run
from fms_tools.fmsops.platform_contract import load as load_platform

INVENTORY_HOSTS = {
    "kafka": {"kafka-1", "kafka-2", "kafka-3", "kafka-4"},
    "hdfs_namenode": {"namenode-1"},
    "hdfs_datanode": {"datanode-1", "datanode-2", "datanode-3"},
    "spark_master": {"spark-master-1"},
    "spark_worker": {"spark-worker-1", "spark-worker-2"},
    "fms_collector": {"collector-1"},
    "fms_stream": {"spark-master-1"},
    "prometheus": {"monitoring-1"},
    "alertmanager": {"monitoring-1"},
}
ALL_HOSTS = set().union(*INVENTORY_HOSTS.values()) | {"bastion-1", "monitoring-1"}


@pytest.fixture(scope="module")
def prometheus_config(rendered: Path) -> dict:
    return load_yaml(rendered / "prometheus" / "prometheus.yml")


@pytest.fixture(scope="module")
def alertmanager_config(rendered: Path) -> dict:
    return load_yaml(rendered / "alertmanager" / "alertmanager.yml")


def _targets(job: dict) -> list[tuple[str, dict]]:
    return [(t, sc.get("labels", {})) for sc in job["static_configs"] for t in sc["targets"]]


# --- Prometheus ----------------------------------------------------------------------------


def test_prometheus_config_passes_promtool(promtool, rendered):
    result = run([promtool, "check", "config", str(rendered / "prometheus" / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rule files found" in result.stdout


@pytest.mark.parametrize("component", ["prometheus", "alertmanager"])
def test_web_config_passes_promtool(promtool, rendered, component):
    result = run([promtool, "check", "web-config", str(rendered / component / "web.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "component,secret", [("prometheus", "prometheus-web"), ("alertmanager", "alertmanager-web")]
)
def test_web_config_holds_a_bcrypt_hash_of_the_site_password(rendered, component, secret):
    from passlib.hash import bcrypt

    users = load_yaml(rendered / component / "web.yml")["basic_auth_users"]
    password = (rendered / "secrets" / "monitoring" / f"{secret}.password").read_text().strip()
    assert set(users) == {"admin"}
    assert users["admin"].startswith("$2b$10$")
    assert bcrypt.verify(password, users["admin"])
    assert password not in (rendered / component / "web.yml").read_text()


@pytest.mark.parametrize("component", ["prometheus", "alertmanager"])
def test_web_config_serves_tls_with_the_site_ca_certificate(rendered, component):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    tls = load_yaml(rendered / component / "web.yml")["tls_server_config"]
    assert tls == {
        "cert_file": str(rendered / component / "tls" / "server.crt"),
        "key_file": str(rendered / component / "tls" / "server.key"),
        "min_version": "TLS12",
    }
    cert = x509.load_pem_x509_certificate(Path(tls["cert_file"]).read_bytes())
    ca = x509.load_pem_x509_certificate((rendered / "secrets" / "pki" / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    installed_ca = (rendered / component / "tls" / "ca.crt").read_bytes()
    assert installed_ca.strip() == ca.public_bytes(Encoding.PEM).strip()
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # the names clients use: the node name, its address (Prometheus' targets), the probes' loopback
    assert set(sans.get_values_for_type(x509.DNSName)) == {"monitoring-1", "localhost"}
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "198.18.3.10"}
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage


def test_scrape_jobs_follow_the_inventory(prometheus_config):
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    assert set(jobs) == set(INVENTORY_HOSTS) | {"node"}
    assert {labels["host"] for _, labels in _targets(jobs["node"])} == ALL_HOSTS
    for name, hosts in INVENTORY_HOSTS.items():
        assert {labels["host"] for _, labels in _targets(jobs[name])} == hosts, name
    for job in jobs.values():
        for target, labels in _targets(job):
            assert re.fullmatch(r"198\.18\.\d+\.\d+:\d+", target), target
            port = target.rsplit(":", 1)[1]
            assert labels["instance"] == f"{labels['host']}:{port}"


def test_scrape_ports(prometheus_config):
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    ports = {name: {t.rsplit(":", 1)[1] for t, _ in _targets(job)} for name, job in jobs.items()}
    # the ports the platform contract gives the exporters (and the security groups open)
    port = load_platform().port
    assert ports["node"] == {str(port("node_exporter"))}
    assert ports["kafka"] == {str(port("kafka_jmx_exporter"))}
    assert ports["hdfs_namenode"] == {str(port("hdfs_namenode_jmx_exporter"))}
    # datanode-3 overrides its port in host vars
    assert ports["hdfs_datanode"] == {str(port("hdfs_datanode_jmx_exporter")), "17073"}
    assert ports["spark_master"] == {str(port("spark_master_jmx_exporter"))}
    assert ports["spark_worker"] == {str(port("spark_worker_jmx_exporter"))}
    assert ports["fms_collector"] == {str(port("collector_metrics"))}
    assert ports["fms_stream"] == {str(port("stream_metrics"))}


def test_kafka_targets_know_their_kraft_roles(prometheus_config):
    job = next(j for j in prometheus_config["scrape_configs"] if j["job_name"] == "kafka")
    roles = {
        labels["host"]: (labels["kafka_broker"], labels["kafka_controller"]) for _, labels in _targets(job)
    }
    assert roles == {
        "kafka-1": ("true", "true"),
        "kafka-2": ("true", "true"),
        "kafka-3": ("true", "true"),
        "kafka-4": ("true", "false"),
    }


def test_prometheus_is_not_anonymous_towards_itself_and_alertmanager(prometheus_config, rendered):
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    site_ca = {"ca_file": str(rendered / "prometheus" / "tls" / "ca.crt")}
    for name in ("prometheus", "alertmanager"):
        auth = jobs[name]["basic_auth"]
        assert auth["username"] == "admin"
        assert Path(auth["password_file"]).is_file()
        # the password only ever goes over TLS, to a server the site CA vouches for
        assert jobs[name]["scheme"] == "https", name
        assert jobs[name]["tls_config"] == site_ca, name
    (am,) = prometheus_config["alerting"]["alertmanagers"]
    assert am["scheme"] == "https" and am["tls_config"] == site_ca
    assert am["basic_auth"]["password_file"].endswith("alertmanager.password")
    assert am["static_configs"][0]["targets"] == ["198.18.3.10:9093"]
    # the password files hold the site passwords, the config only refers to them
    text = (rendered / "prometheus" / "prometheus.yml").read_text()
    for secret in ("prometheus-web", "alertmanager-web"):
        assert (rendered / "secrets" / "monitoring" / f"{secret}.password").read_text().strip() not in text


def test_rule_files_glob_covers_the_rules_and_the_thresholds(prometheus_config, rendered):
    (pattern,) = prometheus_config["rule_files"]
    found = {p.name for p in Path(pattern).parent.glob(Path(pattern).name)}
    shipped = {p.name for p in (ROLES / "prometheus" / "files" / "rules").glob("*.rules.yml")}
    assert found == shipped | {"fms_thresholds.rules.yml"}


def test_external_labels_name_the_site(prometheus_config):
    assert prometheus_config["global"]["external_labels"] == {"env": "test"}


# --- Alertmanager ----------------------------------------------------------------------------


def test_alertmanager_config_passes_amtool(amtool, rendered):
    result = run([amtool, "check-config", str(rendered / "alertmanager" / "alertmanager.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 receivers" in result.stdout


@pytest.mark.parametrize(
    "labels,receiver",
    [
        (["severity=critical", "alertname=KafkaBrokerDown"], "fms-critical"),
        (["severity=warning", "alertname=TargetDown"], "fms-warning"),
        (["severity=info", "alertname=Something"], "fms-warning"),
        (["alertname=NoSeverity"], "fms-warning"),
    ],
)
def test_alertmanager_routes_by_severity(amtool, rendered, labels, receiver):
    result = run(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={rendered / 'alertmanager' / 'alertmanager.yml'}",
            *labels,
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_alertmanager_groups_alerts(alertmanager_config):
    route = alertmanager_config["route"]
    assert route["group_by"] == ["alertname", "job", "severity"]
    assert route["group_wait"] and route["group_interval"] and route["repeat_interval"]


def test_alertmanager_inhibition(alertmanager_config):
    rules = alertmanager_config["inhibit_rules"]
    host_down = [r for r in rules if r["source_matchers"] == ['alertname="HostDown"']]
    assert host_down and host_down[0]["equal"] == ["host"]
    assert host_down[0]["target_matchers"] == ['alertname!="HostDown"']
    crit_warn = [
        r
        for r in rules
        if r["source_matchers"] == ['severity="critical"'] and r["target_matchers"] == ['severity="warning"']
    ]
    assert crit_warn and crit_warn[0]["equal"] == ["alertname", "instance"]
    target_down = [r for r in rules if r["target_matchers"] == ['alertname="TargetDown"']]
    assert target_down and target_down[0]["equal"] == ["job", "instance"]


def test_alertmanager_receivers(alertmanager_config):
    receivers = {r["name"]: r for r in alertmanager_config["receivers"]}
    assert set(receivers) == {"fms-critical", "fms-warning"}
    critical, warning = receivers["fms-critical"], receivers["fms-warning"]
    assert critical["slack_configs"][0]["channel"] == "#fms-alerts"
    assert critical["email_configs"][0]["to"] == "ops@example.com, oncall@example.com"
    assert "email_configs" not in warning  # only critical alerts are e-mailed by default
    for receiver in (critical, warning):
        (hook,) = receiver["webhook_configs"]
        assert hook["url"] == "http://198.18.0.1:9099/alerts"
        assert hook["send_resolved"] is True
        assert hook["http_config"]["authorization"]["credentials"] == "not-a-real-token"
    glob = alertmanager_config["global"]
    assert glob["slack_api_url"].startswith("https://hooks.slack.com/")
    assert glob["smtp_auth_password"] == "not-a-real-smtp-password"


def test_alertmanager_single_host_runs_without_cluster(rendered):
    unit = (rendered / "alertmanager" / "alertmanager.service").read_text()
    assert "--cluster.listen-address= \\" in unit
    assert "--cluster.peer" not in unit
    port = load_platform().port("alertmanager")
    assert f"--web.external-url=https://198.18.3.10:{port}/" in unit


def test_prometheus_links_to_itself_over_https(rendered):
    port = load_platform().port("prometheus")
    unit = (rendered / "prometheus" / "prometheus.service").read_text()
    assert f"--web.external-url=https://198.18.3.10:{port}/" in unit


# --- systemd units -------------------------------------------------------------------------------

HARDENING = [
    "NoNewPrivileges=true",
    "ProtectSystem=strict",
    "PrivateTmp=true",
    "ProtectKernelModules=true",
    "RestrictSUIDSGID=true",
    "CapabilityBoundingSet=",
]


@pytest.mark.parametrize(
    "unit,writable",
    [
        ("prometheus/prometheus.service", "ReadWritePaths=/var/lib/prometheus"),
        ("alertmanager/alertmanager.service", "ReadWritePaths=/var/lib/alertmanager"),
        ("node_exporter/node_exporter.service", None),
        ("grafana/hardening.conf", "ReadWritePaths=/var/lib/grafana /var/log/grafana"),
    ],
)
def test_units_are_hardened(rendered, unit, writable):
    lines = (rendered / unit).read_text().splitlines()
    for directive in HARDENING:
        assert directive in lines, f"{unit}: {directive}"
    assert any(line.startswith("ProtectHome=") for line in lines), unit
    if writable:
        assert writable in lines, unit


@pytest.mark.parametrize("unit", ["prometheus/prometheus.service", "alertmanager/alertmanager.service"])
def test_units_use_their_web_config(rendered, unit):
    text = (rendered / unit).read_text()
    assert re.search(r"--web\.config\.file=/etc/\w+/web\.yml", text)
    assert "User=root" not in text


def test_unit_files_pass_systemd_analyze(rendered, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed")
    for unit in (
        "prometheus/prometheus.service",
        "alertmanager/alertmanager.service",
        "node_exporter/node_exporter.service",
    ):
        text = (rendered / unit).read_text()
        # point ExecStart at a binary that exists here; the directives are what is checked
        text = re.sub(r"^ExecStart=\S+", "ExecStart=/bin/true", text, flags=re.M)
        path = tmp_path / Path(unit).name
        path.write_text(text)
        result = run([analyze, "verify", "--man=no", str(path)])
        assert "Unknown key" not in result.stderr and "Unknown lvalue" not in result.stderr, result.stderr


# --- Grafana ---------------------------------------------------------------------------------------


def test_grafana_ini_disables_anonymous_access(rendered):
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(rendered / "grafana" / "grafana.ini")
    assert ini["auth.anonymous"]["enabled"] == "false"
    assert ini["users"]["allow_sign_up"] == "false"
    assert ini["analytics"]["reporting_enabled"] == "false"
    assert ini["snapshots"]["external_enabled"] == "false"
    assert ini["security"]["admin_password"] == "$__file{/etc/grafana/admin_password}"
    assert ini["security"]["secret_key"] == "$__file{/etc/grafana/secret_key}"


def test_grafana_datasource_and_dashboard_provider(rendered):
    ds = load_yaml(rendered / "grafana" / "datasource.yml")["datasources"]
    (prom,) = ds
    assert prom["uid"] == "fms-prometheus" and prom["type"] == "prometheus"
    assert prom["basicAuth"] is True and prom["basicAuthUser"] == "admin"
    password = (rendered / "secrets" / "monitoring" / "prometheus-web.password").read_text().strip()
    assert prom["secureJsonData"]["basicAuthPassword"] == password
    # HTTPS to a name Prometheus' certificate holds, verified against the site CA
    assert prom["url"] == f"https://127.0.0.1:{load_platform().port('prometheus')}"
    assert prom["jsonData"]["tlsAuthWithCACert"] is True
    assert not prom["jsonData"].get("tlsSkipVerify")
    ca = (rendered / "secrets" / "pki" / "ca.crt").read_text()
    assert prom["secureJsonData"]["tlsCACert"].strip() == ca.strip()
    (provider,) = load_yaml(rendered / "grafana" / "dashboards.yml")["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/fms"
    assert provider["allowUiUpdates"] is False and provider["disableDeletion"] is True


# --- JMX exporter -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "service", ["kafka", "hdfs_namenode", "hdfs_datanode", "spark_master", "spark_worker"]
)
def test_jmx_exporter_configs_are_explicit(rendered, service):
    config = load_yaml(rendered / "jmx_exporter" / f"{service}.yml")
    assert config["lowercaseOutputName"] is True
    assert config["includeObjectNames"], "scrape only the beans the rules use"
    for rule in config["rules"]:
        assert rule["name"] and rule["type"] in {"GAUGE", "COUNTER"}, rule
        assert rule["pattern"] not in {".*", "(.*)"}, "no catch-all rules"


# --- Idempotence ---------------------------------------------------------------------------------------


def test_rendering_again_changes_nothing(rendered):
    """The web configs use a per-host salt: a second run with the same passwords is a no-op (changed=0)."""
    result = render(rendered)
    assert result.returncode == 0, result.stdout[-4000:]
    recap = re.search(r"monitoring-1\s+: ok=(\d+)\s+changed=(\d+)", result.stdout)
    assert recap, result.stdout[-2000:]
    assert recap.group(2) == "0", result.stdout[-6000:]


def test_catalogue_parses():
    data = yaml.safe_load((Path(__file__).parent / "metric_catalogue.yml").read_text())
    assert {"node_exporter", "kafka", "hdfs_namenode", "pipeline_stream"} <= set(data)

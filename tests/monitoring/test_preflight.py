"""Bad operator input stops the monitoring roles in their preflight checks
(render/render.yml --tags preflight runs exactly those tasks, plus argument
spec validation) with a message that says what to fix."""

from __future__ import annotations

import json

import pytest
from conftest import render, require_passlib

CASES = [
    pytest.param(
        ["-e", "fms_secrets_mode=vault"], "vault_prometheus_web_password", id="vault-mode-without-secrets"
    ),
    pytest.param(
        ["-e", "vault_alertmanager_slack_api_url="], "Slack webhook URL is missing", id="slack-without-url"
    ),
    pytest.param(
        [
            "-e",
            json.dumps(
                {
                    "alertmanager_slack_enabled": False,
                    "alertmanager_email_enabled": False,
                    "alertmanager_webhook_enabled": False,
                }
            ),
        ],
        "No Alertmanager receiver is enabled",
        id="no-receiver",
    ),
    pytest.param(
        ["-e", "alertmanager_smtp_smarthost=smtp.example.com"],
        "e-mail settings are incomplete",
        id="smtp-without-port",
    ),
    pytest.param(
        ["-e", json.dumps({"prometheus_alert_thresholds": {"throughput_min": 5}})],
        "unknown names",
        id="unknown-threshold",
    ),
    pytest.param(
        ["-e", json.dumps({"prometheus_alert_thresholds": {"quality_pass_ratio_min": 95}})],
        "ratios at most 1",
        id="threshold-out-of-range",
    ),
    pytest.param(
        ["-e", "prometheus_web_listen_address=9090"],
        "prometheus_web_listen_address host:port",
        id="bad-listen-address",
    ),
    pytest.param(
        ["-e", "grafana_install_method=deb", "-e", "grafana_deb_url=http://mirror/grafana_12.0.0_amd64.deb"],
        "grafana_deb_checksum",
        id="grafana-deb-without-checksum",
    ),
    pytest.param(
        ["-e", "grafana_prometheus_url=http://prometheus.example/"],
        "an https grafana_prometheus_url",
        id="grafana-plain-http-prometheus",
    ),
    pytest.param(
        ["-e", "prometheus_tls_min_version=TLS10"],
        "prometheus_tls_min_version",
        id="prometheus-tls-too-old",
    ),
    pytest.param(
        ["-e", "grafana_install_method=snap"], "grafana_install_method apt or deb", id="grafana-bad-method"
    ),
    pytest.param(
        ["-e", "node_exporter_version=latest"], "node_exporter_version X.Y.Z", id="unpinned-version"
    ),
    pytest.param(
        ["-e", json.dumps({"prometheus_node_exporter_port": "ninety-one"})],
        "prometheus_node_exporter_port",
        id="argument-spec-type",
    ),
]


@pytest.mark.parametrize("extra,message", CASES)
def test_bad_input_fails_in_preflight(tmp_path, extra, message):
    require_passlib()
    result = render(tmp_path, *extra, tags="preflight")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert message in output, output[-4000:]
    # nothing was rendered: the checks run before any file is written
    assert not (tmp_path / "prometheus").exists()


def test_good_input_passes_preflight(tmp_path):
    require_passlib()
    result = render(tmp_path, tags="preflight")
    assert result.returncode == 0, result.stdout[-4000:]

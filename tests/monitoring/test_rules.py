"""Alert and recording rules: syntax (promtool check rules), unit tests
(promtool test rules, roles/prometheus/files/rules/tests) and test coverage:
every alert is seen both firing and not firing, every recording rule is
evaluated by a test, every threshold the rules use is rendered by the role."""

from __future__ import annotations

import re

import pytest
from conftest import RULE_TESTS_DIR, all_rules, load_yaml, rule_files, rule_test_files, run

THRESHOLD = re.compile(r"fms:threshold:[a-z0-9_]+")


def test_there_are_rules_and_tests():
    assert len(rule_files()) >= 6
    assert len(rule_test_files()) >= len(rule_files())


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_promtool_check_rules(promtool, path):
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", rule_test_files(), ids=lambda p: p.name)
def test_promtool_test_rules(promtool, path):
    result = run([promtool, "test", "rules", path.name], cwd=RULE_TESTS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def _alert_cases():
    """alertname -> list of (test file, eval_time, expected alert count)."""
    cases: dict[str, list[tuple[str, str, int]]] = {}
    for path in rule_test_files():
        for test in load_yaml(path)["tests"]:
            for case in test.get("alert_rule_test") or []:
                cases.setdefault(case["alertname"], []).append(
                    (path.name, case["eval_time"], len(case.get("exp_alerts") or []))
                )
    return cases


def _tested_expressions():
    exprs = []
    for path in rule_test_files():
        for test in load_yaml(path)["tests"]:
            exprs += [case["expr"] for case in test.get("promql_expr_test") or []]
    return exprs


ALERTS = sorted({r["alert"] for r in all_rules() if "alert" in r})
RECORDS = sorted({r["record"] for r in all_rules() if "record" in r})


@pytest.mark.parametrize("alert", ALERTS)
def test_every_alert_is_tested_firing_and_not_firing(alert):
    cases = _alert_cases().get(alert, [])
    assert any(n > 0 for _, _, n in cases), f"{alert}: no test where it fires"
    assert any(n == 0 for _, _, n in cases), f"{alert}: no test where it stays silent"


@pytest.mark.parametrize("record", RECORDS)
def test_every_recording_rule_is_tested(record):
    assert any(re.search(rf"(?<![\w:]){re.escape(record)}(?![\w:])", e) for e in _tested_expressions()), (
        f"{record}: no promql_expr_test evaluates it"
    )


def test_alert_names_are_unique():
    names = [r["alert"] for r in all_rules() if "alert" in r]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("rule", [r for r in all_rules() if "alert" in r], ids=lambda r: r["alert"])
def test_alerts_carry_severity_service_and_text(rule):
    labels = rule.get("labels", {})
    assert labels.get("severity") in {"critical", "warning", "info"}, rule["alert"]
    assert labels.get("service"), rule["alert"]
    assert rule.get("annotations", {}).get("summary"), rule["alert"]
    assert rule.get("annotations", {}).get("description"), rule["alert"]


def test_thresholds_used_by_rules_are_rendered_and_watched(rendered):
    used = {m for r in all_rules() for m in THRESHOLD.findall(r["expr"])}
    rendered_rules = load_yaml(rendered / "prometheus" / "rules" / "fms_thresholds.rules.yml")
    defined = {r["record"] for g in rendered_rules["groups"] for r in g["rules"]}
    assert used, "the rules use no threshold at all?"
    assert used <= defined, f"thresholds used but not rendered: {sorted(used - defined)}"
    watched = next(r for r in all_rules() if r.get("alert") == "PrometheusAlertThresholdsMissing")
    assert set(THRESHOLD.findall(watched["expr"])) == defined, (
        "PrometheusAlertThresholdsMissing must watch every threshold"
    )


def test_rendered_thresholds_pass_promtool(promtool, rendered):
    result = run(
        [promtool, "check", "rules", str(rendered / "prometheus" / "rules" / "fms_thresholds.rules.yml")]
    )
    assert result.returncode == 0, result.stdout + result.stderr


REQUIRED_ALERTS = {
    # issue 6, item 1
    "KafkaBrokerDown",
    "KafkaUnderReplicatedPartitions",
    "KafkaOfflinePartitions",
    "KafkaControllerQuorumLost",
    "FmsConsumerLagGrowing",
    "HdfsDataNodeDead",
    "HdfsMissingBlocks",
    "HdfsCapacityHigh",
    "HdfsNameNodeSafeMode",
    "SparkWorkerLost",
    "FmsStreamingQueryStalled",
    "FmsDeadLetterRateHigh",
    "FmsQualityDimensionLow",
    "FmsThroughputLow",
    "FmsEndToEndLatencyHigh",
    "HostDiskSpaceLow",
    "HostMemoryPressure",
    "HostCpuPressure",
    "TargetDown",
    "HostDown",
}
REQUIRED_RECORDS = {
    "fms:stream_records_stored:rate5m",
    "fms:stream_e2e_latency_seconds:quantile_5m",
    "fms:stream_quality_score:avg5m",
    "fms:stream_quality_pass_ratio:avg5m",
    "fms:pipeline_availability:ratio_1h",
    "fms:pipeline_availability:ratio_1d",
}


def test_required_rules_exist():
    assert set(ALERTS) >= REQUIRED_ALERTS, sorted(REQUIRED_ALERTS - set(ALERTS))
    assert set(RECORDS) >= REQUIRED_RECORDS, sorted(REQUIRED_RECORDS - set(RECORDS))


def test_host_bound_alerts_keep_the_host_label():
    """Inhibition by HostDown needs the host label: per-host alerts must not aggregate it away."""
    for rule in all_rules():
        expr = rule.get("expr", "")
        if "alert" not in rule or rule["_file"] != "node.rules.yml":
            continue
        for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            labels = {x.strip() for x in clause.split(",")}
            assert "host" not in labels or "without" in expr, rule["alert"]

"""Every metric name an alert/recording rule or a Grafana dashboard reads must be
exported by something the roles deploy (metric_catalogue.yml), be a recording
rule of roles/prometheus/files/rules or be an fms:threshold:* series rendered by
the prometheus role. A later lab test compares the catalogue with a real scrape."""

from __future__ import annotations

import re

import pytest
from conftest import CATALOGUE, DASHBOARDS_DIR, ROLES, all_rules, load_yaml
from promql_names import dashboard_queries, metric_names

JOBS = {
    "node",
    "kafka",
    "hdfs_namenode",
    "hdfs_datanode",
    "mirrormaker",
    "spark_master",
    "spark_worker",
    "fms_collector",
    "fms_stream",
    "prometheus",
    "alertmanager",
    "grafana",
}


def catalogue() -> set[str]:
    data = load_yaml(CATALOGUE)
    return {name for section in data.values() for name in section}


def recorded() -> set[str]:
    records = {r["record"] for r in all_rules() if "record" in r}
    thresholds = load_yaml(ROLES / "prometheus" / "defaults" / "main.yml")[
        "prometheus_alert_threshold_defaults"
    ]
    return records | {f"fms:threshold:{name}" for name in thresholds}


@pytest.mark.parametrize(
    "expr,names",
    [
        ('sum by (instance) (rate(foo_total{job="x", a=~"b|c"}[5m]))', {"foo_total"}),
        ("histogram_quantile(0.95, sum by (le) (rate(x_bucket[$__rate_interval])))", {"x_bucket"}),
        ("a / on (instance) group_left (host) b > bool 0.5", {"a", "b"}),
        ('max(up{job="node"}) == 0 or vector(0)', {"up"}),
        ("fms:threshold:x < scalar(fms:y:rate5m) offset 5m", {"fms:threshold:x", "fms:y:rate5m"}),
        ('label_values(up{job="node"}, host)', {"up"}),
        ("label_values(host)", set()),
        ("1 - avg without (cpu, mode) (rate(node_cpu_seconds_total[5m]))", {"node_cpu_seconds_total"}),
        ("absent(fms:threshold:a) or absent(fms:threshold:b)", {"fms:threshold:a", "fms:threshold:b"}),
        ("predict_linear(x[6h], 24 * 3600) < 0", {"x"}),
    ],
)
def test_extractor(expr, names):
    assert metric_names(expr) == names


def test_catalogue_has_no_duplicates_within_a_section():
    for section, names in load_yaml(CATALOGUE).items():
        assert len(names) == len(set(names)), section


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: r.get("alert") or r.get("record"))
def test_rule_metric_names_are_known(rule):
    unknown = metric_names(rule["expr"]) - catalogue() - recorded()
    assert not unknown, f"{rule['_file']}: unknown metric names {sorted(unknown)}"


@pytest.mark.parametrize(
    "where,expr",
    dashboard_queries(DASHBOARDS_DIR),
    ids=lambda x: x if isinstance(x, str) and ":" in x else None,
)
def test_dashboard_metric_names_are_known(where, expr):
    unknown = metric_names(expr) - catalogue() - recorded()
    assert not unknown, f"{where}: unknown metric names {sorted(unknown)} in {expr}"


def _jobs_in(expr: str) -> set[str]:
    jobs = set(re.findall(r'\bjob\s*=\s*"([^"]+)"', expr))
    for alternatives in re.findall(r'\bjob\s*=~\s*"([^"]+)"', expr):
        jobs |= set(alternatives.split("|"))
    return jobs


def test_job_names_match_the_scrape_config():
    used = {job for rule in all_rules() for job in _jobs_in(rule["expr"])}
    used |= {job for _, expr in dashboard_queries(DASHBOARDS_DIR) for job in _jobs_in(expr)}
    assert used <= JOBS, sorted(used - JOBS)
    template = (ROLES / "prometheus" / "templates" / "prometheus.yml.j2").read_text()
    for job in JOBS:
        assert re.search(rf"job_name: {job}\b|'name': '{job}'", template), job

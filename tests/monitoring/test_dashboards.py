"""Grafana dashboards as code (roles/grafana/files/dashboards): valid JSON,
unique uids and panel ids, the provisioned datasource, PromQL that Prometheus
parses, and the panels the pipeline overview must show."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import DASHBOARDS_DIR, ROLES, load_yaml, run
from promql_names import metric_names

DASHBOARDS = sorted(DASHBOARDS_DIR.glob("*.json"))
REQUIRED = {"fms-pipeline", "fms-kafka", "fms-hdfs", "fms-spark", "fms-nodes"}


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _panels(dash: dict) -> list[dict]:
    out = []
    for panel in dash["panels"]:
        out.append(panel)
        out += panel.get("panels", [])  # collapsed rows
    return out


def _exprs(dash: dict) -> list[str]:
    return [t["expr"] for p in _panels(dash) for t in p.get("targets", [])]


def test_the_five_dashboards_exist():
    assert {_load(p)["uid"] for p in DASHBOARDS} >= REQUIRED


def test_uids_and_titles_are_unique():
    uids = [_load(p)["uid"] for p in DASHBOARDS]
    titles = [_load(p)["title"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))
    assert len(titles) == len(set(titles))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path):
    dash = _load(path)
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dash["uid"])
    assert dash["title"] and dash["schemaVersion"] >= 36
    assert dash.get("editable") is False  # provisioned, changed through the repository only
    ids = [p["id"] for p in _panels(dash)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in _panels(dash):
        assert panel["title"], panel["id"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_datasource_variable_defaults_to_the_provisioned_datasource(path):
    uid = load_yaml(ROLES / "grafana" / "defaults" / "main.yml")["grafana_datasource_uid"]
    (var,) = [v for v in _load(path)["templating"]["list"] if v["name"] == "datasource"]
    assert var["type"] == "datasource" and var["query"] == "prometheus"
    assert var["current"]["value"] == uid


def _as_promql(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panel_queries_parse(promtool, tmp_path, path):
    rules = [
        {"record": f"dashboard:query_{i}", "expr": _as_promql(e)} for i, e in enumerate(_exprs(_load(path)))
    ]
    rules_file = tmp_path / "queries.rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": path.stem, "rules": rules}]}))
    result = run([promtool, "check", "rules", str(rules_file)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_pipeline_overview_shows_what_operators_need():
    dash = next(_load(p) for p in DASHBOARDS if _load(p)["uid"] == "fms-pipeline")
    names = set().union(*(metric_names(e) for e in _exprs(dash)))
    for needed in [
        "fms_stream_records_stored_total",  # throughput
        "fms:stream_e2e_latency_seconds:quantile_5m",  # e2e latency
        "fms_stream_quality_pass_ratio",  # quality per dimension
        "fms_stream_records_dead_lettered_total",  # dead letters
        "fms:pipeline_backlog_growth:rate5m",  # lag
    ]:
        assert needed in names, needed
    assert any("by (dimension)" in e for e in _exprs(dash))
    assert any("by (reason)" in e for e in _exprs(dash))

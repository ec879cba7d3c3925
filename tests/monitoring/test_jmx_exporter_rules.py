"""The JMX exporter rules (roles/jmx_exporter/templates) name every metric
explicitly, so the names they can produce are computable: they must equal the
per-service lists of metric_catalogue.yml (which were checked against real
scrapes of Kafka 4.1, Hadoop 3.4 and Spark 3.5 with these configs)."""

from __future__ import annotations

import re

import jinja2
import pytest
import yaml
from conftest import CATALOGUE, JMX_TEMPLATES, ROLES, load_yaml

SERVICES = ["kafka", "hdfs_namenode", "hdfs_datanode", "spark_master", "spark_worker", "mirrormaker"]


def render_template(service: str, **overrides) -> dict:
    defaults = load_yaml(ROLES / "jmx_exporter" / "defaults" / "main.yml")
    variables = {k: v for k, v in defaults.items() if not isinstance(v, str) or "{{" not in v}
    variables.update(
        ansible_managed="test",
        jmx_exporter_kafka_topic_metrics=True,
        jmx_exporter_kafka_partition_metrics=True,
    )
    variables.update(overrides)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    text = env.from_string((JMX_TEMPLATES / f"{service}.yml.j2").read_text()).render(**variables)
    return yaml.safe_load(text)


def _groups(pattern: str) -> list[str]:
    """Contents of the capture groups of a rule pattern, in order (no nesting in our patterns)."""
    return re.findall(r"(?<!\\)\(([^()]*)\)", pattern)


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_:]", "_", name.lower())


def produced_names(config: dict) -> set[str]:
    names: set[str] = set()
    for rule in config["rules"]:
        groups = _groups(rule["pattern"])
        candidates = [rule["name"]]
        for index in sorted({int(i) for i in re.findall(r"\$(\d+)", rule["name"])}):
            alternatives = groups[index - 1]
            assert re.fullmatch(r"[\w.|-]+", alternatives), (
                f"{rule['name']}: ${index} comes from a non-literal group ({alternatives}); "
                "name the metric explicitly"
            )
            candidates = [c.replace(f"${index}", alt) for c in candidates for alt in alternatives.split("|")]
        for candidate in candidates:
            name = _sanitize(candidate)
            if rule.get("type") == "COUNTER" and not name.endswith("_total"):
                name += "_total"
            assert not name.endswith("_info"), f"{name}: the 1.x agent strips _info from gauges"
            names.add(name)
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_rules_produce_exactly_the_catalogued_names(service):
    catalogue = set(load_yaml(CATALOGUE)[service])
    produced = produced_names(render_template(service))
    assert produced == catalogue, (
        f"only in the rules: {sorted(produced - catalogue)}; "
        f"only in the catalogue: {sorted(catalogue - produced)}"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_patterns_end_at_the_attribute(service):
    """The agent matches patterns as prefixes of "domain<props><>attr: value": without the terminating
    colon, CapacityTotal would also match CapacityTotalGB and produce duplicate series."""
    for rule in render_template(service)["rules"]:
        assert re.search(r"><>.*:", rule["pattern"]), rule["pattern"]


def test_kafka_optional_families_follow_their_switches():
    minimal = produced_names(
        render_template(
            "kafka", jmx_exporter_kafka_topic_metrics=False, jmx_exporter_kafka_partition_metrics=False
        )
    )
    assert not any(n.startswith("kafka_topic_") for n in minimal)
    assert "kafka_log_log_logendoffset" not in minimal

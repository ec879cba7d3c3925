"""The project's Ansible filters (ansible/plugins/filter), as pure functions."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

FILTERS = Path(__file__).resolve().parents[2] / "ansible" / "plugins" / "filter" / "fms_names.py"


@pytest.fixture(scope="module")
def names() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fms_names", FILTERS)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("fms-lab-kafka-1", "fms-lab-kafka-1"),
        ("fms-lab-hdfs_namenode-1", "fms-lab-hdfs-namenode-1"),  # Java refuses _ in URI hosts and SNI
        ("Kafka-1.EU", "kafka-1.eu"),
    ],
)
def test_node_name_is_dns_safe(names: ModuleType, host: str, name: str) -> None:
    assert names.fms_node_name(host) == name


def test_inventory_hosts_of_a_group_from_ansible_inventory_output(names: ModuleType) -> None:
    # What ansible-core 2.19's `ansible-inventory --list` prints: composed values marked unsafe.
    listed = {
        "_meta": {
            "hostvars": {
                "fms-lab-kafka-2": {"fms_node_address": {"__ansible_unsafe": "198.18.2.11"}},
                "fms-lab-kafka-1": {"fms_node_address": "198.18.1.10"},
                "fms-lab-kafka-3": {},  # no address: nothing could reach it
                "fms-lab-collector-1": {"fms_node_address": "198.18.3.5"},
            }
        },
        "kafka": {"hosts": ["fms-lab-kafka-2", "fms-lab-kafka-1", "fms-lab-kafka-3"]},
        "collector": {"hosts": ["fms-lab-collector-1"]},
    }
    expected = [
        {"name": "fms-lab-kafka-1", "address": "198.18.1.10"},
        {"name": "fms-lab-kafka-2", "address": "198.18.2.11"},
    ]
    assert names.fms_inventory_hosts(json.dumps(listed), "kafka") == expected
    assert names.fms_inventory_hosts(listed, "kafka") == expected
    assert names.fms_inventory_hosts(json.dumps(listed), "spark_master") == []


def test_filters_are_registered_under_their_names(names: ModuleType) -> None:
    assert set(names.FilterModule().filters()) == {"fms_node_name", "fms_inventory_hosts"}


@pytest.fixture(scope="module")
def metrics() -> ModuleType:
    path = FILTERS.with_name("fms_metrics.py")
    spec = importlib.util.spec_from_file_location("fms_metrics", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_metric_samples_of_an_exporter_page(metrics: ModuleType) -> None:
    page = "\n".join(
        [
            "# HELP kafka_connect_mirror_source_connector_record_age_ms record age",
            "# TYPE kafka_connect_mirror_source_connector_record_age_ms gauge",
            'kafka_connect_mirror_source_connector_record_age_ms{source="primary",target="dr",topic="fms.raw",'
            'partition="0",} 812.5',
            'kafka_connect_mirror_source_connector_record_age_ms{source="primary",target="dr",topic="fms.dlq",'
            'partition="0",} NaN',  # a window without records: no evidence
            'kafka_connect_mirror_source_connector_replication_latency_ms{topic="fms.raw",partition="1",}'
            " 1.5E3",
            "jvm_threads_current 42.0",
        ]
    )
    got = metrics.fms_metric_samples(
        page,
        [
            "kafka_connect_mirror_source_connector_record_age_ms",
            "kafka_connect_mirror_source_connector_replication_latency_ms",
        ],
    )
    assert got == [
        {
            "name": "kafka_connect_mirror_source_connector_record_age_ms",
            "labels": {"source": "primary", "target": "dr", "topic": "fms.raw", "partition": "0"},
            "value": 812.5,
        },
        {
            "name": "kafka_connect_mirror_source_connector_replication_latency_ms",
            "labels": {"topic": "fms.raw", "partition": "1"},
            "value": 1500.0,
        },
    ]
    assert metrics.fms_metric_samples(page, "jvm_threads_current")[0]["value"] == 42.0

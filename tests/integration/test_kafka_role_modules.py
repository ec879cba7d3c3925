"""The kafka role's own modules (roles/kafka/library) against a real broker on loopback.

kafka_health is the gate every site.yml run and every rolling-restart step waits on;
kafka_admin creates the SCRAM users, topics and ACLs. Both run here through Ansible
itself (a playbook on localhost), as the role runs them, against a KRaft broker with
the standard authorizer, so the ACL path is the real one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import kafka_broker as kb

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "kafka"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kb.KafkaBroker]:
    kb.require_java()
    props = {
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # PLAINTEXT on loopback: the client is ANONYMOUS; make it the super user the admin is.
        "super.users": "User:ANONYMOUS",
        "auto.create.topics.enable": "false",
    }
    with kb.KafkaBroker(tmp_path_factory.mktemp("kafka"), heap="384m", properties=props) as b:
        yield b


def _run(broker: kb.KafkaBroker, tmp_path: Path, module: str, args: dict) -> dict:
    """Run one module task through ansible-playbook on localhost; returns its registered result."""
    command_config = tmp_path / "admin.properties"
    command_config.write_text("# PLAINTEXT on loopback: no credentials\n")
    out = tmp_path / "result.json"
    task_args = {
        "kafka_home": str(broker.kafka_home),
        "bootstrap_server": broker.bootstrap,
        "command_config": str(command_config),
        **({"java_home": os.environ["JAVA_HOME"]} if os.environ.get("JAVA_HOME") else {}),
        **args,
    }
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        json.dumps(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {module: task_args, "register": "result"},
                        {"ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": str(out)}},
                    ],
                }
            ]
        )
    )
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
        "ANSIBLE_LIBRARY": str(ROLE / "library"),
        "ANSIBLE_MODULE_UTILS": str(ROLE / "module_utils"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    res = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(playbook),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    return json.loads(out.read_text())


def test_health_reports_a_healthy_single_broker(broker: kb.KafkaBroker, tmp_path: Path) -> None:
    result = _run(broker, tmp_path, "kafka_health", {"expected_brokers": 1})
    assert result["healthy"] is True, result
    assert (result["leader_id"], result["brokers"], result["unhealthy_partitions"]) == (1, [1], [])


def test_health_names_what_is_missing_instead_of_failing(broker: kb.KafkaBroker, tmp_path: Path) -> None:
    result = _run(broker, tmp_path, "kafka_health", {"expected_brokers": 3})
    assert result["healthy"] is False and not result.get("failed")
    assert result["problems"] == ["1 of 3 brokers registered ([1])"]


def test_admin_creates_users_topics_and_acls_then_changes_nothing(
    broker: kb.KafkaBroker, tmp_path: Path
) -> None:
    wanted = {
        "scram_users": [{"name": "collector", "password": "not-a-secret"}],
        "topics": [
            {
                "name": "fms.test.raw",
                "partitions": 2,
                "replication_factor": 1,
                "config": {"retention.ms": "3600000"},
            }
        ],
        "acls": [
            {
                "principal": "User:collector",
                "resource_type": "topic",
                "resource_name": "fms.test.raw",
                "operations": ["Write", "Describe"],
            },
            {"principal": "User:collector", "resource_type": "cluster", "operations": ["IdempotentWrite"]},
        ],
    }
    first = _run(broker, tmp_path, "kafka_admin", wanted)
    assert first["changed"] is True
    assert sorted(a.split()[0] for a in first["actions"]) == ["allow", "allow", "create", "create"], first
    again = _run(broker, tmp_path, "kafka_admin", wanted)
    assert (again["changed"], again["actions"]) == (False, [])
    grown = {**wanted, "topics": [{**wanted["topics"][0], "partitions": 3}]}
    assert _run(broker, tmp_path, "kafka_admin", grown)["actions"] == [
        "increase partitions of fms.test.raw 2 -> 3"
    ]

"""The kafka role's own modules (roles/kafka/library) against a real broker on loopback.

kafka_health is the gate every site.yml run and every restart waits on; kafka_admin
creates the SCRAM users, topics and ACLs. Both run here through Ansible itself (a
playbook on localhost), as the role runs them, against a KRaft broker with the standard
authorizer, so the ACL path is the real one. The role's "Restart kafka" handler runs
here too, through the role's own task files, against a broker it really restarts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support import kafka_broker as kb

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "kafka"
BIN = Path(sys.executable).parent
# The tools' settings the role passes (its defaults): the gates must work with them.
ROLE_DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


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
        "heap_size": ROLE_DEFAULTS["kafka_tools_heap_size"],
        "jvm_opts": ROLE_DEFAULTS["kafka_tools_jvm_opts"],
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


def test_health_names_a_missing_broker_and_a_voter_it_cannot_see(
    broker: kb.KafkaBroker, tmp_path: Path
) -> None:
    """The per-node gate of a restart: the restarted broker registered, the restarted voter caught up."""
    ok = _run(
        broker,
        tmp_path,
        "kafka_health",
        {"expected_brokers": 1, "required_brokers": [1], "caught_up_voters": [1]},
    )
    assert ok["healthy"] is True and ok["voter_lags"] == {"1": 0}, ok
    missing = _run(
        broker,
        tmp_path,
        "kafka_health",
        {"expected_brokers": 1, "required_brokers": [7], "caught_up_voters": [7]},
    )
    assert missing["healthy"] is False and not missing.get("failed")
    assert missing["problems"] == [
        "broker(s) [7] not registered (registered: [1])",
        "voter 7 is not in the quorum's replication state",
    ], missing


# systemctl as the kafka role's tasks call it (show, daemon-reload, restart), for one broker
# process instead of a unit: restart stops the JVM (SIGTERM, controlled shutdown) and starts
# it again with the same configuration and ports, then returns at once - as systemd does for
# a simple unit - so only the gate can make the play wait for the broker.
STUB_SYSTEMCTL = r"""#!{python}
import json, os, signal, socket, subprocess, sys, time
from pathlib import Path

state = Path({state!r})
cfg = json.loads((state / "broker.json").read_text())
pid = int((state / "pid").read_text())


def running(pid):
    try:
        return Path(f"/proc/{{pid}}/stat").read_text().split(") ", 1)[1][0] not in "ZX"
    except (OSError, IndexError):
        return False


def port_open():
    try:
        with socket.create_connection(("127.0.0.1", cfg["port"]), timeout=1):
            return True
    except OSError:
        return False


args = [a for a in sys.argv[1:] if not a.startswith("--")]
if args[0] in ("daemon-reload", "daemon-reexec"):
    sys.exit(0)
if args[0] == "show":
    active = running(pid)
    print("Id=kafka.service\nNames=kafka.service\nLoadState=loaded\nUnitFileState=enabled")
    print(f"ActiveState={{'active' if active else 'inactive'}}\nSubState={{'running' if active else 'dead'}}")
    sys.exit(0)
if args[0] != "restart":
    sys.exit(f"stub systemctl: {{args}} not supported")
event = {{"t": time.time(), "port_open_before": port_open(), "running_before": running(pid)}}
try:
    os.killpg(pid, signal.SIGTERM)
except ProcessLookupError:
    pass
deadline = time.monotonic() + 60
while running(pid) and time.monotonic() < deadline:
    time.sleep(0.2)
if running(pid):
    os.killpg(pid, signal.SIGKILL)
env = {{**os.environ, "LOG_DIR": cfg["log_dir"], "KAFKA_HEAP_OPTS": cfg["heap_opts"]}}
for name in ("KAFKA_LOG4J_OPTS", "KAFKA_OPTS", "JMX_PORT"):
    env.pop(name, None)
with open(Path(cfg["log_dir"]) / "kafka.out", "ab") as out:
    process = subprocess.Popen(
        [cfg["start"], cfg["config"]], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, cwd=cfg["workdir"], start_new_session=True,
    )
(state / "pid").write_text(str(process.pid))
with open(state / "events.jsonl", "a") as events:
    events.write(json.dumps(event) + "\n")
"""


def _stop_pid(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def test_restart_handler_restarts_one_node_at_a_time_each_gated(tmp_path: Path) -> None:
    """The role's "Restart kafka" handler, notified on three hosts at once, as site.yml notifies it.

    The three inventory hosts are one real broker (node 1, combined mode) behind a stand-in
    systemctl: each restart really stops and starts the JVM and returns at once. The handler
    must walk the hosts strictly one at a time - restart, listeners, gate - so every restart
    after the first finds the broker up again, and the play ends with the cluster healthy.
    """
    kb.require_java()
    work = tmp_path / "broker"
    b = kb.KafkaBroker(work, heap="384m").start()
    state = tmp_path / "systemd"
    state.mkdir()
    pids: list[int] = []
    try:
        assert b.pid is not None
        (state / "pid").write_text(str(b.pid))
        (state / "broker.json").write_text(
            json.dumps(
                {
                    "port": b.port,
                    "start": str(b.script("kafka-server-start.sh")),
                    "config": str(b.config_file),
                    "log_dir": str(b.log_dir),
                    "workdir": str(b.workdir),
                    "heap_opts": f"-Xmx{b.heap} -Xms128m",
                }
            )
        )
        stub_bin = tmp_path / "bin"
        stub_bin.mkdir()
        stub = stub_bin / "systemctl"
        stub.write_text(STUB_SYSTEMCTL.format(python=sys.executable, state=str(state)))
        stub.chmod(0o755)

        conf = tmp_path / "etc-kafka"
        conf.mkdir()
        (conf / "admin.properties").write_text("# PLAINTEXT on loopback: no credentials\n")
        hosts = {
            f"kafka-{i}": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "kafka_node_id": 1,  # the three hosts are the one broker
                "fms_node_name": "127.0.0.1",
            }
            for i in (1, 2, 3)
        }
        inventory = tmp_path / "inventory.json"
        inventory.write_text(
            json.dumps(
                {"all": {"children": {"kafka": {"hosts": hosts}, "kafka_controller": {"hosts": hosts}}}}
            )
        )
        extra = tmp_path / "extra.json"
        extra.write_text(
            json.dumps(
                {
                    "kafka_home": str(b.kafka_home),
                    "kafka_conf_dir": str(conf),
                    "kafka_app_log_dir": str(b.log_dir),
                    "java_runtime_home": os.environ.get("JAVA_HOME", ""),
                    "kafka_bootstrap_servers": b.bootstrap,
                    "kafka_client_port": b.port,
                    "kafka_controller_port": b.controller_port,
                    "kafka_scram_usernames": ["admin"],
                    "fms_node_address": "127.0.0.1",
                    "kafka_health_delay": 2,
                    "kafka_health_retries": 60,
                    "kafka_listener_timeout": 120,
                }
            )
        )
        playbook = tmp_path / "play.yml"
        playbook.write_text(
            json.dumps(
                [
                    {
                        "name": "A Kafka setting changed on every node",
                        "hosts": "kafka",
                        "gather_facts": False,
                        # The project's variables, as site.yml has them (the extra vars override).
                        "vars_files": [str(REPO / "ansible" / "group_vars" / "all.yml")],
                        "tasks": [
                            {"ansible.builtin.import_role": {"name": "kafka", "tasks_from": "facts"}},
                            {
                                "name": "Change a broker setting",
                                "ansible.builtin.debug": {"msg": "server.properties changed"},
                                "changed_when": True,
                                "notify": "Restart kafka",
                            },
                        ],
                    }
                ]
            )
        )
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{stub_bin}:{BIN}:{os.environ.get('PATH', '')}",
        }
        started = time.monotonic()
        res = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(inventory), "-e", f"@{extra}", str(playbook)],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
            check=False,
        )
        pids.append(int((state / "pid").read_text()))
        output = res.stdout + res.stderr
        assert res.returncode == 0, output[-6000:]

        events = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
        assert len(events) == 3, (events, output[-4000:])
        # Every restart found the broker up: the one before it had been waited for.
        assert all(e["port_open_before"] and e["running_before"] for e in events), events

        banners = re.findall(r"^(?:TASK|RUNNING HANDLER) \[(?:kafka : )?(.*?)\]", res.stdout, flags=re.M)
        restarts = [i for i, name in enumerate(banners) if name.startswith("Restart Kafka on ")]
        assert [banners[i] for i in restarts] == [f"Restart Kafka on kafka-{i}" for i in (1, 2, 3)], banners
        gate = "Wait for a quorum leader, the brokers registered and no under-replicated or unavailable"
        gate += " partition"
        for this, following in zip(restarts, [*restarts[1:], len(banners)], strict=True):
            between = banners[this:following]
            assert any(n.startswith("Wait for the client listener of") for n in between), between
            assert gate in between and "Stop unless the Kafka cluster is healthy" in between, between
        # The restarts ran in one handler run on one host, delegated to each node in turn.
        runs = re.findall(r"^RUNNING HANDLER \[kafka : Restart the marked Kafka nodes", res.stdout, re.M)
        assert len(runs) == 1, banners
        retries = re.findall(
            r"FAILED - RETRYING: \[kafka-1(?: -> kafka-\d)?\]: " + re.escape(gate), res.stdout
        )
        retried = len(retries)
        print(
            f"\ngated restart handler: 3 restarts in {time.monotonic() - started:.0f}s, "
            f"gate retried {retried} time(s) while a restarted broker came back"
        )
        (tmp_path / "after").mkdir()
        health = _run(b, tmp_path / "after", "kafka_health", {"expected_brokers": 1})
        assert health["healthy"] is True, health
    finally:
        if (state / "pid").is_file():
            pids.append(int((state / "pid").read_text()))
        b.stop()
        for pid in set(pids):
            _stop_pid(pid)

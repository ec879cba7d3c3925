"""On the converged lab, the security groups Terraform created decide what one host reaches on another.

Runs right after test_lab_converge.py (conftest CONVERGE_MODULES): the platform is up, so the
ports probed here have listeners, and site.yml, its second run and the testinfra suite (every
Prometheus target up, Kafka, HDFS and Spark healthy) have already passed with enforcement on
- which is the other half of the proof: the whole platform works under the groups.

Each probe connects from one lab host to another with bash's /dev/tcp under `timeout`:
"open" (connected), "dropped" (no answer: the lab machine's FORWARD rules dropped it, as AWS
drops) or "refused" (a RST: nothing listens). A port is only called dropped after the same
port answered from a host the groups allow (or from the target itself), so the listener is
there. Ports come from platform.yml.
"""

from __future__ import annotations

import socket
import subprocess

import pytest
from fms_tools.fmsops.platform_contract import load
from fms_tools.lab import firewall, state
from fms_tools.lab.envs import ENVS
from lab_support import cli_env, first_in_group, host_ssh, lab_cli, tcp_from

pytestmark = [pytest.mark.lab, pytest.mark.slow]

CONTRACT = load()
SSH = CONTRACT.port("ssh")
KAFKA_JMX = CONTRACT.port("kafka_jmx_exporter")
PROMETHEUS = CONTRACT.port("prometheus")
COLLECTOR_METRICS = CONTRACT.port("collector_metrics")
KAFKA_CLIENT = CONTRACT.port("kafka_client")
DATANODE_HTTP = CONTRACT.port("hdfs_datanode_http")  # opened to the bastion only
CONNECT_TIMEOUT_S = 3  # a dropped SYN is retried at 1 s and 3 s: 3 s is already far past an answer


def connect(src: str, dst: str, port: int) -> str:
    """From lab host `src`, open a TCP connection to host `dst` (a name) on `port`."""
    return tcp_from(src, state.load_hosts()[dst]["ip"], port, CONNECT_TIMEOUT_S)


@pytest.fixture(scope="module")
def roles(converged) -> dict[str, str]:
    """One host per role the probes need."""
    return {
        g: first_in_group(g)
        for g in ("kafka", "collector", "monitoring", "spark_master", "bastion", "hdfs_datanode")
    }


def test_every_host_has_its_groups_enforced(converged):
    """`fms-lab firewall`: every host has ingress and egress rules in force, none is left open."""
    all_hosts = state.load_hosts()
    counts = firewall.counts(ENVS["primary"], [r["ip"] for r in all_hosts.values() if r["env"] == "primary"])
    open_hosts = [
        ip for ip, c in counts.items() if not c.enforced or not c.ingress_rules or not c.egress_rules
    ]
    assert not open_hosts, counts
    res = subprocess.run(
        [*lab_cli(), "firewall"],
        env=cli_env(state.lab_dir()),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert all(name in res.stdout for name in all_hosts), res.stdout


def test_ssh_from_the_collector_to_a_broker_is_dropped(roles):
    broker, collector = roles["kafka"], roles["collector"]
    assert connect(broker, broker, SSH) == "open"  # sshd listens (the lab itself ssh-es in)
    assert connect(collector, broker, SSH) == "dropped"


def test_kafka_jmx_exporter_answers_monitoring_only(roles):
    broker = roles["kafka"]
    assert connect(roles["monitoring"], broker, KAFKA_JMX) == "open"
    assert connect(roles["collector"], broker, KAFKA_JMX) == "dropped"
    assert connect(roles["spark_master"], broker, KAFKA_JMX) == "dropped"


def test_same_subnet_traffic_is_filtered_too(roles):
    """Collector and monitoring share a subnet (bridged, never routed): the groups still decide."""
    monitoring, collector = roles["monitoring"], roles["collector"]
    recs = state.load_hosts()
    assert recs[monitoring]["subnet_cidr"] == recs[collector]["subnet_cidr"], (
        "the layout changed: pick two hosts of one subnet"
    )
    assert connect(monitoring, collector, COLLECTOR_METRICS) == "open"
    assert connect(monitoring, monitoring, PROMETHEUS) == "open"
    assert connect(collector, monitoring, PROMETHEUS) == "dropped"


def test_the_drops_were_the_security_groups(roles):
    """The broker's default-deny rule counted the probes above (not a host firewall, not a timeout)."""
    broker = state.load_hosts()[roles["kafka"]]
    assert firewall.counts(ENVS["primary"], [broker["ip"]])[broker["ip"]].dropped_in > 0


def connect_from_lab_machine(dst: str, port: int) -> str:
    """From the lab machine itself (the operator, the harness) to host `dst` on `port`."""
    try:
        with socket.create_connection((state.load_hosts()[dst]["ip"], port), timeout=CONNECT_TIMEOUT_S):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except (TimeoutError, PermissionError):  # a SYN the lab machine's OUTPUT rules dropped
        return "dropped"


def test_the_operator_reaches_the_bastion_and_the_rest_only_through_it(roles):
    """As on AWS: from the operator's network (lab.tfvars' admin_cidrs) only the bastion's SSH is
    open; a broker's sshd and a DataNode's UI (open to the bastion) are not reachable directly,
    yet ssh to the broker works - through the bastion, the path Ansible took to converge it."""
    broker, bastion, datanode = roles["kafka"], roles["bastion"], roles["hdfs_datanode"]
    assert connect(datanode, datanode, DATANODE_HTTP) == "open"  # the UI listens
    assert connect_from_lab_machine(bastion, SSH) == "open"
    assert connect_from_lab_machine(broker, SSH) == "dropped"
    assert connect_from_lab_machine(datanode, DATANODE_HTTP) == "dropped"
    assert connect(bastion, datanode, DATANODE_HTTP) == "open"  # an ssh tunnel's way in
    res = host_ssh(broker, "hostname")
    assert res.returncode == 0 and res.stdout.strip() == broker, res


def test_the_harness_reaches_what_a_collector_and_prometheus_may(roles):
    """The benchmark produces from the lab machine as a collector would: Kafka's client port is
    open to it, Kafka's JMX port too (Prometheus's right), SSH is not."""
    broker = roles["kafka"]
    assert connect_from_lab_machine(broker, KAFKA_CLIENT) == "open"
    assert connect_from_lab_machine(broker, KAFKA_JMX) == "open"
    assert connect_from_lab_machine(roles["spark_master"], SSH) == "dropped"

"""Kafka (KRaft): every broker/controller node, then the cluster as a whole."""

from __future__ import annotations

import re
import uuid

import pytest
from fms_tools.fmsops.platform_contract import load as load_platform
from infra_helpers import listening, run

# Ports from the platform contract (platform.yml), the ones the roles configure.
PORT = load_platform().port
# What the hosts were configured with falls back to the contract's names (platform.yml topics).
RAW, DLQ = (load_platform().topic(key).name for key in ("raw", "dlq"))

KAFKA = "/opt/kafka/bin"
ADMIN = "--bootstrap-server {bootstrap} --command-config /etc/kafka/admin.properties"
# The tools environment the kafka role writes (JAVA_HOME, heap, JVM options), exported for the
# one command that follows (a prefix that also works at the end of a pipe).
ENV = """bash -ac '. /etc/kafka/tools.env; exec "$0" "$@"'"""


def _properties(host) -> dict[str, str]:
    text = host.check_output("cat /etc/kafka/server.properties")
    props = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def _kafka_nodes(platform) -> list[str]:
    return sorted(set(platform.members("kafka")) | set(platform.members("kafka_controller")))


def _admin(platform) -> tuple[object, str]:
    broker = platform.first("kafka")
    bootstrap = (
        platform.vars[broker].get("kafka_bootstrap_servers")
        or f"{platform.node_name(broker)}:{PORT('kafka_client')}"
    )
    return platform.host(broker), ADMIN.format(bootstrap=bootstrap)


# --------------------------------------------------------------------------- per node


def test_kafka_service_running(platform, kafka_node):
    service = platform.host(kafka_node).service("kafka")
    assert service.is_running and service.is_enabled


def test_kafka_controller_service_running(platform, kafka_controller_node):
    service = platform.host(kafka_controller_node).service("kafka")
    assert service.is_running and service.is_enabled
    assert listening(platform.host(kafka_controller_node), PORT("kafka_controller"))


def test_broker_ports_listening(platform, kafka_node):
    host = platform.host(kafka_node)
    for port in (PORT("kafka_internal"), PORT("kafka_client"), PORT("kafka_jmx_exporter")):
        assert listening(host, port), f"port {port} on {kafka_node}"


def test_no_plaintext_listener(platform, kafka_node):
    props = _properties(platform.host(kafka_node))
    protocols = dict(item.split(":", 1) for item in props["listener.security.protocol.map"].split(","))
    names = [listener.split("://", 1)[0] for listener in props["listeners"].split(",")]
    for name in names:
        assert protocols[name] in ("SSL", "SASL_SSL"), f"listener {name} uses {protocols[name]}"
    assert "PLAINTEXT" not in props["listeners"]
    assert props["listener.name.internal.ssl.client.auth"] == "required"
    assert props["listener.name.controller.ssl.client.auth"] == "required"


def test_broker_durability_settings(platform, kafka_node):
    props = _properties(platform.host(kafka_node))
    brokers = len(platform.members("kafka"))
    assert props["unclean.leader.election.enable"] == "false"
    assert props["auto.create.topics.enable"] == "false"
    assert int(props["default.replication.factor"]) == min(3, brokers)
    assert int(props["min.insync.replicas"]) == min(2, max(min(3, brokers) - 1, 1))
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"


def test_quorum_voters_are_the_controller_group(platform, kafka_node):
    props = _properties(platform.host(kafka_node))
    voters = props["controller.quorum.voters"].split(",")
    hosts = sorted(v.split("@", 1)[1].rsplit(":", 1)[0] for v in voters)
    assert hosts == sorted(platform.node_name(h) for h in platform.members("kafka_controller"))


def test_secrets_not_world_readable(platform, kafka_node):
    host = platform.host(kafka_node)
    for path in ("/etc/kafka/server.properties", "/etc/kafka/tls/keystore.p12"):
        assert host.file(path).mode & 0o007 == 0, f"{path} is world-accessible"
    assert host.file("/etc/kafka/clients/admin.properties").mode == 0o600


def test_storage_formatted_once(platform, kafka_node):
    meta = platform.host(kafka_node).file("/var/lib/kafka/data/meta.properties")
    assert meta.exists and meta.user == "kafka"
    assert meta.contains("^cluster.id=")


def test_jmx_exporter_serves_metrics(platform, kafka_node):
    host = platform.host(kafka_node)
    out = run(
        host,
        f"curl -sf http://127.0.0.1:{PORT('kafka_jmx_exporter')}/metrics | grep -c '^kafka_' || true",
        timeout=30,
    ).stdout
    assert int(out.strip() or 0) > 0


# --------------------------------------------------------------------------- cluster


def test_quorum_has_a_leader_and_all_voters(platform):
    host, admin = _admin(platform)
    out = run(host, f"{ENV} {KAFKA}/kafka-metadata-quorum.sh {admin} describe --status").stdout
    leader = re.search(r"LeaderId:\s+(-?\d+)", out)
    assert leader and int(leader.group(1)) >= 0, out
    voters = re.search(r"CurrentVoters:\s+\[(.*)\]", out)
    assert voters, out
    assert len(re.findall(r'"id":\s*\d+|\b\d+\b', voters.group(1))) >= len(
        platform.members("kafka_controller")
    )


def test_all_brokers_registered(platform):
    host, admin = _admin(platform)
    out = run(host, f"{ENV} {KAFKA}/kafka-broker-api-versions.sh {admin}").stdout
    ids = set(re.findall(r"\(id:\s*(\d+)", out))
    assert len(ids) == len(platform.members("kafka")), out[:500]


def test_pipeline_topics_exist_with_replication(platform):
    host, admin = _admin(platform)
    brokers = len(platform.members("kafka"))
    broker = platform.first("kafka")
    for topic in (
        platform.vars[broker].get("kafka_topic_raw", RAW),
        platform.vars[broker].get("kafka_topic_dlq", DLQ),
    ):
        out = run(host, f"{ENV} {KAFKA}/kafka-topics.sh {admin} --describe --topic {topic}").stdout
        m = re.search(r"ReplicationFactor:\s*(\d+)", out)
        assert m, f"topic {topic} missing: {out}"
        assert int(m.group(1)) == min(3, brokers)


def test_raw_topic_is_stamped_by_the_broker(platform):
    """Timeliness is judged against the broker's clock, never a producer's (LogAppendTime)."""
    host, admin = _admin(platform)
    topic = platform.vars[platform.first("kafka")].get("kafka_topic_raw", RAW)
    out = run(host, f"{ENV} {KAFKA}/kafka-topics.sh {admin} --describe --topic {topic}").stdout
    assert "message.timestamp.type=LogAppendTime" in out, out


def test_no_under_replicated_partitions(platform):
    host, admin = _admin(platform)
    result = run(host, f"{ENV} {KAFKA}/kafka-topics.sh {admin} --describe --under-replicated-partitions")
    assert result.rc == 0 and result.stdout.strip() == ""


def test_acls_for_pipeline_users(platform):
    host, admin = _admin(platform)
    out = run(host, f"{ENV} {KAFKA}/kafka-acls.sh {admin} --list").stdout
    assert "principal=User:collector, host=*, operation=WRITE, permissionType=ALLOW" in out
    assert "principal=User:spark, host=*, operation=READ, permissionType=ALLOW" in out


def test_unauthenticated_client_is_refused(platform):
    """TLS without SASL credentials, and plaintext, must both fail on the client port."""
    host, _ = _admin(platform)
    broker = platform.first("kafka")
    bootstrap = f"{platform.node_name(broker)}:{PORT('kafka_client')}"
    tls_only = "/tmp/fms-testinfra-anon.properties"
    host.run(
        "printf 'security.protocol=SSL\\nssl.truststore.type=PEM\\n"
        "ssl.truststore.location=/etc/kafka/tls/ca.crt\\n"
        f"request.timeout.ms=10000\\ndefault.api.timeout.ms=15000\\n' > {tls_only}"
    )
    anon = run(
        host,
        f"{ENV} {KAFKA}/kafka-broker-api-versions.sh --bootstrap-server {bootstrap} "
        f"--command-config {tls_only}",
        timeout=90,
    )
    plain = run(
        host,
        f"printf 'request.timeout.ms=10000\\ndefault.api.timeout.ms=15000\\n' > {tls_only}.plain && "
        f"{ENV} {KAFKA}/kafka-broker-api-versions.sh --bootstrap-server {bootstrap} "
        f"--command-config {tls_only}.plain",
        timeout=90,
    )
    host.run(f"rm -f {tls_only} {tls_only}.plain")
    assert anon.rc != 0 and "(id:" not in anon.stdout
    assert plain.rc != 0 and "(id:" not in plain.stdout


def test_user_without_acl_is_denied(platform):
    """The collector may only write raw readings: reading them is refused."""
    host, _ = _admin(platform)
    broker = platform.first("kafka")
    topic = platform.vars[broker].get("kafka_topic_raw", RAW)
    result = run(
        host,
        f"{ENV} {KAFKA}/kafka-console-consumer.sh --bootstrap-server "
        f"{platform.vars[broker].get('kafka_bootstrap_servers')} "
        f"--consumer.config /etc/kafka/clients/collector.properties --topic {topic} "
        f"--group fms-testinfra-denied --max-messages 1 --timeout-ms 15000",
        timeout=90,
    )
    assert "AuthorizationException" in (result.stdout + result.stderr)


@pytest.mark.slow
def test_produce_consume_round_trip_over_tls(platform):
    """An authenticated (SCRAM over TLS) producer and consumer exchange records on a scratch topic."""
    host, admin = _admin(platform)
    broker = platform.first("kafka")
    bootstrap = platform.vars[broker].get("kafka_bootstrap_servers")
    topic = f"fms.testinfra.{uuid.uuid4().hex[:8]}"
    rf = min(3, len(platform.members("kafka")))
    client = "/etc/kafka/clients/admin.properties"
    assert (
        run(
            host,
            f"{ENV} {KAFKA}/kafka-topics.sh {admin} --create --topic {topic} "
            f"--partitions 3 --replication-factor {rf}",
        ).rc
        == 0
    )
    try:
        payload = [f"testinfra-{i}-{uuid.uuid4().hex}" for i in range(20)]
        produce = run(
            host,
            f"printf '%s\\n' {' '.join(payload)} | {ENV} {KAFKA}/kafka-console-producer.sh "
            f"--bootstrap-server {bootstrap} --producer.config {client} --topic {topic} "
            f"--producer-property acks=all",
            timeout=120,
        )
        assert produce.rc == 0, produce.stderr
        consume = run(
            host,
            f"{ENV} {KAFKA}/kafka-console-consumer.sh --bootstrap-server {bootstrap} "
            f"--consumer.config {client} --topic {topic} --from-beginning "
            f"--max-messages {len(payload)} --timeout-ms 60000",
            timeout=150,
        )
        assert sorted(consume.stdout.split()) == sorted(payload)
    finally:
        run(host, f"{ENV} {KAFKA}/kafka-topics.sh {admin} --delete --topic {topic}")

#!/usr/bin/python
# Ansible module layout: DOCUMENTATION/EXAMPLES/RETURN precede the imports.
# ruff: noqa: E402
"""Kafka cluster health in one call: quorum leader, registered brokers, unhealthy partitions."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kafka_health
short_description: Report whether the Kafka cluster is healthy (for until/retries gates)
description:
  - Runs kafka-metadata-quorum.sh (describe --status), kafka-broker-api-versions.sh and
    kafka-topics.sh (--under-replicated-partitions --unavailable-partitions) side by side
    and reports the quorum leader, the registered broker ids and every unhealthy partition.
  - With C(required_brokers) and C(caught_up_voters) it also gates one node after its restart:
    that broker registered again, that controller's metadata log within C(max_voter_lag) records
    of the quorum leader (kafka-metadata-quorum.sh describe --replication).
  - Never fails because the cluster is unhealthy or a tool could not reach it; it reports
    C(healthy=false) with the reasons, so a task retries with C(until: result.healthy).
  - Read-only; runs in check mode too.
options:
  kafka_home:
    description: Kafka installation directory (holds bin/).
    type: path
    required: true
  bootstrap_server:
    description: Comma-separated host:port list of the client (SASL_SSL) listener.
    type: str
    required: true
  command_config:
    description: Admin client properties file (SASL/SCRAM admin user, CA truststore).
    type: path
    required: true
  java_home:
    description: JAVA_HOME for the CLI tools.
    type: path
  heap_size:
    description: Maximum heap of the CLI tools (-Xmx), e.g. 256m.
    type: str
    default: 256m
  jvm_opts:
    description:
      - JVM options for the CLI tools in place of Kafka's C(KAFKA_JVM_PERFORMANCE_OPTS) defaults
        (which suit a long-running broker); empty keeps Kafka's defaults.
    type: str
    default: ""
  expected_brokers:
    description: How many brokers must be registered.
    type: int
    required: true
  required_brokers:
    description: Broker ids that must be among the registered ones (a broker just restarted).
    type: list
    elements: int
    default: []
  caught_up_voters:
    description: Controller (voter) ids whose metadata log must have caught up with the quorum leader.
    type: list
    elements: int
    default: []
  max_voter_lag:
    description: Most records a voter in C(caught_up_voters) may lag behind the leader.
    type: int
    default: 1000
author: FMS Platform maintainers
"""

EXAMPLES = r"""
- name: Wait until the cluster is healthy
  kafka_health:
    kafka_home: /opt/kafka
    bootstrap_server: kafka-1:9092
    command_config: /etc/kafka/admin.properties
    expected_brokers: 3
  register: health
  retries: 60
  delay: 5
  until: health.healthy

- name: Gate after restarting node 2 (broker and controller)
  kafka_health:
    kafka_home: /opt/kafka
    bootstrap_server: kafka-1:9092
    command_config: /etc/kafka/admin.properties
    expected_brokers: 3
    required_brokers: [2]
    caught_up_voters: [2]
  register: health
  retries: 60
  delay: 5
  until: health.healthy
"""

RETURN = r"""
healthy:
  description: A quorum leader, at least expected_brokers registered, no unhealthy partition.
  type: bool
  returned: always
leader_id:
  description: The KRaft quorum leader's node id (-1 when unknown).
  type: int
  returned: always
brokers:
  description: Registered broker ids.
  type: list
  elements: int
  returned: always
unhealthy_partitions:
  description: kafka-topics.sh lines of under-replicated or unavailable partitions.
  type: list
  elements: str
  returned: always
voter_lags:
  description: Lag (records behind the leader) of each voter in caught_up_voters that the quorum reports.
  type: dict
  returned: always
problems:
  description: Why the cluster is not healthy (empty when it is).
  type: list
  elements: str
  returned: always
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.kafka_cli import CONNECTION_ARGUMENT_SPEC, KafkaCli

CALLS = {
    "quorum": ("kafka-metadata-quorum.sh", ["describe", "--status"]),
    "brokers": ("kafka-broker-api-versions.sh", []),
    "partitions": (
        "kafka-topics.sh",
        ["--describe", "--under-replicated-partitions", "--unavailable-partitions"],
    ),
}
REPLICATION = ("kafka-metadata-quorum.sh", ["describe", "--replication"])
LEADER = re.compile(r"LeaderId:\s+(-?\d+)")
BROKER = re.compile(r"\(id:\s*(\d+)")


def voter_lags(replication: str) -> dict[int, int]:
    """NodeId -> Lag from `kafka-metadata-quorum.sh describe --replication` (columns found by header)."""
    lines = [line.split() for line in replication.splitlines() if line.strip()]
    if not lines or "NodeId" not in lines[0] or "Lag" not in lines[0]:
        return {}
    node_col, lag_col = lines[0].index("NodeId"), lines[0].index("Lag")
    lags: dict[int, int] = {}
    for cells in lines[1:]:
        if len(cells) > max(node_col, lag_col) and cells[node_col].isdigit() and cells[lag_col].isdigit():
            lags[int(cells[node_col])] = int(cells[lag_col])
    return lags


def assess(
    results: dict[str, tuple[int, str, str]],
    expected_brokers: int,
    required_brokers: list[int] | None = None,
    caught_up_voters: list[int] | None = None,
    max_voter_lag: int = 1000,
) -> dict:
    """The gate's verdict from the tools' (rc, stdout, stderr); pure, for testing."""
    problems: list[str] = []
    for key, (rc, _, err) in results.items():
        if rc != 0:
            last = (err.strip().splitlines() or ["no output"])[-1]
            tool = REPLICATION[0] if key == "replication" else CALLS[key][0]
            problems.append(f"{tool} failed (rc={rc}): {last[:300]}")
    leader = LEADER.search(results["quorum"][1]) if results["quorum"][0] == 0 else None
    leader_id = int(leader.group(1)) if leader else -1
    if results["quorum"][0] == 0 and leader_id < 0:
        problems.append("the KRaft quorum has no leader")
    registered = BROKER.findall(results["brokers"][1]) if results["brokers"][0] == 0 else []
    brokers = sorted({int(b) for b in registered})
    if results["brokers"][0] == 0:
        if len(brokers) < expected_brokers:
            problems.append(f"{len(brokers)} of {expected_brokers} brokers registered ({brokers})")
        missing = sorted(set(required_brokers or []) - set(brokers))
        if missing:
            problems.append(f"broker(s) {missing} not registered (registered: {brokers})")
    unhealthy = (
        [line.strip() for line in results["partitions"][1].splitlines() if line.strip()]
        if results["partitions"][0] == 0
        else []
    )
    if unhealthy:
        problems.append(f"{len(unhealthy)} under-replicated or unavailable partition(s)")
    lags: dict[int, int] = {}
    if caught_up_voters and results.get("replication", (1, "", ""))[0] == 0:
        reported = voter_lags(results["replication"][1])
        lags = {voter: reported[voter] for voter in caught_up_voters if voter in reported}
        for voter in caught_up_voters:
            if voter not in reported:
                problems.append(f"voter {voter} is not in the quorum's replication state")
            elif reported[voter] > max_voter_lag:
                problems.append(
                    f"voter {voter} lags the quorum leader by {reported[voter]} records (> {max_voter_lag})"
                )
    return {
        "healthy": not problems,
        "leader_id": leader_id,
        "brokers": brokers,
        "unhealthy_partitions": unhealthy,
        "voter_lags": lags,
        "problems": problems,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **CONNECTION_ARGUMENT_SPEC,
            "expected_brokers": {"type": "int", "required": True},
            "required_brokers": {"type": "list", "elements": "int", "default": []},
            "caught_up_voters": {"type": "list", "elements": "int", "default": []},
            "max_voter_lag": {"type": "int", "default": 1000},
        },
        supports_check_mode=True,
    )
    params = module.params
    calls = {**CALLS, **({"replication": REPLICATION} if params["caught_up_voters"] else {})}
    results = KafkaCli(module).run_all(calls)
    verdict = assess(
        results,
        params["expected_brokers"],
        params["required_brokers"],
        params["caught_up_voters"],
        params["max_voter_lag"],
    )
    module.exit_json(changed=False, **verdict)


if __name__ == "__main__":
    main()

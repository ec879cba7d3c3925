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
  expected_brokers:
    description: How many brokers must be registered.
    type: int
    required: true
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
LEADER = re.compile(r"LeaderId:\s+(-?\d+)")
BROKER = re.compile(r"\(id:\s*(\d+)")


def assess(results: dict[str, tuple[int, str, str]], expected_brokers: int) -> dict:
    """The gate's verdict from the three tools' (rc, stdout, stderr); pure, for testing."""
    problems: list[str] = []
    for key, (rc, _, err) in results.items():
        if rc != 0:
            last = (err.strip().splitlines() or ["no output"])[-1]
            problems.append(f"{CALLS[key][0]} failed (rc={rc}): {last[:300]}")
    leader = LEADER.search(results["quorum"][1]) if results["quorum"][0] == 0 else None
    leader_id = int(leader.group(1)) if leader else -1
    if results["quorum"][0] == 0 and leader_id < 0:
        problems.append("the KRaft quorum has no leader")
    registered = BROKER.findall(results["brokers"][1]) if results["brokers"][0] == 0 else []
    brokers = sorted({int(b) for b in registered})
    if results["brokers"][0] == 0 and len(brokers) < expected_brokers:
        problems.append(f"{len(brokers)} of {expected_brokers} brokers registered ({brokers})")
    unhealthy = (
        [line.strip() for line in results["partitions"][1].splitlines() if line.strip()]
        if results["partitions"][0] == 0
        else []
    )
    if unhealthy:
        problems.append(f"{len(unhealthy)} under-replicated or unavailable partition(s)")
    return {
        "healthy": not problems,
        "leader_id": leader_id,
        "brokers": brokers,
        "unhealthy_partitions": unhealthy,
        "problems": problems,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **CONNECTION_ARGUMENT_SPEC,
            "expected_brokers": {"type": "int", "required": True},
        },
        supports_check_mode=True,
    )
    results = KafkaCli(module).run_all(CALLS)
    module.exit_json(changed=False, **assess(results, module.params["expected_brokers"]))


if __name__ == "__main__":
    main()

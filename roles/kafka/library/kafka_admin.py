#!/usr/bin/python
# Ansible module layout: DOCUMENTATION/EXAMPLES/RETURN precede the imports.
# ruff: noqa: E402
"""Idempotent Kafka administration through the Kafka CLI tools (topics, ACLs, SCRAM users)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kafka_admin
short_description: Ensure Kafka topics, ACLs and SCRAM users exist (idempotent)
description:
  - Reads the current state with one Kafka CLI call per aspect and changes only what is missing or different.
  - Topics are created when absent; partitions are only ever increased; topic configs listed are set.
  - ACLs are added when absent; ACLs that are not listed are left alone.
  - SCRAM users are created when they have no credential for the mechanism; existing passwords are not rotated
    unless I(update_passwords=true).
  - Supports check mode.
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
  topics:
    description: Topics to ensure.
    type: list
    elements: dict
    suboptions:
      name: {type: str, required: true, description: Topic name.}
      partitions: {type: int, required: true, description: Partition count (never decreased).}
      replication_factor: {type: int, required: true, description: Replication factor used at creation.}
      config: {type: dict, default: {}, description: Topic-level configs.}
  acls:
    description: ACL bindings to ensure (allow only).
    type: list
    elements: dict
    suboptions:
      principal: {type: str, required: true, description: e.g. User:collector.}
      resource_type:
        type: str
        required: true
        choices: [topic, group, cluster, transactional-id]
        description: Resource type.
      resource_name: {type: str, default: kafka-cluster, description: Resource name (not for cluster).}
      pattern_type: {type: str, default: literal, choices: [literal, prefixed], description: Pattern type.}
      operations: {type: list, elements: str, required: true, description: Operations (Read, Write, ...).}
      host: {type: str, default: '*', description: Host the ACL applies to.}
  scram_users:
    description: SCRAM users to ensure.
    type: list
    elements: dict
    suboptions:
      name: {type: str, required: true, description: User name.}
      password: {type: str, required: true, no_log: true, description: Password.}
  scram_mechanism:
    description: SCRAM mechanism.
    type: str
    default: SCRAM-SHA-512
    choices: [SCRAM-SHA-256, SCRAM-SHA-512]
  update_passwords:
    description: Re-set the password of users that already exist.
    type: bool
    default: false
author: FMS Platform maintainers
"""

EXAMPLES = r"""
- name: Ensure the pipeline topics
  kafka_admin:
    kafka_home: /opt/kafka
    bootstrap_server: kafka-1:9092
    command_config: /etc/kafka/admin.properties
    topics:
      - name: "{{ kafka_topic_raw }}"
        partitions: 12
        replication_factor: 3
        config: {min.insync.replicas: "2"}
"""

RETURN = r"""
actions:
  description: The CLI changes made (or that would be made in check mode).
  type: list
  returned: always
  elements: str
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.kafka_cli import CONNECTION_ARGUMENT_SPEC, KafkaCli

RESOURCE_TYPES = {
    "topic": "TOPIC",
    "group": "GROUP",
    "cluster": "CLUSTER",
    "transactional-id": "TRANSACTIONAL_ID",
}
ACL_RESOURCE = re.compile(
    r"ResourcePattern\(resourceType=(?P<type>\w+), name=(?P<name>.*?), patternType=(?P<pattern>\w+)\)"
)
ACL_ENTRY = re.compile(
    r"\(principal=(?P<principal>[^,]+), host=(?P<host>[^,]+), "
    r"operation=(?P<op>\w+), permissionType=(?P<perm>\w+)\)"
)
TOPIC_LINE = re.compile(
    r"^Topic:\s*(?P<name>\S+)\s.*PartitionCount:\s*(?P<parts>\d+)\s.*?Configs:\s*(?P<configs>.*)$"
)
SCRAM_LINE = re.compile(r"SCRAM credential configs for user-principal '(?P<user>[^']+)' are (?P<mechs>.*)$")


def _op(name: str) -> str:
    """Normalise an operation name to the CLI's enum spelling (IdempotentWrite -> IDEMPOTENT_WRITE)."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).upper()


# What each ensure_* reads first (a describe/list; run together by KafkaCli.read_all).
READS = {
    "scram_users": ("kafka-configs.sh", ["--describe", "--entity-type", "users"]),
    "topics": ("kafka-topics.sh", ["--describe", "--exclude-internal"]),
    "acls": ("kafka-acls.sh", ["--list"]),
}


def ensure_topics(cli: KafkaCli, out: str, topics: list[dict], actions: list[str], check_mode: bool) -> None:
    current: dict[str, dict] = {}
    for line in out.splitlines():
        m = TOPIC_LINE.match(line.strip())
        if m:
            configs = {}
            for kv in filter(None, m.group("configs").strip().split(",")):
                k, _, v = kv.partition("=")
                configs[k.strip()] = v.strip()
            current[m.group("name")] = {"partitions": int(m.group("parts")), "config": configs}
    for t in topics:
        name, wanted_cfg = t["name"], {k: str(v) for k, v in (t.get("config") or {}).items()}
        if name not in current:
            args = [
                "--create",
                "--topic",
                name,
                "--partitions",
                str(t["partitions"]),
                "--replication-factor",
                str(t["replication_factor"]),
            ]
            for k, v in sorted(wanted_cfg.items()):
                args += ["--config", f"{k}={v}"]
            actions.append(f"create topic {name} partitions={t['partitions']} rf={t['replication_factor']}")
            if not check_mode:
                cli.run("kafka-topics.sh", args)
            continue
        have = current[name]
        if t["partitions"] > have["partitions"]:
            actions.append(f"increase partitions of {name} {have['partitions']} -> {t['partitions']}")
            if not check_mode:
                cli.run("kafka-topics.sh", ["--alter", "--topic", name, "--partitions", str(t["partitions"])])
        drift = {k: v for k, v in wanted_cfg.items() if have["config"].get(k) != v}
        if drift:
            settings = ",".join(f"{k}={v}" for k, v in sorted(drift.items()))
            actions.append(f"set configs of {name}: {settings}")
            if not check_mode:
                cli.run(
                    "kafka-configs.sh",
                    ["--alter", "--entity-type", "topics", "--entity-name", name, "--add-config", settings],
                )


def _acl_key(rtype: str, rname: str, pattern: str, principal: str, host: str, op: str):
    return (rtype.upper(), rname, pattern.upper(), principal, host, op.upper())


def ensure_acls(cli: KafkaCli, out: str, acls: list[dict], actions: list[str], check_mode: bool) -> None:
    existing = set()
    resource = None
    for line in out.splitlines():
        rm = ACL_RESOURCE.search(line)
        if rm:
            resource = (rm.group("type"), rm.group("name"), rm.group("pattern"))
            continue
        em = ACL_ENTRY.search(line)
        if em and resource and em.group("perm").upper() == "ALLOW":
            existing.add(_acl_key(*resource, em.group("principal"), em.group("host"), em.group("op")))
    for acl in acls:
        rtype = RESOURCE_TYPES[acl["resource_type"]]
        rname = "kafka-cluster" if rtype == "CLUSTER" else acl["resource_name"]
        pattern = "LITERAL" if rtype == "CLUSTER" else acl["pattern_type"].upper()
        host = acl.get("host") or "*"
        missing = [
            op
            for op in acl["operations"]
            if _acl_key(rtype, rname, pattern, acl["principal"], host, _op(op)) not in existing
        ]
        if not missing:
            continue
        args = ["--add", "--allow-principal", acl["principal"], "--allow-host", host]
        if rtype == "CLUSTER":
            args.append("--cluster")
        else:
            args += [f"--{acl['resource_type']}", rname, "--resource-pattern-type", pattern.lower()]
        for op in missing:
            args += ["--operation", op]
        actions.append(f"allow {acl['principal']} {','.join(missing)} on {rtype} {rname} ({pattern.lower()})")
        if not check_mode:
            cli.run("kafka-acls.sh", args)


def ensure_scram(
    cli: KafkaCli,
    out: str,
    users: list[dict],
    mechanism: str,
    update: bool,
    actions: list[str],
    check_mode: bool,
) -> None:
    have = {}
    for line in out.splitlines():
        m = SCRAM_LINE.search(line)
        if m:
            have[m.group("user")] = m.group("mechs")
    for user in users:
        present = mechanism in have.get(user["name"], "")
        if present and not update:
            continue
        actions.append(f"{'update' if present else 'create'} {mechanism} credential for {user['name']}")
        if not check_mode:
            cli.run(
                "kafka-configs.sh",
                [
                    "--alter",
                    "--entity-type",
                    "users",
                    "--entity-name",
                    user["name"],
                    "--add-config",
                    f"{mechanism}=[password={user['password']}]",
                ],
            )


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **CONNECTION_ARGUMENT_SPEC,
            "topics": {
                "type": "list",
                "elements": "dict",
                "options": {
                    "name": {"type": "str", "required": True},
                    "partitions": {"type": "int", "required": True},
                    "replication_factor": {"type": "int", "required": True},
                    "config": {"type": "dict", "default": {}},
                },
            },
            "acls": {
                "type": "list",
                "elements": "dict",
                "options": {
                    "principal": {"type": "str", "required": True},
                    "resource_type": {"type": "str", "required": True, "choices": list(RESOURCE_TYPES)},
                    "resource_name": {"type": "str", "default": "kafka-cluster"},
                    "pattern_type": {"type": "str", "default": "literal", "choices": ["literal", "prefixed"]},
                    "operations": {"type": "list", "elements": "str", "required": True},
                    "host": {"type": "str", "default": "*"},
                },
            },
            "scram_users": {
                "type": "list",
                "elements": "dict",
                "no_log": False,
                "options": {
                    "name": {"type": "str", "required": True},
                    "password": {"type": "str", "required": True, "no_log": True},
                },
            },
            "scram_mechanism": {
                "type": "str",
                "default": "SCRAM-SHA-512",
                "choices": ["SCRAM-SHA-256", "SCRAM-SHA-512"],
            },
            "update_passwords": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    cli = KafkaCli(module)
    actions: list[str] = []
    current = cli.read_all({key: READS[key] for key in READS if module.params[key]})
    if module.params["scram_users"]:
        ensure_scram(
            cli,
            current["scram_users"],
            module.params["scram_users"],
            module.params["scram_mechanism"],
            module.params["update_passwords"],
            actions,
            module.check_mode,
        )
    if module.params["topics"]:
        ensure_topics(cli, current["topics"], module.params["topics"], actions, module.check_mode)
    if module.params["acls"]:
        ensure_acls(cli, current["acls"], module.params["acls"], actions, module.check_mode)
    module.exit_json(changed=bool(actions), actions=actions)


if __name__ == "__main__":
    main()

"""The security groups Terraform plans open exactly the ports the roles listen on (issue 12).

Two real components meet here, each read as it runs:
- the ports: every role's defaults rendered by Ansible itself (the project's
  ansible.cfg, so the fms_platform vars plugin; the repository's group_vars)
  for one host of each inventory group;
- the rules: the ingress rules Terraform computes for the primary stack
  (`terraform console` on a staged copy, as the lab and the emulator tests
  stage it), with admin, dashboard and peer CIDRs set.

LISTENERS below is this test's own statement of who must reach what, written
in role variables and security group / CIDR class names, never in port
numbers. From it: each port a role listens on is open from exactly the
sources that need it (no fewer: the service breaks on AWS; no more: least
privilege), and no rule opens a port no listener needs.

The old mismatch - the inter-broker rule on 9094 while kafka_internal_port is
9091, the HDFS/Spark JMX exporters (7072-7075) reachable only on 7071 - fails
test_every_listener_is_reachable_from_exactly_who_needs_it[kafka_internal_port]
and test_no_rule_opens_a_port_nobody_listens_on, and the targeted
test_kafka_inter_broker_rule_is_the_internal_listener /
test_jmx_exporters_are_open_from_monitoring_on_their_hosts_group.

The environments and stacks (region, CIDRs) are the contract's too: the files
that cannot read it (the aws_ec2 inventories' regions, the tfvars) are checked
against it at the end.

So are the Kafka topics: the kafka role creates exactly the contract's topics
and grants exactly its producers and consumers; the jobs package, which runs
where platform.yml is not, keeps the names as stand-alone defaults held equal
to the contract's; no role, playbook, inventory or script writes a name itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_support import task_results
from fms_tools.fmsops.emulator import EMULATOR_ENV
from fms_tools.fmsops.platform_contract import Platform, Topic, load
from fms_tools.fmsops.terraform import REPO, Stack, lab_var_file

ROLES_DIR = REPO / "roles"
ANSIBLE_DIR = REPO / "ansible"
# Source CIDRs for the plan: TEST-NET-3 (admin), TEST-NET-2 (dashboard); the
# peer is the primary's peer stack (dr) as the lab addresses it (platform.yml stacks).
LAB_PEER_CIDR = load().stack("dr").lab_vpc_cidr
CIDR_CLASS = {"203.0.113.0/24": "admin", "198.51.100.0/24": "dashboard", LAB_PEER_CIDR: "peer"}
ROLES = ("kafka", "hdfs", "spark", "jmx_exporter", "node_exporter", "prometheus", "alertmanager", "grafana")
ROLES += ("fms_pipeline", "mirrormaker")


@dataclass(frozen=True)
class Listener:
    """A port a role listens on: where (inventory groups), who must reach it, how far it spans."""

    variable: str  # role variable holding the port, or a host:port listen address
    groups: tuple[str, ...]  # inventory groups whose hosts listen on it
    sources: frozenset[str]  # security groups / CIDR classes that need it
    span: int | str = 0  # further ports above it the service uses (a number or a rendered variable)
    protocols: tuple[str, ...] = ("tcp",)


def _listener(variable: str, groups: str, sources: str, span: int | str = 0, udp: bool = False) -> Listener:
    protocols = ("tcp", "udp") if udp else ("tcp",)
    return Listener(variable, tuple(groups.split()), frozenset(sources.split()), span, protocols)


ALL_HOSTS = "bastion kafka kafka_controller hdfs_namenode hdfs_datanode spark_master spark_worker monitoring"
ALL_HOSTS += " collector"
LISTENERS = (
    # sshd is configured by no role: it listens where the contract says (sshd_port below)
    _listener("sshd_port", "bastion", "admin"),
    _listener("sshd_port", ALL_HOSTS.replace("bastion ", ""), "bastion"),
    _listener("node_exporter_web_listen_address", ALL_HOSTS, "monitoring"),
    # Kafka: clients are the collector, the streaming job and Kafka's own tools and
    # MirrorMaker 2 (here and in the peer region); brokers replicate on INTERNAL.
    _listener("kafka_client_port", "kafka", "collector spark kafka peer"),
    _listener("kafka_internal_port", "kafka", "kafka"),
    _listener("kafka_controller_port", "kafka_controller", "kafka"),
    _listener("kafka_jmx_exporter_port", "kafka kafka_controller", "monitoring"),
    # MirrorMaker 2 runs on the standby's brokers (group kafka_mirror, mapped from kafka)
    _listener("mirrormaker_rest_port", "kafka", "kafka"),
    _listener("mirrormaker_jmx_exporter_port", "kafka", "monitoring"),
    # HDFS: DataNodes and Spark talk to the NameNode and the DataNodes.
    _listener("hdfs_namenode_rpc_port", "hdfs_namenode", "hdfs spark"),
    _listener("hdfs_namenode_http_port", "hdfs_namenode", "bastion hdfs monitoring"),
    _listener("hdfs_datanode_port", "hdfs_datanode", "hdfs spark"),
    # IPC: DataNodes among themselves, and HDFS clients asking the length of a block being written
    _listener("hdfs_datanode_ipc_port", "hdfs_datanode", "hdfs spark"),
    _listener("hdfs_datanode_http_port", "hdfs_datanode", "bastion"),
    _listener("hdfs_namenode_jmx_exporter_port", "hdfs_namenode", "monitoring"),
    _listener("hdfs_datanode_jmx_exporter_port", "hdfs_datanode", "monitoring"),
    # Spark: master, workers, drivers and executors call each other.
    _listener("spark_master_port", "spark_master", "spark"),
    _listener("spark_worker_port", "spark_worker", "spark"),
    _listener("spark_master_webui_port", "spark_master", "bastion monitoring"),
    _listener("spark_worker_webui_port", "spark_worker", "bastion monitoring"),
    _listener("spark_history_webui_port", "spark_master", "bastion"),
    _listener("spark_master_jmx_exporter_port", "spark_master", "monitoring"),
    _listener("spark_worker_jmx_exporter_port", "spark_worker", "monitoring"),
    # The pipeline's drivers on the master: port + 1 is the driver's block manager;
    # the audit tool takes the two ports after the archive job's.
    _listener("fms_pipeline_stream_driver_port", "spark_master", "spark", span=1),
    _listener("fms_pipeline_hourly_driver_port", "spark_master", "spark", span=1),
    _listener("fms_pipeline_archive_driver_port", "spark_master", "spark", span=3),
    # any other driver (spark-defaults.conf), on any Spark host: its RPC and block manager
    _listener("spark_submit_driver_port", "spark_master spark_worker", "spark", span=1),
    _listener(
        "fms_pipeline_executor_block_manager_port",
        "spark_master spark_worker",
        "spark",
        span="fms_pipeline_spark_port_max_retries",
    ),
    # the drivers' UIs: stream, hourly summary, archive, audit
    _listener("fms_pipeline_stream_ui_port", "spark_master", "bastion", span=3),
    _listener("fms_pipeline_stream_metrics_port", "spark_master", "monitoring"),
    _listener("fms_pipeline_collector_metrics_port", "collector", "monitoring"),
    # Monitoring: operators through the bastion or the dashboard range; a second
    # monitoring host scrapes the first and joins its Alertmanager cluster.
    _listener("prometheus_web_listen_address", "monitoring", "bastion monitoring dashboard"),
    _listener("alertmanager_web_listen_address", "monitoring", "bastion monitoring dashboard"),
    _listener("alertmanager_cluster_port", "monitoring", "monitoring", udp=True),
    _listener("grafana_http_port", "monitoring", "bastion dashboard"),
)
# The other side of each scrape / client: must name the port its listener uses.
CONSUMERS = {
    "prometheus_node_exporter_port": "node_exporter_web_listen_address",
    "prometheus_collector_port": "fms_pipeline_collector_metrics_port",
    "prometheus_stream_driver_port": "fms_pipeline_stream_metrics_port",
    "prometheus_alertmanager_port": "alertmanager_web_listen_address",
    "prometheus_grafana_port": "grafana_http_port",
    "grafana_prometheus_url": "prometheus_web_listen_address",
}
# What the roles make of platform.yml's topics (rendered like the ports).
TOPIC_VARIABLES = (
    "kafka_topics",
    "kafka_acls",
    "kafka_spark_group_prefixes",
    "kafka_mirror_topic_prefix",
    "kafka_scram_usernames",
    "fms_pipeline_kafka_topic_raw",
    "fms_pipeline_kafka_topic_dlq",
)
JMX_EXPORTERS = {
    "kafka": "kafka_jmx_exporter_port",
    "hdfs_namenode": "hdfs_namenode_jmx_exporter_port",
    "hdfs_datanode": "hdfs_datanode_jmx_exporter_port",
    "spark_master": "spark_master_jmx_exporter_port",
    "spark_worker": "spark_worker_jmx_exporter_port",
}
RENDERED = sorted(
    {lst.variable for lst in LISTENERS}
    | {s for lst in LISTENERS if isinstance(s := lst.span, str)}
    | set(CONSUMERS)
    | {"prometheus_jmx_exporter_ports", "jmx_exporter_default_ports"}
    | set(TOPIC_VARIABLES)
)

RENDER_PLAYBOOK = """
- name: Load every role's defaults without running a task (only the tagged debug runs)
  hosts: all
  gather_facts: false
  roles: {roles}
  vars:
    sshd_port: "{{{{ fms_platform.ports.ssh.port }}}}"
  tasks:
    - name: Rendered port variables
      ansible.builtin.debug:
        msg: "{{{{ dict(names | zip(query('ansible.builtin.vars', *names))) }}}}"
      vars:
        names: {names}
      tags: [fms_render_ports]
"""


@dataclass(frozen=True)
class PlannedRule:
    to: str
    source: str  # security group or CIDR class
    protocol: str
    from_port: int
    to_port: int
    port_name: str
    key: str

    def covers(self, port: int) -> bool:
        return self.from_port <= port <= self.to_port


@pytest.fixture(scope="module")
def contract() -> Platform:
    return load()


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> list[PlannedRule]:
    """The ingress rules Terraform computes for the primary stack (lab variables, every CIDR class set)."""
    stack = Stack("primary", tmp_path_factory.mktemp("tf-contract")).stage()
    stack.init()
    admin, dashboard = (c for c, k in CIDR_CLASS.items() if k in ("admin", "dashboard"))
    proc = subprocess.run(
        [
            "terraform",
            f"-chdir={stack.chdir}",
            "console",
            f"-var-file={lab_var_file('primary')}",
            f'-var=admin_cidrs=["{admin}"]',
            f'-var=dashboard_cidrs=["{dashboard}"]',
        ],
        input="jsonencode(module.security.ingress_design)\n",
        capture_output=True,
        text=True,
        # No AWS is contacted (console evaluates the configuration); the emulator's
        # dummy credentials keep the provider from looking for real ones.
        env={**os.environ, **EMULATOR_ENV, "TF_IN_AUTOMATION": "1"},
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    design = json.loads(json.loads(proc.stdout))
    return [
        PlannedRule(
            r["to"],
            CIDR_CLASS.get(r["source"], r["source"]),
            r["protocol"],
            r["from_port"],
            r["to_port"],
            r["port_name"],
            r["key"],
        )
        for r in design
    ]


def _write_inventory(inv_dir: Path, contract: Platform) -> Path:
    """One TEST-NET-1 host per inventory group of the contract (never contacted: debug runs locally)."""
    inv_dir.mkdir(parents=True)
    groups = {
        group: {"hosts": {group.replace("_", "-") + "-1": {"ansible_host": f"192.0.2.{i}"}}}
        for i, group in enumerate(contract.inventory_groups, start=10)
    }
    path = inv_dir / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"children": groups}}), encoding="utf-8")
    # inventory-adjacent group_vars: the repository's own, as a site's inventory would have them
    (inv_dir / "group_vars").symlink_to(ANSIBLE_DIR / "group_vars")
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, contract: Platform) -> dict[str, dict[str, Any]]:
    """inventory group -> {variable: value} as Ansible renders the role defaults on a host of that group."""
    tmp = tmp_path_factory.mktemp("render-ports")
    inventory = _write_inventory(tmp / "inventory", contract)
    playbook = tmp / "ports.yml"
    roles = json.dumps(list(ROLES))
    playbook.write_text(RENDER_PLAYBOOK.format(roles=roles, names=json.dumps(RENDERED)), encoding="utf-8")
    # Only the debug task runs: no role task (nor the `always` argument checks) is even started.
    hosts = task_results(
        *("-i", str(inventory), str(playbook)),
        *("--tags", "fms_render_ports", "--skip-tags", "always"),
        task="Rendered port variables",
    )
    return {group: hosts[group.replace("_", "-") + "-1"]["msg"] for group in contract.inventory_groups}


def _port(value: Any) -> int:
    """A port variable's value: an integer, or the port of a host:port listen address or URL."""
    if isinstance(value, int):
        return value
    match = re.search(r":(\d+)/?$", str(value))
    assert match, f"no port in {value!r}"
    return int(match.group(1))


def _ports(listener: Listener, values: dict[str, Any]) -> range:
    first = _port(values[listener.variable])
    span = listener.span if isinstance(listener.span, int) else int(values[listener.span])
    return range(first, first + span + 1)


def _sources(planned: list[PlannedRule], sg: str, protocol: str, port: int) -> set[str]:
    return {r.source for r in planned if r.to == sg and r.protocol == protocol and r.covers(port)}


# --------------------------------------------------------------------------- listeners vs. rules


@pytest.mark.parametrize("listener", LISTENERS, ids=[f"{lst.variable}@{lst.groups[0]}" for lst in LISTENERS])
def test_every_listener_is_reachable_from_exactly_who_needs_it(
    listener: Listener,
    rendered: dict[str, dict[str, Any]],
    planned: list[PlannedRule],
    contract: Platform,
) -> None:
    for group in listener.groups:
        sg = contract.security_group_of(group)
        for port in _ports(listener, rendered[group]):
            for protocol in listener.protocols:
                found = _sources(planned, sg, protocol, port)
                assert found == listener.sources, (
                    f"{listener.variable} on {group} listens on {protocol}/{port}: the {sg} security group "
                    f"opens it from {sorted(found)}, the platform needs exactly {sorted(listener.sources)}"
                )


def test_no_rule_opens_a_port_nobody_listens_on(
    rendered: dict[str, dict[str, Any]], planned: list[PlannedRule], contract: Platform
) -> None:
    """Least privilege: each rule is needed by a listener behind its security group, from its source."""
    needed: set[tuple[str, str, str, int]] = set()
    for listener in LISTENERS:
        for group in listener.groups:
            for port in _ports(listener, rendered[group]):
                for protocol in listener.protocols:
                    for source in listener.sources:
                        needed.add((contract.security_group_of(group), source, protocol, port))
    unneeded = [
        r.key
        for r in planned
        if not any((r.to, r.source, r.protocol, p) in needed for p in range(r.from_port, r.to_port + 1))
    ]
    assert not unneeded, f"rules no listener needs: {unneeded}"


def test_kafka_inter_broker_rule_is_the_internal_listener(
    rendered: dict[str, dict[str, Any]], planned: list[PlannedRule]
) -> None:
    """The review's finding: brokers replicate on kafka_internal_port; kafka opens that to kafka."""
    internal = rendered["kafka"]["kafka_internal_port"]
    rules = [r for r in planned if r.port_name == "kafka_internal"]
    assert [(r.to, r.source, r.from_port, r.to_port) for r in rules] == [
        ("kafka", "kafka", internal, internal)
    ]
    kafka_to_kafka = {
        p for r in planned if r.to == r.source == "kafka" for p in range(r.from_port, r.to_port + 1)
    }
    assert kafka_to_kafka == {
        rendered["kafka"]["kafka_internal_port"],
        rendered["kafka"]["kafka_client_port"],
        rendered["kafka_controller"]["kafka_controller_port"],
        rendered["kafka"]["mirrormaker_rest_port"],  # MirrorMaker 2 nodes of the standby, among themselves
    }


def test_jmx_exporters_are_open_from_monitoring_on_their_hosts_group(
    rendered: dict[str, dict[str, Any]], planned: list[PlannedRule], contract: Platform
) -> None:
    keys = {r.key for r in planned}
    ports = set()
    for group, variable in JMX_EXPORTERS.items():
        port = rendered[group][variable]
        ports.add(port)
        assert f"{contract.security_group_of(group)}<-monitoring:{port}" in keys, (group, variable, port)
    assert len(ports) == len(JMX_EXPORTERS), "each JMX exporter has its own port"


# --------------------------------------------------------------------------- the other ends


def test_scrapes_and_clients_use_the_ports_the_services_listen_on(
    rendered: dict[str, dict[str, Any]],
) -> None:
    monitoring = rendered["monitoring"]
    for consumer, listener in CONSUMERS.items():
        assert _port(monitoring[consumer]) == _port(monitoring[listener]), (consumer, listener)
    for service, variable in JMX_EXPORTERS.items():
        assert monitoring["prometheus_jmx_exporter_ports"][service] == rendered[service][variable], service
        assert rendered[service]["jmx_exporter_default_ports"][service] == rendered[service][variable], (
            service
        )


def test_terraform_expands_the_contract_like_the_python_loader(
    planned: list[PlannedRule], contract: Platform
) -> None:
    """Python tools and tests see through fmsops.platform_contract the rules Terraform builds."""
    ours = {(r.to, r.source, r.protocol, r.from_port, r.to_port, r.port_name) for r in contract.rules()}
    theirs = {(r.to, r.source, r.protocol, r.from_port, r.to_port, r.port_name) for r in planned}
    assert theirs == ours
    assert {r.key for r in planned if r.source in contract.security_groups} == {
        r.key for r in contract.rules() if r.source in contract.security_groups
    }


# --------------------------------------------------------------------------- one copy only


def _yaml_files() -> Iterator[Path]:
    yield from sorted(ROLES_DIR.glob("*/defaults/main.yml"))
    yield from sorted(ROLES_DIR.glob("*/vars/main.yml"))
    yield from sorted((ANSIBLE_DIR / "group_vars").glob("*.yml"))
    yield from sorted((REPO / "inventory").rglob("group_vars/**/*.yml"))


def _literal_ports(key: str, value: Any) -> list[str]:
    """Port numbers written as numbers: a *_port, an entry of a *_ports map, a host:port listen address."""
    if key.endswith("_ports") and isinstance(value, dict):
        return [f"{key}.{k}: {v}" for k, v in value.items() if isinstance(v, int)]
    if key.endswith("_port") and isinstance(value, int):
        return [f"{key}: {value}"]
    if key.endswith("_listen_address") and isinstance(value, str) and re.search(r":\d+$", value):
        return [f"{key}: {value}"]
    return []


def test_no_port_is_written_outside_the_contract() -> None:
    """A port typed by hand in a role or group_vars is how the groups drifted: refer to fms_platform."""
    found = [
        f"{path.relative_to(REPO)}: {finding}"
        for path in _yaml_files()
        for key, value in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).items()
        for finding in _literal_ports(key, value)
    ]
    assert not found, "\n".join(found)


def test_security_module_has_no_port_of_its_own() -> None:
    """The module takes every service port from the contract; it writes only the all-ports egress (0)."""
    for tf in sorted((REPO / "terraform" / "modules" / "security").glob("*.tf")):
        text = tf.read_text(encoding="utf-8")
        literal = re.findall(r"(?:port|port_to|from_port|to_port)\s*=\s*(\d+)", text)
        literal += re.findall(r"optional\(number,\s*(\d+)\)", text)
        assert set(literal) <= {"0"}, f"{tf.name}: literal ports {sorted(set(literal))}"


# ------------------------------------------------------- environments and stacks: one copy only

TF_ENVS = REPO / "terraform" / "envs"


def _tfvars(path: Path) -> dict[str, str]:
    """Top-level `key = value` lines of a tfvars file (comments skipped), values as written."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([a-z_][a-z0-9_]*)\s*=\s*(.+?)\s*$", line)
        if match:
            found[match[1]] = match[2]
    return found


def test_each_stack_has_an_inventory_in_its_region(contract: Platform) -> None:
    """The aws_ec2 plugin cannot read the contract: its `regions:` must say what platform.yml says,
    and the file platform.yml names as a stack's inventory must select that stack's instances."""
    regions: dict[str, list[str]] = {}
    files: dict[str, str] = {}
    for path in sorted((REPO / "inventory").glob("*aws_ec2.yml")):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        stack = config["filters"]["tag:Stack"]
        assert stack in contract.stacks, f"{path.name} filters on an unknown stack {stack!r}"
        assert stack not in regions, f"two inventories for stack {stack}"
        regions[stack] = config["regions"]
        files[stack] = path.relative_to(REPO).as_posix()
    assert regions == {name: [spec.region] for name, spec in contract.stacks.items()}
    assert files == {name: spec.inventory for name, spec in contract.stacks.items()}


def test_tfvars_leave_regions_cidrs_and_names_to_the_contract(contract: Platform) -> None:
    """The env roots default region and CIDRs from platform.yml; a tfvars copy would drift from it."""
    for path in sorted(TF_ENVS.glob("*/*.tfvars")):
        values = _tfvars(path)
        where = path.relative_to(REPO)
        assert not {"region", "vpc_cidr", "peer_vpc_cidr"} & set(values), f"{where} repeats the contract"
        if "environment" in values:
            assert values["environment"].strip('"') in contract.environments, where
        if "stack_role" in values:
            assert values["stack_role"] == f'"{path.parent.name}"', f"{where}: stack_role is not its env dir"
        zones = re.findall(r'"([^"]+)"', values.get("availability_zones", ""))
        region = contract.stack(path.parent.name).region
        assert all(z.startswith(region) for z in zones), f"{where}: zones {zones} outside {region}"


def test_no_list_of_environment_names_outside_the_contract(contract: Platform) -> None:
    """Terraform and Ansible once allowed different environments; both now ask platform.yml."""
    names = "|".join(contract.environments)
    listed = re.compile(rf"""\[\s*["'](?:{names})["']\s*,\s*["'](?:{names})["']""")
    sources = [*(REPO / "terraform").rglob("*.tf"), *(REPO / "scripts").rglob("*.py")]
    sources += [p for d in ("ansible", "roles", "inventory") for p in (REPO / d).rglob("*.yml")]
    found = [str(p.relative_to(REPO)) for p in sources if listed.search(p.read_text(encoding="utf-8"))]
    assert not found, f"environment names listed outside platform.yml: {found}"


# ------------------------------------------------------------------------- topics: one copy only


def _kafka_topics(contract: Platform) -> dict[str, Topic]:
    return {t.name: t for t in contract.topics.values() if t.created_by == "kafka"}


def test_the_kafka_role_creates_the_contracts_topics(
    rendered: dict[str, dict[str, Any]], contract: Platform
) -> None:
    kafka = rendered["kafka"]
    assert sorted(t["name"] for t in kafka["kafka_topics"]) == sorted(_kafka_topics(contract))
    for group in ("collector", "spark_master"):  # the pipeline's configs name the same topics
        names = (
            rendered[group]["fms_pipeline_kafka_topic_raw"],
            rendered[group]["fms_pipeline_kafka_topic_dlq"],
        )
        assert names == (contract.topic("raw").name, contract.topic("dlq").name), group


def test_the_topic_acls_are_the_contracts_producers_and_consumers(
    rendered: dict[str, dict[str, Any]], contract: Platform
) -> None:
    """Each producer may Write, each consumer Read (both Describe) - and no other user may, by name."""
    kafka = rendered["kafka"]
    granted: dict[str, dict[str, set[str]]] = {}
    for acl in kafka["kafka_acls"]:
        if acl["resource_type"] == "topic" and acl.get("pattern_type", "literal") == "literal":
            user = acl["principal"].removeprefix("User:")
            granted.setdefault(acl["resource_name"], {}).setdefault(user, set()).update(acl["operations"])
    wanted: dict[str, dict[str, set[str]]] = {}
    for name, topic in _kafka_topics(contract).items():
        for users, ops in ((topic.producers, {"Write", "Describe"}), (topic.consumers, {"Read", "Describe"})):
            for user in users:
                wanted.setdefault(name, {}).setdefault(user, set()).update(ops)
    assert granted == wanted
    users = {u for t in contract.topics.values() for u in (*t.producers, *t.consumers)}
    assert users <= set(kafka["kafka_scram_usernames"]), "platform.yml topics name an unknown SCRAM user"
    # MirrorMaker 2's user reads every pipeline topic by prefix
    assert all(name.startswith(kafka["kafka_mirror_topic_prefix"]) for name in _kafka_topics(contract))


def test_the_spark_users_consumer_groups_are_the_contracts(
    rendered: dict[str, dict[str, Any]], contract: Platform
) -> None:
    from fms_jobs.batch.audit import AUDIT_GROUP_ID

    prefixes = [p for t in contract.topics.values() if "spark" in t.consumers for p in t.consumer_groups]
    assert rendered["kafka"]["kafka_spark_group_prefixes"] == list(dict.fromkeys(prefixes))
    # the audit reads as the stream's user: its group must be one the ACLs allow
    assert any(AUDIT_GROUP_ID.startswith(p) for p in prefixes), AUDIT_GROUP_ID


def test_the_jobs_stand_alone_defaults_are_the_contracts_names(contract: Platform) -> None:
    """fms_jobs runs on hosts without platform.yml: its defaults must still name the contract's topics."""
    from fms_jobs.collector.config import KafkaConfig
    from fms_jobs.streaming.config import StreamKafka

    raw, dlq = contract.topic("raw").name, contract.topic("dlq").name
    assert KafkaConfig().topic == raw
    assert (StreamKafka().topic, StreamKafka().dlq_topic) == (raw, dlq)


TOPIC_SCAN_DIRS = ("roles", "ansible", "inventory", "scripts", "terraform")
TEXT_SUFFIXES = {".py", ".yml", ".yaml", ".j2", ".cfg", ".ini", ".json", ".md", ".sh", ".tf", ".hcl", ".txt"}
TEXT_SUFFIXES |= {".tfvars", ".example", ".properties", ".conf", ".service"}


def test_no_topic_name_is_written_outside_the_contract(contract: Platform) -> None:
    """Like the ports: a name typed by hand in a role, playbook, inventory or script drifts."""
    names = "|".join(re.escape(t.name) for t in contract.topics.values())
    written = re.compile(rf"(?<![\w.-])(?:{names})(?![\w.-])")
    found = [
        f"{path.relative_to(REPO)}: {match[0]}"
        for d in TOPIC_SCAN_DIRS
        for path in sorted((REPO / d).rglob("*"))
        if path.is_file() and path.suffix in TEXT_SUFFIXES and ".terraform" not in path.parts
        for match in [written.search(path.read_text(encoding="utf-8", errors="replace"))]
        if match
    ]
    assert not found, f"topic names written outside platform.yml: {found}"

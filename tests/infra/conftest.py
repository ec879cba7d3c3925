"""testinfra for the FMS platform, runnable against any inventory (the lab or AWS).

    pytest tests/infra --fms-inventory inventory/aws_ec2.yml [--fms-inventory inventory/lab]
    FMS_INVENTORY=inventory/aws_ec2.yml:inventory/lab pytest tests/infra

The inventory sources are read with Ansible's own Python API together with the
playbook group_vars (ansible/group_vars), so host names, addresses and
connection settings (ssh config, bastion jumps, users) are exactly those
site.yml used. Connection variables are rendered into a static inventory that
testinfra's ansible backend reads; every test then runs commands on the hosts.

Per-node tests are parametrised over the inventory groups (a node that is not
in the inventory is never tested, an empty group skips its tests). Cluster
tests run their commands on one member of the group (the first).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import testinfra
from fms_tools.fmsops.platform_contract import load as load_platform

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
# The project's ansible.cfg (variable precedence, roles path) applies to the
# inventory read below exactly as it does to site.yml.
os.environ.setdefault("ANSIBLE_CONFIG", str(ANSIBLE_DIR / "ansible.cfg"))
# testinfra's ansible backend calls ansible-inventory: use the one beside this Python.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
GROUPS = tuple(load_platform().inventory_groups)  # platform.yml: every inventory group
# Connection settings copied into the static inventory testinfra reads.
CONNECTION_VARS = (
    "ansible_host",
    "ansible_port",
    "ansible_user",
    "ansible_connection",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
    "ansible_ssh_private_key_file",
    "ansible_private_key_file",
    "ansible_become",
    "ansible_become_user",
    "ansible_python_interpreter",
)
# Settings the tests compare against (rendered per host from the group_vars).
MODEL_VARS = (
    "fms_node_name",
    "fms_node_address",
    "fms_environment",
    "fms_production",
    "kafka_client_port",
    "kafka_bootstrap_servers",
    "kafka_topic_raw",
    "kafka_topic_dlq",
    "hdfs_namenode_rpc_port",
    "hdfs_default_fs",
    "hdfs_replication",
    "hdfs_pipeline_user",
    "spark_master_port",
    "spark_master_url",
    "spark_master_host",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fms")
    group.addoption(
        "--fms-inventory",
        action="append",
        default=[],
        help="Ansible inventory source (repeatable). Default: $FMS_INVENTORY (colon-separated) "
        "or inventory/aws_ec2.yml (+ inventory/lab when it exists and $FMS_LAB_DIR or .lab is present).",
    )

    group.addoption(
        "--fms-shard",
        default=None,
        metavar="I/N",
        help="Run only the I-th of N interleaved shares of the tests (0 <= I < N): N runs side by side "
        "cover the suite once each; the checks mostly wait on the hosts, so shares overlap well.",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = config.getoption("--fms-shard")
    if not shard:
        return
    index, count = (int(x) for x in shard.split("/"))
    if not 0 <= index < count:
        raise pytest.UsageError(f"--fms-shard {shard}: want I/N with 0 <= I < N")
    # Interleaved, not in blocks: per-host checks of one kind (a JVM tool, a TLS handshake)
    # are spread over the shares instead of landing in one.
    keep = [item for k, item in enumerate(items) if k % count == index]
    dropped = [item for k, item in enumerate(items) if k % count != index]
    items[:] = keep
    config.hook.pytest_deselected(items=dropped)


def _inventory_sources(config: pytest.Config) -> list[str]:
    sources = list(config.getoption("--fms-inventory") or [])
    ansible_inventory = config.getoption("--ansible-inventory", default=None)
    if ansible_inventory:
        sources.append(ansible_inventory)
    if not sources and os.environ.get("FMS_INVENTORY"):
        sources = [s for s in os.environ["FMS_INVENTORY"].split(":") if s]
    if not sources:
        sources = [str(REPO / "inventory" / "aws_ec2.yml")]
        if (REPO / "inventory" / "lab").is_dir() and (
            os.environ.get("FMS_LAB_DIR") or (REPO / ".lab").is_dir()
        ):
            sources.append(str(REPO / "inventory" / "lab"))
    return [str(Path(s).resolve()) if Path(s).exists() else s for s in sources]


@dataclass
class Platform:
    """What the inventory says the platform is."""

    sources: list[str]
    groups: dict[str, list[str]] = field(default_factory=dict)
    vars: dict[str, dict[str, Any]] = field(default_factory=dict)
    static_inventory: Path | None = None
    _hosts: dict[str, Any] = field(default_factory=dict)

    def members(self, group: str) -> list[str]:
        return list(self.groups.get(group, []))

    def host(self, name: str):
        if name not in self._hosts:
            self._hosts[name] = testinfra.get_host(
                f"ansible://{name}?ansible_inventory={self.static_inventory}"
            )
        return self._hosts[name]

    def node_name(self, name: str) -> str:
        return str(self.vars[name].get("fms_node_name") or name)

    def first(self, group: str) -> str:
        members = self.members(group)
        if not members:
            pytest.skip(f"no host in inventory group {group!r}")
        return members[0]


def _load_platform(sources: list[str], workdir: Path) -> Platform:
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import init_plugin_loader
    from ansible.template import Templar
    from ansible.vars.hostvars import HostVars
    from ansible.vars.manager import VariableManager

    init_plugin_loader()  # collections (amazon.aws.aws_ec2) as the ansible CLIs load them
    loader = DataLoader()
    # Playbook-adjacent group_vars (ansible/group_vars) apply as they do for site.yml.
    loader.set_basedir(str(ANSIBLE_DIR))
    inventory = InventoryManager(loader=loader, sources=sources)
    manager = VariableManager(loader=loader, inventory=inventory)
    # Lets group_vars that look at other hosts (hostvars[...]) render, as in a play.
    manager._hostvars = HostVars(inventory=inventory, variable_manager=manager, loader=loader)
    platform = Platform(sources=sources)
    for group in GROUPS:
        platform.groups[group] = (
            [h.name for h in inventory.get_hosts(pattern=group)] if group in inventory.groups else []
        )

    static: dict[str, Any] = {"all": {"hosts": {}}}
    for host in inventory.get_hosts():
        hostvars = manager.get_vars(host=host, include_hostvars=True)
        templar = Templar(loader=loader, variables=hostvars)
        rendered: dict[str, Any] = {}
        for key in CONNECTION_VARS + MODEL_VARS:
            if key in hostvars:
                try:
                    rendered[key] = templar.template(hostvars[key])
                except Exception:  # a variable this host cannot render is simply absent
                    continue
        platform.vars[host.name] = rendered
        static["all"]["hosts"][host.name] = {k: rendered[k] for k in CONNECTION_VARS if k in rendered}
    path = workdir / "inventory.json"
    path.write_text(json.dumps(static, indent=2, default=str), encoding="utf-8")
    platform.static_inventory = path
    return platform


def _platform(config: pytest.Config) -> Platform:
    """Load the inventory once per session (shared by parametrisation and fixtures)."""
    cached = getattr(config, "_fms_platform", None)
    if cached is None:
        import tempfile

        try:
            cached = _load_platform(_inventory_sources(config), Path(tempfile.mkdtemp(prefix="fms-infra-")))
        except Exception as exc:  # no emulator / no cloud credentials / no such file
            cached = exc
        config._fms_platform = cached  # type: ignore[attr-defined]
    if isinstance(cached, Exception):
        raise cached
    return cached


@pytest.fixture(scope="session")
def platform(request: pytest.FixtureRequest) -> Platform:
    try:
        loaded = _platform(request.config)
    except Exception as exc:
        pytest.skip(f"inventory {_inventory_sources(request.config)} could not be read: {exc}")
    if not any(loaded.groups.values()):
        pytest.skip(f"inventory {loaded.sources} has no FMS hosts")
    return loaded


# Fixtures named <group>_node are parametrised over the members of that group;
# any_node over every host in any FMS group.
NODE_FIXTURES = {f"{g}_node": g for g in GROUPS} | {"any_node": None}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, group in NODE_FIXTURES.items():
        if fixture not in metafunc.fixturenames:
            continue
        try:
            loaded = _platform(metafunc.config)
            if group is None:
                members = sorted({h for g in GROUPS for h in loaded.members(g)})
            else:
                members = loaded.members(group)
            reason = f"no host in inventory group {group or 'any FMS group'}"
        except Exception as exc:
            members, reason = [], f"inventory unreadable: {exc}"
        if members:
            metafunc.parametrize(fixture, members, ids=members)
        else:
            metafunc.parametrize(fixture, [pytest.param(None, marks=pytest.mark.skip(reason=reason))])

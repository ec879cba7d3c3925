"""How Ansible reaches the hosts: the bastion directly, every other host through it (issue 12).

The inventories' connection settings (inventory/group_vars/all/connection.yml) are rendered
by Ansible itself for a small inventory shaped like the aws_ec2 one (the bastion has a
public address, the others only private ones), with and without the lab's own ssh config.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible_support import BIN, REPO, ansible_env

CONNECTION = REPO / "inventory" / "group_vars" / "all" / "connection.yml"
HOSTS = {
    "bastion-1": {"groups": ["bastion"], "ansible_host": "203.0.113.10", "fms_node_address": "10.0.0.5"},
    "kafka-1": {"groups": ["kafka", "kafka_controller"], "ansible_host": "10.0.20.4"},
    "collector-1": {"groups": ["collector"], "ansible_host": "10.0.10.7"},
}


def _ssh_args(tmp_path: Path, hosts: dict, extra_vars: dict | None = None) -> dict[str, str]:
    """ansible_ssh_common_args of every host, as Ansible renders it for a play."""
    inv = tmp_path / "inventory"
    (inv / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(CONNECTION, inv / "group_vars" / "all" / "connection.yml")
    groups: dict[str, dict] = {}
    for name, h in hosts.items():
        for group in h["groups"]:
            groups.setdefault(group, {"hosts": {}})["hosts"][name] = {
                k: v for k, v in h.items() if k != "groups"
            }
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": groups}}))
    cmd = [
        str(BIN / "ansible"),
        "all",
        "-i",
        str(inv),
        "-m",
        "ansible.builtin.debug",
        "-a",
        "var=ansible_ssh_common_args",
        "-o",
    ]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    res = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=ansible_env(),
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = {}
    for line in res.stdout.splitlines():
        name, _, rest = line.partition(" | SUCCESS => ")
        if rest:
            out[name] = json.loads(rest)["ansible_ssh_common_args"].strip()
    assert set(out) == set(hosts), res.stdout
    return out


def test_every_host_but_the_bastion_is_reached_through_it(tmp_path: Path) -> None:
    args = _ssh_args(tmp_path, HOSTS)
    assert args["bastion-1"] == ""
    assert args["kafka-1"] == "-o ProxyJump=admin@203.0.113.10"
    assert args["collector-1"] == "-o ProxyJump=admin@203.0.113.10"


def test_the_lab_adds_its_ssh_config_and_keeps_the_same_path(tmp_path: Path) -> None:
    args = _ssh_args(tmp_path, HOSTS, {"fms_ssh_site_args": "-F /lab/ssh/config", "ansible_user": "root"})
    assert args["bastion-1"] == "-F /lab/ssh/config"
    assert args["kafka-1"] == "-F /lab/ssh/config -o ProxyJump=root@203.0.113.10"


def test_without_a_bastion_hosts_are_reached_directly(tmp_path: Path) -> None:
    hosts = {k: v for k, v in HOSTS.items() if "bastion" not in v["groups"]}
    assert set(_ssh_args(tmp_path, hosts).values()) == {""}


@pytest.mark.parametrize("inventory", ["aws_ec2.yml", "dr.aws_ec2.yml"])
def test_aws_inventories_address_the_bastion_publicly_and_peers_privately(inventory: str) -> None:
    compose = yaml.safe_load((REPO / "inventory" / inventory).read_text())["compose"]
    assert compose["ansible_host"] == "public_ip_address | default(private_ip_address, true)"
    assert compose["fms_node_address"] == "private_ip_address"

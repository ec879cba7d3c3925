"""Each stack is its own site (issue 12): primary and DR of one environment never share secrets.

The site name (fms_site) selects ansible/secrets/<site>/: the CA, the SCRAM and
keystore passwords, the KRaft and HDFS cluster ids. It used to be the
environment alone, so production's primary and DR stacks shared all of it.

The hosts here look as the aws_ec2 inventories present EC2 instances: their
tags (Env, Stack: what Terraform writes) turned into host variables by the
very `compose` of inventory/aws_ec2.yml, applied by Ansible's `constructed`
plugin (no AWS needed). The project's group_vars then derive the site, and the
common role's site_secrets tasks create each site's secrets and CA for real,
on this machine only (connection local, under a temporary playbook_dir).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_support import ANSIBLE_DIR, REPO, task_results

INVENTORIES = (REPO / "inventory" / "aws_ec2.yml", REPO / "inventory" / "dr.aws_ec2.yml")

# Instances as EC2 describes them: what the inventories' compose reads.
INSTANCES = {
    "prod-primary-kafka-1": {"Env": "production", "Stack": "primary"},
    "prod-dr-kafka-1": {"Env": "production", "Stack": "dr"},
    "lab-dr-kafka-1": {"Env": "lab", "Stack": "dr"},
}
# A static inventory names neither tag: fms_env only, the stack defaults to primary.
STATIC = {"static-kafka-1": {"fms_env": "staging"}}
SPARK_SECRET = "spark/auth.secret"

PLAYBOOK = """\
- name: Resolve each site's identity and secrets on the control machine
  hosts: all
  gather_facts: false
  tasks:
    - name: Site identity
      ansible.builtin.debug:
        msg:
          fms_environment: "{{ fms_environment }}"
          fms_stack_role: "{{ fms_stack_role }}"
          fms_site: "{{ fms_site }}"
          fms_site_role: "{{ fms_site_role }}"
          fms_secrets_dir: "{{ fms_secrets_dir }}"
          fms_production: "{{ fms_production }}"

    - name: Create the site secrets and the site CA
      ansible.builtin.include_role:
        name: common
        tasks_from: site_secrets
"""


def _ec2_host(name: str, tags: dict[str, str], n: int) -> dict[str, Any]:
    return {
        "tags": {**tags, "Project": "fms", "Role": "kafka", "Roles": "kafka", "Name": name},
        "private_ip_address": f"192.0.2.{n}",
        "public_ip_address": None,
        "placement": {"availability_zone": "az-a"},
    }


@pytest.fixture(scope="module")
def compose() -> dict[str, str]:
    """The compose both aws_ec2 inventories apply (they must agree: one set of host variables)."""
    composes = [yaml.safe_load(path.read_text(encoding="utf-8"))["compose"] for path in INVENTORIES]
    assert composes[0] == composes[1], "inventory/aws_ec2.yml and dr.aws_ec2.yml compose different variables"
    assert composes[0]["fms_env"] == "tags.Env" and composes[0]["fms_stack"] == "tags.Stack"
    return composes[0]


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory, compose: dict[str, str]) -> dict[str, dict[str, Any]]:
    """host -> its rendered identity, after site_secrets ran for every host's site."""
    tmp = tmp_path_factory.mktemp("site-identity")
    inv = tmp / "inventory"
    inv.mkdir()
    local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    hosts = {name: _ec2_host(name, tags, n) for n, (name, tags) in enumerate(INSTANCES.items(), start=10)}
    hosts.update(STATIC)
    static = {"all": {"hosts": hosts, "vars": local}}
    (inv / "01-hosts.yml").write_text(yaml.safe_dump(static), encoding="utf-8")
    constructed = {"plugin": "ansible.builtin.constructed", "strict": False, "compose": compose}
    (inv / "02-constructed.yml").write_text(yaml.safe_dump(constructed), encoding="utf-8")
    # inventory-adjacent group_vars: the repository's own, as a site's inventory would have them
    (inv / "group_vars").symlink_to(ANSIBLE_DIR / "group_vars")
    playbook = tmp / "identity.yml"  # playbook_dir = tmp: the default fms_secrets_dir lands under it
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    results = task_results("-i", str(inv), str(playbook), task="Site identity")
    rendered = {host: result["msg"] for host, result in results.items()}
    assert set(rendered) == set(INSTANCES) | set(STATIC)
    for identity in rendered.values():
        assert Path(identity["fms_secrets_dir"]) == tmp / "secrets" / identity["fms_site"]
    return rendered


def _ca_subject(secrets_dir: Path) -> str:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((secrets_dir / "pki" / "ca.crt").read_bytes())
    return cert.subject.rfc4514_string()


def test_each_stack_is_its_own_site(sites: dict[str, dict[str, Any]]) -> None:
    assert {h: (s["fms_environment"], s["fms_stack_role"], s["fms_site"]) for h, s in sites.items()} == {
        "prod-primary-kafka-1": ("production", "primary", "production-primary"),
        "prod-dr-kafka-1": ("production", "dr", "production-dr"),
        "lab-dr-kafka-1": ("lab", "dr", "lab-dr"),
        "static-kafka-1": ("staging", "primary", "staging-primary"),
    }
    # production rules follow platform.yml's environments (staging is held to them)
    assert {h: str(s["fms_production"]) for h, s in sites.items()} == {
        "prod-primary-kafka-1": "True",
        "prod-dr-kafka-1": "True",
        "lab-dr-kafka-1": "False",
        "static-kafka-1": "True",
    }


def test_the_site_role_comes_from_the_stack(sites: dict[str, dict[str, Any]]) -> None:
    """platform.yml stacks.<stack>.role: primary active, DR a standby (its pipeline installed, stopped)."""
    assert {h: s["fms_site_role"] for h, s in sites.items()} == {
        "prod-primary-kafka-1": "active",
        "prod-dr-kafka-1": "standby",
        "lab-dr-kafka-1": "standby",
        "static-kafka-1": "active",
    }


def test_primary_and_dr_share_no_secret_and_no_ca(sites: dict[str, dict[str, Any]]) -> None:
    """Same environment, two stacks: two secrets directories, two CAs, two sets of passwords and ids."""
    primary, dr = (Path(sites[h]["fms_secrets_dir"]) for h in ("prod-primary-kafka-1", "prod-dr-kafka-1"))
    assert primary != dr
    assert _ca_subject(primary) != _ca_subject(dr)
    assert "CN=FMS production-primary internal CA" in _ca_subject(primary)
    assert "CN=FMS production-dr internal CA" in _ca_subject(dr)
    assert (primary / "pki" / "ca.key").read_bytes() != (dr / "pki" / "ca.key").read_bytes()
    for secret in ("kafka/cluster.id", "kafka/keystore.password", "kafka/scram-admin.password", SPARK_SECRET):
        assert (primary / secret).read_text() != (dr / secret).read_text(), secret

"""Spark's web UIs (roles/spark spark-defaults.conf): no kill links, ACLs on, for the platform's users.

spark-defaults.conf is read by the master, the workers, the history server and every
driver the platform starts (the pipeline's units run spark-submit with SPARK_CONF_DIR
/etc/spark), so the settings rendered here reach every UI. Rendered by Ansible itself
(connection local) with the role defaults and the repository's group_vars; testinfra
(tests/infra/test_spark.py) checks the same on the hosts and in a running driver.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_support import ANSIBLE_DIR, BIN, ansible_env

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "spark"

PLAYBOOK = """
- name: Render spark-defaults.conf
  hosts: spark_master
  gather_facts: false
  vars_files:
    - {defaults}
  tasks:
    - name: Render
      ansible.builtin.template:
        src: {template}
        dest: "{{{{ render_dir }}}}/spark-defaults.conf"
        mode: "0600"
"""

GROUPS = ("hdfs_namenode", "hdfs_datanode", "spark_master", "spark_worker")


def _render(tmp: Path, *extra: str) -> dict[str, str]:
    inv = tmp / "inventory"
    inv.mkdir()
    hosts = {g: {"hosts": {g.replace("_", "-") + "-1": {"ansible_host": "192.0.2.1"}}} for g in GROUPS}
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": hosts}}), encoding="utf-8")
    (inv / "group_vars").symlink_to(ANSIBLE_DIR / "group_vars")
    playbook = tmp / "render.yml"
    playbook.write_text(
        PLAYBOOK.format(
            defaults=ROLE / "defaults" / "main.yml", template=ROLE / "templates" / "spark-defaults.conf.j2"
        ),
        encoding="utf-8",
    )
    proc = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            *("-i", str(inv / "hosts.yml"), str(playbook)),
            *("-e", f"render_dir={tmp}"),
            *("-e", "ansible_connection=local", "-e", f"ansible_python_interpreter={sys.executable}"),
            # what the role's facts and the secrets play would provide on a real run
            *("-e", "spark_auth_secret=static-test-secret", "-e", "spark_effective_hdfs_replication=1"),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=ansible_env(),
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    conf = {}
    for line in (tmp / "spark-defaults.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            assert key not in conf, f"{key} is set twice"
            conf[key] = value.strip()
    return conf


@pytest.fixture(scope="module")
def defaults_conf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _render(tmp_path_factory.mktemp("spark-defaults"))


def test_kill_links_are_off(defaults_conf: dict[str, str]) -> None:
    assert defaults_conf["spark.ui.killEnabled"] == "false"


def test_acls_are_on_for_the_platforms_user_and_group(defaults_conf: dict[str, str]) -> None:
    spark = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert spark["spark_user"] == spark["spark_group"] == "spark"  # daemons and pipeline drivers run as spark
    assert defaults_conf["spark.acls.enable"] == "true"
    assert defaults_conf["spark.history.ui.acls.enable"] == "true"
    assert defaults_conf["spark.admin.acls"].split(",") == ["spark"]
    assert defaults_conf["spark.history.ui.admin.acls"].split(",") == ["spark"]
    assert defaults_conf["spark.ui.view.acls.groups"].split(",") == ["spark"]


def test_no_empty_acl_and_no_authentication_filter_by_default(defaults_conf: dict[str, str]) -> None:
    """Empty lists leave their key out; without a spark.ui.filters filter the UIs stay readable
    anonymously (Prometheus scrapes /metrics, the cluster gate and the tests read /json and /api/v1)."""
    assert all(value for value in defaults_conf.values()), defaults_conf
    assert "spark.ui.filters" not in defaults_conf


def test_site_overrides_render(tmp_path: Path) -> None:
    conf = _render(
        tmp_path,
        "-e",
        '{"spark_admin_acls": ["spark", "ops"], "spark_admin_acls_groups": ["fms-admins"], '
        '"spark_view_acls": ["prometheus"], "spark_ui_kill_enabled": true}',
    )
    assert conf["spark.admin.acls"] == "spark,ops"
    assert conf["spark.admin.acls.groups"] == conf["spark.history.ui.admin.acls.groups"] == "fms-admins"
    assert conf["spark.ui.view.acls"] == "prometheus"
    assert conf["spark.ui.killEnabled"] == "true"

#!/usr/bin/python
# Ansible module layout: DOCUMENTATION/EXAMPLES/RETURN precede the imports.
# ruff: noqa: E402
"""Idempotent HDFS directories (owner, group, mode) with one listing call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hdfs_dirs
short_description: Ensure HDFS directories exist with the given owner, group and mode
description:
  - Lists all wanted paths with one C(hdfs dfs -ls -d) call, then creates, chowns and chmods only
    what differs.
  - Runs the HDFS CLI as the HDFS superuser (C(run_as)) through runuser.
  - Supports check mode.
options:
  hdfs_bin:
    description: Path of the C(hdfs) launcher.
    type: path
    required: true
  conf_dir:
    description: Hadoop configuration directory.
    type: path
    required: true
  run_as:
    description: Local user the CLI runs as (the HDFS superuser, normally hdfs).
    type: str
    default: hdfs
  java_home:
    description: JAVA_HOME for the CLI.
    type: path
  directories:
    description: Directories to ensure.
    type: list
    elements: dict
    required: true
    suboptions:
      path: {type: str, required: true, description: Absolute HDFS path.}
      owner: {type: str, required: true, description: Owner.}
      group: {type: str, required: true, description: Group.}
      mode: {type: str, required: true, description: Octal mode such as 0755 or 1777.}
author: FMS Platform maintainers
"""

EXAMPLES = r"""
- name: Pipeline directories
  hdfs_dirs:
    hdfs_bin: /opt/hadoop/bin/hdfs
    conf_dir: /etc/hadoop
    directories:
      - {path: /fms/raw, owner: spark, group: hadoop, mode: "0775"}
"""

RETURN = r"""
actions:
  description: Changes made (or that would be made in check mode).
  type: list
  elements: str
  returned: always
"""

import re

from ansible.module_utils.basic import AnsibleModule

LS_LINE = re.compile(
    r"^(?P<perm>[d-][rwxsStT-]{9})[+]?\s+\S+\s+(?P<owner>\S+)\s+(?P<group>\S+)\s+\d+\s+\S+\s+\S+\s+(?P<path>/.*)$"
)


def perm_to_octal(perm: str) -> str:
    bits = perm[1:]
    value, special = 0, 0
    for i, (r, w, x) in enumerate((bits[0:3], bits[3:6], bits[6:9])):
        digit = (4 if r == "r" else 0) + (2 if w == "w" else 0) + (1 if x in "xst" else 0)
        value = value * 8 + digit
        if i == 2 and x in "tT":
            special |= 1
    return f"{special}{value:03o}"


def norm_mode(mode: str) -> str:
    return f"{int(str(mode), 8):04o}"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "hdfs_bin": {"type": "path", "required": True},
            "conf_dir": {"type": "path", "required": True},
            "run_as": {"type": "str", "default": "hdfs"},
            "java_home": {"type": "path"},
            "directories": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "path": {"type": "str", "required": True},
                    "owner": {"type": "str", "required": True},
                    "group": {"type": "str", "required": True},
                    "mode": {"type": "str", "required": True},
                },
            },
        },
        supports_check_mode=True,
    )
    p = module.params
    env = {"HADOOP_CONF_DIR": p["conf_dir"], "HADOOP_ROOT_LOGGER": "WARN,console"}
    if p["java_home"]:
        env["JAVA_HOME"] = p["java_home"]
    base = ["runuser", "-u", p["run_as"], "--", p["hdfs_bin"], "--config", p["conf_dir"], "dfs"]

    def dfs(*args: str, check: bool = True):
        rc, out, err = module.run_command([*base, *args], environ_update=env)
        if check and rc != 0:
            module.fail_json(msg=f"hdfs dfs {' '.join(args)} failed (rc={rc})", stdout=out, stderr=err)
        return rc, out, err

    wanted = {d["path"].rstrip("/") or "/": d for d in p["directories"]}
    _, out, _ = dfs("-ls", "-d", *wanted, check=False)
    current = {}
    for line in out.splitlines():
        m = LS_LINE.match(line.strip())
        if m:
            current[m.group("path")] = (m.group("owner"), m.group("group"), perm_to_octal(m.group("perm")))

    actions = []
    missing = [path for path in wanted if path not in current]
    if missing:
        actions.append("mkdir " + " ".join(missing))
        if not module.check_mode:
            dfs("-mkdir", "-p", *missing)
    by_owner: dict[str, list[str]] = {}
    by_mode: dict[str, list[str]] = {}
    for path, d in wanted.items():
        owner, group, mode = current.get(path, (None, None, None))
        if (owner, group) != (d["owner"], d["group"]):
            by_owner.setdefault(f"{d['owner']}:{d['group']}", []).append(path)
        if mode != norm_mode(d["mode"]):
            by_mode.setdefault(norm_mode(d["mode"]), []).append(path)
    for og, paths in sorted(by_owner.items()):
        actions.append(f"chown {og} " + " ".join(paths))
        if not module.check_mode:
            dfs("-chown", og, *paths)
    for mode, paths in sorted(by_mode.items()):
        actions.append(f"chmod {mode} " + " ".join(paths))
        if not module.check_mode:
            dfs("-chmod", mode, *paths)
    module.exit_json(changed=bool(actions), actions=actions)


if __name__ == "__main__":
    main()

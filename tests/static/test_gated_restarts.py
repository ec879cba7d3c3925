"""Every restart of Kafka, HDFS or Spark takes one path: health-gated, one node at a time.

The roles' handlers (a changed setting, certificate, unit, JMX agent or version) and
ansible/rolling_restart.yml both hand the nodes to ``tasks/rolling_restart.yml`` of the
role, included once (``run_once``) so that it walks them strictly one after the other;
it restarts each through ``tasks/restart_and_wait.yml`` - the only file that restarts a
unit - which waits for the node and gates on the cluster's health before the next.

Read from the YAML: a bare ``state: restarted`` added to a handler or a playbook, a
``throttle: 1`` handler, or a notification no gated handler listens to fails here.
The behaviour itself (one node at a time, each waited for) is proven against a real
broker in tests/integration/test_kafka_role_modules.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = ("kafka", "hdfs", "spark", "mirrormaker")
RESTART_FILE = "restart_and_wait.yml"
ROLLING_FILE = "rolling_restart.yml"
INCLUDES = ("ansible.builtin.include_tasks", "include_tasks", "ansible.builtin.import_tasks", "import_tasks")
ROLE_INCLUDES = ("ansible.builtin.include_role", "include_role", "ansible.builtin.import_role", "import_role")


def _load(path: Path) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or []


def _tasks(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every task, blocks (block/rescue/always) opened, plays' task lists too."""
    for item in items:
        for section in ("block", "rescue", "always", "pre_tasks", "tasks", "post_tasks", "handlers"):
            if isinstance(item.get(section), list):
                yield from _tasks(item[section])
        if not any(k in item for k in ("block", "hosts", "import_playbook")):
            yield item


def _restarts(task: dict[str, Any]) -> bool:
    """A task that restarts (or reloads) a service, whatever the module."""
    for key, args in task.items():
        if isinstance(args, dict) and args.get("state") in ("restarted", "reloaded"):
            return key.rsplit(".", 1)[-1] in ("systemd_service", "systemd", "service", "sysvinit")
    return False


def _include_target(task: dict[str, Any]) -> str | None:
    for key in INCLUDES:
        if key in task:
            args = task[key]
            return args if isinstance(args, str) else args.get("file")
    return None


def _role_files(role: str) -> list[Path]:
    base = REPO / "roles" / role
    return sorted((base / "tasks").glob("*.yml")) + sorted((base / "handlers").glob("*.yml"))


def _notifications(role: str) -> set[str]:
    found: set[str] = set()
    for path in sorted((REPO / "roles" / role / "tasks").glob("*.yml")):
        for task in _tasks(_load(path)):
            notify = task.get("notify") or []
            found.update([notify] if isinstance(notify, str) else notify)
    return found


@pytest.mark.parametrize("role", ROLES)
def test_only_restart_and_wait_restarts_a_unit(role: str) -> None:
    offenders = [
        f"{path.relative_to(REPO)}: {task.get('name')}"
        for path in _role_files(role)
        if path.name != RESTART_FILE
        for task in _tasks(_load(path))
        if _restarts(task)
    ]
    assert not offenders, f"restarts outside tasks/{RESTART_FILE} (not gated): {offenders}"
    restarts = [t for t in _tasks(_load(REPO / "roles" / role / "tasks" / RESTART_FILE)) if _restarts(t)]
    assert len(restarts) == 1, f"{role}/tasks/{RESTART_FILE} must restart exactly one unit per call"
    assert "delegate_to" in restarts[0], "the restart runs on the node being restarted (delegate_to)"


@pytest.mark.parametrize("role", ROLES)
def test_every_restart_notification_reaches_the_gated_path(role: str) -> None:
    handlers = list(_tasks(_load(REPO / "roles" / role / "handlers" / "main.yml")))
    assert not [h for h in handlers if h.get("throttle")], (
        "throttle does not gate: route through rolling_restart"
    )
    gated = [h for h in handlers if _include_target(h) == f"tasks/{ROLLING_FILE}"]
    assert len(gated) == 1, f"{role}: one handler includes tasks/{ROLLING_FILE}"
    assert gated[0].get("run_once") is True, "included once, so that it walks the nodes one at a time"
    listens = gated[0].get("listen") or []
    listens = {listens} if isinstance(listens, str) else set(listens)
    restart_topics = {n for n in _notifications(role) if n.lower().startswith("restart")}
    assert restart_topics, f"{role}: no restart notification found"
    assert restart_topics <= listens, f"{role}: notified but not gated: {sorted(restart_topics - listens)}"
    names = {h.get("name") for h in handlers}
    assert not restart_topics & names, "a handler named like the topic would run on its own, ungated"


@pytest.mark.parametrize("role", ROLES)
def test_rolling_restart_walks_restart_and_wait_one_node_at_a_time(role: str) -> None:
    tasks = list(_tasks(_load(REPO / "roles" / role / "tasks" / ROLLING_FILE)))
    per_node = [t for t in tasks if _include_target(t) == RESTART_FILE]
    assert len(per_node) == 1 and "loop" in per_node[0], f"{role}: one looped include of {RESTART_FILE}"
    # A dynamic include in a loop runs its files one after the other; throttle, serial or
    # async would not make it any safer and a parallel strategy would break the order.
    assert not {"throttle", "async", "strategy"} & set(per_node[0])


def test_the_rolling_restart_playbook_takes_the_same_path() -> None:
    plays = _load(REPO / "ansible" / "rolling_restart.yml")
    tasks = list(_tasks(plays))
    assert not [t.get("name") for t in tasks if _restarts(t)], "no restart of its own: use the roles' path"
    routed = {}
    for task in tasks:
        for key in ROLE_INCLUDES:
            if key in task and task[key].get("tasks_from") == ROLLING_FILE.removesuffix(".yml"):
                routed[task[key]["name"]] = task
    assert set(routed) == set(ROLES), routed
    assert all(task.get("run_once") is True for task in routed.values())
    for play in plays:
        assert "serial" not in play, "the role's rolling_restart serialises; serial would re-run it per batch"

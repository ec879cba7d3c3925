"""Standby sites (issue 13): fms_site_role decides whether the pipeline role starts its services.

A standby (platform.yml stacks.<stack>.role, the DR stack) converges Kafka, HDFS,
Spark and monitoring as usual and installs the pipeline's collector, stream and
batch timers without starting or enabling them; ansible/promote.yml starts them
through the role's own service tasks.

No host is needed: the conditions of every task and handler of roles/fms_pipeline
that starts, enables or restarts a pipeline unit are evaluated by Ansible itself
(connection local) with the role's own vars, for an active site, a standby and a
promoted standby. The structural checks make sure no such task escapes the
evaluation (a new start task without the site-role condition fails here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_support import ANSIBLE_DIR, REPO, task_results

ROLE = REPO / "roles" / "fms_pipeline"
SYSTEMD = ("ansible.builtin.systemd_service", "ansible.builtin.systemd", "systemd_service", "systemd")
# What makes a unit run: these states, or enabling it.
RUNNING_STATES = {"started", "restarted", "reloaded"}


def _tasks(path: Path) -> list[dict[str, Any]]:
    """Every task of a task file, blocks flattened."""
    out: list[dict[str, Any]] = []

    def walk(items: list[dict[str, Any]]) -> None:
        for task in items or []:
            for key in ("block", "rescue", "always"):
                walk(task.get(key, []))
            out.append(task)

    walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    return out


def _systemd_args(task: dict[str, Any]) -> dict[str, Any] | None:
    for key in SYSTEMD:
        if key in task:
            return task[key]
    return None


def _starters() -> dict[str, list[str]]:
    """'file: task name' -> its `when` conditions, for every task that starts, enables or restarts a unit."""
    starters: dict[str, list[str]] = {}
    for path in [*sorted((ROLE / "tasks").glob("*.yml")), ROLE / "handlers" / "main.yml"]:
        for task in _tasks(path):
            args = _systemd_args(task)
            if args is None or not (args.get("state") in RUNNING_STATES or args.get("enabled") is True):
                continue
            when = task.get("when", [])
            starters[f"{path.relative_to(ROLE)}: {task['name']}"] = [when] if isinstance(when, str) else when
    return starters


def test_every_task_that_runs_a_pipeline_unit_asks_the_site_role() -> None:
    starters = _starters()
    # service.yml: collector, stream, timers; handlers: their restarts (remove_units only stops)
    assert len(starters) >= 6, starters
    unguarded = [name for name, when in starters.items() if not any("fms_pipeline_start" in w for w in when)]
    assert not unguarded, f"these start pipeline units on a standby site too: {unguarded}"


def test_promote_runs_the_roles_own_service_tasks() -> None:
    """ansible/promote.yml -> tasks_from: promote -> the service tasks an active site runs, not a copy."""
    plays = yaml.safe_load((ANSIBLE_DIR / "promote.yml").read_text(encoding="utf-8"))
    includes = [
        t["ansible.builtin.include_role"]
        for p in plays
        for t in p.get("tasks", [])
        if "ansible.builtin.include_role" in t
    ]
    assert {"name": "fms_pipeline", "tasks_from": "promote"} in includes
    assert {"name": "fms_pipeline", "tasks_from": "preflight"} in includes
    assert plays[0]["gather_facts"] is False and "preflight" in plays[0]["tags"]
    promote = _tasks(ROLE / "tasks" / "promote.yml")
    assert [t.get("ansible.builtin.import_tasks") for t in promote] == ["facts.yml", "service.yml"]
    assert promote[1]["vars"] == {"fms_pipeline_promote": True}
    assert all(_systemd_args(t) is None for t in promote), "promote.yml must not copy the service tasks"


def test_demote_stops_the_writers_first_and_then_mirrors_the_peer() -> None:
    """ansible/demote.yml (failback): collectors stop before the stream, MirrorMaker 2 starts last, and
    every play treats the stack as a standby; the role's demote tasks only stop and disable units."""
    plays = yaml.safe_load((ANSIBLE_DIR / "demote.yml").read_text(encoding="utf-8"))
    imported, *own = plays
    assert imported["ansible.builtin.import_playbook"] == "kafka_mirror_source.yml"
    assert all(p["vars"]["fms_site_role"] == "standby" for p in plays), "a demote.yml play is not a standby"
    assert own[0]["gather_facts"] is False and "preflight" in own[0]["tags"]
    order = [p["hosts"] for p in own[1:]]
    assert order == ["collector", "spark_master", "kafka_mirror"], order
    assert own[-1]["roles"] == [{"role": "mirrormaker"}]
    demote = _tasks(ROLE / "tasks" / "demote.yml")
    units = [_systemd_args(t) for t in demote if _systemd_args(t) is not None]
    assert units and all(u["state"] == "stopped" and u["enabled"] is False for u in units), units
    assert [u["name"] for u in units] == ["fms-collector", "{{ item }}.timer", "fms-stream"]


CASES = {
    "active": {"fms_site_role": "active"},
    "standby": {"fms_site_role": "standby"},
    "promoted": {"fms_site_role": "standby", "fms_pipeline_promote": True},
}


# A Spark master that is also a collector, every job on: every start task has its unit.
HOST_VARS = {
    "fms_pipeline_is_collector": True,
    "fms_pipeline_is_spark_master": True,
    "fms_pipeline_collector_active": True,
    "fms_pipeline_stream_active": True,
    "fms_pipeline_wait_for_metrics": True,
    "fms_pipeline_hourly_enabled": True,
    "fms_pipeline_archive_enabled": True,
}


def _debug_per_case(tmp: Path, name: str, msg: Any) -> dict[str, Any]:
    """case -> what Ansible renders `msg` to with the role's own defaults and vars/main.yml."""
    tasks = [
        {
            "name": "Load the role's defaults",
            "ansible.builtin.include_vars": str(ROLE / "defaults" / "main.yml"),
        },
        {"name": "Load the role's vars", "ansible.builtin.include_vars": str(ROLE / "vars" / "main.yml")},
        {"name": name, "ansible.builtin.debug": {"msg": msg}},
    ]
    out: dict[str, Any] = {}
    for case, extra in CASES.items():
        playbook = tmp / f"{case}.yml"
        play = {"name": case, "hosts": "localhost", "gather_facts": False, "tasks": tasks}
        playbook.write_text(yaml.safe_dump([play]), encoding="utf-8")
        variables = tmp / f"{case}.json"
        variables.write_text(json.dumps({**HOST_VARS, **extra}), encoding="utf-8")
        results = task_results(
            "-i", "localhost,", "-c", "local", str(playbook), "-e", f"@{variables}", task=name
        )
        out[case] = results["localhost"]["msg"]
    return out


@pytest.fixture(scope="module")
def decisions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bool]]:
    """case -> {task: would it run}, each `when` evaluated by Ansible with the role's own vars/main.yml."""
    starters = _starters()
    condition = {name: " and ".join(f"({w})" for w in when) or "true" for name, when in starters.items()}
    msg = {name: f"{{{{ ({cond}) | bool }}}}" for name, cond in condition.items()}
    rendered = _debug_per_case(tmp_path_factory.mktemp("site-role"), "Decide", msg)
    return {
        case: {name: value in (True, "True") for name, value in decided.items()}
        for case, decided in rendered.items()
    }


def test_an_active_site_starts_every_pipeline_unit(decisions: dict[str, dict[str, bool]]) -> None:
    assert decisions["active"] and all(decisions["active"].values()), decisions["active"]


def test_a_standby_site_starts_no_pipeline_unit(decisions: dict[str, dict[str, bool]]) -> None:
    started = [name for name, runs in decisions["standby"].items() if runs]
    assert not started, f"a standby would start: {started}"


def test_a_promoted_standby_starts_what_an_active_site_does(decisions: dict[str, dict[str, bool]]) -> None:
    assert decisions["promoted"] == decisions["active"]


EXPECTED_TASK = "Tell monitoring whether this host's pipeline services are meant to run"


@pytest.fixture(scope="module")
def expected_textfiles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """case -> the node_exporter textfile the role writes (its own template, rendered by Ansible)."""
    task = next(t for t in _tasks(ROLE / "tasks" / "expected_running.yml") if t.get("name") == EXPECTED_TASK)
    content = task["ansible.builtin.copy"]["content"]
    return _debug_per_case(tmp_path_factory.mktemp("site-role-textfile"), "Render", content)


@pytest.mark.parametrize(("case", "value"), [("active", 1), ("standby", 0), ("promoted", 1)])
def test_monitoring_learns_whether_the_pipeline_is_meant_to_run(
    expected_textfiles, case: str, value: int
) -> None:
    """The alert rules page on a stopped stream only where fms_pipeline_expected_running is 1
    (roles/prometheus/files/rules): a standby says 0 for every service it keeps stopped."""
    samples = [line for line in expected_textfiles[case].splitlines() if line and not line.startswith("#")]
    assert samples == [
        f'fms_pipeline_expected_running{{service="{service}"}} {value}'
        for service in ("collector", "stream", "batch")
    ], expected_textfiles[case]

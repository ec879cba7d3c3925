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
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_support import ANSIBLE_DIR, BIN, REPO, ansible_env, task_results

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
    assert order == ["collector", "spark_master", "kafka_mirror", "all"], order  # all: the site-role record
    assert own[-2]["roles"] == [{"role": "mirrormaker"}]
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


# ---------------------------------------------------------------------------- the recorded site role
# promote.yml and demote.yml change a stack's role without platform.yml. Each records the role it
# leaves on every host (a local fact); site.yml stops before changing any host whose record differs
# from the role it converges it as, rather than undo the promote or demote (two active sites).

COMMON = REPO / "roles" / "common"
RECORD = {"name": "common", "tasks_from": "site_role_record"}
CHECK = {"name": "common", "tasks_from": "site_role_check"}


def _includes(play: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(include_role arguments, the task's vars) of every include_role of a play."""
    tasks = [*play.get("pre_tasks", []), *play.get("tasks", [])]
    return [
        (t["ansible.builtin.include_role"], t.get("vars", {}))
        for t in tasks
        if "ansible.builtin.include_role" in t
    ]


def _changes_hosts(play: dict[str, Any]) -> bool:
    """A play that may change a host: anything but a connection-less preflight or the site-role check."""
    if "ansible.builtin.import_playbook" in play:
        return play["ansible.builtin.import_playbook"] not in {
            "kafka_mirror_source.yml",
            "kafka_mirror_group.yml",
        }
    return not play["name"].startswith("Preflight - ") and not play["name"].startswith("Promote preflight")


@pytest.mark.parametrize(("playbook", "role"), [("promote.yml", "active"), ("demote.yml", "standby")])
def test_promote_and_demote_record_the_role_they_leave_last(playbook: str, role: str) -> None:
    plays = yaml.safe_load((ANSIBLE_DIR / playbook).read_text(encoding="utf-8"))
    recording = [p for p in plays if any(args == RECORD for args, _ in _includes(p))]
    assert len(recording) == 1, f"{playbook}: no play (or several) records the site role"
    play = recording[0]
    assert play["hosts"] == "all", f"{playbook} records the role on {play['hosts']}, not on every host"
    [(_, record_vars)] = [(a, v) for a, v in _includes(play) if a == RECORD]
    assert record_vars == {
        "common_site_role_record": role,
        "common_site_role_set_by": playbook,
        "common_site_role_replace": True,
    }, record_vars
    # The last play: what the run leaves, once every stop and start has passed (and none delayed).
    assert plays[-1] is play, f"{playbook}: the role is recorded before the run is done"


def test_site_checks_the_recorded_role_before_any_play_changes_a_host() -> None:
    plays = yaml.safe_load((ANSIBLE_DIR / "site.yml").read_text(encoding="utf-8"))
    checks = [i for i, p in enumerate(plays) if any(args == CHECK for args, _ in _includes(p))]
    assert len(checks) == 1, "site.yml has no (or several) site-role checks"
    check = plays[checks[0]]
    assert check["hosts"] == "all" and check["any_errors_fatal"] is True, check
    assert "always" in check["tags"], "a --tags run (e.g. --tags pipeline) would skip the check"
    assert [
        p.get("name", p.get("ansible.builtin.import_playbook"))
        for p in plays[: checks[0]]
        if _changes_hosts(p)
    ] == []
    # Only reads: the check's task files change nothing (setup, set_fact, assert).
    modules = {
        key
        for f in ("site_role_check.yml", "site_role_read.yml")
        for task in _tasks(COMMON / "tasks" / f)
        for key in task
        if key.startswith("ansible.builtin.")
    }
    assert modules == {
        "ansible.builtin.import_tasks",
        "ansible.builtin.setup",
        "ansible.builtin.set_fact",
        "ansible.builtin.assert",
    }, modules
    # The first play after it that changes hosts writes the record of a host that has none.
    first = next(p for p in plays[checks[0] + 1 :] if _changes_hosts(p))
    assert first["hosts"] == "all" and (RECORD, {}) in [(a, v) for a, v in _includes(first)], first["name"]
    record_defaults = yaml.safe_load((COMMON / "defaults" / "main.yml").read_text(encoding="utf-8"))
    assert record_defaults["common_site_role_replace"] is False, (
        "site.yml must not overwrite a differing record"
    )
    assert record_defaults["common_site_role_record"] == "{{ fms_site_role }}"


SITE_ROLE_PLAYBOOK = """
- name: Site role record and check
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Write
      ansible.builtin.include_role:
        name: common
        tasks_from: site_role_record
      when: write | default(false) | bool
    - name: Check
      ansible.builtin.include_role:
        name: common
        tasks_from: site_role_check
      when: check | default(false) | bool
"""


def _site_role_run(tmp: Path, facts: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The common role's site-role task files, run for real on localhost against a facts dir in tmp."""
    playbook = tmp / "site_role.yml"
    playbook.write_text(SITE_ROLE_PLAYBOOK, encoding="utf-8")
    # fms_site_role as site.yml derives it (platform.yml stacks.<fms_stack_role>.role).
    if not (tmp / "group_vars").exists():
        (tmp / "group_vars").symlink_to(ANSIBLE_DIR / "group_vars")
    return subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            *("-i", "localhost,", "-c", "local", str(playbook)),
            *("-e", f"common_site_role_fact_dir={facts}", "-e", "fms_stack_role=dr"),
            *("-e", "ansible_become=false"),  # the tasks become root on a host; here tmp is ours
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=ansible_env(ANSIBLE_PYTHON_INTERPRETER=sys.executable),
        timeout=600,
        check=False,
    )


def _record(facts: Path) -> dict[str, Any]:
    return json.loads((facts / "fms_site.fact").read_text(encoding="utf-8"))


def test_site_role_record_and_check_on_a_real_host(tmp_path: Path) -> None:
    """Missing -> written (and the check passes); the same role -> kept; a promote -> replaced; then
    site.yml's check fails as platform.yml says standby and passes with an explicit -e fms_site_role."""
    facts = tmp_path / "facts.d"
    # First converge (site.yml): no record, the check passes, the record is written with the role.
    first = _site_role_run(tmp_path, facts, "-e", "check=true write=true fms_site_role=standby")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    written = _record(facts)
    assert written["role"] == "standby" and written["set_by"] == "site.yml", written
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", written["time"]), written
    # Recorded again by promote.yml: replaced with active; a second promote keeps the first's time.
    promote = (
        "-e",
        "write=true common_site_role_record=active common_site_role_set_by=promote.yml",
        "-e",
        "common_site_role_replace=true fms_site_role=standby",
    )
    promoted = _site_role_run(tmp_path, facts, *promote)
    assert promoted.returncode == 0, promoted.stdout[-3000:] + promoted.stderr[-2000:]
    record = _record(facts)
    assert record["role"] == "active" and record["set_by"] == "promote.yml", record
    again = _site_role_run(tmp_path, facts, *promote)
    assert again.returncode == 0 and _record(facts) == record, again.stdout[-3000:]
    assert re.search(r"localhost\s+:.*changed=0", again.stdout), again.stdout[-2000:]
    # site.yml's own write never replaces a differing record.
    keep = _site_role_run(tmp_path, facts, "-e", "write=true fms_site_role=standby")
    assert keep.returncode == 0 and _record(facts) == record, keep.stdout[-3000:]
    # platform.yml still says standby for dr: the check stops and says what to do.
    mismatch = _site_role_run(tmp_path, facts, "-e", "check=true")
    out = " ".join((mismatch.stdout + mismatch.stderr).split())
    assert mismatch.returncode != 0, out[-3000:]
    for needed in (
        "localhost (stack dr) was last made ACTIVE by promote.yml at " + record["time"],
        "would converge it as STANDBY: platform.yml stacks.dr.role says standby.",
        "start MirrorMaker 2 from the peer stack",
        "set stacks.dr.role: active",
        "run ansible/demote.yml",
        "-e fms_site_role=active",
        "docs/dr-runbook.md",
    ):
        assert needed in out, f"{needed!r} not in the message: {out[-3000:]}"
    # The operator's explicit -e fms_site_role wins the comparison as it wins the run.
    override = _site_role_run(tmp_path, facts, "-e", "check=true fms_site_role=active")
    assert override.returncode == 0, override.stdout[-3000:]
    # A demoted primary (record standby) that platform.yml still calls active: the other way out.
    demote = "write=true common_site_role_record=standby common_site_role_set_by=demote.yml"
    assert (
        _site_role_run(tmp_path, facts, "-e", demote, "-e", "common_site_role_replace=true").returncode == 0
    )
    primary = _site_role_run(tmp_path, facts, "-e", "check=true fms_stack_role=primary")
    out = " ".join((primary.stdout + primary.stderr).split())
    assert primary.returncode != 0, out[-3000:]
    for needed in (
        "was last made STANDBY by demote.yml",
        "would converge it as ACTIVE: platform.yml stacks.primary.role says active.",
        "start this stack's pipeline",
        "set stacks.primary.role: standby",
        "run ansible/promote.yml",
        "-e fms_site_role=standby",
    ):
        assert needed in out, f"{needed!r} not in the message: {out[-3000:]}"

"""fms-ansible-profile: seconds per play, role and task from a profile_tasks log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fms_tools.fmsops import ansible_profile

# The shape ansible.cfg's callbacks write: a banner before each task header, carrying the
# duration of the task that just ended; skipped tasks print a banner and no header.
LOG = """\
PLAY [Preflight - validate inventory] ******************************************
Monday 07 December 2026  06:29:41 +0000 (0:00:00.050)       0:00:00.050 *******

TASK [common : Check the common role's variables] ******************************
ok: [h1]
Monday 07 December 2026  06:29:43 +0000 (0:00:02.500)       0:00:02.550 *******
Monday 07 December 2026  06:29:43 +0000 (0:00:00.250)       0:00:02.800 *******

PLAY [Kafka KRaft controllers and brokers] *************************************
Monday 07 December 2026  06:29:43 +0000 (0:00:00.100)       0:00:02.900 *******

TASK [Gathering Facts] *********************************************************
ok: [h1]
Monday 07 December 2026  06:30:47 +0000 (0:01:04.000)       0:01:06.900 *******

TASK [kafka : Ensure SCRAM users, topics and ACLs] *****************************
ok: [h1]
Monday 07 December 2026  06:31:10 +0000 (0:00:23.000)       0:01:29.900 *******

RUNNING HANDLER [kafka : Restart the marked Kafka nodes one at a time] *********
changed: [h1]
Monday 07 December 2026  06:32:10 +0000 (0:01:00.000)       0:02:29.900 *******

PLAYBOOK RECAP *****************************************************************
Playbook run took 0 days, 0 hours, 2 minutes, 30 seconds
"""


def test_durations_go_to_the_task_the_banner_follows() -> None:
    profile = ansible_profile.parse(LOG.splitlines())
    assert profile.steps == 7
    assert profile.wall_s == 150.0
    assert profile.tasks[("Kafka KRaft controllers and brokers", "Gathering Facts")] == pytest.approx(64.0)
    # the skipped task's banner (no header of its own) counts for the task above it
    checked = ("Preflight - validate inventory", "common : Check the common role's variables")
    assert profile.tasks[checked] == pytest.approx(2.75)
    assert profile.plays["Kafka KRaft controllers and brokers"] == pytest.approx(0.1 + 64 + 23 + 60)
    assert profile.roles["kafka"] == pytest.approx(83.0)
    assert profile.roles["(play)"] == pytest.approx(64.0 + 0.05 + 0.1)  # facts and the plays' starts
    assert profile.total_s == pytest.approx(149.9)
    assert [t for _, t, _ in profile.slowest(2)] == [
        "Gathering Facts",
        "kafka : Restart the marked Kafka nodes one at a time",
    ]


def test_cli_prints_tables_then_json_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "ansible-primary-site.log"
    log.write_text(LOG)
    png = tmp_path / "profile.png"
    assert ansible_profile.main([str(log), "--top", "3", "--plot", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    summary = json.loads(out[-1])
    assert summary["steps"] == 7 and summary["wall_s"] == 150.0
    assert next(iter(summary["plays"])) == "Kafka KRaft controllers and brokers"
    assert len(summary["slowest"]) == 3
    assert png.stat().st_size > 1000


def test_a_log_without_banners_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "plain.log"
    log.write_text("PLAY [x] ***\nTASK [y] ***\nok: [h]\n")
    assert ansible_profile.main([str(log)]) == 2
    assert "no profile_tasks banners" in capsys.readouterr().err

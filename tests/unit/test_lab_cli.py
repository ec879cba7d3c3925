"""fms-lab passes the arguments it does not know on to ansible-playbook / pytest, in order."""

from __future__ import annotations

from pathlib import Path

import pytest
from fms_tools.lab import cli, converge

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "env", "playbook", "passed_on"),
    [
        (
            ["converge", "--playbook", "pipeline", "-e", "fms_pipeline_stream_trigger='2 seconds'"],
            "primary",
            "pipeline",
            ["-e", "fms_pipeline_stream_trigger='2 seconds'"],
        ),
        (["converge", "-e", "x=1", "-l", "h1", "--env", "dr"], "dr", "site", ["-e", "x=1", "-l", "h1"]),
        (["converge", "--", "-e", "x=1", "--env", "dr"], "primary", "site", ["-e", "x=1", "--env", "dr"]),
        (["converge"], "primary", "site", []),
    ],
)
def test_converge_passes_unknown_arguments_to_ansible(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: str, playbook: str, passed_on: list[str]
) -> None:
    calls: list[tuple[str, str, list[str]]] = []

    def fake_run(env_name: str, pb: str, extra: list[str]) -> None:
        calls.append((env_name, pb, list(extra)))
        raise converge.ConvergeError("not converging in a unit test")

    monkeypatch.setattr(converge, "run_playbook", fake_run)
    assert cli.main(argv) == 1
    assert calls == [(env, playbook, passed_on)]


def test_other_commands_refuse_unknown_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["status", "--bogus"])
    assert e.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("cores", "available_mib", "profile", "why"),
    [
        (8, 32 * 1024, "lab", "8 cores"),
        (4, 10 * 1024, "lab", "4 cores"),
        (2, 22 * 1024, "minimal", "not lab: 2 cores < 4"),
        (16, 8 * 1024, "minimal", "8192 MiB available < 10240"),
        (1, 1024, "minimal", "not lab: 1 cores < 4, 1024 MiB available < 10240"),
    ],
)
def test_auto_profile_fits_the_machine(cores: int, available_mib: int, profile: str, why: str) -> None:
    """`make lab` (PROFILE=auto) on a 2-core machine takes the 8-host profile and says why."""
    from fms_tools.lab import envs

    picked, reason = envs.pick_profile(cores, available_mib)
    assert picked.name == profile
    assert why in reason


def test_status_probe_is_patient_with_a_busy_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host whose ssh answers only on the second, longer attempt is slow, not unreachable."""
    import subprocess

    from fms_tools.lab import hosts

    answers = iter(
        [
            subprocess.CompletedProcess([], 124, "", "timed out"),
            subprocess.CompletedProcess([], 0, "h1\nrunning\n", ""),
        ]
    )
    limits: list[tuple[float, int | None]] = []

    def fake_ssh_run(target: str, command: str, timeout_s: float = 30.0, *, connect_timeout_s=None):
        limits.append((timeout_s, connect_timeout_s))
        return next(answers)

    monkeypatch.setattr(hosts, "ssh_run", fake_ssh_run)
    ssh, system = hosts.probe({"name": "h1", "ip": "198.18.0.9"})  # type: ignore[typeddict-item]
    assert ssh.startswith("ok (slow:") and system == "running"
    assert limits[1][0] > limits[0][0] and limits[1][1] and limits[1][1] > 3

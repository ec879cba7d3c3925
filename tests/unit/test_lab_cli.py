"""scripts/lab.py passes the arguments it does not know on to ansible-playbook / pytest, in order."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from lab import converge

REPO = Path(__file__).resolve().parents[2]


def lab_cli() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lab_cli", REPO / "scripts" / "lab.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    assert lab_cli().main(argv) == 1
    assert calls == [(env, playbook, passed_on)]


def test_other_commands_refuse_unknown_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        lab_cli().main(["status", "--bogus"])
    assert e.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err

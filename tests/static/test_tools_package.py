"""scripts/ is one installable package (fms_tools): its commands resolve, the Makefile runs only
declared ones, the bootstrap installs it, and no tool edits the import path or imports the tests."""

from __future__ import annotations

import ast
import importlib
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = tomllib.loads((REPO / "scripts" / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("command", sorted(SCRIPTS))
def test_every_console_script_resolves_to_a_function(command: str) -> None:
    module, _, attr = SCRIPTS[command].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_the_makefile_runs_declared_commands() -> None:
    makefile = (REPO / "Makefile").read_text()
    used = set(re.findall(r"\$\(VENV\)/bin/(fms-[a-z-]+)", makefile))
    assert "fms-lab" in used and "fms-bench" in used and "fms-moduledocs" in used
    assert used <= set(SCRIPTS), f"not in scripts/pyproject.toml: {sorted(used - set(SCRIPTS))}"


def test_the_bootstrap_installs_both_packages_and_keys_the_venv_on_them() -> None:
    script = (REPO / "scripts" / "bootstrap" / "python_env.sh").read_text()
    hashed = script[script.index("hash=") : script.index("venv=")]
    for package in ("jobs", "scripts"):
        assert f'"$repo/{package}/pyproject.toml"' in hashed
    assert re.search(r"for package in jobs scripts; do", script)
    assert '-e "$repo/$package"' in script


def python_files() -> list[Path]:
    return sorted(p for d in ("scripts", "jobs") for p in (REPO / d).rglob("*.py"))


def test_no_tool_or_job_touches_the_import_path() -> None:
    offenders = [str(p.relative_to(REPO)) for p in python_files() if "sys.path" in p.read_text()]
    assert not offenders


def test_no_tool_imports_the_tests() -> None:
    offenders = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            offenders += [
                f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in {"tests", "support"}
            ]
    assert not offenders

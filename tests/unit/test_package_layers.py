"""The rooms of fms_jobs depend on each other one way only.

A cycle between two subpackages (as ``quality`` <-> the old ``config`` rules package had) means
neither can be read, tested or shipped without the other; the import graph must stay a DAG.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import fms_jobs

PACKAGE = Path(fms_jobs.__file__).parent


def _room(module: str) -> str:
    """fms_jobs.quality.rules -> quality; fms_jobs.settings -> settings."""
    return module.split(".")[1]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
    return {m for m in found if m.startswith("fms_jobs.")}


def room_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue
        room = _room(_module_name(path))
        graph[room].update(_room(m) for m in _imports(path) if _room(m) != room)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [*path, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_two_rooms_of_fms_jobs_import_each_other() -> None:
    graph = room_graph()
    assert graph, "no imports found: the scan is broken"
    assert "quality" in graph["streaming"]  # the scan sees a known edge
    assert _cycle(graph) is None, f"import cycle between fms_jobs rooms: {' -> '.join(_cycle(graph) or [])}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"quality": {"config"}, "config": {"quality"}}) == ["config", "quality", "config"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


def test_the_quality_rules_have_one_home() -> None:
    """The rulebook lives in quality/, which it serves; the old config/ package must not come back."""
    assert not (PACKAGE / "config").exists()
    assert (PACKAGE / "quality" / "rulebook.py").is_file()
    assert (PACKAGE / "quality" / "quality_rules.yaml").is_file()

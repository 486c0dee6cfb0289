"""The split packages import downwards only: no module of ``serving/``, ``signflow/packaging/`` or
``signflow/stage_cli.py`` is part of an import cycle (imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

ROOTS = ("serving", "signflow")
CHECKED = ("serving.", "signflow.packaging", "signflow.stage_cli")


def _modules() -> dict[str, Path]:
    found = {}
    for root in ROOTS:
        for path in (REPO_ROOT / root).rglob("*.py"):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _edges(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports (``from a import b``: ``a.b`` when that is a module, else ``a``)."""
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                edges.add(name if name in modules else node.module)
    return {edge for edge in edges if edge in modules}


def _cycle_through(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path ``start -> ... -> start`` in ``graph``, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_import_cycles_through_the_split_modules() -> None:
    modules = _modules()
    graph = {name: _edges(path, modules) for name, path in modules.items()}
    checked = [name for name in graph if name.startswith(CHECKED)]
    assert "serving.service" in checked and "signflow.packaging.run" in checked
    cycles = {name: cycle for name in checked if (cycle := _cycle_through(name, graph))}
    assert not cycles, cycles


def test_a_cycle_is_found() -> None:
    """The check itself."""
    assert _cycle_through("a", {"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle_through("a", {"a": {"b"}, "b": set()}) is None

"""No import cycles in ``signflow/`` and ``serving/``, and a small import closure for the MediaPipe worker.

Two graphs, both read statically from the source (``ast``):
- module level, the imports Python runs when a module is first imported (not those inside
  functions or under ``if TYPE_CHECKING:``): no cycle anywhere;
- every import, inside functions too (what a module *can* import): no cycle either, except the
  one package listed in ``LAZY_DISPATCH_CYCLES`` with the reason it is harmless.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.test_dvc_deps import closure

ROOTS = ("serving", "signflow")
# signflow.sources.run_download imports the source modules inside the function (dispatch on
# data.source), and they import SourceError/VideoStatus from the package: a cycle only through
# a lazy import, so never a half-initialised module. Owned by the download work (issue 12).
LAZY_DISPATCH_CYCLES = ("signflow.sources",)
# What the MediaPipe worker may import from signflow: it runs in .venv-landmarks (numpy < 2,
# protobuf < 5, no torch), so everything it reaches must import there.
WORKER_CLOSURE = {
    "signflow",
    "signflow.atomic",
    "signflow.video",
    "signflow.landmarks",
    "signflow.landmarks.layout",
    "signflow.landmarks.worker",
}


def _modules() -> dict[str, Path]:
    found = {}
    for root in ROOTS:
        for path in (REPO_ROOT / root).rglob("*.py"):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.Module, *, module_level: bool) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, or (``module_level``) only those run when the module is imported."""
    if not module_level:
        return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue  # runs when called, not on import
        elif isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))
    return found


def _edges(path: Path, modules: dict[str, Path], *, module_level: bool = False) -> set[str]:
    """Project modules ``path`` imports (``from a import b``: ``a.b`` when that is a module, else ``a``)."""
    edges = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8")), module_level=module_level):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names if alias.name in modules)
        elif node.module and not node.level:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                edges.add(name if name in modules else node.module)
    return {edge for edge in edges if edge in modules}


def _graph(*, module_level: bool) -> dict[str, set[str]]:
    modules = _modules()
    return {name: _edges(path, modules, module_level=module_level) for name, path in modules.items()}


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


def test_no_import_cycle_at_module_level() -> None:
    graph = _graph(module_level=True)
    assert {"serving.service", "signflow.extract.landmarks", "signflow.training.landmark_data"} <= set(graph)
    cycles = {name: cycle for name in graph if (cycle := _cycle_through(name, graph))}
    assert not cycles, cycles


def test_no_import_cycle_through_imports_inside_functions() -> None:
    """Stricter: ``training.data.open_split`` imports the landmark dataset lazily, yet no cycle."""
    graph = _graph(module_level=False)
    checked = [name for name in graph if not name.startswith(LAZY_DISPATCH_CYCLES)]
    assert {"serving.service", "signflow.packaging.run", "signflow.training.data"} <= set(checked)
    assert "signflow.training.landmark_data" in graph["signflow.training.data"]  # the lazy edge is seen
    cycles = {name: cycle for name in checked if (cycle := _cycle_through(name, graph))}
    assert not cycles, cycles


def test_the_mediapipe_worker_imports_only_what_its_environment_has() -> None:
    """The closure DVC's deps test computes (parent packages count: ``signflow/landmarks/__init__.py`` runs)."""
    reached = {".".join(path.relative_to(REPO_ROOT).with_suffix("").parts) for path in closure("signflow.landmarks.worker")}
    assert {name.removesuffix(".__init__") for name in reached} == WORKER_CLOSURE


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """The checks themselves: a cycle, a lazy import, a TYPE_CHECKING import."""
    assert _cycle_through("a", {"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle_through("a", {"a": {"b"}, "b": set()}) is None
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nimport signflow.video\nif TYPE_CHECKING:\n    import signflow.config\n"
        "def f():\n    import signflow.shards\nclass C:\n    import signflow.atomic\n"
    )
    modules = _modules()
    assert _edges(source, modules, module_level=True) == {"signflow.video", "signflow.atomic"}
    assert _edges(source, modules) == {"signflow.video", "signflow.config", "signflow.shards", "signflow.atomic"}

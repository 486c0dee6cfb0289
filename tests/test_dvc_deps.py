"""``dvc.yaml`` declares every project module a stage can import: an edit to any of them re-runs it.

A stage whose code changed but whose ``deps`` do not list the changed file is reported "up to date"
by ``dvc repro`` with stale outputs. This computes each stage's import closure statically (every
``import``/``from ... import`` of a project module reachable from ``stages/<name>.py``, including
imports inside functions: what ``python -m stages.<name>`` *can* import) and requires each file to
be inside one of the stage's deps.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

PACKAGES = ("signflow", "stages")


def _module_file(name: str) -> Path | None:
    base = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Project modules named by the imports of one file (``from a import b``: ``a.b`` if a module, else ``a``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] if package.endswith("__init__") else package
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: -node.level] if path.name != "__init__.py" else package.split(".")[
                    : len(package.split(".")) - node.level + 1]  # fmt: skip
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES and _module_file(name) is not None}


def closure(module: str) -> set[Path]:
    """Files of every project module reachable from ``module`` (parent packages' ``__init__`` included)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if _module_file(".".join(parts[:i])))
        todo.extend(_imports(_module_file(name)))
    return {_module_file(name) for name in seen}


def _stages() -> dict[str, dict]:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def _covered(file: Path, deps: list[str]) -> bool:
    relative = file.relative_to(REPO_ROOT).as_posix()
    return any(relative == dep or relative.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_stage_deps_cover_its_import_closure(stage: str) -> None:
    spec = _stages()[stage]
    match = re.search(r"python -m (stages\.\w+)", spec["cmd"])
    assert match, f"{stage}: cmd does not run a stages module"
    deps = [dep for dep in spec["deps"] if "${" not in dep]
    missing = sorted(
        f.relative_to(REPO_ROOT).as_posix() for f in closure(match.group(1)) if not _covered(f, deps)
    )
    assert not missing, f"dvc.yaml stage {stage!r} can import these files but does not list them in deps: {missing}"


def test_a_missing_dep_is_caught() -> None:
    """The check itself: extract imports signflow/landmarks/cache.py; without it the stage is not covered."""
    files = closure("stages.extract")
    cache = REPO_ROOT / "signflow" / "landmarks" / "cache.py"
    assert cache in files
    deps = [dep for dep in _stages()["extract"]["deps"] if dep != "signflow/landmarks/cache.py"]
    assert not _covered(cache, deps)


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_stage_reads_exactly_the_params_dvc_yaml_declares(stage: str) -> None:
    """``stages/<name>.py`` loads its params through a view of its ``PARAMS``: equal to ``dvc.yaml``'s."""
    module = importlib.import_module(f"stages.{stage}")
    source = (REPO_ROOT / "stages" / f"{stage}.py").read_text(encoding="utf-8")
    assert "load_params(" not in source, f"stages/{stage}.py must load params with load_stage_params"
    assert list(module.PARAMS) == _stages()[stage].get("params", []), (
        f"stages/{stage}.py PARAMS {list(module.PARAMS)} != dvc.yaml params {_stages()[stage].get('params')}"
    )


def test_an_undeclared_param_read_fails_naming_the_key() -> None:
    """The check itself: the weights stage declares only some model leaves; model.dropout is refused."""
    from signflow.stage_params import UndeclaredParamError, load_stage_params
    from stages.weights import PARAMS

    view = load_stage_params(REPO_ROOT / "params.yaml", "weights", PARAMS)
    assert view.model.cnn_lstm.backbone and view.model.arch  # declared leaves, through partial sections
    with pytest.raises(UndeclaredParamError, match=r"stage 'weights' reads params model\.dropout"):
        _ = view.model.dropout
    with pytest.raises(UndeclaredParamError, match=r"reads params train,"):
        _ = view.train
    assert view.model_dump(mode="json")["model"]["cnn_lstm"] == {"backbone": "small_cnn"}

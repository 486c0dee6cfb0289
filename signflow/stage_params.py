"""A stage's view of ``params.yaml``: only the keys its ``dvc.yaml`` entry declares can be read.

DVC re-runs a stage when a declared param changes, and only then. A stage that reads a key it does
not declare gives stale results that ``dvc repro`` calls "up to date". So each stage names its keys
once (``PARAMS`` in ``stages/<name>.py``, checked equal to ``dvc.yaml`` by ``tests/test_dvc_deps.py``)
and loads its params through :func:`load_stage_params`: reading any other key raises
:class:`UndeclaredParamError` at once, in every run and test of that stage.

Keys are whole sections (``train``) or dotted leaves (``evaluate.clips``), as in ``dvc.yaml``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from signflow.config import Params, ParamsError, load_params


class UndeclaredParamError(ParamsError):
    """A stage read a params key its ``dvc.yaml`` entry does not declare."""


class ParamsView:
    """Read-only access to the declared part of a params model (a whole section or some leaves)."""

    def __init__(self, model: BaseModel, declared: Sequence[str], stage: str, prefix: str = "") -> None:
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_declared", tuple(declared))
        object.__setattr__(self, "_stage", stage)
        object.__setattr__(self, "_prefix", prefix)

    def __getattr__(self, name: str) -> Any:
        model: BaseModel = self._model
        value = getattr(model, name)
        if name not in type(model).model_fields:
            return value  # methods and properties of the model itself
        key = f"{self._prefix}{name}"
        if any(key == d or key.startswith(d + ".") for d in self._declared):
            return value
        if isinstance(value, BaseModel) and any(d.startswith(key + ".") for d in self._declared):
            return ParamsView(value, self._declared, self._stage, key + ".")
        raise UndeclaredParamError(
            f"stage {self._stage!r} reads params {key}, which its dvc.yaml entry does not declare "
            f"(it declares: {', '.join(self._declared)}); add it to the stage's params in dvc.yaml and "
            f"to PARAMS in stages/{self._stage}.py"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("stage params are read-only")

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        """Only the declared keys, nested as in ``params.yaml`` (e.g. ``{"evaluate": {"clips": 1}}``)."""
        full = self._model.model_dump(**kwargs)
        result: dict[str, Any] = {}
        for key in self._declared:
            if not key.startswith(self._prefix):
                continue
            parts = key[len(self._prefix) :].split(".")
            source, target = full, result
            for part in parts[:-1]:
                source = source[part]
                target = target.setdefault(part, {})
            target[parts[-1]] = source[parts[-1]]
        return result


def load_stage_params(path: str | os.PathLike[str], stage: str, declared: Sequence[str]) -> Params:
    """``params.yaml`` validated as a whole (a typo anywhere fails), readable only where ``declared``."""
    unknown = [key for key in declared if not _known(key)]
    if unknown:
        raise ParamsError(f"stage {stage!r} declares unknown params key(s) {unknown}")
    return ParamsView(load_params(path), declared, stage)  # type: ignore[return-value]  # duck-typed Params


def _known(key: str) -> bool:
    model: type[BaseModel] = Params
    for part in key.split("."):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else BaseModel
    return True

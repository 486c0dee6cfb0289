"""``params.yaml`` <-> Kubeflow pipeline parameters, one typed parameter per leaf key.

Why one parameter per leaf (``train__lr: float``) rather than one YAML blob: the Kubeflow UI
shows, types and lets you override each value per run, and each step receives only the
sections its ``dvc.yaml`` stage lists, so step caching follows the same dependencies as DVC.

The schema (``signflow.config.Params``), not the values, decides each parameter's type, so
``null`` has a known type everywhere. Mapping:

==========================  ====================  ===========================================
schema type                 pipeline parameter    notes
==========================  ====================  ===========================================
``bool``/``int``/``float``  same                  -
``str``, ``Literal[...]``   ``str``               choices listed in the description
``X | None``                ``str``               the YAML text of the value; ``null`` = none
``list[scalar]``            ``list``              a JSON list
anything else               -                     :class:`PipelineError` at compile time
==========================  ====================  ===========================================

The step rebuilds a ``params.yaml`` from its parameters (:func:`params_file_text`), validated by
the same :func:`signflow.config.parse_params` the stages use, and passes it to ``--params``.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from pipelines import PipelineError
from signflow.config import Params, ParamsError, parse_params

SEPARATOR = "__"  # train.early_stopping.metric -> train__early_stopping__metric
NULL = "null"
Kind = Literal["bool", "int", "float", "str", "optional", "list"]
_PYTHON_TYPES: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str, "optional": str, "list": list}
_SCALARS = (bool, int, float, str)


@dataclass(frozen=True)
class PipelineParam:
    """One leaf of params.yaml as a pipeline parameter."""

    key: str  # dotted, as in dvc.yaml and `-p` overrides: "train.lr"
    kind: Kind
    default: Any  # already encoded for the pipeline (see :func:`encode`)
    description: str

    @property
    def name(self) -> str:
        """The pipeline/component input name: ``train__lr``."""
        return param_name(self.key)

    @property
    def python_type(self) -> type:
        return _PYTHON_TYPES[self.kind]

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]


def param_name(key: str) -> str:
    return key.replace(".", SEPARATOR)


def param_key(name: str) -> str:
    return name.replace(SEPARATOR, ".")


def _literal_values(annotation: Any) -> tuple[Any, ...] | None:
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else None


def _unwrap(annotation: Any) -> Any:
    """``Annotated[int, Field(ge=1)]`` -> ``int`` (the constraint is checked by the schema later)."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _scalar_kind(annotation: Any) -> Kind | None:
    annotation = _unwrap(annotation)
    if annotation in _SCALARS:
        return typing.cast(Kind, annotation.__name__)
    choices = _literal_values(annotation)
    if choices and all(isinstance(choice, str) for choice in choices):
        return "str"
    if choices and all(isinstance(choice, int) and not isinstance(choice, bool) for choice in choices):
        return "int"
    return None


def annotation_kind(annotation: Any) -> Kind | None:
    """The pipeline kind of a schema annotation, or None when a pipeline parameter cannot carry it."""
    annotation = _unwrap(annotation)
    scalar = _scalar_kind(annotation)
    if scalar is not None:
        return scalar
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        others = [arg for arg in args if arg is not type(None)]
        if len(others) == 1 and len(args) == 2 and _scalar_kind(others[0]) is not None:
            return "optional"
        return None
    if origin is list and len(args) == 1 and _scalar_kind(args[0]) is not None:
        return "list"
    return None


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _describe(annotation: Any, kind: Kind, description: str | None) -> str:
    parts = [description] if description else []
    annotation = inner = _unwrap(annotation)
    if kind == "optional":
        inner = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
        parts.append(f"YAML text of the value; '{NULL}' = none")
    if kind == "list":
        inner = typing.get_args(annotation)[0]
    choices = _literal_values(_unwrap(inner))
    if choices:
        parts.append("one of: " + ", ".join(str(choice) for choice in choices))
    return "; ".join(parts)


def encode(kind: Kind, value: Any) -> Any:
    """A params value as the pipeline carries it (only ``optional`` differs: YAML text)."""
    if kind != "optional":
        return value
    if value is None:
        return NULL
    return value if isinstance(value, str) else json.dumps(value)


def decode(kind: Kind, value: Any) -> Any:
    """Inverse of :func:`encode`; the result is validated by the params schema afterwards."""
    if kind != "optional":
        return value
    if value is None or (isinstance(value, str) and value.strip() == NULL):
        return None
    return value  # pydantic turns "100" into 100 for an `int | None` field


def _leaves(model: type[BaseModel], prefix: str) -> Iterable[tuple[str, Any, str | None]]:
    for field_name, field in model.model_fields.items():
        if SEPARATOR in field_name:
            raise PipelineError(f"params {prefix}{field_name}: '__' in a key name cannot become a pipeline parameter")
        if _is_section(field.annotation):
            yield from _leaves(field.annotation, f"{prefix}{field_name}.")
        else:
            yield f"{prefix}{field_name}", field.annotation, field.description


def _value_at(values: Mapping[str, Any], key: str) -> Any:
    node: Any = values
    for part in key.split("."):
        node = node[part]
    return node


def pipeline_params(
    params: Params, sections: Iterable[str], schema: type[BaseModel] = Params
) -> list[PipelineParam]:
    """Every leaf of ``sections`` as a pipeline parameter, defaulting to its value in ``params``.

    Raises :class:`PipelineError` naming the key when a leaf's type cannot be a pipeline
    parameter (a mapping, a list of sections, a union of several types).
    """
    values = params.model_dump(mode="json")
    result: list[PipelineParam] = []
    for section in sections:
        field = schema.model_fields.get(section)
        if field is None:
            raise PipelineError(f"params: unknown section {section!r} (sections: {', '.join(schema.model_fields)})")
        if not _is_section(field.annotation):
            raise PipelineError(f"params.{section}: a stage's params entry must be a section, not a single value")
        for key, annotation, description in _leaves(field.annotation, f"{section}."):
            kind = annotation_kind(annotation)
            value = _value_at(values, key)
            if kind is None:
                raise PipelineError(
                    f"params {key}: a {_type_text(annotation)} value ({value!r}) cannot be a Kubeflow pipeline "
                    "parameter (supported: bool, int, float, str, choices, optional scalars, lists of scalars); "
                    "make it a section of scalars or leave it out of the stages' dvc.yaml params"
                )
            if kind == "list" and not all(isinstance(item, _SCALARS) for item in value):
                raise PipelineError(f"params {key}: a list of non-scalars ({value!r}) cannot be a pipeline parameter")
            result.append(PipelineParam(key, kind, encode(kind, value), _describe(annotation, kind, description)))
    return result


def _type_text(annotation: Any) -> str:
    if typing.get_origin(annotation) is None and isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _kind_of(key: str, schema: type[BaseModel] = Params) -> Kind:
    model: type[BaseModel] = schema
    parts = key.split(".")
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            raise ParamsError(f"{key}: unknown parameter ({'.'.join(parts[: depth + 1])} is not in the params schema)")
        if depth < len(parts) - 1:
            if not _is_section(field.annotation):
                raise ParamsError(f"{key}: {'.'.join(parts[: depth + 1])} is a value, not a section")
            model = field.annotation
    if _is_section(field.annotation):
        raise ParamsError(f"{key}: is a whole section; give one value at a time (e.g. {key}.<key>=...)")
    kind = annotation_kind(field.annotation)
    if kind is None:
        raise ParamsError(f"{key}: type {_type_text(field.annotation)} is not a pipeline parameter")
    return kind


def nested_from_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train__lr": 0.01, ...}`` -> ``{"train": {"lr": 0.01}}`` (optional values decoded)."""
    nested: dict[str, Any] = {}
    for name, value in arguments.items():
        key = param_key(name)
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = decode(_kind_of(key), value)
    return nested


def params_from_arguments(arguments: Mapping[str, Any], source: str = "pipeline parameters") -> Params:
    """Validate pipeline arguments with the stages' own schema (range checks, cross-field rules)."""
    return parse_params(nested_from_arguments(arguments), source)


def params_file_text(arguments: Mapping[str, Any], sections: Iterable[str]) -> str:
    """The params.yaml a step hands to its stage: only the sections that stage reads."""
    params = params_from_arguments(arguments)
    dumped = params.model_dump(mode="json")
    return yaml.safe_dump({section: dumped[section] for section in sections}, sort_keys=False)


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=0.01"`` -> ``("train__lr", 0.01)``; the value is YAML, encoded for its parameter kind."""
    if "=" not in text:
        raise ParamsError(f"override {text!r}: expected key.path=value (e.g. train.lr=0.001)")
    key, value_text = (part.strip() for part in text.split("=", 1))
    key = param_key(key)  # the pipeline parameter name (train__epochs) names the same key
    kind = _kind_of(key)
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError as error:
        raise ParamsError(f"override {text!r}: value is not YAML: {error}") from None
    if kind == "optional":
        return param_name(key), encode(kind, value) if not isinstance(value, str) else value_text
    if kind == "str" and not isinstance(value, str):
        value = value_text  # `-p data.synthetic...=123` for a str key: keep the text
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind == "list" and not isinstance(value, list):
        raise ParamsError(f"override {text!r}: {key} is a list; write e.g. {key}=[a, b]")
    return param_name(key), value

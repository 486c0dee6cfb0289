"""``params.yaml`` <-> Kubeflow pipeline parameters: one YAML text per section, plus typed run parameters.

Two kinds of pipeline parameter carry the params (why: docs/kubeflow.md, "Why the components
look like this"):

- ``params_<section>: str``: one ``params.yaml`` section as YAML text, exactly as it reads in the
  file (``null`` is ``null``, ``16`` is an int). A step receives the sections its ``dvc.yaml`` stage
  lists, so kfp caching follows the same dependencies as DVC, and any leaf can change per run.
- ``<section>__<key>``: a **run parameter**, one params leaf with its own typed pipeline parameter
  (``train__lr: float``) for the knobs a sweep changes. The step functions in
  :mod:`pipelines.steps` declare them; :func:`run_parameter_kind` checks each against the schema.
  A run parameter's key is left out of its section text, so every value has one place.

The step rebuilds its params file with :func:`stage_params_text`: the section texts, then the run
parameters applied with :func:`signflow.config.apply_overrides`, the function behind ``-p`` and
``dvc exp run -S``, validated by the same schema the stages use.
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from pipelines import PipelineError
from signflow.config import Params, ParamsError, apply_overrides, parse_params

SEPARATOR = "__"  # train.early_stopping.metric -> train__early_stopping__metric
SECTION_PREFIX = "params_"  # params_train: the train section as YAML text
Kind = Literal["bool", "int", "float", "str", "optional", "list"]
# The pipeline parameter types a run parameter may have: kfp types them exactly in the IR
# (NUMBER_INTEGER, NUMBER_DOUBLE, BOOLEAN, STRING); an optional or list value stays in its section text.
RUN_PARAMETER_TYPES: dict[Kind, type] = {"bool": bool, "int": int, "float": float, "str": str}
_SCALARS = (bool, int, float, str)


def param_name(key: str) -> str:
    """``train.lr`` -> ``train__lr`` (a run parameter's name)."""
    return key.replace(".", SEPARATOR)


def param_key(name: str) -> str:
    """``train__lr`` -> ``train.lr``."""
    return name.replace(SEPARATOR, ".")


def section_input(section: str) -> str:
    """``train`` -> ``params_train``: the pipeline parameter holding that section's YAML."""
    return f"{SECTION_PREFIX}{section}"


def section_of_input(name: str) -> str | None:
    """``params_train`` -> ``train``; None for any other name."""
    return name[len(SECTION_PREFIX) :] if name.startswith(SECTION_PREFIX) else None


def yaml_value(value: Any) -> str:
    """``value`` as YAML flow text, the right side of an ``apply_overrides`` ``key=value``.

    ``yaml.safe_dump`` rather than ``str``/``json.dumps``: ``1e-05`` reads back as a string in
    YAML 1.1, ``1.0e-05`` (what PyYAML writes) as a float.
    """
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"))
    return text.removesuffix("\n").removesuffix("\n...")


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
    """What a schema annotation holds: a scalar kind, ``optional`` (scalar or None), ``list``, or None (other)."""
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


def _type_text(annotation: Any) -> str:
    if typing.get_origin(annotation) is None and isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _field(key: str, schema: type[BaseModel]) -> Any:
    """The schema field of a dotted leaf key; :class:`ParamsError` naming the key otherwise."""
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
    return field


def kind_of(key: str, schema: type[BaseModel] = Params) -> Kind:
    """The kind of a params leaf (``train.lr`` -> ``float``); :class:`ParamsError` for unknown keys."""
    field = _field(key, schema)
    kind = annotation_kind(field.annotation)
    if kind is None:
        raise ParamsError(f"{key}: type {_type_text(field.annotation)} cannot be set with key=value")
    return kind


def run_parameter_kind(name: str, annotation: Any, schema: type[BaseModel] = Params) -> Kind:
    """Check a step's run parameter ``name: annotation`` against the params schema; return its kind.

    The name must be a params leaf (``train__lr`` = ``train.lr``), of a scalar kind (an optional
    value would reach kfp as "no value", a list as an untyped JSON list: both stay in the section
    text), and the annotation must be that kind's Python type.
    """
    key = param_key(name)
    kind = kind_of(key, schema)
    expected = RUN_PARAMETER_TYPES.get(kind)
    if expected is None:
        raise ParamsError(
            f"run parameter {name}: params {key} is {'an optional value' if kind == 'optional' else 'a list'}; "
            f"leave it in the section text {section_input(key.split('.', 1)[0])} (run parameters are bool, int, float, str)"
        )
    if annotation is not expected:
        raise ParamsError(
            f"run parameter {name}: params {key} is {kind}, but the step declares {_type_text(annotation)}"
        )
    return kind


def _value_at(values: Mapping[str, Any], key: str) -> Any:
    node: Any = values
    for part in key.split("."):
        node = node[part]
    return node


def value_of(params: Params, key: str) -> Any:
    """The value of a dotted leaf in ``params`` (JSON types)."""
    return _value_at(params.model_dump(mode="json"), key)


def _without(section: dict[str, Any], section_name: str, run_keys: Iterable[str]) -> dict[str, Any]:
    """A section's values minus the leaves that are run parameters (they have their own parameter)."""
    trimmed = copy.deepcopy(section)
    for key in run_keys:
        head, _, rest = key.partition(".")
        if head != section_name:
            continue
        node = trimmed
        *parents, leaf = rest.split(".")
        for part in parents:
            node = node[part]
        node.pop(leaf, None)
    return trimmed


def section_text(params: Params, section: str, run_keys: Iterable[str] = ()) -> str:
    """The YAML text of one section of ``params``, without the leaves in ``run_keys``."""
    if section not in Params.model_fields or not _is_section(Params.model_fields[section].annotation):
        raise PipelineError(f"params: unknown section {section!r} (sections: {', '.join(Params.model_fields)})")
    values = params.model_dump(mode="json")[section]
    return yaml.safe_dump(_without(values, section, run_keys), sort_keys=False)


def parameter_defaults(params: Params, sections: Iterable[str], run_names: Iterable[str]) -> dict[str, Any]:
    """The pipeline parameters that carry ``params``: ``params_<section>`` texts, then the run parameters."""
    run_names = list(run_names)
    run_keys = [param_key(name) for name in run_names]
    defaults: dict[str, Any] = {section_input(section): section_text(params, section, run_keys) for section in sections}
    defaults.update({name: value_of(params, key) for name, key in zip(run_names, run_keys)})
    return defaults


def parse_section_texts(texts: Mapping[str, str], source: str = "pipeline parameters") -> dict[str, Any]:
    """``{"train": "<YAML>"}`` -> ``{"train": {...}}``; a text that is not a YAML mapping is an error naming it."""
    sections: dict[str, Any] = {}
    for section, text in texts.items():
        try:
            values = yaml.safe_load(text) if text and text.strip() else {}
        except yaml.YAMLError as error:
            raise ParamsError(f"{source}: {section_input(section)} is not YAML: {error}") from None
        if not isinstance(values, dict):
            raise ParamsError(f"{source}: {section_input(section)} must be a mapping of {section} keys")
        sections[section] = values
    return sections


def _present(sections: Mapping[str, Any], key: str) -> bool:
    node: Any = sections
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def stage_params_text(texts: Mapping[str, str], run_values: Mapping[str, Any]) -> str:
    """The params file a stage reads: its section texts with the run parameters applied.

    ``run_values`` maps dotted keys to typed values (``{"train.lr": 0.01}``). A key that is both a
    run parameter and in its section text is refused: one value, one place.
    """
    sections = parse_section_texts(texts)
    doubled = sorted(key for key in run_values if _present(sections, key))
    if doubled:
        raise ParamsError(
            "pipeline parameters: " + ", ".join(
                f"{key} is the run parameter {param_name(key)}; remove it from {section_input(key.split('.', 1)[0])}"
                for key in doubled
            )
        )
    params = with_values(parse_params(sections, "pipeline parameters"), run_values, "pipeline parameters")
    dumped = params.model_dump(mode="json")
    return yaml.safe_dump({section: dumped[section] for section in texts}, sort_keys=False)


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=0.01"`` -> ``("train.lr", 0.01)``: the value is YAML, typed for its params leaf.

    The run parameter name (``train__lr=0.01``) names the same key.
    """
    if "=" not in text:
        raise ParamsError(f"override {text!r}: expected key.path=value (e.g. train.lr=0.001)")
    key, value_text = (part.strip() for part in text.split("=", 1))
    key = param_key(key)
    kind = kind_of(key)
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError as error:
        raise ParamsError(f"override {text!r}: value is not YAML: {error}") from None
    if kind == "str" and not isinstance(value, str):
        value = value_text  # `-p data.wlasl.user_agent=123` for a str key: keep the text
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind == "list" and not isinstance(value, list):
        raise ParamsError(f"override {text!r}: {key} is a list; write e.g. {key}=[a, b]")
    return key, value


def with_values(params: Params, values: Mapping[str, Any], source: str = "overrides") -> Params:
    """``params`` with dotted keys set to typed values, validated once (through ``apply_overrides``)."""
    try:
        return apply_overrides(params, [f"{key}={yaml_value(value)}" for key, value in values.items()])
    except ParamsError as error:  # apply_overrides names its source "overrides"; say whose values they are
        raise ParamsError(str(error).replace("overrides:", f"{source}:", 1)) from None

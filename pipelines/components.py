"""A step function (:mod:`pipelines.steps`) -> its kfp component, checked against its ``dvc.yaml`` stage.

:func:`interface` reads a step's signature into its kinds of input (artifacts, params section
texts, run parameters, cluster inputs); :func:`check_step` holds it to the stage that
:mod:`pipelines.wiring` derives from ``dvc.yaml`` and to the params schema, so a step that drifted
from DVC (a renamed output, a section the stage no longer lists, a run parameter of the wrong
type) fails the compile with one line; :func:`make_component` turns it into a kfp component for
an image.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kfp import dsl
from kfp.dsl.types import type_annotations

from pipelines import PipelineError
from pipelines.params import SEPARATOR, run_parameter_kind, section_of_input
from pipelines.wiring import Stage
from signflow.config import ParamsError

# Inputs the pipeline sets from the cluster shape, not from params.yaml.
NPROC_INPUT = "nproc_per_node"  # GPUs of the pod -> torchrun workers
NODES_INPUT = "train_nodes"  # > 1: a PyTorchJob (pipelines.multinode); needs kubeflow.pvc
PYTORCHJOB_INPUT = "pytorchjob"  # image + kubeflow section of that PyTorchJob
CLUSTER_INPUTS = (NPROC_INPUT, NODES_INPUT, PYTORCHJOB_INPUT)


@dataclass(frozen=True)
class StepInterface:
    """What a step function declares, by kind (names in signature order)."""

    name: str
    inputs: dict[str, str]  # artifact name -> type name (Dataset, Model, ...)
    outputs: dict[str, str]
    sections: tuple[str, ...]  # params sections it receives as YAML text
    run_parameters: dict[str, type]  # train__lr -> float
    cluster: tuple[str, ...]  # of CLUSTER_INPUTS


def _artifact(annotation: Any) -> tuple[str, str] | None:
    """``Input[Dataset]`` -> ("input", "Dataset"); None for a parameter."""
    if type_annotations.is_artifact_wrapped_in_Input(annotation):
        return "input", type_annotations.get_io_artifact_class(annotation).__name__
    if type_annotations.is_artifact_wrapped_in_Output(annotation):
        return "output", type_annotations.get_io_artifact_class(annotation).__name__
    return None


def interface(step: Callable[..., Any]) -> StepInterface:
    """The kinds of input of ``step``, from its signature; a name of no known kind is an error."""
    inputs: dict[str, str] = {}
    outputs: dict[str, str] = {}
    sections: list[str] = []
    run_parameters: dict[str, type] = {}
    cluster: list[str] = []
    hints = typing.get_type_hints(step, include_extras=True)  # also string annotations (`from __future__`)
    for name in inspect.signature(step).parameters:
        annotation = hints.get(name)
        artifact = _artifact(annotation)
        section = section_of_input(name)
        if artifact is not None:
            (inputs if artifact[0] == "input" else outputs)[name] = artifact[1]
        elif section is not None:
            if annotation is not str:
                raise PipelineError(f"step {step.__name__}: {name} is a params section as YAML text, so str")
            sections.append(section)
        elif SEPARATOR in name:
            run_parameters[name] = annotation
        elif name in CLUSTER_INPUTS:
            cluster.append(name)
        else:
            raise PipelineError(
                f"step {step.__name__}: input {name!r} is none of: an artifact, params_<section>, "
                f"<section>__<key> (a run parameter), {', '.join(CLUSTER_INPUTS)}"
            )
    return StepInterface(step.__name__, inputs, outputs, tuple(sections), run_parameters, tuple(cluster))


def check_step(step: StepInterface, stage: Stage, producer_types: Mapping[tuple[str, str], str]) -> None:
    """Refuse a step whose artifacts, sections or run parameters differ from its dvc.yaml stage."""
    where = f"pipelines/steps.py {step.name}"
    expected_inputs = {item.name: producer_types[(item.producer, item.producer_output)] for item in stage.inputs}
    expected_outputs = {output.name: output.type_name for output in stage.outputs}
    expected_outputs.update({item.name: item.type_name for item in stage.derived})
    for kind, got, expected in (("inputs", step.inputs, expected_inputs), ("outputs", step.outputs, expected_outputs)):
        if got != expected:
            raise PipelineError(
                f"{where}: artifact {kind} {_listing(got)} differ from dvc.yaml stage {stage.name!r}: "
                f"{_listing(expected)}; change the step or dvc.yaml"
            )
    if sorted(step.sections) != sorted(stage.sections):
        raise PipelineError(
            f"{where}: params sections {', '.join(step.sections) or '(none)'} differ from dvc.yaml stage "
            f"{stage.name!r}: {', '.join(stage.sections) or '(none)'}"
        )
    for name, annotation in step.run_parameters.items():
        section = name.split(SEPARATOR, 1)[0]
        if section not in stage.sections:
            raise PipelineError(f"{where}: run parameter {name} is not in a section dvc.yaml gives this stage")
        try:
            run_parameter_kind(name, annotation)
        except ParamsError as error:
            raise PipelineError(f"{where}: {error}") from None


def _listing(artifacts: Mapping[str, str]) -> str:
    return "(" + ", ".join(f"{name}: {type_name}" for name, type_name in artifacts.items()) + ")"


def validate_image(image: str | None) -> str:
    """The component image must name an explicit tag or digest: caching and reruns depend on it."""
    image = (image or "").strip()
    if not image:
        raise PipelineError("no component image: pass --image REGISTRY/signflow:TAG (or set kubeflow.image)")
    if any(character.isspace() for character in image):
        raise PipelineError(f"component image {image!r} contains whitespace")
    name = image.rsplit("/", 1)[-1]
    if "@sha256:" not in image and (":" not in name or not name.split(":", 1)[1]):
        raise PipelineError(
            f"component image {image!r} has no tag: pass e.g. --image {image}:0.1.0 (the Dockerfile image you pushed)"
        )
    return image


def make_component(step: Callable[..., Any], image: str) -> dsl.PythonComponent:
    """The kfp component of a step function, run in ``image`` (which carries signflow and kfp)."""
    return dsl.component(step, base_image=validate_image(image), install_kfp_package=False)

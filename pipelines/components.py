"""One kfp lightweight component per ``dvc.yaml`` stage, each calling that stage's own ``main``.

A component's interface is its typed artifacts (``Input[Dataset]``, ``Output[Model]``,
``Output[Metrics]``, ...) plus one typed parameter per params leaf of the sections the stage
lists in ``dvc.yaml``. Writing ~100 parameters by hand per stage would declare the params schema
a second time, so the component function is *generated* from the wiring and the schema; its
body is one line, ``run_stage(WIRING, locals())`` (:mod:`pipelines.runtime`), which builds the
stage's argv and calls ``stages.<name>.main``. The generated source is what kfp embeds in the
compiled YAML, so it stays readable there.
"""

from __future__ import annotations

import linecache
import pprint
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kfp import dsl

from pipelines import PipelineError
from pipelines.params import PipelineParam
from pipelines.runtime import NODES_INPUT, NPROC_INPUT
from pipelines.wiring import Stage

ARTIFACT_CLASSES = {
    "Artifact": dsl.Artifact,
    "Dataset": dsl.Dataset,
    "Model": dsl.Model,
    "Metrics": dsl.Metrics,
    "ClassificationMetrics": dsl.ClassificationMetrics,
    "Markdown": dsl.Markdown,
    "HTML": dsl.HTML,
}
# Stages whose step launches torchrun with one worker per requested GPU.
DISTRIBUTED_STAGES = frozenset({"train"})


def component_source(
    stage: Stage,
    params: Sequence[PipelineParam],
    distributed: bool,
    input_types: Mapping[str, str],
    trainjob: Mapping[str, Any] | None = None,
) -> str:
    """Python source of the component function for ``stage`` (embedded verbatim by kfp).

    ``input_types`` maps each input to the type its producer declared (Dataset, Model, ...).
    ``trainjob`` (the train step with a claim): image and kubeflow section for a multi-node
    PyTorchJob (:mod:`pipelines.multinode`), and a ``train_nodes`` input.
    """
    outputs = {output.name: output.type_name for output in stage.outputs}
    for item in stage.derived:
        outputs[item.name] = item.type_name
    lines = [f"def {stage.name}("]
    for item in stage.inputs:
        lines.append(f"    {item.name}: Input[{input_types[item.name]}],")
    for name, type_name in outputs.items():
        lines.append(f"    {name}: Output[{type_name}],")
    for param in params:
        lines.append(f"    {param.name}: {param.python_type.__name__},")
    if distributed:
        lines.append(f"    {NPROC_INPUT}: int,")
    wiring_dict = stage.to_json_dict()
    if trainjob is not None:
        lines.append(f"    {NODES_INPUT}: int,")
        wiring_dict["trainjob"] = dict(trainjob)
    wiring = textwrap.indent(pprint.pformat(wiring_dict, width=100, sort_dicts=True), " " * 8)
    lines += [
        "):",
        f'    """dvc.yaml stage {stage.name!r}: python -m {stage.module} (same entry point as dvc repro)."""',
        "    from pipelines.runtime import run_stage",
        "",
        "    run_stage(",
        wiring + ",",
        "        locals(),",
        "    )",
        "",
    ]
    return "\n".join(lines)


def _define(source: str, name: str) -> Callable[..., None]:
    """Compile generated source so that ``inspect.getsource`` (used by kfp) finds it."""
    filename = f"<signflow-component-{name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict[str, object] = {"Input": dsl.Input, "Output": dsl.Output, **ARTIFACT_CLASSES}
    # dont_inherit: this module's `from __future__ import annotations` would turn the types into strings.
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)  # noqa: S102 - our generated code
    return namespace[name]  # type: ignore[return-value]


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


def make_component(
    stage: Stage,
    params: Sequence[PipelineParam],
    image: str,
    producer_types: Mapping[tuple[str, str], str],
    trainjob: Mapping[str, Any] | None = None,
) -> dsl.PythonComponent:
    """The kfp component of ``stage``: typed artifacts, one parameter per params leaf, ``image``."""
    image = validate_image(image)
    input_types = {item.name: producer_types[(item.producer, item.producer_output)] for item in stage.inputs}
    source = component_source(stage, params, stage.name in DISTRIBUTED_STAGES, input_types, trainjob)
    function = _define(source, stage.name)
    return dsl.component(function, base_image=image, install_kfp_package=False)

"""The signflow Kubeflow pipeline: the ``dvc.yaml`` DAG, one step per stage, with cluster resources.

This module only wires: which step (:mod:`pipelines.steps`) feeds which (from
:mod:`pipelines.wiring`), the pipeline parameters (one YAML text per params section and the steps'
typed run parameters, defaults = ``params.yaml`` at compile time, plus one ``<stage>_gpus`` run
parameter per GPU step; :mod:`pipelines.params`), and per-step Kubernetes settings from the
``kubeflow`` section of ``params.yaml``: CPU/memory requests and limits, GPUs
(``set_accelerator_type``/``set_accelerator_limit`` fed by the run parameter; the train step runs
torchrun with one worker per GPU), a memory-backed ``/dev/shm``, size-limited scratch emptyDirs,
node selectors, tolerations, image pull secrets and an optional PVC (``kfp-kubernetes``), retries,
and step caching (on by default; ``pipelines.submit --no-cache`` turns it off for one run).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from kfp import dsl, kubernetes

from pipelines import PipelineError
from pipelines.components import (
    NODES_INPUT,
    NPROC_INPUT,
    PYTORCHJOB_INPUT,
    StepInterface,
    check_step,
    interface,
    make_component,
    validate_image,
)
from pipelines.params import param_key, parameter_defaults, section_input
from pipelines.runtime import STATE_DIR_ENV
from pipelines.steps import STEPS
from pipelines.wiring import Stage
from signflow.config import KubeflowParams, KubeflowResources, Params

PIPELINE_NAME = "signflow"
GPUS_SUFFIX = "_gpus"
RAW_OUTPUT = "raw"  # the output kubeflow.raw_uri imports instead of producing
# Also served by the imported folder: kfp's importer takes one URI with no run-time path join, so
# split and crop get the whole folder there and read its index.json (their --index takes a folder).
RAW_INDEX_OUTPUT = "raw_index"
RAW_URI_PARAM = "raw_uri"
SCRATCH_MOUNTS = {"scratch": "/tmp", "artifacts-minio": "/minio", "artifacts-s3": "/s3", "artifacts-gcs": "/gcs"}
TELEMETRY_OFF = {"BENTOML_DO_NOT_TRACK": "True", "DO_NOT_TRACK": "1"}


def stage_resources(kubeflow: KubeflowParams, stage: str) -> KubeflowResources:
    """``default_resources`` with the stage's own ``resources.<stage>`` values on top."""
    merged = kubeflow.default_resources.model_dump()
    override = kubeflow.resources.get(stage)
    if override is not None:
        merged.update({key: value for key, value in override.model_dump().items() if value is not None})
    return KubeflowResources(**merged)


def check_kubeflow(kubeflow: KubeflowParams, stage_names: Sequence[str]) -> None:
    unknown = sorted(set(kubeflow.resources) - set(stage_names))
    if unknown:
        raise PipelineError(
            f"params kubeflow.resources: unknown stage {', '.join(map(repr, unknown))} "
            f"(dvc.yaml stages: {', '.join(stage_names)})"
        )


def gpu_parameter(stage: str) -> str:
    """The run parameter holding a GPU step's accelerator count (no ``__``: not a params.yaml key)."""
    return f"{stage}{GPUS_SUFFIX}"


def cluster_params(kubeflow: KubeflowParams, stages: Sequence[Stage]) -> dict[str, int]:
    """Run parameters that shape the cluster, not the results: ``<stage>_gpus`` of each GPU step."""
    return {
        gpu_parameter(stage.name): gpus
        for stage in stages
        if (gpus := stage_resources(kubeflow, stage.name).gpus or 0) > 0
    }


def _apply_resources(task: dsl.PipelineTask, stage: str, kubeflow: KubeflowParams, gpus: Any) -> None:
    """CPU/memory from the kubeflow section; ``gpus`` is the stage's run parameter (or None: no GPU)."""
    resources = stage_resources(kubeflow, stage)
    setters = {
        "cpu_request": task.set_cpu_request,
        "cpu_limit": task.set_cpu_limit,
        "memory_request": task.set_memory_request,
        "memory_limit": task.set_memory_limit,
    }
    for key, setter in setters.items():
        value = getattr(resources, key)
        if value is None:
            continue
        try:
            setter(value)
        except ValueError as error:  # kfp validates Kubernetes quantities
            raise PipelineError(f"params kubeflow.resources.{stage}.{key}: {value!r}: {error}") from None
    if gpus is not None:
        # A pipeline parameter (kfp >= 2.15): the GPU count is chosen per run, not per compile.
        task.set_accelerator_type(kubeflow.accelerator_type).set_accelerator_limit(gpus)
        for key, value in kubeflow.gpu_node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for toleration in kubeflow.gpu_tolerations:
            kubernetes.add_toleration(task, **toleration.model_dump())
    for key, value in kubeflow.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    if resources.shm:
        # Docker's 64 MB /dev/shm breaks DataLoader workers and NCCL: a memory-backed emptyDir.
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                                   size_limit=resources.shm)
    if resources.scratch:
        # kfp has no ephemeral-storage request; size-limited emptyDirs bound what a step may write
        # locally (kubelet evicts beyond it): /tmp, and the launcher's local artifact copies, which
        # live under /minio, /s3 or /gcs by pipeline-root scheme (emptyDirs are writable by any uid).
        # /tmp rather than a new TMPDIR: a runner without the mounts (kfp.local) still has /tmp.
        for name, path in SCRATCH_MOUNTS.items():
            kubernetes.empty_dir_mount(task, volume_name=name, mount_path=path, size_limit=resources.scratch)


def _apply_cluster(task: dsl.PipelineTask, kubeflow: KubeflowParams) -> None:
    """What every step gets: caching, retries, telemetry off, pull secrets, the PVC."""
    task.set_caching_options(kubeflow.caching)
    if kubeflow.retries:
        task.set_retry(kubeflow.retries, backoff_duration=kubeflow.retry_backoff, backoff_factor=2.0)
    for key, value in TELEMETRY_OFF.items():
        task.set_env_variable(key, value)
    if kubeflow.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(kubeflow.image_pull_secrets))
    if kubeflow.pvc:
        mount = kubeflow.pvc_mount_path.rstrip("/")
        kubernetes.mount_pvc(task, pvc_name=kubeflow.pvc, mount_path=kubeflow.pvc_mount_path)
        # The BentoML model store and the train checkpoints must outlive the step's pod.
        task.set_env_variable("BENTOML_HOME", f"{mount}/bentoml")
        task.set_env_variable(STATE_DIR_ENV, f"{mount}/state")


def _imported_stage(kubeflow: KubeflowParams, stages: Sequence[Stage]) -> str | None:
    """The stage that ``kubeflow.raw_uri`` replaces by an importer (the one writing ``raw``), or None."""
    if not kubeflow.raw_uri:
        return None
    producers = [stage for stage in stages if any(output.name == RAW_OUTPUT for output in stage.outputs)]
    if not producers:
        raise PipelineError(f"params kubeflow.raw_uri: no stage of this pipeline writes {RAW_OUTPUT!r} to replace")
    (producer,) = producers
    for stage in stages:
        for item in stage.inputs:
            if item.producer == producer.name and item.producer_output not in (RAW_OUTPUT, RAW_INDEX_OUTPUT):
                raise PipelineError(
                    f"params kubeflow.raw_uri: {stage.name!r} also reads {item.producer_output!r} from "
                    f"{producer.name!r}, which an imported dataset does not have"
                )
    return producer.name


def _docstring(stages: Sequence[Stage], sections: Sequence[str], run_parameters: Mapping[str, type],
               cluster: Mapping[str, Any]) -> str:
    lines = [
        "signflow: " + " -> ".join(stage.name for stage in stages) + " (the dvc.yaml stages, same code).",
        "",
        "Args:",
    ]
    lines += [f"    {section_input(section)}: params.yaml section {section} (YAML text)" for section in sections]
    lines += [f"    {name}: params.yaml {param_key(name)} ({kind.__name__}; not in its section text)"
              for name, kind in run_parameters.items()]  # fmt: skip
    lines += [
        f"    {name}: GPUs of the {name.removesuffix(GPUS_SUFFIX)} step (cluster shape, not a params.yaml key)"
        for name in cluster
        if name.endswith(GPUS_SUFFIX)
    ]
    if NODES_INPUT in cluster:
        lines.append(f"    {NODES_INPUT}: pods of the train step; > 1 runs a PyTorchJob on the claim (kubeflow.pvc)")
    if RAW_URI_PARAM in cluster:
        lines.append(f"    {RAW_URI_PARAM}: object-store folder imported as the raw dataset (kubeflow.raw_uri)")
    return "\n".join(lines)


def _steps_for(stages: Sequence[Stage], producer_types: Mapping[tuple[str, str], str]) -> dict[str, StepInterface]:
    """The step function of each stage, checked against it (:func:`pipelines.components.check_step`)."""
    missing = [stage.name for stage in stages if stage.name not in STEPS]
    if missing:
        raise PipelineError(
            f"dvc.yaml stage {', '.join(map(repr, missing))} has no step in pipelines/steps.py "
            "(one function per stage, named after it)"
        )
    interfaces = {stage.name: interface(STEPS[stage.name]) for stage in stages}
    for stage in stages:
        check_step(interfaces[stage.name], stage, producer_types)
    return interfaces


def build_pipeline(params: Params, stages: Sequence[Stage], image: str, all_stage_names: Sequence[str]) -> Any:
    """The compiled-ready kfp pipeline for ``stages`` (a subset of ``all_stage_names``)."""
    image = validate_image(image)
    kubeflow = params.kubeflow
    check_kubeflow(kubeflow, all_stage_names)
    producer_types = {(stage.name, output.name): output.type_name for stage in stages for output in stage.outputs}
    imported = _imported_stage(kubeflow, stages)
    stages = [stage for stage in stages if stage.name != imported]
    steps = _steps_for(stages, producer_types)
    sections: list[str] = []
    run_parameters: dict[str, type] = {}
    for stage in stages:
        sections += [section for section in stage.sections if section not in sections]
        for name, kind in steps[stage.name].run_parameters.items():
            if run_parameters.setdefault(name, kind) is not kind:
                raise PipelineError(f"pipelines/steps.py: run parameter {name} has two types ({run_parameters[name]}, {kind})")
    if "kubeflow" in sections:
        raise PipelineError("dvc.yaml: no stage may read the kubeflow section (it shapes the cluster, not results)")
    # With a claim the train step can hand training to a PyTorchJob (train_nodes > 1): it needs the
    # cluster settings the job's pods get, which no stage params carry.
    multinode = bool(kubeflow.pvc) and any(NODES_INPUT in steps[stage.name].cluster for stage in stages)
    # YAML text, not a dict: a kfp constant cannot hold the section's nulls.
    job_config = (
        yaml.safe_dump({"image": image, "kubeflow": kubeflow.model_dump(mode="json")}, sort_keys=False)
        if multinode
        else ""
    )
    components = {stage.name: make_component(STEPS[stage.name], image) for stage in stages}
    cluster: dict[str, Any] = dict(cluster_params(kubeflow, stages))
    if multinode:
        cluster[NODES_INPUT] = 1
    if imported:
        cluster[RAW_URI_PARAM] = kubeflow.raw_uri
    defaults: dict[str, Any] = {**parameter_defaults(params, sections, run_parameters), **cluster}
    names = list(defaults)

    def signflow(*args: Any) -> None:
        values = dict(zip(names, args))
        tasks: dict[str, dsl.PipelineTask] = {}
        if imported:
            # The dataset is already in object storage: import it (no download pod, no copy).
            tasks[imported] = dsl.importer(
                artifact_uri=values[RAW_URI_PARAM], artifact_class=dsl.Dataset, reimport=False
            ).set_display_name(f"{imported} (imported)")

        def output(producer: str, name: str) -> Any:
            return tasks[producer].output if producer == imported else tasks[producer].outputs[name]

        for stage in stages:
            step = steps[stage.name]
            arguments: dict[str, Any] = {item.name: output(item.producer, item.producer_output) for item in stage.inputs}
            arguments.update({section_input(section): values[section_input(section)] for section in step.sections})
            arguments.update({name: values[name] for name in step.run_parameters})
            gpus = values.get(gpu_parameter(stage.name))
            if NPROC_INPUT in step.cluster:
                arguments[NPROC_INPUT] = 1 if gpus is None else gpus  # torchrun workers = GPUs of this run
            if multinode and NODES_INPUT in step.cluster:
                arguments[NODES_INPUT] = values[NODES_INPUT]
                arguments[PYTORCHJOB_INPUT] = job_config
            task = components[stage.name](**arguments)
            _apply_resources(task, stage.name, kubeflow, gpus)
            _apply_cluster(task, kubeflow)
            tasks[stage.name] = task

    # kfp reads a pipeline's inputs from its signature and calls it with one channel per input,
    # positionally; building the signature from the steps and the params keeps each input declared once.
    signflow.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                              annotation=run_parameters.get(name, type(default)))
            for name, default in defaults.items()
        ]
    )
    signflow.__doc__ = _docstring(stages, sections, run_parameters, cluster)
    return dsl.pipeline(name=PIPELINE_NAME, description=signflow.__doc__.splitlines()[0])(signflow)

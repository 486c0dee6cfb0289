"""A Katib ``Experiment`` generated from ``sweep.yaml``: trials run ``stages.train`` via :mod:`pipelines.trial`.

``sweep.yaml`` (next to ``params.yaml``) names params keys and their search space; each key is
checked against the params schema (a typo or a value the stage would refuse fails here, not in
trial 7). The Experiment's trial is a ``batch/v1`` Job whose container runs
``python -m pipelines.trial --data <claim folder> -p key=${trialParameters.<name>} ...`` (base params
from the ConfigMap ``<name>-params``, :func:`pipelines.trainjob.params_configmap`) and prints
``val_top1=<value>``, which Katib's StdOut metrics collector reads (its default filter is
``([\\w|-]+)\\s*=\\s*(...)``). The trial reads the features, label map and weights from the claim
``kubeflow.pvc`` (the layout of :func:`pipelines.trainjob.train_args`), so extract runs once, not per trial.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines import PipelineError
from pipelines.params import kind_of
from pipelines.pipeline import TELEMETRY_OFF, stage_resources
from pipelines.trainjob import (
    PARAMS_FILE,
    add_shm,
    container_resources,
    manifest_metadata,
    on_claim,
    params_volume,
    schedule,
)
from signflow.config import Params, ParamsError, apply_overrides

API_VERSION = "kubeflow.org/v1beta1"
TRIAL_CONTAINER = "training-container"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Objective(_Strict):
    metric: Literal["val_top1", "val_top5", "val_loss"] = "val_top1"
    type: Literal["maximize", "minimize"] = "maximize"
    goal: float | None = None


class SearchSpace(_Strict):
    """Numbers: ``min``/``max`` (+ ``step``); anything: ``values``."""

    min: float | None = None
    max: float | None = None
    step: float | None = Field(None, gt=0)
    values: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> SearchSpace:
        ranged = self.min is not None or self.max is not None
        if ranged == (self.values is not None):
            raise ValueError("give either min and max, or values")
        if ranged and (self.min is None or self.max is None or self.min >= self.max):
            raise ValueError("min and max are both needed, min < max")
        return self


class Sweep(_Strict):
    objective: Objective = Objective()
    algorithm: Literal["random", "grid", "bayesianoptimization", "tpe"] = "random"
    max_trials: int = Field(12, ge=1, le=1000)
    parallel_trials: int = Field(3, ge=1, le=100)
    max_failed_trials: int = Field(3, ge=0)
    parameters: dict[str, SearchSpace] = Field(min_length=1)


def trial_name(key: str) -> str:
    """``train.lr`` -> ``train_lr``: the name in ``${trialParameters.<name>}``."""
    return re.sub(r"\W", "_", key)


def load_sweep(path: Path, params: Params) -> Sweep:
    """``sweep.yaml`` validated, and every key and value checked against the params schema."""
    if not path.is_file():
        raise PipelineError(f"{path}: no sweep file (see sweep.yaml next to params.yaml)")
    try:
        sweep = Sweep.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise PipelineError(f"{path}: {problems}") from None
    for key, space in sweep.parameters.items():
        try:
            kind = kind_of(key)
            if space.values is None and kind not in ("int", "float"):
                raise ParamsError(f"{key} is a {kind}: give values: [...], not min/max")
            probes = space.values if space.values is not None else [space.min, space.max]
            for value in probes:
                if kind == "int" and isinstance(value, float) and value.is_integer():
                    value = int(value)
                apply_overrides(params, [f"{key}={json.dumps(value)}"])  # JSON is YAML
        except ParamsError as error:
            raise PipelineError(f"{path}: parameters.{key}: {error}") from None
    return sweep


def _parameter_spec(key: str, space: SearchSpace) -> dict[str, Any]:
    kind = kind_of(key)
    if space.values is not None:
        numeric = kind in ("int", "float")
        return {
            "name": trial_name(key),
            "parameterType": "discrete" if numeric else "categorical",
            "feasibleSpace": {"list": [str(value) for value in space.values]},
        }
    feasible: dict[str, str] = {
        "min": str(int(space.min)) if kind == "int" else repr(float(space.min)),  # type: ignore[arg-type]
        "max": str(int(space.max)) if kind == "int" else repr(float(space.max)),  # type: ignore[arg-type]
    }
    if space.step is not None:
        feasible["step"] = str(int(space.step)) if kind == "int" else repr(float(space.step))
    return {"name": trial_name(key), "parameterType": "int" if kind == "int" else "double", "feasibleSpace": feasible}


def experiment(
    params: Params, sweep: Sweep, *, name: str, image: str, data: str, namespace: str | None = None
) -> dict[str, Any]:
    """The Katib Experiment manifest for ``sweep`` (a plain dict for ``kubectl apply -f``)."""
    kubeflow = params.kubeflow
    if not kubeflow.pvc:
        raise PipelineError(
            "trials read the extracted features from a claim: set kubeflow.pvc (e.g. -p kubeflow.pvc=signflow-data)"
        )
    on_claim("--data", data, kubeflow)
    mount = kubeflow.pvc_mount_path.rstrip("/")
    command = ["python", "-m", "pipelines.trial", "--params", PARAMS_FILE,
               "--data", data, "--out", "/scratch/trial", "--metric", sweep.objective.metric]  # fmt: skip
    for key in sweep.parameters:
        command += ["-p", f"{key}=${{trialParameters.{trial_name(key)}}}"]
    resources = stage_resources(kubeflow, "train")
    params_vol, params_mount = params_volume(f"{name}-params")
    volumes: list[dict[str, Any]] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": kubeflow.pvc, "readOnly": True}},
        {"name": "scratch", "emptyDir": {"sizeLimit": resources.scratch} if resources.scratch else {}},
        params_vol,
    ]
    mounts = [{"name": "data", "mountPath": mount, "readOnly": True}, {"name": "scratch", "mountPath": "/scratch"},
              params_mount]
    add_shm(resources, volumes, mounts)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [{
            "name": TRIAL_CONTAINER,
            "image": image,
            "command": command,
            "env": [{"name": k, "value": v} for k, v in {**TELEMETRY_OFF, "TMPDIR": "/scratch"}.items()],
            "resources": container_resources(kubeflow, resources),
            "volumeMounts": mounts,
        }],
        "volumes": volumes,
    }  # fmt: skip
    schedule(pod, kubeflow, resources.gpus or 0)
    objective: dict[str, Any] = {"type": sweep.objective.type, "objectiveMetricName": sweep.objective.metric}
    if sweep.objective.goal is not None:
        objective["goal"] = sweep.objective.goal
    return {
        "apiVersion": API_VERSION,
        "kind": "Experiment",
        "metadata": manifest_metadata(name, namespace),
        "spec": {
            "objective": objective,
            "algorithm": {"algorithmName": sweep.algorithm},
            "maxTrialCount": sweep.max_trials,
            "parallelTrialCount": sweep.parallel_trials,
            "maxFailedTrialCount": sweep.max_failed_trials,
            "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
            "parameters": [_parameter_spec(key, space) for key, space in sweep.parameters.items()],
            "trialTemplate": {
                "primaryContainerName": TRIAL_CONTAINER,
                "trialParameters": [
                    {"name": trial_name(key), "description": f"params.yaml {key}", "reference": trial_name(key)}
                    for key in sweep.parameters
                ],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "backoffLimit": 0,
                        "template": {
                            # Katib's sidecar must see the container exit; Istio's would keep the pod alive.
                            "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                            "spec": pod,
                        },
                    },
                },
            },
        },
    }

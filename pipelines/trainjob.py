"""Multi-node training as a Kubeflow Training Operator ``PyTorchJob`` running the same ``stages.train``.

The operator starts one Master and ``nodes - 1`` Worker pods, each with the GPUs of
``kubeflow.resources.train.gpus``, and injects ``MASTER_ADDR``/``MASTER_PORT`` (the master pod's
service). Every pod runs :func:`torchrun_command`: ``torchrun --nnodes=N --nproc-per-node=G
--rdzv-backend=c10d --rdzv-endpoint=$(MASTER_ADDR):$(MASTER_PORT) -m stages.train ...``; kubelet
expands ``$(VAR)`` from the container's environment, so the rendezvous address is the operator's.
``train.batch_size`` stays the global batch (split over ``N x G`` ranks, as with one pod).

The params (``model``, ``train``) travel as a ConfigMap applied with the job. The pods share
nothing else but the claim ``kubeflow.pvc`` (ReadWriteMany for several nodes): the
features, label map and weights are read from ``--data`` on it, the model is written to ``--out``
on it by rank 0, checkpoints to the state folder on it, so a restarted job resumes.
``tests/test_pytorchjob.py`` validates the manifest against the official ``kubeflow-training`` SDK
models and runs its command as two loopback "nodes".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

import yaml

from pipelines import PipelineError
from pipelines.pipeline import TELEMETRY_OFF, stage_resources
from pipelines.runtime import STATE_DIR_ENV
from signflow.config import KubeflowParams, KubeflowResources, Params
from signflow.stage_params import ParamsView
from stages.train import PARAMS as TRAIN_PARAMS

API_VERSION = "kubeflow.org/v1"
CONTAINER = "pytorch"  # the operator finds the training container by this name
PARAMS_MOUNT = "/etc/signflow"  # the params ConfigMap, mounted read-only
PARAMS_FILE = f"{PARAMS_MOUNT}/params.yaml"


def torchrun_command(nodes: int, nproc_per_node: int, job_id: str, train_args: Sequence[str]) -> list[str]:
    """The command of every replica: torchrun with a c10d rendezvous at the operator's master address."""
    if nodes < 1 or nproc_per_node < 1:
        raise PipelineError(f"multi-node training needs nodes >= 1 and GPUs per node >= 1 (got {nodes}, {nproc_per_node})")
    return [
        "python", "-m", "torch.distributed.run",
        f"--nnodes={nodes}", f"--nproc-per-node={nproc_per_node}",
        "--rdzv-backend=c10d", "--rdzv-endpoint=$(MASTER_ADDR):$(MASTER_PORT)", f"--rdzv-id={job_id}",
        "-m", "stages.train", *train_args,
    ]  # fmt: skip


def train_params_yaml(params: Params) -> str:
    """The params file ``stages.train`` reads: exactly its declared keys (``stages.train.PARAMS``)."""
    return yaml.safe_dump(ParamsView(params, TRAIN_PARAMS, "train").model_dump(mode="json"), sort_keys=False)


def manifest_metadata(name: str, namespace: str | None = None) -> dict[str, Any]:
    """``metadata`` of every object signflow generates for ``kubectl apply``."""
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/part-of": "signflow"}}
    if namespace:
        metadata["namespace"] = namespace
    return metadata


def params_configmap(name: str, params: Params, namespace: str | None = None) -> dict[str, Any]:
    """The run's params (the keys train reads) as a ConfigMap, mounted at :data:`PARAMS_MOUNT`."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": manifest_metadata(name, namespace),
            "data": {"params.yaml": train_params_yaml(params)}}  # fmt: skip


def params_volume(configmap: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, volumeMount) of the params ConfigMap."""
    return ({"name": "params", "configMap": {"name": configmap}},
            {"name": "params", "mountPath": PARAMS_MOUNT, "readOnly": True})  # fmt: skip


def train_args(params_path: str, data: str, out: str, state: str) -> list[str]:
    """``stages.train`` flags for a run folder on the shared volume (the dvc.yaml layout inside it)."""
    root, target = PurePosixPath(data), PurePosixPath(out)
    return [
        "--params", params_path,
        "--features", str(root / "features"),
        "--labels", str(root / "split" / "label_map.json"),
        "--weights", str(root / "weights"),
        "--out", str(target / "model"),
        "--live", str(target / "dvclive"),
        "--checkpoints", str(PurePosixPath(state) / "checkpoints"),
        "--no-progress",
    ]  # fmt: skip


def on_claim(flag: str, path: str, kubeflow: KubeflowParams) -> None:
    """Refuse a ``--data``/``--out`` folder that is not under the claim's mount path."""
    mount = kubeflow.pvc_mount_path.rstrip("/")
    if not (path == mount or path.startswith(mount + "/")):
        raise PipelineError(f"{flag} {path}: must be on the claim, under {mount} (kubeflow.pvc_mount_path)")


def container_resources(kubeflow: KubeflowParams, resources: KubeflowResources) -> dict[str, dict[str, str]]:
    """A container's ``resources``: the stage's CPU/memory requests and limits, its GPUs as a limit."""
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    for key, target in (("cpu_request", requests), ("memory_request", requests), ("cpu_limit", limits),
                        ("memory_limit", limits)):  # fmt: skip
        value = getattr(resources, key)
        if value is not None:
            target[key.split("_")[0]] = value
    if resources.gpus:
        limits[kubeflow.accelerator_type] = str(resources.gpus)
    return {"limits": limits, "requests": requests}


def add_shm(resources: KubeflowResources, volumes: list[dict[str, Any]], mounts: list[dict[str, Any]]) -> None:
    """A memory-backed ``/dev/shm`` of ``resources.shm`` (data loader workers, NCCL), when set."""
    if resources.shm:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": resources.shm}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})


def schedule(pod: dict[str, Any], kubeflow: KubeflowParams, gpus: int) -> dict[str, Any]:
    """``pod`` with the cluster's node selectors, GPU tolerations and image pull secrets."""
    selector = {**kubeflow.node_selector, **(kubeflow.gpu_node_selector if gpus else {})}
    if selector:
        pod["nodeSelector"] = selector
    if gpus and kubeflow.gpu_tolerations:
        pod["tolerations"] = [t.model_dump(exclude_none=True) for t in kubeflow.gpu_tolerations]
    if kubeflow.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": secret} for secret in kubeflow.image_pull_secrets]
    return pod


def pytorchjob(
    params: Params, *, name: str, image: str, nodes: int, data: str, out: str, namespace: str | None = None
) -> dict[str, Any]:
    """The PyTorchJob manifest (a plain dict, ready for ``kubectl apply -f``).

    ``data``/``out`` are folders on ``kubeflow.pvc`` (mounted at ``kubeflow.pvc_mount_path``); the
    params come from the ConfigMap ``<name>-params`` (:func:`params_configmap`), applied with it.
    """
    kubeflow = params.kubeflow
    if nodes < 2:
        raise PipelineError(f"--nodes {nodes}: a PyTorchJob is for 2 or more nodes; one node is the pipeline's train step")
    if not kubeflow.pvc:
        raise PipelineError(
            "multi-node training reads its data from and writes its model to a shared volume: "
            "set kubeflow.pvc to a ReadWriteMany claim (e.g. -p kubeflow.pvc=signflow-data)"
        )
    on_claim("--data", data, kubeflow)
    on_claim("--out", out, kubeflow)
    mount = kubeflow.pvc_mount_path.rstrip("/")
    resources = stage_resources(kubeflow, "train")
    gpus = resources.gpus or 0
    state = f"{mount}/state/train/{name}"
    params_vol, params_mount = params_volume(f"{name}-params")
    volumes: list[dict[str, Any]] = [{"name": "data", "persistentVolumeClaim": {"claimName": kubeflow.pvc}}, params_vol]
    mounts = [{"name": "data", "mountPath": mount}, params_mount]
    add_shm(resources, volumes, mounts)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "command": torchrun_command(nodes, max(1, gpus), name, train_args(PARAMS_FILE, data, out, state)),
        "env": [{"name": key, "value": value} for key, value in {**TELEMETRY_OFF, STATE_DIR_ENV: f"{mount}/state"}.items()],
        "resources": container_resources(kubeflow, resources),
        "volumeMounts": mounts,
    }
    pod = schedule({"containers": [container], "volumes": volumes}, kubeflow, gpus)

    def replicas(count: int) -> dict[str, Any]:
        # OnFailure: a crashed or preempted pod restarts and resumes from the checkpoint on the claim.
        return {"replicas": count, "restartPolicy": "OnFailure", "template": {"spec": pod}}

    return {
        "apiVersion": API_VERSION,
        "kind": "PyTorchJob",
        "metadata": manifest_metadata(name, namespace),
        "spec": {
            "nprocPerNode": str(max(1, gpus)),
            "runPolicy": {"backoffLimit": max(1, kubeflow.retries), "cleanPodPolicy": "None"},
            "pytorchReplicaSpecs": {"Master": replicas(1), "Worker": replicas(nodes - 1)},
        },
    }

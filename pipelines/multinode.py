"""Inside the train step: with ``train_nodes > 1``, run the training as a PyTorchJob and collect its model.

The step's pod does not train. It copies its input artifacts onto the claim (``kubeflow.pvc``,
the only storage the job's pods share), applies the params ConfigMap and the PyTorchJob of
:mod:`pipelines.trainjob` in its own namespace, waits for the job's ``Succeeded``/``Failed``
condition, and copies the model and dvclive folders from the claim into its output artifacts, so
evaluate and package go on as after a one-pod train. The job is named after the step's state key
(params + input artifacts): a retried step finds the job it created (HTTP 409) and follows it
instead of starting another. The step's service account needs ``create``/``get`` on
``configmaps`` and ``pytorchjobs.kubeflow.org`` (docs/kubeflow.md).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from pipelines.runtime import STATE_DIR_ENV, StageFailed, flag_values
from pipelines.trainjob import params_configmap, pytorchjob
from signflow.config import parse_params

log = logging.getLogger("pipelines.multinode")
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
# train flag -> place inside the run's data folder (pipelines.trainjob.train_args' layout)
DATA_LAYOUT = {"--features": "features", "--labels": "split/label_map.json", "--weights": "weights"}
GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"


def _namespace(environ: Mapping[str, str]) -> str:
    if environ.get("SIGNFLOW_NAMESPACE"):
        return environ["SIGNFLOW_NAMESPACE"]
    if Path(NAMESPACE_FILE).is_file():
        return Path(NAMESPACE_FILE).read_text(encoding="utf-8").strip()
    raise StageFailed("train_nodes > 1: no namespace for the PyTorchJob (not in a pod; set SIGNFLOW_NAMESPACE)")


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target)


def _apis() -> tuple[Any, Any]:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        # Outside a pod: $KUBECONFIG (read now: the kubernetes package reads it once at import).
        try:
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        except (config.ConfigException, OSError) as error:
            raise StageFailed(f"train_nodes > 1: no Kubernetes API to create the PyTorchJob ({error})") from None
    return client.CoreV1Api(), client.CustomObjectsApi()


def _create(create: Any, what: str, **kwargs: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        create(**kwargs)
        log.info("created %s", what)
    except ApiException as error:
        if error.status != 409:
            raise StageFailed(f"cannot create {what}: {error.status} {error.reason}: {error.body}") from None
        log.info("%s exists already (a retried step): following it", what)


def _condition(job: Mapping[str, Any]) -> str | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Succeeded", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


def run_pytorchjob(
    argv: Sequence[str],
    params_text: str,
    key: str,
    nodes: int,
    job_config: Mapping[str, Any] | None,
    environ: Mapping[str, str] | None = None,
    poll_s: float = 15.0,
) -> None:
    """Train on ``nodes`` pods through the Training Operator; fill the step's model/live artifacts.

    ``argv``: the train step's command line (artifact paths); ``job_config``: the image and the
    kubeflow section the job's pods get (the train step's ``pytorchjob`` input).
    """
    environ = os.environ if environ is None else environ
    if not job_config or not environ.get(STATE_DIR_ENV):
        raise StageFailed("train_nodes > 1 needs a shared claim: compile with kubeflow.pvc set")
    params = parse_params({**yaml.safe_load(params_text), "kubeflow": job_config["kubeflow"]}, "train step")
    mount = Path(params.kubeflow.pvc_mount_path)
    name = f"signflow-train-{key[:12]}"
    run = mount / "runs" / name
    flags = flag_values(argv)
    for flag, place in DATA_LAYOUT.items():
        _copy(Path(flags[flag]), run / "data" / place)
    namespace = _namespace(environ)
    manifest = pytorchjob(params, name=name, image=job_config["image"], nodes=nodes, data=str(run / "data"),
                          out=str(run / "out"), namespace=namespace)  # fmt: skip
    configmap = params_configmap(f"{name}-params", params, namespace)
    core, custom = _apis()
    _create(core.create_namespaced_config_map, f"ConfigMap {configmap['metadata']['name']}",
            namespace=namespace, body=configmap)  # fmt: skip
    _create(custom.create_namespaced_custom_object, f"PyTorchJob {name} ({nodes} nodes)", group=GROUP,
            version=VERSION, namespace=namespace, plural=PLURAL, body=manifest)  # fmt: skip
    while True:
        job = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        state = _condition(job)
        if state == "Failed":
            raise StageFailed(f"PyTorchJob {name} failed: kubectl -n {namespace} describe pytorchjob {name}")
        if state == "Succeeded":
            break
        time.sleep(poll_s)
    model = run / "out" / "model"
    for file in ("model.pt", "preprocess.json"):  # the model, not the job's checkpoints
        _copy(model / file, Path(flags["--out"]) / file)
    if "--live" in flags and (run / "out" / "dvclive").is_dir():
        _copy(run / "out" / "dvclive", Path(flags["--live"]))
    log.info("PyTorchJob %s succeeded; model copied from %s", name, model)

"""Multi-node training: the PyTorchJob manifest is valid for the Training Operator's API and its
command, run as two loopback "nodes" (torchrun c10d rendezvous, one process each, gloo on CPU),
trains to the same weights as one process.

The two processes get what the operator gives each replica: ``MASTER_ADDR``/``MASTER_PORT`` (here
127.0.0.1 and a free port) substituted for ``$(...)`` in the command as kubelet does, ``RANK``,
``WORLD_SIZE``; the claim is a temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from loopback import QuietJsonHandler
from training_data import make_features, tiny_params

from pipelines import PipelineError
from pipelines.trainjob import PARAMS_FILE, params_configmap, pytorchjob
from signflow.config import apply_overrides
from signflow.models import read_model_file

REPO = Path(__file__).resolve().parents[1]
# Frozen backbone + feature cache + no dropout: no per-rank batch statistics, so 2 ranks x batch 4
# equal 1 process x batch 8 up to float summation order (as in tests/test_distributed.py).
DETERMINISTIC = ("train.epochs=2", "train.batch_size=8", "model.cnn_lstm.freeze=all", "train.feature_cache=true")


def _params(claim: Path, *extra: str) -> Any:
    return apply_overrides(
        tiny_params(*DETERMINISTIC),
        ["kubeflow.pvc=signflow-data", f"kubeflow.pvc_mount_path={claim}", *extra],
    )


def _round_trip(manifest: dict[str, Any]) -> dict[str, Any]:
    """Through the official SDK models: unknown or misspelt fields are dropped, wrong types raise."""
    from kubeflow.training.api_client import ApiClient

    client = ApiClient()
    model = client._ApiClient__deserialize(manifest, "KubeflowOrgV1PyTorchJob")  # the SDK's own decoder
    return client.sanitize_for_serialization(model)


def test_manifest_matches_the_training_operator_models(tmp_path: Path) -> None:
    params = _params(Path("/mnt/signflow"), "kubeflow.resources.train.gpus=4", "kubeflow.image_pull_secrets=[ghcr]")
    manifest = pytorchjob(params, name="signflow-train", image="ghcr.io/x/signflow:1-cu130", nodes=3,
                          data="/mnt/signflow/runs/r1", out="/mnt/signflow/runs/r1/out", namespace="team-ml")
    assert _round_trip(manifest) == manifest
    configmap = params_configmap("signflow-train-params", params, namespace="team-ml")
    from kubernetes.client import ApiClient as CoreClient

    core = CoreClient()
    decoded = core._ApiClient__deserialize(configmap, "V1ConfigMap")
    assert core.sanitize_for_serialization(decoded) == configmap
    assert set(yaml.safe_load(configmap["data"]["params.yaml"])) == {"model", "train"}
    specs = manifest["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 2
    assert manifest["spec"]["nprocPerNode"] == "4"
    pod = specs["Worker"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "pytorch" and container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert "--nnodes=3" in container["command"] and "--nproc-per-node=4" in container["command"]
    assert "--rdzv-endpoint=$(MASTER_ADDR):$(MASTER_PORT)" in container["command"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]
    assert pod["imagePullSecrets"] == [{"name": "ghcr"}] and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    yaml.safe_load(yaml.safe_dump(manifest))  # plain data, ready for kubectl apply


@pytest.mark.parametrize(
    ("overrides", "kwargs", "message"),
    [
        (["kubeflow.pvc=null"], {}, "set kubeflow.pvc"),
        ([], {"nodes": 1}, "2 or more nodes"),
        ([], {"data": "/elsewhere"}, "must be on the claim"),
    ],
)
def test_manifest_refuses_what_cannot_run(overrides: list[str], kwargs: dict[str, Any], message: str) -> None:
    params = apply_overrides(_params(Path("/mnt/signflow")), overrides)
    arguments = {"name": "j", "image": "i:1", "nodes": 2, "data": "/mnt/signflow/d", "out": "/mnt/signflow/o", **kwargs}
    with pytest.raises(PipelineError, match=message):
        pytorchjob(params, **arguments)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _expand(command: list[str], environ: dict[str, str]) -> list[str]:
    """What kubelet does with ``$(VAR)`` in a container command."""
    return [re.sub(r"\$\((\w+)\)", lambda m: environ[m.group(1)], part) for part in command]


def _weights(path: Path) -> torch.Tensor:
    state = read_model_file(path)["state_dict"]
    keys = [k for k, v in state.items() if v.is_floating_point() and "running" not in k]
    return torch.cat([state[k].flatten() for k in keys])


@pytest.mark.slow  # two torchrun "nodes" + a reference run: ~1 min on 2 cores
@pytest.mark.timeout(600)
def test_two_node_rendezvous_reaches_the_weights_of_one_process(tmp_path: Path) -> None:
    claim = tmp_path / "claim"
    data, out = claim / "data", claim / "run"
    features, labels = make_features(data, per_class={"train": 4, "val": 2})
    (data / "split").mkdir(parents=True)
    labels.rename(data / "split" / "label_map.json")
    (data / "weights").mkdir()
    params = _params(claim)
    manifest = pytorchjob(params, name="tiny", image="unused:1", nodes=2, data=str(data), out=str(out))
    # The params ConfigMap applied with the job, "mounted" where the command reads it.
    mounted = tmp_path / "etc-signflow" / "params.yaml"
    mounted.parent.mkdir()
    mounted.write_text(params_configmap("tiny-params", params)["data"]["params.yaml"], encoding="utf-8")
    command = manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["command"]
    assert command == manifest["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["command"]

    operator_env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2"}
    base_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    argv = [str(mounted) if part == PARAMS_FILE else part for part in _expand(command, operator_env)]
    assert argv[0] == "python"
    argv[0] = sys.executable
    nodes = [
        subprocess.Popen(argv, cwd=REPO, env={**base_env, **operator_env, "RANK": str(rank)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in range(2)
    ]
    logs = [node.communicate(timeout=540)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(log[-3000:] for log in logs)
    joined = "\n".join(logs)
    assert joined.count("process group: backend=gloo rank=0/2") == 1  # one world of 2 (rank 1 logs warnings only)

    # The same stage, one process, same data and params: the reference.
    single = tmp_path / "single"
    train_flags = argv[argv.index("stages.train") + 1 :]
    train_flags[train_flags.index("--out") + 1] = str(single / "model")
    train_flags[train_flags.index("--live") + 1] = str(single / "dvclive")
    train_flags[train_flags.index("--checkpoints") + 1] = str(single / "checkpoints")
    reference = subprocess.run([sys.executable, "-m", "stages.train", *train_flags], cwd=REPO, env=base_env,
                               capture_output=True, text=True, timeout=540)
    assert reference.returncode == 0, reference.stderr[-3000:]

    a, b = _weights(single / "model" / "model.pt"), _weights(out / "model" / "model.pt")
    relative = float((a - b).norm() / a.norm())
    assert relative < 1e-3, relative
    print(f"2-node vs 1-process relative weight difference: {relative:.2e}")


# --------------------------------------------------------------------------- from the pipeline's train step


class FakeCluster:
    """A loopback Kubernetes API with a stand-in Training Operator.

    ``POST`` of a ConfigMap stores it; ``POST`` of a PyTorchJob validates it with the SDK models,
    "mounts" its ConfigMap and starts every replica's command as a local process with the
    operator's ``MASTER_ADDR``/``MASTER_PORT``; ``GET`` answers the job with ``Succeeded`` or
    ``Failed`` once all replicas exited.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.configmaps: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.processes: dict[str, list[subprocess.Popen[str]]] = {}
        self.posts: list[str] = []

    def start_job(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        configmap = self.configmaps[job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["volumes"][1]
                                    ["configMap"]["name"]]
        mounted = self.root / name / "params.yaml"
        mounted.parent.mkdir(parents=True)
        mounted.write_text(configmap["data"]["params.yaml"], encoding="utf-8")
        env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
        commands = []
        for role in ("Master", "Worker"):
            spec = job["spec"]["pytorchReplicaSpecs"][role]
            (container,) = spec["template"]["spec"]["containers"]
            commands += [container["command"]] * spec["replicas"]
        self.processes[name] = []
        for rank, command in enumerate(commands):
            argv = [str(mounted) if part == PARAMS_FILE else part for part in _expand(command, env)]
            argv[0] = sys.executable
            self.processes[name].append(subprocess.Popen(
                argv, cwd=REPO, env={**os.environ, **env, "RANK": str(rank), "OMP_NUM_THREADS": "1"},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
            ))

    def status(self, name: str) -> dict[str, Any]:
        codes = [process.poll() for process in self.processes.get(name, [])]
        if not codes or None in codes:
            return {"conditions": [{"type": "Running", "status": "True"}]}
        kind = "Succeeded" if all(code == 0 for code in codes) else "Failed"
        return {"conditions": [{"type": "Running", "status": "False"}, {"type": kind, "status": "True"}]}


def _k8s_handler(cluster: FakeCluster) -> type:
    class Handler(QuietJsonHandler):

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            cluster.posts.append(self.path)
            name = body["metadata"]["name"]
            if self.path == "/api/v1/namespaces/team-ml/configmaps":
                cluster.configmaps[name] = body
                self._reply(201, body)
            elif self.path == "/apis/kubeflow.org/v1/namespaces/team-ml/pytorchjobs":
                if name in cluster.jobs:
                    self._reply(409, {"kind": "Status", "reason": "AlreadyExists", "code": 409})
                    return
                assert _round_trip(body) == body  # what the operator would accept
                cluster.jobs[name] = body
                cluster.start_job(body)
                self._reply(201, body)
            else:
                self._reply(404, {"kind": "Status", "code": 404})

        def do_GET(self) -> None:  # noqa: N802
            prefix = "/apis/kubeflow.org/v1/namespaces/team-ml/pytorchjobs/"
            name = self.path[len(prefix):] if self.path.startswith(prefix) else ""
            if name in cluster.jobs:
                self._reply(200, {**cluster.jobs[name], "status": cluster.status(name)})
            else:
                self._reply(404, {"kind": "Status", "code": 404})

    return Handler


@pytest.mark.slow  # a 2-node job of the stand-in operator: ~1-3 min on 2 cores
@pytest.mark.timeout(600)
def test_train_step_with_train_nodes_runs_a_pytorchjob_and_collects_its_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    from http.server import ThreadingHTTPServer

    from kfp import dsl

    from pipelines import multinode
    from pipelines.components import interface
    from pipelines.params import parameter_defaults
    from pipelines.steps import train as train_step
    from pipelines.wiring import load_dvc, stages_from_dvc

    claim = tmp_path / "claim"
    inputs = tmp_path / "artifacts"
    make_features(inputs, per_class={"train": 4, "val": 2})
    (inputs / "split").mkdir()
    (inputs / "label_map.json").rename(inputs / "split" / "label_map.json")
    (inputs / "weights").mkdir()
    params = _params(claim)

    cluster = FakeCluster(tmp_path / "mounted")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _k8s_handler(cluster))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
        "clusters": [{"name": "stand-in", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }), encoding="utf-8")  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("SIGNFLOW_NAMESPACE", "team-ml")
    monkeypatch.setenv("SIGNFLOW_STATE_DIR", str(claim / "state"))
    monkeypatch.setattr(multinode.run_pytorchjob, "__defaults__", (None, 0.5))  # poll every 0.5 s

    (train,) = [stage for stage in stages_from_dvc(load_dvc(REPO / "dvc.yaml")) if stage.name == "train"]
    trainjob = {"image": "ghcr.io/x/signflow:1", "kubeflow": params.kubeflow.model_dump(mode="json")}
    step = interface(train_step)
    values: dict[str, Any] = parameter_defaults(params, step.sections, step.run_parameters)
    sources = {"features": inputs / "features", "split": inputs / "split", "weights": inputs / "weights"}
    for item in train.inputs:
        values[item.name] = dsl.Dataset(name=item.name, uri=str(sources[item.name]), metadata={})
    classes = {"Model": dsl.Model, "Metrics": dsl.Metrics, "Artifact": dsl.Artifact}
    for output in [*train.outputs, *train.derived]:
        uri = str(tmp_path / "out" / output.name)
        values[output.name] = classes[output.type_name](name=output.name, uri=uri, metadata={})
    values.update({"nproc_per_node": 1, "train_nodes": 2, "pytorchjob": yaml.safe_dump(trainjob)})
    try:
        train_step(**values)
        # A retried step (same params and inputs) re-attaches to the job instead of starting another.
        train_step(**values)
    finally:
        server.shutdown()
        server.server_close()

    assert cluster.posts.count("/apis/kubeflow.org/v1/namespaces/team-ml/pytorchjobs") == 2 and len(cluster.jobs) == 1
    ((name, job),) = cluster.jobs.items()
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    model = Path(values["model"].path)
    assert sorted(p.name for p in model.iterdir()) == ["model.pt", "preprocess.json"]
    assert read_model_file(model / "model.pt")["extra"]["train"]["epochs_trained"] == 2
    assert (claim / "runs" / name / "data" / "split" / "label_map.json").is_file()  # inputs went to the claim

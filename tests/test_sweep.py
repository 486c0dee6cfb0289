"""Katib sweeps: sweep.yaml -> an Experiment valid for Katib's SDK models, and a trial that trains and
prints ``val_top1=<value>`` in the format Katib's StdOut metrics collector parses."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines import PipelineError
from pipelines import manifests as manifests_cli
from pipelines.sweep import experiment, load_sweep
from signflow.config import apply_overrides, load_params
from training_data import make_features, tiny_params

REPO = Path(__file__).resolve().parents[1]
# Katib's StdOut collector default filter (pkg/metricscollector/v1beta1/common: DefaultFilter).
KATIB_DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"


def _params() -> Any:
    return apply_overrides(load_params(REPO / "params.yaml"), ["kubeflow.pvc=signflow-data"])


def _katib_round_trip(manifest: dict[str, Any]) -> dict[str, Any]:
    """Through Katib's pydantic models; extra or misspelt fields are dropped, wrong types raise."""
    from kubeflow_katib_api.models import V1beta1Experiment

    return V1beta1Experiment.from_dict(manifest).to_dict()


def test_repo_sweep_is_a_valid_katib_experiment() -> None:
    params = _params()
    sweep = load_sweep(REPO / "sweep.yaml", params)
    manifest = experiment(params, sweep, name="signflow-sweep", image="ghcr.io/x/signflow:1-cu130",
                          data="/mnt/signflow/runs/base", namespace="team-ml")
    assert _katib_round_trip(manifest) == manifest
    spec = manifest["spec"]
    assert spec["objective"]["objectiveMetricName"] == "val_top1"
    assert spec["metricsCollectorSpec"] == {"collector": {"kind": "StdOut"}}
    by_name = {p["name"]: p for p in spec["parameters"]}
    assert by_name["train_lr"]["parameterType"] == "double"
    assert by_name["train_batch_size"] == {"name": "train_batch_size", "parameterType": "discrete",
                                           "feasibleSpace": {"list": ["8", "16", "32"]}}
    # Every search parameter reaches the trial command through ${trialParameters.<name>}.
    template = spec["trialTemplate"]
    command = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    for item in template["trialParameters"]:
        assert any(f"${{trialParameters.{item['name']}}}" in part for part in command)
    assert {p["name"] for p in template["trialParameters"]} == set(by_name)
    # The trial's Job is a valid batch/v1 Job (Katib keeps trialSpec unstructured).
    from kubernetes.client import ApiClient

    client = ApiClient()
    job = client._ApiClient__deserialize(template["trialSpec"], "V1Job")
    assert client.sanitize_for_serialization(job) == template["trialSpec"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"parameters": {"train.lrr": {"min": 0.1, "max": 1}}}, "train.lrr: unknown parameter"),
        ({"parameters": {"train.lr": {"min": 1, "max": 0.1}}}, "min < max"),
        ({"parameters": {"train.optimizer": {"min": 1, "max": 2}}}, "give values"),
        ({"parameters": {"train.optimizer": {"values": ["adam", "lion"]}}}, "train.optimizer"),
        ({"parameters": {"train.epochs": {"values": [0, 5]}}}, "train.epochs"),
        ({"algorithm": "hyperband", "parameters": {"train.lr": {"min": 0.1, "max": 1}}}, "algorithm"),
        ({"parameters": {}}, "parameters"),
    ],
)
def test_bad_sweep_files_fail_with_the_key(tmp_path: Path, body: dict[str, Any], message: str) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    with pytest.raises(PipelineError, match=re.escape(message)):
        load_sweep(path, _params())


def test_cli_prints_configmap_and_resource(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--params", str(REPO / "params.yaml"), "--sweep", str(REPO / "sweep.yaml"), "-p", "kubeflow.pvc=data",
            "--data", "/mnt/signflow/runs/base"]
    assert manifests_cli.main(["katib", "--name", "sweep-1", *argv]) == 0
    configmap, resource = yaml.safe_load_all(capsys.readouterr().out)
    assert configmap["kind"] == "ConfigMap" and configmap["metadata"]["name"] == "sweep-1-params"
    assert resource["kind"] == "Experiment"
    assert manifests_cli.main(["pytorchjob", "--name", "ddp", "--nodes", "2", "--out", "/mnt/signflow/o", *argv]) == 0
    assert list(yaml.safe_load_all(capsys.readouterr().out))[1]["kind"] == "PyTorchJob"
    assert manifests_cli.main(["pytorchjob", "--name", "Bad_Name", *argv]) == 2
    assert "--name 'Bad_Name'" in capsys.readouterr().err
    assert manifests_cli.main(["katib", "--name", "s", *argv[:4], "--data", "/mnt/signflow/x"]) == 2
    assert "set kubeflow.pvc" in capsys.readouterr().err


@pytest.mark.slow  # one short training: ~10-20 s on 2 cores
def test_trial_trains_and_prints_the_metric_katib_reads(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_features(data, per_class={"train": 3, "val": 1, "test": 1})
    (data / "split").mkdir()
    (data / "label_map.json").rename(data / "split" / "label_map.json")
    (data / "weights").mkdir()
    base = tmp_path / "params.yaml"
    base.write_text(yaml.safe_dump(tiny_params("train.epochs=1").model_dump(mode="json")), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.trial", "--params", str(base), "--data", str(data), "--out",
         str(tmp_path / "trial"), "-p", "train.lr=0.005", "-p", "train.batch_size=8"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(KATIB_DEFAULT_FILTER, last)
    assert match and match.group(1) == "val_top1" and 0.0 <= float(match.group(2)) <= 1.0, last
    used = yaml.safe_load((tmp_path / "trial" / "params.yaml").read_text(encoding="utf-8"))
    assert used["train"]["lr"] == 0.005 and used["train"]["batch_size"] == 8

    bad = subprocess.run([sys.executable, "-m", "pipelines.trial", "--params", str(base), "--data", str(data),
                          "--out", str(tmp_path / "t2"), "-p", "train.lr=-1"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "train.lr" in bad.stderr

"""The train step's state lives outside its Model artifact, and a retried pod resumes from it.

Runs the real train step (:func:`pipelines.steps.train`, the component body kfp runs, with real kfp
artifact objects and the parameters the compiled pipeline gives it), kills it after its first epoch's checkpoint hit
the disk, starts a fresh "pod" (new output folders, same ``$SIGNFLOW_STATE_DIR``) and checks it
resumes after epoch 1 and ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from kfp import dsl

from pipelines.components import interface
from pipelines.params import parameter_defaults
from pipelines.runtime import STATE_DIR_ENV
from pipelines.steps import train as train_step
from pipelines.wiring import load_dvc, stages_from_dvc
from signflow.models import read_model_file
from signflow.training.checkpoint import CheckpointManager
from training_data import make_features, tiny_params

REPO = Path(__file__).resolve().parents[1]
ARTIFACT_TYPES = {"Dataset": dsl.Dataset, "Model": dsl.Model, "Metrics": dsl.Metrics, "Artifact": dsl.Artifact}


class PodKilled(Exception):
    """Stands in for the node going away right after an epoch's checkpoint was written."""


def _train_values(data: Path, out: Path) -> dict[str, Any]:
    (train,) = [stage for stage in stages_from_dvc(load_dvc(REPO / "dvc.yaml")) if stage.name == "train"]
    params = tiny_params("train.epochs=2")
    step = interface(train_step)
    values: dict[str, Any] = parameter_defaults(params, step.sections, step.run_parameters)
    inputs = {"features": data / "features", "split": data, "weights": data / "weights"}
    for item in train.inputs:
        values[item.name] = dsl.Dataset(name=item.name, uri=str(inputs[item.name]), metadata={})
    for output in train.outputs:
        values[output.name] = ARTIFACT_TYPES[output.type_name](name=output.name, uri=str(out / output.name), metadata={})
    for derived in train.derived:
        values[derived.name] = ARTIFACT_TYPES[derived.type_name](name=derived.name, uri=str(out / derived.name), metadata={})
    values["nproc_per_node"] = 1
    return values


def _weights(values: dict[str, Any]) -> dict[str, torch.Tensor]:
    return read_model_file(Path(values["model"].path) / "model.pt")["state_dict"]


@pytest.mark.slow  # three short trainings: ~25 s on 2 CPU cores
def test_retried_train_pod_resumes_from_state_outside_the_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_features(tmp_path, per_class={"train": 3, "val": 1, "test": 1})
    (tmp_path / "weights").mkdir()
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "pvc-a"))
    straight = _train_values(tmp_path, tmp_path / "straight")
    train_step(**straight)

    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "pvc-b"))
    original_save = CheckpointManager.save

    def save_then_die(self: CheckpointManager, **kwargs: Any) -> None:
        original_save(self, **kwargs)
        if kwargs["state"].epoch == 1:
            raise PodKilled

    monkeypatch.setattr(CheckpointManager, "save", save_then_die)
    first_pod = _train_values(tmp_path, tmp_path / "pod-1")
    with pytest.raises(PodKilled):
        train_step(**first_pod)
    monkeypatch.setattr(CheckpointManager, "save", original_save)
    checkpoints = list((tmp_path / "pvc-b" / "train" / "checkpoints").glob("*/last.pt"))
    assert len(checkpoints) == 1, "the killed pod left its checkpoint on the state volume"

    capsys.readouterr()
    retried_pod = _train_values(tmp_path, tmp_path / "pod-2")  # fresh local disk: new output folders
    train_step(**retried_pod)
    assert "(resumed after 1)" in capsys.readouterr().out

    a, b = _weights(straight), _weights(retried_pod)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The Model artifact holds the model, not the training state (14 of 17 MB before).
    for values in (straight, retried_pod):
        files = sorted(p.relative_to(values["model"].path).as_posix() for p in Path(values["model"].path).rglob("*"))
        assert files == ["model.pt", "preprocess.json"], files


def test_without_a_state_volume_checkpoints_stay_out_of_the_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_features(tmp_path, per_class={"train": 2, "val": 1, "test": 1})
    (tmp_path / "weights").mkdir()
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    values = _train_values(tmp_path, tmp_path / "out")
    values["train__epochs"] = 1
    train_step(**values)
    assert sorted(p.name for p in Path(values["model"].path).iterdir()) == ["model.pt", "preprocess.json"]

"""Checkpoints: exact resume after a kill, weights_only loading, refusing foreign checkpoints."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from signflow.models import read_model_file
from signflow.training import checkpoint as ckpt
from signflow.training.checkpoint import CheckpointError, CheckpointManager
from signflow.training.run import TrainPaths, train
from training_data import make_features, tiny_params


class Killed(Exception):
    """Stands in for SIGKILL right after an epoch's checkpoint hit the disk."""


def test_rng_state_round_trips_through_weights_only_load(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = ckpt.rng_state()
    ckpt.save_checkpoint(tmp_path / "rng.pt", {"meta": {}, "rng": state})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    loaded = ckpt.load_checkpoint(tmp_path / "rng.pt")  # weights_only=True inside
    ckpt.set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_kill_and_resume_gives_identical_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    features, labels = make_features(tmp_path)
    params = tiny_params("train.mixup_alpha=0.2", "train.scheduler=one_cycle")

    straight = train(params.model, params.train, TrainPaths(features, labels, tmp_path / "a"), progress=False)

    original_save = CheckpointManager.save

    def save_then_die(self, **kwargs):
        original_save(self, **kwargs)
        if kwargs["state"].epoch == 1:
            raise Killed

    monkeypatch.setattr(CheckpointManager, "save", save_then_die)
    with pytest.raises(Killed):
        train(params.model, params.train, TrainPaths(features, labels, tmp_path / "b"), progress=False)
    monkeypatch.setattr(CheckpointManager, "save", original_save)
    resumed = train(params.model, params.train, TrainPaths(features, labels, tmp_path / "b"), progress=False)

    assert resumed.resumed_from_epoch == 1 and resumed.state.epoch == 2
    a = read_model_file(straight.model_path)["state_dict"]
    b = read_model_file(resumed.model_path)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight.state.history == resumed.state.history


def test_auto_resume_ignores_a_checkpoint_from_other_params(tmp_path: Path) -> None:
    features, labels = make_features(tmp_path, per_class={"train": 2, "val": 1})
    paths = TrainPaths(features, labels, tmp_path / "m")
    params = tiny_params("train.epochs=1")
    train(params.model, params.train, paths, progress=False)
    changed = tiny_params("train.epochs=1", "train.lr=0.02")
    assert train(changed.model, changed.train, paths, progress=False).resumed_from_epoch == 0


def test_explicit_resume_refuses_other_arch_and_class_count(tmp_path: Path) -> None:
    features, labels = make_features(tmp_path, per_class={"train": 2, "val": 1})
    params = tiny_params("train.epochs=1")
    first = TrainPaths(features, labels, tmp_path / "m")
    train(params.model, params.train, first, progress=False)
    last = first.checkpoints / "last.pt"

    payload = ckpt.load_checkpoint(last)
    payload["meta"]["arch"] = "r3d_18"
    ckpt.save_checkpoint(tmp_path / "other_arch.pt", payload)
    with pytest.raises(CheckpointError, match="model.arch 'r3d_18'"):
        train(params.model, params.train, TrainPaths(features, labels, tmp_path / "x"), resume=str(tmp_path / "other_arch.pt"))

    other_features, other_labels = make_features(tmp_path / "five", num_classes=5, per_class={"train": 2, "val": 1})
    with pytest.raises(CheckpointError, match="4 classes, the label map has 5"):
        train(params.model, params.train, TrainPaths(other_features, other_labels, tmp_path / "y"), resume=str(last))


def test_junk_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "last.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable signflow checkpoint"):
        ckpt.load_checkpoint(junk)

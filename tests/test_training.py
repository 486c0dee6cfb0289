"""Training: datasets, samplers, the stage CLI end to end, and fail-fast checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from training_data import make_features, tiny_params

from signflow.feature_spec import load_spec
from signflow.models import load_model_file
from signflow.shards import ShardReader
from signflow.training.data import ClipDataset, DataError, open_split
from signflow.training.sampler import EpochSampler, ShardSampler
from signflow.transforms import input_config_for
from stages import train as train_stage


def _write_params(path: Path, *overrides: str) -> Path:
    path.write_text(yaml.safe_dump(tiny_params(*overrides).model_dump(mode="json")), encoding="utf-8")
    return path


def test_epoch_sampler_is_a_function_of_seed_and_epoch_and_shards_over_ranks() -> None:
    labels = [0] * 9 + [1]
    single = EpochSampler(labels, seed=3)
    single.set_epoch(1)
    again = EpochSampler(labels, seed=3)
    again.set_epoch(1)
    assert list(single) == list(again) and sorted(single) == list(range(10))
    single.set_epoch(2)
    assert list(single) != list(again)

    ranks = [EpochSampler(labels, seed=3, num_replicas=3, rank=r) for r in range(3)]
    for sampler in ranks:
        sampler.set_epoch(1)
    assert {len(s) for s in ranks} == {4}  # padded to equal length
    assert set().union(*(set(s) for s in ranks)) == set(range(10))
    assert sorted(i for r in range(2) for i in ShardSampler(5, num_replicas=2, rank=r)) == [0, 1, 2, 3, 4]


def test_balanced_sampler_oversamples_rare_classes() -> None:
    labels = [0] * 90 + [1] * 10
    sampler = EpochSampler(labels, seed=0, balanced=True)
    drawn = np.bincount(np.asarray(labels)[list(sampler)], minlength=2)
    assert len(list(sampler)) == 100 and 35 <= drawn[1] <= 65


def test_clip_dataset_augmentation_is_deterministic_per_epoch(tmp_path: Path) -> None:
    features, labels = make_features(tmp_path, per_class={"train": 1})
    glosses = json.loads(labels.read_text())["glosses"]
    cfg = input_config_for("cnn_lstm")
    ds = open_split(features / "train", glosses=glosses, seq_len=4, input_config=cfg, train=True, seed=1)
    assert isinstance(ds, ClipDataset)
    x, y = ds[2]
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y == 2
    assert torch.equal(ds[2][0], x)
    ds.set_epoch(1)
    assert not torch.equal(ds[2][0], x)
    eval_ds = open_split(features / "train", glosses=glosses, seq_len=4, input_config=cfg, train=False)
    assert torch.equal(eval_ds[0][0], eval_ds[0][0])

    with pytest.raises(DataError, match="label map says"):
        open_split(features / "train", glosses=list(reversed(glosses)), seq_len=4, input_config=cfg, train=False)


def test_stage_trains_and_writes_model_preprocess_and_dvclive(tmp_path: Path, capsys) -> None:
    features, labels = make_features(tmp_path, per_class={"train": 4, "val": 1})
    params = _write_params(tmp_path / "params.yaml", "train.epochs=3", "train.early_stopping.patience=5")
    out, live = tmp_path / "models", tmp_path / "dvclive"
    argv = ["--params", str(params), "--features", str(features), "--labels", str(labels), "--out", str(out),
            "--live", str(live), "--no-progress"]  # fmt: skip
    assert train_stage.main(argv) == 0
    assert "cnn_lstm 3 epochs" in capsys.readouterr().out

    model, meta = load_model_file(out / "model.pt", expected_arch="cnn_lstm")
    assert meta["label_map"] == [f"gloss{i}" for i in range(4)]
    assert meta["feature_spec"].seq_len == 4 and meta["input_config"]["layout"] == "TCHW"
    assert meta["input_config"] == input_config_for("cnn_lstm").model_dump(mode="json")
    assert model(torch.zeros(1, 4, 3, 32, 32)).shape == (1, 4)
    # The extract stage's feature spec, carried unchanged (label map and normalisation live elsewhere).
    assert (out / "preprocess.json").read_text() == (features / "preprocess.json").read_text()
    assert load_spec(out) == meta["feature_spec"]
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "checkpoints" / "best.pt").is_file()

    summary = json.loads((live / "metrics.json").read_text())
    assert {"train", "val", "best_epoch", "epochs_trained"} <= summary.keys() and summary["epochs_trained"] == 3
    val_top1 = (live / "plots" / "metrics" / "val" / "top1.tsv").read_text().splitlines()
    assert val_top1[0] == "step\ttop1" and len(val_top1) == 4

    # DVC re-runs a finished training only when its code changed: it trains afresh (not "resume" the
    # old run into the old weights), and dvclive holds that run's history only.
    assert train_stage.main(argv) == 0
    assert "resumed after 0" in capsys.readouterr().out
    assert len((live / "plots" / "metrics" / "val" / "top1.tsv").read_text().splitlines()) == 4


@pytest.mark.parametrize(
    "overrides, preprocess, message",
    [
        ((), {"seq_len": 1}, "seq_len=1 is too short"),
        (("model.cnn_lstm.backbone=mobilenet_v2",), {"frame_size": 16}, "frame_size=16 is too small"),
        ((), {"frame_size": 8}, "frame_size: Input should be greater than or equal to 16 (got 8)"),  # the spec's bound
        ((), {"version": None}, "an unversioned feature spec"),
        (("model.arch=r3d_18",), {"seq_len": 4}, "too short for r3d_18"),
        (("train.amp=fp16", "train.device=cpu"), {}, "fp16 autocast needs CUDA"),
        (("train.batch_size=7",), {}, None),  # fine in one process
    ],
)
def test_bad_params_fail_fast_with_one_line(tmp_path: Path, capsys, overrides, preprocess, message) -> None:
    features, labels = make_features(tmp_path, per_class={"train": 1, "val": 1})
    pre = json.loads((features / "preprocess.json").read_text())
    (features / "preprocess.json").write_text(json.dumps({**pre, **preprocess}))
    params = _write_params(tmp_path / "params.yaml", "train.epochs=1", *overrides)
    argv = ["--params", str(params), "--features", str(features), "--labels", str(labels), "--out", str(tmp_path / "m"),
            "--no-progress"]  # fmt: skip
    code = train_stage.main(argv)
    err = capsys.readouterr().err
    if message is None:
        assert code == 0
        return
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "m" / "model.pt").exists()


def test_missing_features_and_unknown_arch(tmp_path: Path, capsys) -> None:
    params = _write_params(tmp_path / "params.yaml")
    argv = ["--params", str(params), "--features", str(tmp_path / "nope"), "--labels", str(tmp_path / "l.json"),
            "--out", str(tmp_path / "m")]  # fmt: skip
    assert train_stage.main(argv) == 2
    assert "run the extract stage first" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  arch: resnet9000\n")
    assert train_stage.main(["--params", str(bad), *argv[2:]]) == 2
    assert "model.arch" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["r3d_18", "r2plus1d_18"])
def test_video3d_archs_train_one_epoch(tmp_path: Path, arch: str) -> None:
    from signflow.training.run import TrainPaths, train

    features, labels = make_features(tmp_path, per_class={"train": 1, "val": 1}, stored=8, seq_len=8)
    params = tiny_params(f"model.arch={arch}", "train.epochs=1", "train.batch_size=4")
    result = train(params.model, params.train, TrainPaths(features, labels, tmp_path / "m"), progress=False)
    model, meta = load_model_file(result.model_path, expected_arch=arch)
    assert meta["input_config"]["layout"] == "CTHW"
    assert model(torch.zeros(1, 3, 8, 32, 32)).shape == (1, 4)

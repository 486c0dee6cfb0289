"""DDP: the stage under ``torchrun --nproc_per_node=2`` (gloo, CPU) matches a 1-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from signflow.models import read_model_file
from training_data import make_features, tiny_params

pytestmark = pytest.mark.slow  # two torch processes + a reference run: ~30-60 s on 2 cores


def _run(cmd_prefix: list[str], tmp_path: Path, name: str, params: Path, features: Path, labels: Path) -> Path:
    out = tmp_path / name
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [*cmd_prefix, "-m", "stages.train", "--params", str(params), "--features", str(features),
           "--labels", str(labels), "--out", str(out), "--live", str(tmp_path / f"{name}-live"), "--no-progress"]  # fmt: skip
    result = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_two_process_ddp_matches_single_process(tmp_path: Path) -> None:
    features, labels = make_features(tmp_path, per_class={"train": 4, "val": 2})
    params = tmp_path / "params.yaml"
    # Frozen backbone (eval-mode BatchNorm) + feature cache: no per-rank batch statistics, so
    # 2 ranks x batch 4 must equal 1 process x batch 8 up to float summation order. Augmentation is
    # keyed by clip, dropout is off. Also covers the cache under DDP (rank 0 builds it).
    overrides = ("train.epochs=2", "train.batch_size=8", "model.cnn_lstm.freeze=all", "train.feature_cache=true")
    params.write_text(yaml.safe_dump(tiny_params(*overrides).model_dump(mode="json")))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    single = _run([sys.executable], tmp_path, "single", params, features, labels)
    ddp = _run(torchrun, tmp_path, "ddp", params, features, labels)

    a = read_model_file(single / "model.pt")
    b = read_model_file(ddp / "model.pt")
    assert a["extra"]["train"]["epochs_trained"] == b["extra"]["train"]["epochs_trained"] == 2
    keys = [k for k, v in a["state_dict"].items() if v.is_floating_point() and "running" not in k]
    flat_a = torch.cat([a["state_dict"][k].flatten() for k in keys])
    flat_b = torch.cat([b["state_dict"][k].flatten() for k in keys])
    relative = float((flat_a - flat_b).norm() / flat_a.norm())
    assert relative < 1e-3, relative
    loss_a = json.loads((tmp_path / "single-live" / "metrics.json").read_text())["train"]["loss"]
    loss_b = json.loads((tmp_path / "ddp-live" / "metrics.json").read_text())["train"]["loss"]
    assert abs(loss_a - loss_b) < 0.05 * loss_a

"""Tiny random-init models on disk, shaped like the train stage's output (no training: fast).

Used by the packaging and serving tests; not a test module itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from feature_specs import MEDIAPIPE, holistic_spec, rgb_spec

from signflow.config import ModelParams
from signflow.feature_spec import write_spec
from signflow.models import build_model, save_model_file

GLOSSES = ("book", "drink", "computer", "before")


def make_model_dir(
    folder: Path,
    *,
    seed: int = 0,
    glosses: tuple[str, ...] = GLOSSES,
    seq_len: int = 4,
    stored_frames: int = 8,
    frame_size: int = 32,
    hidden: int = 8,
) -> Path:
    """``folder/model.pt`` + ``folder/preprocess.json`` for a small_cnn CNN-LSTM with random weights."""
    torch.manual_seed(seed)
    params = ModelParams.model_validate(
        {"arch": "cnn_lstm", "dropout": 0.0, "cnn_lstm": {"backbone": "small_cnn", "hidden": hidden, "bidirectional": False, "spatial_grid": 1}}
    )
    model = build_model(params, len(glosses), seq_len=seq_len, frame_size=frame_size)
    spec = rgb_spec(seq_len=seq_len, stored_frames=stored_frames, frame_size=frame_size, min_frames=1)
    folder.mkdir(parents=True, exist_ok=True)
    save_model_file(
        folder / "model.pt",
        model,
        arch="cnn_lstm",
        model_params=params,
        num_classes=len(glosses),
        label_map=list(glosses),
        feature_spec=spec,
    )
    write_spec(folder, spec)
    return folder


def make_landmark_model_dir(
    folder: Path, *, seed: int = 0, glosses: tuple[str, ...] = GLOSSES, mediapipe_version: str = MEDIAPIPE
) -> Path:
    """A random-init ``landmark_lstm`` on the Holistic layout, saved exactly as the train stage saves it.

    ``mediapipe_version``: the version its features claim to come from.
    """
    torch.manual_seed(seed)
    spec = holistic_spec(seq_len=8, stored_frames=16, mediapipe_version=mediapipe_version)
    params = ModelParams.model_validate({"arch": "landmark_lstm", "dropout": 0.0, "landmark": {"hidden": 8, "layers": 1}})
    model = build_model(params, len(glosses), seq_len=spec.seq_len, num_joints=spec.num_joints, channels=spec.channels)
    folder.mkdir(parents=True, exist_ok=True)
    save_model_file(folder / "model.pt", model, arch="landmark_lstm", model_params=params, num_classes=len(glosses),
                    label_map=list(glosses), feature_spec=spec)  # fmt: skip
    write_spec(folder, spec)
    return folder


def make_run(folder: Path, metrics: dict, make_model=None, **model_kwargs) -> Path:
    """A run folder as ``package.candidates`` lists it: ``models/`` + ``reports/evaluate/metrics.json``."""
    if make_model is not None:
        make_model(folder / "models")
    else:
        make_model_dir(folder / "models", **model_kwargs)
    report = folder / "reports" / "evaluate" / "metrics.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(metrics), encoding="utf-8")
    return folder

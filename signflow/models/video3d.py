"""3D CNNs from torchvision (R3D-18, R(2+1)D-18) with a signflow head.

Input ``(B, C, T, H, W)`` float, Kinetics-normalised (see :mod:`signflow.transforms`).
The torchvision network is kept intact under ``backbone`` (so Kinetics weights
load by their own key names) with its 400-way ``fc`` replaced by an identity;
``head`` is dropout + linear to the gloss vocabulary.

Registry hooks (:mod:`signflow.archs` entries ``r3d_18``, ``r2plus1d_18``):
:func:`check_fit`, :func:`build`.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torchvision.models.video import r2plus1d_18, r3d_18

from signflow.archs import InputShape
from signflow.config import ModelParams

BUILDERS = {"r3d_18": r3d_18, "r2plus1d_18": r2plus1d_18}
FEATURE_DIM = 512
# Spatial stride: stem /2, layer2-4 /2 each. Temporal stride: layer2-4 /2 each,
# so with fewer than 8 frames the last stage sees padding rather than motion.
SPATIAL_STRIDE = 16
MIN_SEQ_LEN = 8


class Video3D(nn.Module):
    """torchvision video ResNet trunk -> dropout -> linear."""

    def __init__(self, arch: str, num_classes: int, *, dropout: float):
        super().__init__()
        if arch not in BUILDERS:
            raise ValueError(f"unknown 3D arch {arch!r} (expected one of {sorted(BUILDERS)})")
        self.arch = arch
        self.backbone = BUILDERS[arch](weights=None)
        self.backbone.fc = nn.Identity()
        self.feature_dim = FEATURE_DIM
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURE_DIM, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"{self.arch} expects (B, C, T, H, W) input, got shape {tuple(x.shape)}")
        return self.head(self.backbone(x))


def check_fit(params: ModelParams, shape: InputShape) -> None:
    """Enough frames for three temporal halvings, frames at least the spatial stride."""
    arch, seq_len, frame_size = params.arch, shape.seq_len, shape.frame_size
    if seq_len < MIN_SEQ_LEN:
        raise ValueError(
            f"extract.seq_len={seq_len} is too short for {arch}: it halves time 3 times, "
            f"so it needs at least {MIN_SEQ_LEN} frames"
        )
    if frame_size is None or frame_size < SPATIAL_STRIDE:
        raise ValueError(
            f"extract.frame_size={frame_size} is too small for {arch}: it downsamples "
            f"{SPATIAL_STRIDE}x, so frames must be at least {SPATIAL_STRIDE}x{SPATIAL_STRIDE}"
        )


def build(
    params: ModelParams, num_classes: int, shape: InputShape, weights_dir: str | os.PathLike[str] | None
) -> Video3D:
    model = Video3D(params.arch, num_classes, dropout=params.dropout)
    if params.pretrained:
        from signflow.models.weights import load_pretrained

        # Kinetics' 400-way ``fc`` is replaced by the signflow head.
        load_pretrained(
            model.backbone, params.arch, params.weights_path, ignore_prefixes=("fc.",), weights_dir=weights_dir
        )
    return model

"""A throwaway architecture, added the way any arch is: this module + one registry entry (:data:`SPEC`).

``linear_probe``: every frame average-pooled to a ``GRID x GRID`` colour thumbnail, the
thumbnails of all ``seq_len`` frames concatenated, one linear layer. Nothing else in signflow
knows about it; ``tests/test_archs.py`` registers :data:`SPEC` and trains and evaluates it
through the train and evaluate stages. Not a test module itself.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from signflow.archs import ArchSpec, InputShape
from signflow.config import ModelParams

GRID = 4

SPEC = ArchSpec(
    name="linear_probe",
    layout="TCHW",
    builder=f"{__name__}:build",
    fit_check=f"{__name__}:check_fit",
    description="per-frame colour thumbnails, concatenated over time, one linear layer",
)


class LinearProbe(nn.Module):
    """``(B, T, C, H, W)`` -> ``(B, T * C * GRID * GRID)`` thumbnails -> dropout + linear."""

    def __init__(self, num_classes: int, *, seq_len: int, dropout: float):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(GRID)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(seq_len * 3 * GRID * GRID, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps = x.shape[:2]
        thumbnails = self.pool(x.reshape(batch * steps, *x.shape[2:]))
        return self.head(thumbnails.reshape(batch, -1))


def check_fit(params: ModelParams, shape: InputShape) -> None:
    if shape.frame_size is None or shape.frame_size < GRID:
        raise ValueError(f"extract.frame_size={shape.frame_size} is too small for linear_probe: needs {GRID}x{GRID}")


def build(
    params: ModelParams, num_classes: int, shape: InputShape, weights_dir: str | os.PathLike[str] | None
) -> LinearProbe:
    return LinearProbe(num_classes, seq_len=shape.seq_len, dropout=params.dropout)

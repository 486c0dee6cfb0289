"""CNN-LSTM: a 2D backbone applied to every frame, then an LSTM over time.

Input ``(B, T, C, H, W)`` float (normalised, see :mod:`signflow.transforms`).
The model is split into two halves on purpose:

- :meth:`CnnLstm.backbone_features` ``(B, T, C, H, W) -> (B, T, F)``: the per-frame
  2D CNN (TimeDistributed: frames are folded into the batch);
- :meth:`CnnLstm.forward_features` ``(B, T, F) -> logits``: LSTM, pooling, head.

so that with a frozen backbone the training side can compute per-frame features
once and train only the temporal half on them (the feature cache).

Registry hooks (:mod:`signflow.archs` entry ``cnn_lstm``): :func:`check_fit`,
:func:`build`, :func:`backbone_frozen`.
"""

from __future__ import annotations

import logging
import os

import torch
from torch import nn
from torchvision.models import mobilenet_v2

from signflow.archs import InputShape
from signflow.config import CnnLstmParams, ModelParams

log = logging.getLogger(__name__)

# Total spatial stride of each backbone: frames smaller than this reach the
# last block as less than one pixel, so the deepest features see padding only.
BACKBONE_STRIDE = {"small_cnn": 16, "mobilenet_v2": 32}
# Frames the temporal model needs to say anything about motion.
MIN_SEQ_LEN = 2


class SmallCNN(nn.Module):
    """A small, fast per-frame CNN for CPU runs: 4 stride-2 conv blocks, global average pool.

    About 0.17M parameters and ~8M multiply-adds per 64x64 frame (MobileNetV2's
    features: 2.2M parameters, ~25M multiply-adds at 64x64, and far slower on CPU
    because of its 52 layers).
    """

    widths = (24, 48, 96, 128)

    def __init__(self) -> None:
        super().__init__()
        blocks = []
        in_channels = 3
        for width in self.widths:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_channels, width, kernel_size=3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(width, width, kernel_size=3, padding=1, groups=width, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                )
            )
            in_channels = width
        self.blocks = nn.Sequential(*blocks)
        self.out_features = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class FrameBackbone(nn.Module):
    """A 2D CNN (an ``nn.Sequential`` of blocks) + average pooling to a grid: ``(N, C, H, W) -> (N, F)``.

    ``grid=1`` is global pooling (``F = channels``). A coarse grid (``F = channels * grid**2``)
    keeps *where* things are in the frame; in sign language the hand's position relative to
    the body is part of the sign, and global pooling throws it away.
    """

    def __init__(self, name: str, grid: int = 1):
        super().__init__()
        self.name = name
        if name == "small_cnn":
            cnn = SmallCNN()
            self.blocks: nn.Sequential = cnn.blocks
            self.out_features = cnn.out_features
        elif name == "mobilenet_v2":
            # torchvision's layout (features.0 ... features.18) is kept so ImageNet
            # weights load by name; the classifier is dropped.
            self.blocks = mobilenet_v2(weights=None).features
            self.out_features = 1280
        else:
            raise ValueError(f"unknown cnn_lstm backbone {name!r} (expected small_cnn or mobilenet_v2)")
        self.grid = grid
        self.out_features *= grid * grid
        self.pool = nn.AdaptiveAvgPool2d(grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.blocks(x)), 1)


class AttentionPool(nn.Module):
    """Softmax-weighted mean over time; the weights come from a small MLP on each step."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, max(1, dim // 2)), nn.Tanh(), nn.Linear(max(1, dim // 2), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(x).squeeze(-1), dim=1)  # (B, T)
        return torch.einsum("bt,btd->bd", weights, x)


class CnnLstm(nn.Module):
    """Per-frame 2D backbone -> (Bi)LSTM -> pooling over time -> dropout + linear."""

    def __init__(self, params: CnnLstmParams, num_classes: int, *, dropout: float):
        super().__init__()
        self.params = params
        self.backbone = FrameBackbone(params.backbone, params.spatial_grid)
        self.feature_dim = self.backbone.out_features
        # Per-frame features of one clip differ little (same signer, same background): normalising
        # them lets the LSTM see the small changes that carry the sign from the first step.
        self.feature_norm = nn.LayerNorm(self.feature_dim)
        self.lstm = nn.LSTM(
            self.feature_dim,
            params.hidden,
            num_layers=params.layers,
            batch_first=True,
            bidirectional=params.bidirectional,
            # nn.LSTM applies dropout between layers only; it warns when there is one layer.
            dropout=dropout if params.layers > 1 else 0.0,
        )
        out_dim = params.hidden * (2 if params.bidirectional else 1)
        self.attention = AttentionPool(out_dim) if params.pooling == "attention" else None
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(out_dim, num_classes))
        self._frozen_blocks = self._apply_freeze(params)

    def _apply_freeze(self, params: CnnLstmParams) -> int:
        blocks = list(self.backbone.blocks)
        if params.freeze == "none":
            frozen = 0
        elif params.freeze == "all":
            frozen = len(blocks)
        else:  # last_n: train only the last ``trainable_blocks`` blocks
            frozen = max(0, len(blocks) - params.trainable_blocks)
        for block in blocks[:frozen]:
            block.requires_grad_(False)
        return frozen

    @property
    def backbone_frozen(self) -> bool:
        """True when no backbone parameter trains (the feature cache then applies)."""
        return not any(p.requires_grad for p in self.backbone.parameters())

    def train(self, mode: bool = True) -> CnnLstm:
        super().train(mode)
        # Frozen blocks stay in eval mode: their BatchNorm statistics must not drift
        # (they would, from augmented batches), or cached features would go stale.
        for block in list(self.backbone.blocks)[: self._frozen_blocks]:
            block.eval()
        return self

    def backbone_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W) -> (B, T, F)``: the 2D backbone on every frame."""
        if x.dim() != 5:
            raise ValueError(f"cnn_lstm expects (B, T, C, H, W) input, got shape {tuple(x.shape)}")
        batch, steps = x.shape[:2]
        features = self.backbone(x.reshape(batch * steps, *x.shape[2:]))
        return features.reshape(batch, steps, -1)

    def forward_features(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, F) -> (B, num_classes)`` logits: LSTM, pooling over time, head."""
        outputs, (hidden, _) = self.lstm(self.feature_norm(features))
        if self.params.pooling == "last":
            # The final hidden state of the last layer, both directions: the backward
            # direction's "last" state is at t=0, so outputs[:, -1] would be wrong for it.
            directions = 2 if self.params.bidirectional else 1
            pooled = torch.cat(list(hidden[-directions:]), dim=-1)
        elif self.params.pooling == "mean":
            pooled = outputs.mean(dim=1)
        else:
            assert self.attention is not None
            pooled = self.attention(outputs)
        return self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(self.backbone_features(x))


# --------------------------------------------------------------------------- registry hooks


def check_fit(params: ModelParams, shape: InputShape) -> None:
    """Enough frames for motion, frames at least the backbone's stride, a grid its feature map can fill."""
    backbone, seq_len, frame_size = params.cnn_lstm.backbone, shape.seq_len, shape.frame_size
    if seq_len < MIN_SEQ_LEN:
        raise ValueError(
            f"extract.seq_len={seq_len} is too short for cnn_lstm: the LSTM needs at least "
            f"{MIN_SEQ_LEN} frames to see motion"
        )
    minimum = BACKBONE_STRIDE[backbone]
    if frame_size is None or frame_size < minimum:
        raise ValueError(
            f"extract.frame_size={frame_size} is too small for model.cnn_lstm.backbone={backbone}: "
            f"it downsamples {minimum}x, so frames must be at least {minimum}x{minimum}"
        )
    grid, side = params.cnn_lstm.spatial_grid, -(-frame_size // minimum)  # stride-2 convs round up
    if side < grid:
        raise ValueError(
            f"model.cnn_lstm.spatial_grid={grid} is finer than the {side}x{side} feature map of "
            f"{backbone} at extract.frame_size={frame_size}: use spatial_grid <= {side} or larger frames"
        )
    if params.cnn_lstm.freeze == "all" and not params.pretrained:
        log.warning("model.cnn_lstm.freeze=all with pretrained=false trains on a random, frozen backbone")


def build(
    params: ModelParams, num_classes: int, shape: InputShape, weights_dir: str | os.PathLike[str] | None
) -> CnnLstm:
    model = CnnLstm(params.cnn_lstm, num_classes, dropout=params.dropout)
    if params.pretrained:
        from signflow.models.weights import load_pretrained

        # ``blocks`` is torchvision's ``features``; the ImageNet classifier is not used.
        features_holder = nn.Module()
        features_holder.features = model.backbone.blocks
        load_pretrained(
            features_holder, params.cnn_lstm.backbone, params.weights_path, ignore_prefixes=("classifier.",),
            weights_dir=weights_dir,
        )  # fmt: skip
    return model


def backbone_frozen(params: ModelParams) -> bool:
    """``freeze: all``: no backbone weight trains, so its per-frame features can be cached."""
    return params.cnn_lstm.freeze == "all"

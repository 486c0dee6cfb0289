"""Stored frames -> model input, and training-time pixel augmentation.

Extract stores clips as ``uint8 (T, S, S, 3)`` RGB. Everything after that runs
through here: :func:`to_model_input` (scale, normalise, permute to the model's
layout) is the one conversion used by training, evaluation and serving, and its
parameters (:class:`InputConfig`) are saved in the model file.

:class:`TrainAugmenter` changes pixels for training only: random resized crop,
horizontal flip, colour jitter, each drawn once per clip (every frame of a clip
gets the same crop/flip/jitter, otherwise the augmentation itself would look like
motion). Temporal jitter and speed perturbation live in
:func:`signflow.sampling.train_indices`.

Horizontal flip is off by default on purpose: a mirrored signer signs with the
other hand, which for one-handed signs is the mirror-image sign (in some sign
languages another sign altogether), so it is label noise unless the data is
already mixed-handed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from signflow import archs
from signflow.config import AugmentParams


class InputConfig(BaseModel):
    """How stored frames become a model input; saved in the model file for serving."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: tuple[float, float, float] | None = Field(None, description="per-channel mean on the 0..1 scale")
    std: tuple[float, float, float] | None = None
    layout: archs.Layout = "TCHW"


def input_config_for(arch: str) -> InputConfig:
    """The arch's registry entry: its layout and the statistics its pretrained trunk saw (none for landmarks)."""
    spec = archs.get(arch)
    return InputConfig(mean=spec.mean, std=spec.std, layout=spec.layout)


def to_model_input(stored: np.ndarray | torch.Tensor, cfg: InputConfig) -> torch.Tensor:
    """``(..., T, H, W, 3)`` uint8 -> float32 ``(..., T, C, H, W)`` or ``(..., C, T, H, W)``.

    Runs on the tensor's device, so a training loop can move compact uint8 to the
    GPU first and convert there. Landmark inputs (``TJC``) are already numeric and
    are only cast to float32.
    """
    tensor = torch.as_tensor(stored)
    if cfg.layout == "TJC":
        return tensor.to(torch.float32)
    if tensor.dim() < 4 or tensor.shape[-1] != 3:
        raise ValueError(f"expected stored frames (..., T, H, W, 3), got shape {tuple(tensor.shape)}")
    if tensor.dtype != torch.uint8:
        raise ValueError(f"expected uint8 stored frames, got {tensor.dtype}")
    x = tensor.to(torch.float32).div_(255.0)
    if cfg.mean is not None and cfg.std is not None:
        mean = torch.tensor(cfg.mean, dtype=torch.float32, device=x.device)
        std = torch.tensor(cfg.std, dtype=torch.float32, device=x.device)
        x = x.sub_(mean).div_(std)
    if cfg.layout == "TCHW":
        return x.movedim(-1, -3).contiguous()  # (..., T, H, W, C) -> (..., T, C, H, W)
    return x.movedim(-1, -4).contiguous()  # (..., T, H, W, C) -> (..., C, T, H, W)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


class TrainAugmenter:
    """Clip-consistent pixel augmentation on ``uint8 (T, H, W, 3)``; deterministic given the generator.

    The output has shape ``(T, frame_size, frame_size, 3)`` (the stored size, normally
    equal to the input's). Random numbers are always drawn in the same order, even
    for disabled parts, so turning one augmentation off does not reshuffle the others.
    """

    ratio = (3 / 4, 4 / 3)

    def __init__(self, augment: AugmentParams, frame_size: int):
        self.augment = augment
        self.frame_size = frame_size

    @property
    def changes_pixels(self) -> bool:
        """False when every pixel augmentation is off (features of a frozen backbone can then be cached)."""
        a = self.augment
        return a.random_resized_crop or a.hflip or a.color_jitter > 0

    def __call__(self, clip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if clip.dim() != 4 or clip.shape[-1] != 3 or clip.dtype != torch.uint8:
            raise ValueError(f"expected a uint8 (T, H, W, 3) clip, got {tuple(clip.shape)} {clip.dtype}")
        a = self.augment
        box = self._crop_box(clip.shape[1], clip.shape[2], generator)
        flip = float(torch.rand((), generator=generator)) < 0.5
        j = a.color_jitter
        brightness, contrast, saturation = (_uniform(generator, 1 - j, 1 + j) for _ in range(3))

        x = clip.permute(0, 3, 1, 2).to(torch.float32)  # (T, 3, H, W), 0..255
        if a.random_resized_crop:
            top, left, height, width = box
            x = x[:, :, top : top + height, left : left + width]
        if x.shape[-2:] != (self.frame_size, self.frame_size):
            size = (self.frame_size, self.frame_size)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        if a.hflip and flip:
            x = x.flip(-1)
        if j > 0:
            x = _color_jitter(x, brightness, contrast, saturation)
        return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    def _crop_box(self, height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        """torchvision's RandomResizedCrop box (area in [crop_scale_min, 1], aspect in [3/4, 4/3])."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * _uniform(generator, self.augment.crop_scale_min, 1.0)
            aspect = math.exp(_uniform(generator, *log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (), generator=generator))
                left = int(torch.randint(0, width - w + 1, (), generator=generator))
                return top, left, h, w
        return 0, 0, height, width  # fallback: the whole frame


def _color_jitter(x: torch.Tensor, brightness: float, contrast: float, saturation: float) -> torch.Tensor:
    """Brightness, contrast, saturation on ``(T, 3, H, W)`` in 0..255, the same factors for every frame."""
    x = x * brightness
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)  # (T, 1, H, W)
    # Contrast blends with the clip's mean grey level (one value for the clip, so it does not flicker).
    x = (x - grey.mean()) * contrast + grey.mean()
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    x = (x - grey) * saturation + grey
    return x.clamp_(0, 255)

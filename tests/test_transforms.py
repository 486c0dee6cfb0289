"""Stored uint8 frames -> model input, and clip-consistent, seeded training augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from signflow.archs import IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN
from signflow.config import AugmentParams
from signflow.transforms import (
    InputConfig,
    TrainAugmenter,
    input_config_for,
    to_model_input,
)

OFF = AugmentParams(random_resized_crop=False, hflip=False, color_jitter=0.0)


def clip(frames: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (frames, size, size, 3), dtype=np.uint8))


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_input_config_per_arch() -> None:
    assert input_config_for("cnn_lstm") == InputConfig(mean=IMAGENET_MEAN, std=IMAGENET_STD, layout="TCHW")
    assert input_config_for("r3d_18").mean == KINETICS_MEAN and input_config_for("r2plus1d_18").layout == "CTHW"
    assert input_config_for("landmark_lstm") == InputConfig(layout="TJC")
    with pytest.raises(ValueError, match="unknown model.arch"):
        input_config_for("resnet")


def test_to_model_input_values_and_layouts() -> None:
    stored = np.zeros((2, 5, 4, 6, 3), dtype=np.uint8)  # (B, T, H, W, 3)
    stored[1, 2, 3, 4] = (255, 0, 51)
    cfg = InputConfig(mean=(0.5, 0.0, 0.2), std=(0.5, 1.0, 0.1), layout="TCHW")
    x = to_model_input(stored, cfg)
    assert x.dtype == torch.float32 and x.shape == (2, 5, 3, 4, 6)
    torch.testing.assert_close(x[1, 2, :, 3, 4], torch.tensor([1.0, 0.0, 0.0]))  # (1-.5)/.5, 0, (0.2-0.2)/0.1
    torch.testing.assert_close(x[0, 0, :, 0, 0], torch.tensor([-1.0, 0.0, -2.0]))

    y = to_model_input(torch.from_numpy(stored), cfg.model_copy(update={"layout": "CTHW"}))
    assert y.shape == (2, 3, 5, 4, 6)
    torch.testing.assert_close(y.transpose(1, 2), x)

    raw = to_model_input(stored[0], InputConfig(layout="TCHW"))  # no mean/std: 0..1 only, unbatched
    assert raw.shape == (5, 3, 4, 6) and float(raw.max()) == 0.0


def test_to_model_input_rejects_wrong_inputs() -> None:
    cfg = input_config_for("cnn_lstm")
    with pytest.raises(ValueError, match="expected uint8"):
        to_model_input(np.zeros((4, 8, 8, 3), dtype=np.float32), cfg)
    with pytest.raises(ValueError, match=r"expected stored frames \(\.\.\., T, H, W, 3\)"):
        to_model_input(np.zeros((4, 8, 8), dtype=np.uint8), cfg)
    landmarks = np.ones((8, 21, 3), dtype=np.float64)
    assert to_model_input(landmarks, input_config_for("landmark_gcn")).dtype == torch.float32


def test_augmenter_is_deterministic_given_the_generator() -> None:
    augmenter = TrainAugmenter(AugmentParams(hflip=True), frame_size=16)
    a = augmenter(clip(), generator(7))
    b = augmenter(clip(), generator(7))
    c = augmenter(clip(), generator(8))
    assert a.dtype == torch.uint8 and a.shape == (4, 16, 16, 3)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augmentation_is_the_same_for_every_frame_of_a_clip() -> None:
    still = clip(frames=1).repeat(6, 1, 1, 1)  # six identical frames
    out = TrainAugmenter(AugmentParams(hflip=True, color_jitter=0.4), frame_size=16)(still, generator(3))
    assert all(torch.equal(out[0], frame) for frame in out[1:])
    assert not torch.equal(out[0], still[0])


def test_all_off_is_identity_and_reports_no_pixel_change() -> None:
    augmenter = TrainAugmenter(OFF, frame_size=16)
    assert not augmenter.changes_pixels
    assert TrainAugmenter(AugmentParams(), frame_size=16).changes_pixels
    source = clip()
    assert torch.equal(augmenter(source, generator(0)), source)


def test_hflip_mirrors_exactly_about_half_the_time() -> None:
    augmenter = TrainAugmenter(OFF.model_copy(update={"hflip": True}), frame_size=16)
    source = clip()
    flipped = [torch.equal(augmenter(source, generator(seed)), source.flip(2)) for seed in range(40)]
    unchanged = [torch.equal(augmenter(source, generator(seed)), source) for seed in range(40)]
    assert all(f != u for f, u in zip(flipped, unchanged, strict=True))
    assert 10 <= sum(flipped) <= 30


def test_random_resized_crop_zooms_in_and_keeps_size() -> None:
    # A frame whose left and right halves differ: a crop of at most 50% area cannot show both edges' columns.
    frame = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)
    frame[:, :, :16] = 200
    crop_only = OFF.model_copy(update={"random_resized_crop": True, "crop_scale_min": 0.3})
    augmenter = TrainAugmenter(crop_only, frame_size=32)
    outputs = [augmenter(frame, generator(seed)) for seed in range(20)]
    assert all(out.shape == (1, 32, 32, 3) for out in outputs)
    assert any(not torch.equal(out, frame) for out in outputs)
    bright = [float((out[..., 0] > 100).float().mean()) for out in outputs]
    assert max(bright) > 0.55 or min(bright) < 0.45, "crops shift the left/right balance"


def test_resizes_to_frame_size() -> None:
    out = TrainAugmenter(OFF, frame_size=8)(clip(size=16), generator(0))
    assert out.shape == (4, 8, 8, 3)


def test_color_jitter_changes_brightness_within_bounds() -> None:
    grey = torch.full((2, 8, 8, 3), 100, dtype=torch.uint8)
    augmenter = TrainAugmenter(OFF.model_copy(update={"color_jitter": 0.2}), frame_size=8)
    levels = {int(augmenter(grey, generator(seed))[0, 0, 0, 0]) for seed in range(20)}
    assert len(levels) > 5
    assert min(levels) >= 80 - 1 and max(levels) <= 120 + 1  # brightness 0.8..1.2; contrast/saturation keep grey


def test_augmenter_rejects_non_uint8() -> None:
    with pytest.raises(ValueError, match="expected a uint8"):
        TrainAugmenter(OFF, frame_size=8)(torch.zeros(2, 8, 8, 3), generator(0))

"""Landmark normalisation: gap filling, centring/scaling, mirroring, and the joint layouts."""

from __future__ import annotations

import numpy as np
import pytest

from signflow.landmarks.layout import (
    HAND_JOINTS,
    LEFT_SHOULDER,
    LEFT_WRIST,
    POSE_JOINTS,
    RIGHT_SHOULDER,
    RIGHT_WRIST,
    get_layout,
    layout_for_joints,
)
from signflow.landmarks.normalize import PALM_TO_SHOULDER, fill_gaps, mirror, model_input, normalize, prepare

HOLISTIC = get_layout("holistic")
HANDS = get_layout("hands")
LEFT_HAND = POSE_JOINTS  # first joint of the left hand in the holistic layout
RIGHT_HAND = POSE_JOINTS + HAND_JOINTS


def holistic_clip(num_frames: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A body whose shoulders sit at x 0.4/0.6, y 0.5 in a square frame; every joint seen."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0.2, 0.8, size=(num_frames, HOLISTIC.num_joints, 3)).astype(np.float32)
    points[:, LEFT_SHOULDER, :2] = (0.6, 0.5)  # the signer's left shoulder is on the image's right
    points[:, RIGHT_SHOULDER, :2] = (0.4, 0.5)
    return points, np.ones(points.shape[:2], dtype=bool)


def test_layouts_are_consistent() -> None:
    for layout in (HOLISTIC, get_layout("holistic_face"), HANDS):
        assert layout_for_joints(layout.num_joints) is layout
        # The mirror map is a permutation that undoes itself.
        assert sorted(layout.mirror) == list(range(layout.num_joints))
        assert np.array_equal(layout.mirror[layout.mirror], np.arange(layout.num_joints))
        adjacency = layout.adjacency()
        assert np.array_equal(adjacency, adjacency.T) and not adjacency.diagonal().any()
        parents = layout.parents()
        assert (parents >= 0).all()
    # Holistic is one skeleton (one root); hands-only is two (one per hand).
    assert (HOLISTIC.parents() == np.arange(HOLISTIC.num_joints)).sum() == 1
    assert (HANDS.parents() == np.arange(HANDS.num_joints)).sum() == 2
    assert HOLISTIC.parents()[LEFT_HAND] == LEFT_WRIST and HOLISTIC.parents()[RIGHT_HAND] == RIGHT_WRIST
    with pytest.raises(ValueError, match="no landmark layout has 7 joints"):
        layout_for_joints(7)
    with pytest.raises(ValueError, match="unknown landmark layout"):
        get_layout("skeleton")


def test_fill_gaps_interpolates_short_interior_gaps_only() -> None:
    frames = 12
    points = np.zeros((frames, 2, 3), dtype=np.float32)
    points[:, :, 0] = np.arange(frames)[:, None]  # x grows one unit a frame
    mask = np.ones((frames, 2), dtype=bool)
    mask[3:5, 0] = False  # 2-frame gap: filled
    mask[6:11, 1] = False  # 5-frame gap: too long for max_gap 4
    mask[0:2, 0] = False  # leading gap: nothing before it to interpolate from
    points[~mask] = 0.0
    filled, filled_mask = fill_gaps(points, mask, max_gap=4)
    assert filled_mask[3:5, 0].all()
    np.testing.assert_allclose(filled[3:5, 0, 0], [3.0, 4.0])
    assert not filled_mask[6:11, 1].any() and (filled[6:11, 1] == 0).all()
    assert not filled_mask[0:2, 0].any()
    # max_gap 0 turns it off; inputs are never modified in place.
    same, same_mask = fill_gaps(points, mask, max_gap=0)
    assert np.array_equal(same_mask, mask) and np.array_equal(same, points)
    assert not mask[3, 0]


def test_normalize_centres_on_shoulders_and_scales_by_shoulder_width() -> None:
    points, mask = holistic_clip()
    out = normalize(points, mask, HOLISTIC)
    np.testing.assert_allclose(out[:, LEFT_SHOULDER, :2], np.tile([0.5, 0.0], (len(out), 1)), atol=1e-6)
    np.testing.assert_allclose(out[:, RIGHT_SHOULDER, :2], np.tile([-0.5, 0.0], (len(out), 1)), atol=1e-6)
    # Translating and scaling the whole body in the image changes nothing.
    moved = points.copy()
    moved[..., :2] = moved[..., :2] * 0.5 + 0.1
    moved[..., 2] *= 0.5
    np.testing.assert_allclose(normalize(moved, mask, HOLISTIC), out, atol=1e-5)


def test_normalize_uses_isotropic_units_and_the_median_frame() -> None:
    points, mask = holistic_clip(num_frames=9)
    # A wide 2:1 frame: the same physical shoulders span half as much of x.
    wide = points.copy()
    wide[:, LEFT_SHOULDER, 0], wide[:, RIGHT_SHOULDER, 0] = 0.55, 0.45
    out = normalize(wide, mask, HOLISTIC, aspect=2.0)
    np.testing.assert_allclose(out[:, LEFT_SHOULDER, 0], 0.5, atol=1e-6)
    # One wild frame (a bad detection) does not move the reference: medians, not means.
    glitch = points.copy()
    glitch[4, LEFT_SHOULDER, :2] = (0.95, 0.05)
    out = normalize(glitch, mask, HOLISTIC)
    np.testing.assert_allclose(out[0, LEFT_SHOULDER, :2], (0.5, 0.0), atol=1e-6)


def test_missing_joints_are_zero_and_flagged_not_fake_points() -> None:
    points, mask = holistic_clip()
    mask[:, RIGHT_HAND : RIGHT_HAND + HAND_JOINTS] = False
    points[:, RIGHT_HAND : RIGHT_HAND + HAND_JOINTS] = 0.0  # what the extractor stores for "no hand"
    prepared, prepared_mask = prepare(points, mask, HOLISTIC, max_gap=4)
    assert (prepared[:, RIGHT_HAND : RIGHT_HAND + HAND_JOINTS] == 0).all()
    x = model_input(prepared, prepared_mask)
    assert x.shape == (len(points), HOLISTIC.num_joints, 4) and x.dtype == np.float32
    assert (x[:, RIGHT_HAND, 3] == 0).all() and (x[:, LEFT_HAND, 3] == 1).all()
    # Nothing seen at all: all zeros rather than NaNs from a zero scale.
    empty = normalize(points, np.zeros_like(mask), HOLISTIC)
    assert np.isfinite(empty).all() and not empty.any()


def test_hands_layout_is_scaled_by_palm_length() -> None:
    frames = 5
    points = np.zeros((frames, HANDS.num_joints, 3), dtype=np.float32)
    points[:, :, :2] = 0.5
    points[:, 0, :2] = (0.30, 0.60)  # left wrist
    points[:, 9, :2] = (0.30, 0.50)  # left middle knuckle: palm 0.1
    mask = np.zeros((frames, HANDS.num_joints), dtype=bool)
    mask[:, :HAND_JOINTS] = True  # only the left hand is seen
    out = normalize(points, mask, HANDS)
    np.testing.assert_allclose(out[:, 0, :2], 0.0, atol=1e-6)  # centred on the wrist
    np.testing.assert_allclose(out[:, 9, 1], -0.1 / (PALM_TO_SHOULDER * 0.1), atol=1e-6)
    assert (out[:, HAND_JOINTS:] == 0).all()


def test_mirror_flips_x_and_swaps_hands() -> None:
    points, mask = holistic_clip()
    mask[:, RIGHT_HAND : RIGHT_HAND + HAND_JOINTS] = False
    prepared, prepared_mask = prepare(points, mask, HOLISTIC)
    flipped, flipped_mask = mirror(prepared, prepared_mask, HOLISTIC)
    # The seen left hand now sits in the right-hand slots, x negated.
    assert flipped_mask[:, RIGHT_HAND : RIGHT_HAND + HAND_JOINTS].all()
    assert not flipped_mask[:, LEFT_HAND : LEFT_HAND + HAND_JOINTS].any()
    np.testing.assert_allclose(flipped[:, RIGHT_HAND + 5, 0], -prepared[:, LEFT_HAND + 5, 0])
    np.testing.assert_allclose(flipped[:, RIGHT_HAND + 5, 1:], prepared[:, LEFT_HAND + 5, 1:])
    # Shoulders swap too, so the mirrored body is still a body facing the camera.
    np.testing.assert_allclose(flipped[:, LEFT_SHOULDER, 0], -prepared[:, RIGHT_SHOULDER, 0])
    twice, twice_mask = mirror(flipped, flipped_mask, HOLISTIC)
    np.testing.assert_allclose(twice, prepared)
    assert np.array_equal(twice_mask, prepared_mask)


def test_normalize_rejects_a_shape_that_does_not_fit_the_layout() -> None:
    points, mask = holistic_clip()
    with pytest.raises(ValueError, match="layout 'hands'"):
        normalize(points, mask, HANDS)

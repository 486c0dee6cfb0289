"""Landmark model inputs for serving: client sequences checked and prepared like extract + evaluate."""

from __future__ import annotations

import numpy as np
import pytest

from signflow.config import LandmarksParams
from signflow.landmarks import preprocess_config
from signflow.landmarks.layout import get_layout
from signflow.landmarks.normalize import stored_input
from signflow.landmarks.online import LandmarkInputError, LandmarkPreprocessor

PREPROCESS = preprocess_config(LandmarksParams(stored_frames=8, seq_len=4, max_gap=2))


def sequence(frames: int = 12, joints: int = 75, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    points = rng.uniform(0.2, 0.8, size=(frames, joints, 3)).astype(np.float32)
    mask = np.ones((frames, joints), dtype=bool)
    mask[3:5, 33:54] = False  # the left hand lost for two frames
    points[~mask] = 0.0
    return points, mask


def test_client_points_become_exactly_the_evaluated_input() -> None:
    points, mask = sequence()
    prepared = LandmarkPreprocessor(PREPROCESS).from_points(points, mask, width=640, height=480)
    expected = stored_input(points, mask, get_layout("holistic"), stored_frames=8, aspect=640 / 480, max_gap=2)
    assert prepared.shape == (8, 75, 4) and prepared.dtype == np.float32
    np.testing.assert_array_equal(prepared, expected)


def test_without_a_mask_all_zero_joints_are_missing() -> None:
    points, mask = sequence()
    preprocessor = LandmarkPreprocessor(PREPROCESS)
    np.testing.assert_array_equal(preprocessor.from_points(points), preprocessor.from_points(points, mask))


@pytest.mark.parametrize(
    "points, mask, reason",
    [
        (np.zeros((5, 42, 3)), None, "bad_shape"),  # hands layout sent to a holistic model
        (np.zeros((5, 75, 2)), None, "bad_shape"),
        (np.zeros((0, 75, 3)), None, "empty_batch"),
        (np.full((5, 75, 3), np.nan), None, "bad_dtype"),
        (np.zeros((5, 75, 3)), np.ones((4, 75), dtype=bool), "bad_shape"),
        ([[1, 2], [3]], None, "bad_shape"),  # ragged
    ],
)
def test_bad_sequences_are_refused_with_a_reason(points, mask, reason: str) -> None:  # noqa: ANN001
    with pytest.raises(LandmarkInputError) as caught:
        LandmarkPreprocessor(PREPROCESS).from_points(points, mask)
    assert caught.value.reason == reason


def test_a_hands_only_model_cannot_read_videos() -> None:
    hands = {**PREPROCESS, "landmark_layout": "hands", "num_joints": 42}
    preprocessor = LandmarkPreprocessor(hands)
    assert not preprocessor.reads_video
    with pytest.raises(LandmarkInputError, match="send landmarks to /predict_landmarks"):
        preprocessor.from_video("clip.mp4")


def test_rgb_preprocess_is_not_a_landmark_model() -> None:
    with pytest.raises(ValueError, match="not a landmark model"):
        LandmarkPreprocessor({"seq_len": 16, "frame_size": 64})

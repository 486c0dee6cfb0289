"""Landmark model inputs for serving: client sequences checked and prepared like extract + evaluate."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from feature_specs import MEDIAPIPE, hands_spec, holistic_spec, rgb_spec

from signflow.landmarks.layout import get_layout
from signflow.landmarks.normalize import stored_input
from signflow.landmarks.online import ExtractorMismatch, LandmarkInputError, LandmarkPreprocessor
from signflow.landmarks.pool import installed_mediapipe_version

PREPROCESS = holistic_spec(stored_frames=8, seq_len=4, max_gap=2)


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
def test_bad_sequences_are_refused_with_a_reason(points, mask, reason: str) -> None:
    with pytest.raises(LandmarkInputError) as caught:
        LandmarkPreprocessor(PREPROCESS).from_points(points, mask)
    assert caught.value.reason == reason


def test_a_hands_only_model_cannot_read_videos() -> None:
    preprocessor = LandmarkPreprocessor(hands_spec(stored_frames=8, seq_len=4, max_gap=2))
    assert not preprocessor.reads_video
    with pytest.raises(LandmarkInputError, match="send landmarks to /predict_landmarks"):
        preprocessor.from_video("clip.mp4")


def test_rgb_preprocess_is_not_a_landmark_model() -> None:
    with pytest.raises(ValueError, match="not a landmark model"):
        LandmarkPreprocessor(rgb_spec(seq_len=16, frame_size=64))
    with pytest.raises(ValueError, match="an unversioned feature spec"):  # a pre-spec preprocess.json
        LandmarkPreprocessor({"kind": "landmarks", "landmark_layout": "holistic", "stored_frames": 8})


# --------------------------------------------------------------------------- extractor version


@pytest.fixture
def landmark_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A landmark "environment" (this interpreter) whose installed mediapipe has a chosen version.

    Only the package metadata exists (a dist-info folder on PYTHONPATH): the version check must
    read it without importing or starting MediaPipe.
    """

    def install(version: str | None) -> str:
        site = tmp_path / f"site-{version}"
        site.mkdir()
        if version is not None:
            info = site / f"mediapipe-{version}.dist-info"
            info.mkdir()
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: mediapipe\nVersion: {version}\n")
        monkeypatch.setenv("PYTHONPATH", str(site))
        return sys.executable

    return install


def test_installed_version_is_read_from_package_metadata(landmark_env) -> None:
    assert installed_mediapipe_version(landmark_env("0.10.14")) == "0.10.14"
    assert installed_mediapipe_version(landmark_env(None)) is None


def test_same_extractor_version_passes(landmark_env) -> None:
    preprocessor = LandmarkPreprocessor(PREPROCESS, python=landmark_env(MEDIAPIPE))
    assert preprocessor.extractor_mismatch() is None
    assert preprocessor.check_extractor("refuse") is None


def test_other_extractor_version_warns_or_refuses(landmark_env, caplog: pytest.LogCaptureFixture) -> None:
    preprocessor = LandmarkPreprocessor(PREPROCESS, python=landmark_env("0.10.14"))
    with caplog.at_level(logging.WARNING, logger="signflow.landmarks.online"):
        warning = preprocessor.check_extractor("warn")
    assert warning is not None and f"mediapipe {MEDIAPIPE}" in warning and "this server has 0.10.14" in warning
    assert warning in caplog.text
    with pytest.raises(ExtractorMismatch, match="serve.landmark_extractor_mismatch: refuse"):
        preprocessor.check_extractor("refuse")
    without = LandmarkPreprocessor(PREPROCESS, python=landmark_env(None))
    assert "this server has no mediapipe" in without.extractor_mismatch()


def test_extractor_is_not_compared_where_none_runs(tmp_path: Path, landmark_env) -> None:
    # A hands-files model never runs MediaPipe here; without a landmark environment there is nothing to compare.
    assert LandmarkPreprocessor(hands_spec(), python=landmark_env("0.10.14")).check_extractor("refuse") is None
    missing = LandmarkPreprocessor(PREPROCESS, python=str(tmp_path / "no-python"))
    assert missing.check_extractor("refuse") is None

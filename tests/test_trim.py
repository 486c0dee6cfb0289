"""The trim must reproduce the official WLASL preprocessing (1-based, inclusive frame ranges)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from signflow import video
from signflow.sources.wlasl import trim_range, trim_video


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=(1, 2, 3))


def test_trim_range_is_one_based_inclusive() -> None:
    assert trim_range(1, -1) == (0, None)
    assert trim_range(2055, 2111) == (2054, 2111)  # 57 frames
    assert trim_range(5, 5) == (4, 5)
    with pytest.raises(ValueError, match="1-based"):
        trim_range(0, 10)
    with pytest.raises(ValueError, match="frame_end"):
        trim_range(10, 9)


def test_trim_matches_official_63185(shared_data: Path, tmp_path: Path) -> None:
    ref = shared_data / "wlasl-trim-reference"
    out = tmp_path / "63185.mp4"
    assert trim_video(ref / "raw" / "63185.mp4", out, 2055, 2111) == 57
    ours = video.read_frames(out)
    official = video.read_frames(ref / "trimmed" / "63185.mp4")
    assert ours.shape == official.shape == (57, 320, 480, 3)
    aligned = _mean_abs_diff(ours, official)
    # Measured: 1.06-1.15 grey levels per frame (two lossy encodes: official mp4v, ours x264 crf 18).
    assert aligned.max() < 2.0, aligned
    # Frame-accurate, not just similar: shifting by one frame either way matches worse.
    assert aligned.mean() < _mean_abs_diff(ours[1:], official[:-1]).mean()
    assert aligned.mean() < _mean_abs_diff(ours[:-1], official[1:]).mean()
    # The source frame rate is kept (25 fps here, as the official output).
    assert video.probe(out).fps == pytest.approx(25.0)


@pytest.mark.parametrize("video_id", ["68011"])
def test_trim_to_end_keeps_the_last_frame(shared_data: Path, tmp_path: Path, video_id: str) -> None:
    """frame_end -1 = to the end: we keep all N frames; the official tool's frames[0:-1] kept N-1."""
    ref = shared_data / "wlasl-trim-reference"
    out = tmp_path / f"{video_id}.mp4"
    count = trim_video(ref / "raw" / f"{video_id}.mp4", out, 1, -1)
    source = video.read_frames(ref / "raw" / f"{video_id}.mp4")
    official = video.read_frames(ref / "trimmed" / f"{video_id}.mp4")
    ours = video.read_frames(out)
    assert count == len(ours) == len(source) == len(official) + 1
    aligned = _mean_abs_diff(ours[: len(official)], official)
    assert aligned.max() < 3.0, aligned  # measured max 2.04
    assert aligned.mean() < _mean_abs_diff(ours[1:], official).mean()


@pytest.mark.slow
@pytest.mark.parametrize("video_id", ["63048", "68012"])
def test_trim_to_end_keeps_the_last_frame_hd(shared_data: Path, tmp_path: Path, video_id: str) -> None:
    test_trim_to_end_keeps_the_last_frame(shared_data, tmp_path, video_id)


def test_trim_past_the_end(make_video, tmp_path: Path) -> None:
    src, frames = make_video("src.mp4", num_frames=10)
    out = tmp_path / "out.mp4"
    # A frame_end past the end (a known WLASL defect) gives what exists, like the official slicing.
    assert trim_video(src, out, 8, 40) == 3
    np.testing.assert_array_equal(video.read_frames(out).shape, (3, *frames.shape[1:]))
    with pytest.raises(video.VideoError, match="past the end"):
        trim_video(src, tmp_path / "none.mp4", 11, 20)
    assert not (tmp_path / "none.mp4").exists()

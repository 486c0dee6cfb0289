"""Video I/O: exact lossless round trip, frame ranges, and the reasons bad files get."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from signflow import video


def test_lossless_round_trip_and_range(make_video) -> None:
    path, frames = make_video(num_frames=12)
    np.testing.assert_array_equal(video.read_frames(path), frames)
    np.testing.assert_array_equal(video.read_frames(path, 3, 7), frames[3:7])
    info = video.probe(path)
    assert (info.width, info.height, info.num_frames, info.fps) == (64, 48, 12, 25.0)


def test_rgb_conversion_matches_pyav_on_yuv_video(make_video) -> None:
    # iter_frames reuses one swscale context per clip; it must give PyAV's own per-frame conversion.
    path, _ = make_video(num_frames=6, height=50, width=70, lossless=False)
    with av.open(str(path)) as container:
        reference = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    ours = [frame for _, frame in video.iter_frames(path)]
    assert len(ours) == len(reference) == 6
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_array_equal(a, b)


def test_unknown_codec_is_unsupported_codec_not_a_crash(tmp_path: Path) -> None:
    avi = tmp_path / "mjpeg.avi"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "0.5", "-c:v", "mjpeg",
         str(avi)],
        check=True,
    )
    odd = tmp_path / "odd.avi"
    odd.write_bytes(avi.read_bytes().replace(b"MJPG", b"QQQQ"))
    for call in (video.probe, lambda p: list(video.iter_frames(p))):
        with pytest.raises(video.VideoError) as caught:
            call(odd)
        assert caught.value.reason == "unsupported_codec"


def test_too_many_frames_and_empty_range(make_video) -> None:
    path, _ = make_video(num_frames=5)
    with pytest.raises(video.VideoError) as caught:
        video.read_frames(path, max_frames=3)
    assert caught.value.reason == "too_large"
    with pytest.raises(video.VideoError) as caught:
        video.read_frames(path, 10, 12)
    assert caught.value.reason == "no_frames"

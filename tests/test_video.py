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


def test_a_still_image_renamed_mp4_is_not_video(tmp_path: Path) -> None:
    png = tmp_path / "photo.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1",
                    "-f", "image2", "-c:v", "png", str(png)], check=True)  # fmt: skip
    for call in (video.probe, lambda p: list(video.iter_frames(p))):
        with pytest.raises(video.VideoError) as caught:
            call(png)
        assert caught.value.reason == "not_video" and "still image (png)" in caught.value.detail


def test_garbage_is_refused_without_ffmpeg_errno_or_server_paths(tmp_path: Path) -> None:
    garbage = tmp_path / "upload-7f3a.mp4"
    garbage.write_bytes(b"\x00\x01junk" * 100)
    with pytest.raises(video.VideoError) as caught:
        video.probe(garbage)
    assert caught.value.reason == "not_video"
    assert "Errno" not in caught.value.detail and str(tmp_path) not in caught.value.detail


def test_decode_limits_stop_a_decode_while_it_runs(make_video) -> None:
    import threading

    path, _ = make_video(num_frames=12)
    cancel = threading.Event()
    decoded = []
    with video.decode_limits(video.DecodeLimits(cancel=cancel)), pytest.raises(video.VideoError) as caught:
        for index, _ in video.iter_frames(path):
            decoded.append(index)
            if index == 3:
                cancel.set()  # the request timed out: the next frame stops the decode
    assert caught.value.reason == "cancelled" and decoded == [0, 1, 2, 3]

    with video.decode_limits(video.DecodeLimits(max_frames=5)), pytest.raises(video.VideoError) as caught:
        video.read_frames(path)
    assert caught.value.reason == "too_large"
    with video.decode_limits(video.DecodeLimits(max_duration_s=0.2)), pytest.raises(video.VideoError) as caught:
        video.read_frames(path)  # 12 frames at 25 fps: frame 6 starts at 0.24 s
    assert caught.value.reason == "too_long"
    np.testing.assert_array_equal(video.read_frames(path), video.read_frames(path))  # no limits outside the block

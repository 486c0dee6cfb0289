"""The shared video -> stored-frames preprocessing: exact pixels on lossless clips, trimming, padding, errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from feature_specs import rgb_spec

from signflow import preprocess, sampling, video
from signflow.config import CropParams, ExtractParams
from signflow.feature_spec import RgbFeatureSpec

CFG = rgb_spec(seq_len=4, stored_frames=8, frame_size=16, min_frames=1, square=False)


def _expected(frames: np.ndarray, box, size: int, count: int) -> np.ndarray:
    """Reference: crop, INTER_AREA resize, uniform sampling, written out independently of the module."""
    x0, y0, x1, y1 = box
    small = [cv2.resize(f[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA) for f in frames]
    return np.stack([small[i] for i in sampling.uniform_indices(len(small), count)])


def test_decode_crops_resizes_and_samples_exact_pixels(make_video) -> None:
    path, frames = make_video(num_frames=20)
    box = (8, 4, 56, 44)
    stored, count = preprocess.decode_to_stored(path, box=box, config=CFG)
    assert count == 20 and stored.shape == (8, 16, 16, 3) and stored.dtype == np.uint8
    np.testing.assert_array_equal(stored, _expected(frames, box, 16, 8))


def test_serving_path_equals_extract_path(make_video) -> None:
    path, frames = make_video(num_frames=13)
    config = rgb_spec(stored_frames=8, seq_len=8, frame_size=24, square=True)
    from_file, n_file = preprocess.decode_to_stored(path, box=None, config=config)
    from_frames, n_frames = preprocess.frames_to_stored(frames, None, config)
    assert n_file == n_frames == 13
    np.testing.assert_array_equal(from_file, from_frames)


def test_trim_range_and_clamp_past_the_end(make_video) -> None:
    path, frames = make_video(num_frames=20)
    box = (0, 0, 64, 48)
    stored, count = preprocess.decode_to_stored(path, start=5, stop=13, box=box, config=CFG)
    assert count == 8
    np.testing.assert_array_equal(stored, _expected(frames[5:13], box, 16, 8))
    # WLASL's frame_end past the real end: clamped to what the video has.
    _, count = preprocess.decode_to_stored(path, start=15, stop=400, box=box, config=CFG)
    assert count == 5


def test_short_clip_is_padded_with_edge_frames(make_video) -> None:
    path, frames = make_video(num_frames=3)
    stored, count = preprocess.decode_to_stored(path, box=None, config=CFG)
    assert count == 3
    reference = preprocess.frames_to_stored(frames, None, CFG)[0]
    np.testing.assert_array_equal(stored, reference)
    # 8 from 3: [0, 0, 0, 1, 2, 2, 2, 2] (pad 5: 2 before, 3 after), never stretched.
    np.testing.assert_array_equal(stored[0], stored[2])
    np.testing.assert_array_equal(stored[4], stored[7])
    assert not np.array_equal(stored[2], stored[3])


def test_square_letterboxes_instead_of_stretching() -> None:
    frame = np.full((20, 40, 3), 200, dtype=np.uint8)  # wide
    boxed = preprocess.resize_frame(frame, None, rgb_spec(frame_size=16, square=True))
    assert boxed.shape == (16, 16, 3)
    assert (boxed[:4] == 0).all() and (boxed[12:] == 0).all() and (boxed[4:12] == 200).all()
    stretched = preprocess.resize_frame(frame, None, rgb_spec(frame_size=16, square=False))
    assert (stretched == 200).all()


def test_box_is_clipped_to_the_decoded_frame() -> None:
    frame = np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)
    clipped = preprocess.resize_frame(frame, (40, 20, 400, 400), CFG)
    expected = cv2.resize(frame[20:48, 40:64], (16, 16), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(clipped, expected)


def test_from_params_and_json_round_trip() -> None:
    config = RgbFeatureSpec.from_params(
        ExtractParams(seq_len=8, stored_frames=12, frame_size=32, min_frames=2), CropParams(margin=0.2, square=False)
    )
    assert (config.seq_len, config.stored_frames, config.frame_size, config.min_frames) == (8, 12, 32, 2)
    assert (config.margin, config.square, config.use_bbox) == (0.2, False, True)
    assert RgbFeatureSpec.model_validate(config.to_json()) == config
    with pytest.raises(ValueError, match="stored_frames"):
        RgbFeatureSpec.model_validate({**config.to_json(), "seq_len": 13})


def _truncated(make_video, tmp_path: Path) -> Path:
    path, _ = make_video("whole.mp4", num_frames=30, height=96, width=128, lossless=False)
    data = path.read_bytes()
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(data[: len(data) // 3])
    return cut


def _unknown_codec(tmp_path: Path) -> Path:
    """An AVI whose codec tag FFmpeg has no decoder for (the container itself parses)."""
    avi = tmp_path / "mjpeg.avi"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "1",
         "-c:v", "mjpeg", str(avi)],
        check=True,
    )
    odd = tmp_path / "odd.avi"
    odd.write_bytes(avi.read_bytes().replace(b"MJPG", b"QQQQ"))
    return odd


@pytest.mark.parametrize("kind", ["zero_byte", "text", "truncated", "unknown_codec", "missing"])
def test_bad_files_raise_video_errors_with_reasons(make_video, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bad.mp4"
    if kind == "zero_byte":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, I am not a video\n" * 50)
    elif kind == "truncated":
        path = _truncated(make_video, tmp_path)
    elif kind == "unknown_codec":
        path = _unknown_codec(tmp_path)
    expected = {"zero_byte": "empty", "text": "not_video", "truncated": {"corrupt", "not_video", "no_frames"},
                "unknown_codec": "unsupported_codec", "missing": "missing"}[kind]
    with pytest.raises(video.VideoError) as caught:
        preprocess.decode_to_stored(path, box=None, config=CFG)
    assert caught.value.reason in (expected if isinstance(expected, set) else {expected})
    assert caught.value.detail


def test_range_past_the_end_too_short_and_too_long(make_video) -> None:
    path, _ = make_video(num_frames=6)
    with pytest.raises(video.VideoError, match="past the end") as caught:
        preprocess.decode_to_stored(path, start=10, stop=20, config=CFG)
    assert caught.value.reason == "no_frames"
    with pytest.raises(video.VideoError) as caught:
        preprocess.decode_to_stored(path, config=CFG.model_copy(update={"min_frames": 7}))
    assert caught.value.reason == "too_short"
    with pytest.raises(video.VideoError) as caught:
        preprocess.decode_to_stored(path, config=CFG, max_frames=4)
    assert caught.value.reason == "too_large"
    with pytest.raises(video.VideoError) as caught:
        preprocess.frames_to_stored([], None, CFG)
    assert caught.value.reason == "no_frames"


@pytest.mark.parametrize("hold_frames", [None, 3])
@pytest.mark.parametrize(
    ("start", "stop", "num_frames"),
    [(0, None, None), (0, None, 20), (3, 15, 20), (4, 400, 20), (0, None, 30), (0, None, 12), (2, None, 1)],
)
def test_converting_only_stored_frames_gives_the_same_result(
    make_video, monkeypatch, start, stop, num_frames, hold_frames
) -> None:
    # Only the stored frames are converted; neither the container's count (right: 20, wrong: 30
    # or 12 for a 20-frame clip) nor a hold budget smaller than the clip may change the output.
    path, frames = make_video(num_frames=20)
    config = rgb_spec(seq_len=4, stored_frames=6, frame_size=16, square=False)
    box = (4, 2, 60, 46)
    if hold_frames is not None:
        one_frame = 64 * 48 * 3  # the lossless fixture decodes to gbrp: three full planes
        monkeypatch.setattr(preprocess, "HOLD_BYTES", hold_frames * one_frame)
    fast = preprocess.decode_to_stored(path, start=start, stop=stop, box=box, config=config, num_frames=num_frames)
    kept = frames[start:stop]
    x0, y0, x1, y1 = box
    small = [cv2.resize(f[y0:y1, x0:x1], (16, 16), interpolation=cv2.INTER_AREA) for f in kept]
    assert fast[1] == len(kept)
    np.testing.assert_array_equal(fast[0], np.stack([small[i] for i in sampling.uniform_indices(len(kept), 6)]))


def test_one_decode_and_only_stored_frames_converted_when_the_count_is_wrong(make_video, monkeypatch) -> None:
    # The container's count is wrong in many WLASL files; the clip must still be decoded once.
    path, _ = make_video(num_frames=20)
    config = rgb_spec(seq_len=4, stored_frames=6, frame_size=16, square=False)
    opened, converted = [], []
    lazy, to_rgb = video.iter_lazy_frames, video.to_rgb
    monkeypatch.setattr(video, "iter_lazy_frames", lambda *a, **k: opened.append(a) or lazy(*a, **k))
    monkeypatch.setattr(video, "to_rgb", lambda frame, box=None: converted.append(frame) or to_rgb(frame, box))
    for num_frames in (None, 20, 25, 12):
        opened.clear()
        converted.clear()
        preprocess.decode_to_stored(path, config=config, num_frames=num_frames)
        assert (len(opened), len(converted)) == (1, 6), num_frames

"""How a decoded frame becomes a stored one: the box is converted alone with the same pixels, and
``extract.resize: swscale_area`` is one swscale pass that stores the same kind of frames."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
from feature_specs import rgb_spec

from signflow import preprocess, video
from signflow.config import ParamsError, parse_params
from signflow.feature_spec import FeatureSpecError, RgbFeatureSpec, load_spec

WLASL_CLIPS = Path(os.environ.get("SIGNFLOW_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "wlasl-clips"


def _random_frame(width: int, height: int, pix_fmt: str, seed: int) -> av.VideoFrame:
    """A frame of ``pix_fmt`` whose every plane holds random bytes (any size, odd ones too)."""
    rng = np.random.default_rng(seed)
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        rows[:] = rng.integers(0, 256, rows.shape, dtype=np.uint8)
    return frame


def _boxes(width: int, height: int, seed: int, count: int = 12) -> list[tuple[int, int, int, int]]:
    rng = np.random.default_rng(seed)
    boxes = [(0, 0, width, height - 1), (1, 1, width, height), (width - 3, height - 3, width, height)]
    for _ in range(count):
        x0, y0 = int(rng.integers(0, width - 1)), int(rng.integers(0, height - 1))
        boxes.append((x0, y0, int(rng.integers(x0 + 1, width + 1)), int(rng.integers(y0 + 1, height + 1))))
    return boxes


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuvj420p", "yuv444p", "nv12"])
@pytest.mark.parametrize("size", [(64, 48), (97, 61), (130, 34)])
def test_converting_only_the_box_gives_the_pixels_of_the_whole_frame(pix_fmt: str, size: tuple[int, int]) -> None:
    width, height = size
    frame = _random_frame(width, height, pix_fmt, seed=width)
    whole = video.to_rgb(frame)
    for box in _boxes(width, height, seed=height):
        np.testing.assert_array_equal(video.to_rgb(frame, box), whole[box[1] : box[3], box[0] : box[2]],
                                      err_msg=f"{pix_fmt} {size} box {box}")


def test_the_box_keeps_the_frames_colour_matrix_and_range() -> None:
    frame = _random_frame(96, 64, "yuv420p", seed=3)
    frame.colorspace, frame.color_range = av.video.reformatter.Colorspace.ITU709, av.video.reformatter.ColorRange.JPEG
    box = (7, 5, 71, 49)
    np.testing.assert_array_equal(video.to_rgb(frame, box), video.to_rgb(frame)[5:49, 7:71])


@pytest.mark.skipif(not WLASL_CLIPS.is_dir(), reason=f"real WLASL clips not found at {WLASL_CLIPS}")
def test_real_frames_convert_the_same_boxed_or_whole() -> None:
    """Real codecs and sizes (240p to 1080p): random boxes of frames across the clips."""
    clips = sorted(WLASL_CLIPS.glob("*.mp4"))[::25]
    checked = 0
    for number, path in enumerate(clips):
        for index, frame in video.iter_lazy_frames(path, 0, 20, threads=1):
            if index % 7:
                continue
            whole = video.to_rgb(frame)
            for box in _boxes(frame.width, frame.height, seed=number * 100 + index, count=3):
                np.testing.assert_array_equal(video.to_rgb(frame, box), whole[box[1] : box[3], box[0] : box[2]],
                                              err_msg=f"{path.name} frame {index} box {box}")
                checked += 1
    assert checked >= 40


def test_clip_box_clips_to_the_frame_and_whole_or_empty_means_no_crop() -> None:
    assert video.clip_box(None, 100, 50) is None
    assert video.clip_box((-5, -5, 500, 500), 100, 50) is None  # all of it
    assert video.clip_box((60, 10, 40, 30), 100, 50) is None  # empty
    assert video.clip_box((10.7, 5.2, 90.9, 45.0), 100, 50) == (10, 5, 90, 45)
    assert video.clip_box((10, 5, 500, 45), 100, 50) == (10, 5, 100, 45)


# --------------------------------------------------------------------------- extract.resize: swscale_area


@pytest.mark.parametrize("square", [True, False])
@pytest.mark.parametrize("box", [None, (9, 3, 57, 45)])
def test_swscale_area_stores_frames_like_opencv_area(make_video, square: bool, box) -> None:
    """The same shape, letterbox and content (a few grey levels apart), from one swscale pass."""
    path, _ = make_video(num_frames=24, height=48, width=80, lossless=False)
    opencv = rgb_spec(seq_len=4, stored_frames=8, frame_size=32, square=square)
    swscale = rgb_spec(seq_len=4, stored_frames=8, frame_size=32, square=square, resize="swscale_area")
    reference, count = preprocess.decode_to_stored(path, box=box, config=opencv)
    fast, fast_count = preprocess.decode_to_stored(path, box=box, config=swscale)
    assert fast.shape == reference.shape == (8, 32, 32, 3) and fast.dtype == np.uint8 and fast_count == count
    # Sharp-edged squares, a box rounded out to even pixels: a few grey levels apart, the same picture.
    assert np.abs(fast.astype(int) - reference).mean() < 8.0
    assert np.corrcoef(fast.ravel(), reference.ravel())[0, 1] > 0.95
    black_rows = np.flatnonzero(reference.max(axis=(0, 2, 3)) == 0)
    np.testing.assert_array_equal(np.flatnonzero(fast.max(axis=(0, 2, 3)) == 0), black_rows)
    if square and box is None:
        assert len(black_rows) > 0, "a 80x48 clip stored square is letterboxed"


def test_swscale_area_does_not_depend_on_the_hold_budget_or_count(make_video) -> None:
    path, _ = make_video(num_frames=30, height=48, width=64, lossless=False)
    config = rgb_spec(seq_len=4, stored_frames=6, frame_size=16, resize="swscale_area")
    reference, _ = preprocess.decode_to_stored(path, config=config)
    for num_frames, hold_bytes in [(30, 1), (40, 1), (None, 10**9), (12, 1)]:
        again, _ = preprocess.decode_to_stored(path, config=config, num_frames=num_frames, hold_bytes=hold_bytes)
        np.testing.assert_array_equal(again, reference)


def test_swscale_area_on_rgb_frames_sent_by_a_client(make_video) -> None:
    """``/predict_frames`` (RGB arrays) under a swscale spec: area-scaled by swscale too, close to the video path."""
    path, frames = make_video(num_frames=16, height=48, width=64)
    config = rgb_spec(seq_len=4, stored_frames=8, frame_size=32, resize="swscale_area")
    from_frames, _ = preprocess.frames_to_stored(frames, None, config)
    from_video, _ = preprocess.decode_to_stored(path, config=config)
    assert from_frames.shape == from_video.shape
    assert np.abs(from_frames.astype(int) - from_video).mean() < 8.0
    assert np.corrcoef(from_frames.ravel(), from_video.ravel())[0, 1] > 0.97


def test_resize_is_a_checked_param_and_spec_field(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="extract.resize"):
        parse_params({"extract": {"resize": "bicubic"}}, "params.yaml")
    spec = rgb_spec(resize="swscale_area")
    assert load_spec(spec.to_json()).resize == "swscale_area"
    old = {key: value for key, value in rgb_spec().to_json().items() if key != "resize"}
    (tmp_path / "preprocess.json").write_text(json.dumps(old))
    assert load_spec(tmp_path).resize == "opencv_area", "specs written before the field were made with OpenCV"
    with pytest.raises(FeatureSpecError, match="resize"):
        load_spec({**old, "resize": "nearest"})
    assert RgbFeatureSpec.model_fields["resize"].annotation == parse_params({}, "p").extract.model_fields["resize"].annotation

"""The service's decode path: an upload is opened once, its limits checked before any frame is decoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from feature_specs import rgb_spec

from serving.clips import ClipReader
from serving.rejections import Rejected
from signflow import preprocess, video
from signflow.config import ServeParams

SPEC = rgb_spec(seq_len=4, stored_frames=8, frame_size=16)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files ``signflow.video`` opens."""
    names: list[str] = []
    real_open = video._open
    monkeypatch.setattr(video, "_open", lambda path: names.append(Path(path).name) or real_open(path))
    return names


def test_an_upload_is_opened_once_and_stored_as_extract_would(make_video, opened: list[str]) -> None:
    path, frames = make_video(num_frames=30, height=48, width=64)
    stored, info = ClipReader(ServeParams(), SPEC, None).video(path)
    assert opened == [path.name], "the probe and the decode share one open"
    np.testing.assert_array_equal(stored, preprocess.decode_to_stored(path, config=SPEC)[0])
    assert info["frames"] == len(frames) and (info["width"], info["height"]) == (64, 48) and info["codec"] == "h264"


@pytest.mark.parametrize(
    ("limits", "reason"),
    [({"max_width": 32}, "resolution_too_large"), ({"max_frames": 10}, "too_many_frames"),
     ({"max_duration_s": 0.2}, "too_long")],
)  # fmt: skip
def test_an_upload_over_the_limits_is_refused_before_any_frame_is_decoded(
    make_video, monkeypatch: pytest.MonkeyPatch, limits: dict, reason: str
) -> None:
    path, _ = make_video(num_frames=30, height=48, width=64)
    decoded: list[int] = []
    real_check = video.DecodeLimits.check
    monkeypatch.setattr(video.DecodeLimits, "check", lambda self, *a: decoded.append(1) or real_check(self, *a))
    with video.decode_limits(video.DecodeLimits()), pytest.raises(Rejected) as caught:
        ClipReader(ServeParams(**limits), SPEC, None).video(path)
    assert caught.value.reason == reason and decoded == [], caught.value.detail


def test_a_file_that_is_not_a_video_is_refused_without_the_servers_file_name(tmp_path: Path) -> None:
    upload = tmp_path / "tmpab12cd.mp4"
    upload.write_bytes(b"this is not a video at all" * 40)
    with pytest.raises(Rejected) as caught:
        ClipReader(ServeParams(), SPEC, None).video(upload)
    assert caught.value.reason == "not_video" and "tmpab12cd" not in caught.value.detail, caught.value.detail

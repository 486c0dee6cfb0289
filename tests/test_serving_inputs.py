"""What a client may send (serving.inputs) and how a refusal answers (serving.rejections), without a server."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from pydantic_core import PydanticCustomError
from starlette.datastructures import Headers, UploadFile

from serving.guard import REASON_HEADER
from serving.inputs import check_frames, check_upload_type, frames_input
from serving.rejections import STATUS, Rejected
from signflow.config import ServeParams

SERVE = ServeParams(max_batch_size=2, max_frames=8, max_width=64, max_height=48)


def _upload(name: str, content_type: str) -> UploadFile:
    return UploadFile(io.BytesIO(b"x"), filename=name, headers=Headers({"content-type": content_type}))


def test_uploads_must_say_they_are_video() -> None:
    for upload in (_upload("a.mp4", "video/mp4"), _upload("a.webm", "application/octet-stream")):
        assert check_upload_type(upload) is upload
    with pytest.raises(PydanticCustomError) as refused:
        check_upload_type(_upload("a.txt", "text/plain"))
    assert refused.value.type == "unsupported_media_type" and "text/plain" in str(refused.value)
    with pytest.raises(PydanticCustomError):
        check_upload_type(_upload("a.txt", "application/octet-stream"))  # generic type, no video name


def _reason(call) -> str:
    with pytest.raises(Rejected) as refused:
        call()
    return refused.value.reason


def test_frames_come_from_exactly_one_of_json_or_npy(tmp_path: Path) -> None:
    clip = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    npy = tmp_path / "clip.npy"
    np.save(npy, clip)
    assert np.array_equal(frames_input(None, npy), clip)
    assert np.array_equal(frames_input(clip.tolist(), None), clip)
    assert _reason(lambda: frames_input(None, None)) == "bad_shape"
    assert _reason(lambda: frames_input(clip.tolist(), npy)) == "bad_shape"
    assert _reason(lambda: frames_input([[1, 2], [3]], None)) == "bad_shape"  # ragged
    (tmp_path / "bad.npy").write_bytes(b"not npy")
    assert _reason(lambda: frames_input(None, tmp_path / "bad.npy")) == "bad_npy"


def test_frames_are_checked_against_the_serve_limits() -> None:
    clips, single = check_frames(np.full((4, 8, 8, 3), 255, dtype=np.int64), SERVE)
    assert single and clips.shape == (1, 4, 8, 8, 3) and clips.dtype == np.uint8 and clips.max() == 255
    cases = {
        "empty_batch": np.zeros((0, 8, 8, 3)),
        "bad_shape": np.zeros((4, 8, 8)),
        "bad_dtype": np.zeros((4, 8, 8, 3), dtype=np.float32),
        "batch_too_large": np.zeros((3, 4, 8, 8, 3), dtype=np.uint8),
        "too_many_frames": np.zeros((9, 8, 8, 3), dtype=np.uint8),
        "resolution_too_large": np.zeros((4, 49, 8, 3), dtype=np.uint8),
    }
    for reason, frames in cases.items():
        assert _reason(lambda frames=frames: check_frames(frames, SERVE)) == reason
    assert _reason(lambda: check_frames(np.full((4, 8, 8, 3), 256), SERVE)) == "bad_dtype"


def test_a_refusal_answers_its_status_with_the_reason_in_body_and_header() -> None:
    response = Rejected("too_long", "61.0 s is longer than 60 s").response()
    assert response.status_code == STATUS["too_long"] == 413
    assert json.loads(response.body) == {"error": "too_long", "detail": "61.0 s is longer than 60 s"}
    assert response.headers[REASON_HEADER.decode()] == "too_long"
    assert Rejected("something_new", "x").response().status_code == 400

"""What a client may send, checked before any decoder or model is spent on it.

* uploads: the multipart part must say it is a video (content type, or a generic type with a
  video file name), else 415 before BentoML spools it;
* frames: one clip ``(T, H, W, 3)`` or a batch ``(N, T, H, W, 3)`` of integers 0..255, as JSON
  or a ``.npy`` file, within the ``serve`` limits (batch size, frames, resolution).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BeforeValidator

from serving.rejections import Rejected
from signflow.config import ServeParams

VIDEO_TYPES = {
    "video/mp4": ".mp4", "video/webm": ".webm", "video/x-msvideo": ".avi", "video/avi": ".avi",
    "video/msvideo": ".avi", "video/quicktime": ".mov", "video/x-matroska": ".mkv",
}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".webm", ".avi", ".mov", ".mkv"}
# Sent by clients that do not know the type; accepted when the file name says video.
GENERIC_TYPES = {"application/octet-stream", ""}


def check_upload_type(value: Any) -> Any:
    """Refuse uploads that say they are not video (415) before a decoder is spent on them.

    Runs on the raw multipart part (before BentoML spools it to a file), where the part's
    content type and file name are still known. Raises a pydantic error whose ``type``
    the guard middleware turns into the rejection reason.
    """
    from pydantic_core import PydanticCustomError
    from starlette.datastructures import UploadFile

    if not isinstance(value, UploadFile):
        return value
    content_type = (value.content_type or "").split(";")[0].strip().lower()
    suffix = Path(value.filename or "").suffix.lower()
    if content_type in VIDEO_TYPES or (content_type in GENERIC_TYPES and suffix in VIDEO_SUFFIXES):
        return value
    raise PydanticCustomError(
        "unsupported_media_type",
        "{name}: content type '{content_type}' is not a supported video (mp4, webm, avi, mov)",
        {"name": value.filename or "upload", "content_type": content_type},
    )


VideoUpload = Annotated[Path, BeforeValidator(check_upload_type)]


def frames_input(frames: list[Any] | None, npy: Path | None) -> np.ndarray:
    """The frames array from exactly one of the JSON ``frames`` or the uploaded ``.npy`` file."""
    if (frames is None) == (npy is None):
        raise Rejected("bad_shape", "send exactly one of 'frames' (JSON array) or 'npy' (a .npy file)")
    if frames is not None:
        try:
            array = np.asarray(frames)
        except ValueError as error:  # ragged nesting
            raise Rejected("bad_shape", f"frames are not a regular array ({error})") from None
        if array.dtype == object:
            raise Rejected("bad_dtype", "frames must be nested lists of integers 0..255")
        return array
    try:
        # allow_pickle=False: an uploaded .npy may hold plain arrays only, never objects (code).
        return np.load(npy, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise Rejected("bad_npy", f"not a readable .npy array ({error})") from None


def check_frames(frames: np.ndarray, serve: ServeParams) -> tuple[np.ndarray, bool]:
    """``(T,H,W,3)`` or ``(N,T,H,W,3)`` integer RGB in 0..255 within the serve limits -> (uint8 5-D, single)."""
    array = np.asarray(frames)
    if array.size == 0:
        raise Rejected("empty_batch", f"no frames (shape {array.shape})")
    if array.ndim not in (4, 5) or array.shape[-1] != 3:
        raise Rejected("bad_shape", f"expected (T, H, W, 3) or (N, T, H, W, 3) RGB frames, got shape {array.shape}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer):
            raise Rejected("bad_dtype", f"frames must be integers 0..255 (uint8 RGB), got {array.dtype}")
        if array.min() < 0 or array.max() > 255:
            raise Rejected("bad_dtype", f"frame values must be in 0..255, got {array.min()}..{array.max()}")
        array = array.astype(np.uint8)
    single = array.ndim == 4
    clips = array[None] if single else array
    count, length, height, width = clips.shape[:4]
    if count > serve.max_batch_size:
        raise Rejected("batch_too_large", f"{count} clips in one request, the limit is {serve.max_batch_size}")
    if length > serve.max_frames:
        raise Rejected("too_many_frames", f"{length} frames per clip, the limit is {serve.max_frames}")
    if width > serve.max_width or height > serve.max_height:
        raise Rejected("resolution_too_large", f"{width}x{height} frames, the limit is {serve.max_width}x{serve.max_height}")
    return clips, single

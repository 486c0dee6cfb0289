"""From an accepted input to the model's input, with the extract stage's own code.

:class:`ClipReader` checks a video's probe against the ``serve`` limits (a 4K or hour-long file is
refused before any frame is decoded), then decodes and preprocesses it with
:mod:`signflow.preprocess` (or, for landmark models, MediaPipe and the evaluate-time
normalisation). :func:`cancellable` runs that work in a
thread that stops within a frame once its request has ended.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from serving.rejections import Rejected
from signflow.config import ServeParams

log = logging.getLogger("signflow.serving")


class ClipReader:
    """Decode/preprocess for one served model: RGB frames (``preprocess``) or landmarks (``landmarks``)."""

    def __init__(self, serve: ServeParams, preprocess: Any, landmarks: Any) -> None:
        self.serve = serve
        self.preprocess = preprocess  # signflow.feature_spec.RgbFeatureSpec, None for landmark models
        self.landmarks = landmarks  # signflow.landmarks.online.LandmarkPreprocessor, None for RGB models

    def probe(self, path: Path) -> Any:
        """Probe and apply the limits: a 4K or hour-long file is refused unread."""
        from signflow import video as video_io

        try:
            info = video_io.probe(path)
        except video_io.VideoError as error:
            raise Rejected(error.reason, client_detail(error.detail, path)) from None
        return self.check_limits(info)

    def check_limits(self, info: Any) -> Any:
        """Refuse a probed video (:class:`signflow.video.VideoInfo`) over the ``serve`` limits; else return it."""
        serve = self.serve
        if info.width > serve.max_width or info.height > serve.max_height:
            raise Rejected(
                "resolution_too_large",
                f"{info.width}x{info.height} is larger than {serve.max_width}x{serve.max_height} (serve.max_width/height)",
            )
        if info.duration_s > serve.max_duration_s:
            raise Rejected("too_long", f"{info.duration_s:.1f} s is longer than {serve.max_duration_s:g} s (serve.max_duration_s)")
        if info.num_frames > serve.max_frames:
            raise Rejected("too_many_frames", f"{info.num_frames} frames, the limit is {serve.max_frames} (serve.max_frames)")
        return info

    def video(self, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        """Decode + preprocess with the extract stage's code, the limits checked on the container's
        probe as it opens (a 4K or hour-long file is refused before any frame is decoded)."""
        from signflow import video as video_io
        from signflow.preprocess import decode_to_stored

        probed: list[Any] = []
        try:
            # One open per upload; its probed count lets frames past the hold budget
            # (preprocess.HOLD_BYTES per request) be dropped unconverted: one decode pass, only the
            # stored frames converted, memory bounded; a wrong count never changes the answer.
            stored, count = decode_to_stored(path, config=self.preprocess, max_frames=self.serve.max_frames,
                                             on_probe=lambda info: probed.append(self.check_limits(info)))
        except video_io.VideoError as error:
            reason = "too_many_frames" if error.reason == "too_large" else error.reason
            raise Rejected(reason, client_detail(error.detail, path)) from None
        return stored, input_info(probed[0], count)

    def video_landmarks(self, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        """Probe (limits first), then MediaPipe Holistic + the evaluate-time normalisation."""
        from signflow.landmarks.online import LandmarkInputError
        from signflow.landmarks.pool import LandmarkEnvError, LandmarkError

        info = self.probe(path)
        try:
            stored, found = self.landmarks.from_video(path, max_frames=self.serve.max_frames)
        except LandmarkInputError as error:
            raise Rejected(error.reason, error.detail) from None
        except LandmarkError as error:
            raise Rejected(error.reason, client_detail(error.detail, path)) from None
        except LandmarkEnvError as error:  # the server's set-up, not the client's input
            log.error("landmark extraction unavailable: %s", error)
            raise Rejected("landmarks_unavailable", "the landmark extractor is not installed on this server") from None
        return stored, {**input_info(info, found["frames"]), "detected": found["detected"]}

    def points(self, points: Any, mask: Any, width: int | None, height: int | None) -> np.ndarray:
        """A client's own landmark sequence -> the model's input (same gap filling and normalisation)."""
        from signflow.landmarks.online import LandmarkInputError

        try:
            return self.landmarks.from_points(points, mask, width=width, height=height)
        except LandmarkInputError as error:
            raise Rejected(error.reason, error.detail) from None

    def frames(self, clips: np.ndarray) -> np.ndarray:
        """Checked ``uint8 (N, T, H, W, 3)`` clips -> stored clips, one :func:`frames_to_stored` each."""
        from signflow import video as video_io
        from signflow.preprocess import frames_to_stored

        try:
            return np.stack([frames_to_stored(clip, None, self.preprocess)[0] for clip in clips])
        except video_io.VideoError as error:
            raise Rejected(error.reason, error.detail) from None

    def batch(self, stored: np.ndarray) -> np.ndarray:
        """One stored clip as a batch of one, checked against what the model expects."""
        if self.landmarks is not None:
            return stored[None]  # float32 (1, stored_frames, J, C) from stored_input
        expected = self.preprocess.stored_shape
        if stored.shape != expected or stored.dtype != np.uint8:
            raise RuntimeError(f"preprocess produced {stored.shape} {stored.dtype}, the model expects {expected} uint8")
        return stored[None]


async def cancellable(work: Callable[..., Any], *args: Any, serve: ServeParams) -> Any:
    """Run decode/preprocess ``work`` in a thread under the serve limits, stopped (within a frame)
    when the request ends early: BentoML's timeout cancels this coroutine, not the thread."""
    from signflow import video as video_io

    cancel = threading.Event()
    limits = video_io.DecodeLimits(cancel=cancel, max_frames=serve.max_frames, max_duration_s=serve.max_duration_s)
    ended = [0.0]

    def run() -> Any:
        try:
            return work(*args)
        finally:
            if cancel.is_set():
                log.info("decoding stopped %.2f s after its request ended", time.perf_counter() - ended[0])

    with video_io.decode_limits(limits):
        try:
            return await asyncio.to_thread(run)
        except asyncio.CancelledError:
            ended[0] = time.perf_counter()
            cancel.set()
            raise


def input_info(info: Any, frames: int) -> dict[str, Any]:
    """The ``input`` part of a video answer: what was decoded (probe info + frames actually read)."""
    duration = frames / info.fps if info.fps else info.duration_s
    return {"frames": int(frames), "fps": round(info.fps, 3), "duration_s": round(duration, 3),
            "width": info.width, "height": info.height, "codec": info.codec}


def client_detail(detail: str, path: Path) -> str:
    """An error message about an upload without the server's temporary file name or folder."""
    return detail.replace(str(path), "upload").replace(path.name, "upload")

"""Landmark model inputs outside the pipeline: one video or one client-sent sequence at a time.

The service uses this for landmark models (``model.arch: landmark_*``), so a served request
goes through exactly what extract + evaluate did: MediaPipe Holistic in the isolated
environment (:class:`signflow.landmarks.WorkerPool`, started on first use and kept), then
:func:`signflow.landmarks.normalize.stored_input` (uniform resampling to ``stored_frames``,
gap filling, shoulder-centred normalisation, mask channel), all from the ``preprocess.json``
saved with the model.

Clients that run their own tracker send raw landmarks instead: ``(T, J, 3)`` in MediaPipe's
coordinates (x, y as fractions of the frame, z), with a ``(T, J)`` mask or, without one, a
joint counted missing where all its coordinates are 0 (how MediaPipe Hands files store an
unseen hand).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from signflow.landmarks import KIND, WorkerPool
from signflow.landmarks.layout import Layout, get_layout
from signflow.landmarks.normalize import stored_input

# Layouts a video can be turned into here (MediaPipe Holistic); "hands" models were trained on
# MediaPipe Hands files and can only be served landmarks.
VIDEO_LAYOUTS = ("holistic", "holistic_face")


class LandmarkInputError(ValueError):
    """A client-sent landmark sequence that does not fit the model; ``reason`` names the rule."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class LandmarkPreprocessor:
    """``preprocess.json`` of a landmark model -> model inputs ``float32 (stored_frames, J, C + 1)``."""

    def __init__(self, preprocess: dict[str, Any], *, python: str | os.PathLike[str] | None = None):
        if preprocess.get("kind") != KIND:
            raise ValueError(f"not a landmark model's preprocess.json (kind {preprocess.get('kind')!r})")
        self.layout: Layout = get_layout(str(preprocess["landmark_layout"]))
        self.stored_frames = int(preprocess["stored_frames"])
        self.max_gap = int(preprocess.get("max_gap", 0))
        self.extractor: dict[str, Any] = dict(preprocess.get("extractor") or {})
        self._python = python
        self._pool: WorkerPool | None = None
        self._pool_lock = threading.Lock()

    @property
    def reads_video(self) -> bool:
        return self.layout.name in VIDEO_LAYOUTS

    def from_points(
        self, points: Any, mask: Any = None, *, width: int | None = None, height: int | None = None
    ) -> np.ndarray:
        """One client sequence ``(T, J, 3)`` (+ mask ``(T, J)``) -> the model input; refuses what cannot fit."""
        try:
            array = np.asarray(points, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise LandmarkInputError("bad_shape", f"points are not a regular numeric array ({error})") from None
        joints = self.layout.num_joints
        if array.ndim != 3 or array.shape[1] != joints or array.shape[2] != 3:
            raise LandmarkInputError(
                "bad_shape", f"expected points (T, {joints}, 3) for the {self.layout.name!r} layout, got {array.shape}"
            )
        if array.shape[0] == 0:
            raise LandmarkInputError("empty_batch", "no frames of landmarks")
        if not np.isfinite(array).all():
            raise LandmarkInputError("bad_dtype", "points contain NaN or infinity; mark missing joints in 'mask'")
        if mask is None:
            seen = np.any(array != 0.0, axis=-1)
        else:
            seen = np.asarray(mask)
            if seen.shape != array.shape[:2]:
                raise LandmarkInputError("bad_shape", f"mask must be (T, J) = {array.shape[:2]}, got {seen.shape}")
            seen = seen.astype(bool)
        return self._model_input(array, seen, width, height)

    def from_video(self, path: str | os.PathLike[str], *, max_frames: int | None = None) -> tuple[np.ndarray, dict]:
        """Landmarks of one video (MediaPipe worker, kept between calls) -> ``(model input, info)``.

        Raises :class:`signflow.landmarks.LandmarkError` (unusable video, with a reason),
        :class:`signflow.landmarks.LandmarkEnvError` (no isolated environment) or
        :class:`LandmarkInputError` for a hands-only model.
        """
        if not self.reads_video:
            raise LandmarkInputError(
                "model_mismatch",
                f"this model reads {self.layout.name!r} keypoints (MediaPipe Hands files), which are not "
                "extracted from videos here: send landmarks to /predict_landmarks",
            )
        clip = self._worker_pool().extract(path, max_frames=max_frames)
        stored = self._model_input(clip.points, clip.mask, clip.width, clip.height)
        info = {"frames": int(len(clip.points)), "width": clip.width, "height": clip.height, "detected": clip.detected}
        return stored, info

    def _model_input(self, points: np.ndarray, mask: np.ndarray, width: int | None, height: int | None) -> np.ndarray:
        aspect = float(width) / float(height) if width and height else 1.0
        return stored_input(
            points, mask, self.layout, stored_frames=self.stored_frames, aspect=aspect, max_gap=self.max_gap
        )

    def _worker_pool(self) -> WorkerPool:
        from signflow.config import LandmarksParams

        with self._pool_lock:
            if self._pool is None:
                fields = {k: v for k, v in self.extractor.items() if k in LandmarksParams.model_fields and k != "face"}
                params = LandmarksParams(**fields, face=self.layout.name == "holistic_face")
                self._pool = WorkerPool(params, 1, python=self._python)
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

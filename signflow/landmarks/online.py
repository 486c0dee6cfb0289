"""Landmark model inputs outside the pipeline: one video or one client-sent sequence at a time.

The service uses this for landmark models (``model.arch: landmark_*``), so a served request
goes through exactly what extract + evaluate did: MediaPipe Holistic in the isolated
environment (:class:`signflow.landmarks.pool.WorkerPool`, started on first use and kept), then
:func:`signflow.landmarks.normalize.stored_input` (uniform resampling to ``stored_frames``,
gap filling, shoulder-centred normalisation, mask channel), all from the feature spec
(:class:`signflow.feature_spec.LandmarkFeatureSpec`) saved with the model.

Different MediaPipe versions give different landmarks for the same video, so
:meth:`LandmarkPreprocessor.extractor_mismatch` compares the version the model's features were
extracted with and the one installed here (the service warns, or refuses to start under
``serve.landmark_extractor_mismatch: refuse``).

Clients that run their own tracker send raw landmarks instead: ``(T, J, 3)`` in MediaPipe's
coordinates (x, y as fractions of the frame, z), with a ``(T, J)`` mask or, without one, a
joint counted missing where all its coordinates are 0 (how MediaPipe Hands files store an
unseen hand).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Literal

import numpy as np

from signflow.feature_spec import FeatureSpecError, HolisticExtractor, LandmarkFeatureSpec, load_spec
from signflow.landmarks.layout import Layout, get_layout
from signflow.landmarks.normalize import stored_input
from signflow.landmarks.pool import LandmarkEnvError, WorkerPool, installed_mediapipe_version

log = logging.getLogger(__name__)

# Layouts a video can be turned into here (MediaPipe Holistic); "hands" models were trained on
# MediaPipe Hands files and can only be served landmarks.
VIDEO_LAYOUTS = ("holistic", "holistic_face")


class LandmarkInputError(ValueError):
    """A client-sent landmark sequence that does not fit the model; ``reason`` names the rule."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class ExtractorMismatch(RuntimeError):
    """Refused to serve: this server's MediaPipe is not the one the model's features came from."""


class LandmarkPreprocessor:
    """A landmark model's feature spec -> model inputs ``float32 (stored_frames, J, C + 1)``."""

    def __init__(
        self, spec: LandmarkFeatureSpec | dict[str, Any], *, python: str | os.PathLike[str] | None = None
    ):
        spec = load_spec(spec, origin="the model's feature spec")
        if not isinstance(spec, LandmarkFeatureSpec):
            raise FeatureSpecError(f"not a landmark model's feature spec (kind {spec.kind!r})")
        self.spec = spec
        self.layout: Layout = get_layout(spec.layout)
        self.stored_frames = spec.stored_frames
        self.max_gap = spec.max_gap
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

        Raises :class:`signflow.landmarks.pool.LandmarkError` (unusable video, with a reason),
        :class:`signflow.landmarks.pool.LandmarkEnvError` (no isolated environment) or
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

    def extractor_mismatch(self) -> str | None:
        """Why this server's MediaPipe is not the one the model's features came from; None when it is.

        Only for models that read video (a hands-files model never runs MediaPipe here). Reads
        the installed version from package metadata (MediaPipe is not started); raises
        :class:`signflow.landmarks.pool.LandmarkEnvError` when the landmark environment is missing.
        """
        extractor = self.spec.extractor
        if not self.reads_video or not isinstance(extractor, HolisticExtractor):
            return None
        installed = installed_mediapipe_version(self._python)
        if installed == extractor.mediapipe_version:
            return None
        return (
            f"the model's landmarks were extracted with mediapipe {extractor.mediapipe_version}, this server has "
            f"{installed or 'no mediapipe'}: other versions give other landmarks, so accuracy may differ from "
            "the evaluated one (install the recorded version in the landmark environment)"
        )

    def check_extractor(self, policy: Literal["warn", "refuse"]) -> str | None:
        """Apply ``serve.landmark_extractor_mismatch``: the mismatch (logged) under ``warn``, raise under ``refuse``.

        No landmark environment here means nothing to compare (video requests are refused
        as ``landmarks_unavailable`` anyway): None.
        """
        try:
            mismatch = self.extractor_mismatch()
        except LandmarkEnvError as error:
            log.warning("cannot compare landmark extractors: %s", error)
            return None
        if mismatch is None:
            return None
        if policy == "refuse":
            raise ExtractorMismatch(f"{mismatch} (serve.landmark_extractor_mismatch: refuse)")
        log.warning("%s", mismatch)
        return mismatch

    def _worker_pool(self) -> WorkerPool:
        from signflow.config import LandmarksParams

        with self._pool_lock:
            if self._pool is None:
                extractor = self.spec.extractor
                assert isinstance(extractor, HolisticExtractor)  # reads_video: checked by from_video
                params = LandmarksParams(
                    model_complexity=extractor.model_complexity,
                    min_detection_confidence=extractor.min_detection_confidence,
                    min_tracking_confidence=extractor.min_tracking_confidence,
                    face=self.spec.face,
                )
                self._pool = WorkerPool(params, 1, python=self._python)
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

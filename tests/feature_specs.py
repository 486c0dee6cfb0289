"""Feature specs for tests, made the way the extract stage makes them (from params), with small sizes."""

from __future__ import annotations

from typing import Any

from signflow.config import CropParams, ExtractParams, LandmarksParams
from signflow.extract.landmarks import landmark_spec
from signflow.feature_spec import HandKeypointFiles, HolisticExtractor, LandmarkFeatureSpec, RgbFeatureSpec

MEDIAPIPE = "0.10.21"  # requirements-landmarks.txt


def rgb_spec(**fields: Any) -> RgbFeatureSpec:
    """The RGB spec extract writes with these ``extract``/``crop`` fields (``min_frames`` 1 unless given)."""
    crop = {key: fields.pop(key) for key in list(fields) if key in CropParams.model_fields}
    return RgbFeatureSpec.from_params(ExtractParams(**{"min_frames": 1, **fields}), CropParams(**crop))


def holistic_spec(
    *, seq_len: int = 8, stored_frames: int = 16, mediapipe_version: str = MEDIAPIPE, **landmarks: Any
) -> LandmarkFeatureSpec:
    """The spec of MediaPipe Holistic features (``landmarks``: LandmarksParams fields, e.g. face, max_gap)."""
    params = LandmarksParams(**landmarks)
    extract = ExtractParams(representation="landmarks", seq_len=seq_len, stored_frames=stored_frames)
    return landmark_spec(params, extract, HolisticExtractor.from_params(params, mediapipe_version))


def hands_spec(*, seq_len: int = 8, stored_frames: int = 16, max_gap: int = 4) -> LandmarkFeatureSpec:
    """The spec of converted MediaPipe Hands keypoint files (layout ``hands``)."""
    extract = ExtractParams(representation="landmarks", seq_len=seq_len, stored_frames=stored_frames)
    return landmark_spec(LandmarksParams(max_gap=max_gap), extract, HandKeypointFiles(source="wlasl-hand-keypoints"))

"""The feature spec: one typed, versioned record of how the stored features were made.

Extract writes it once (``data/features/preprocess.json``); train carries it unchanged into
``model.pt`` and ``models/preprocess.json``; package copies that into the BentoML model; evaluate,
:class:`signflow.inference.Predictor` and the service read it with :func:`load_spec`. It holds
what a consumer must reproduce to feed a model the inputs it was trained on, and nothing else:
the label map is its own file, and the model's input normalisation (mean/std, tensor layout)
belongs to the arch and is saved beside the spec in the model file, never merged into it.

Two kinds, told apart by ``kind``:

- ``rgb`` (:class:`RgbFeatureSpec`): cropped, resized frames (:mod:`signflow.preprocess`);
- ``landmarks`` (:class:`LandmarkFeatureSpec`): keypoint sequences, with the extractor that made
  them (MediaPipe Holistic and its version, or MediaPipe Hands keypoint files), because another
  MediaPipe version gives other landmarks for the same video.

Fields carry the bounds of the params they come from (``ExtractParams``, ``CropParams``,
``LandmarksParams``), read off those models rather than copied, so a spec that validates is one
a valid ``params.yaml`` could have produced. A file that does not validate, or has another
``version``, is refused with a :class:`FeatureSpecError` naming the file and the field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from signflow import atomic
from signflow.config import CropParams, ExtractParams, LandmarksParams
from signflow.landmarks.layout import LAYOUTS

SPEC_VERSION = 1
SPEC_FILE = "preprocess.json"  # the name DVC outs, the kfp wiring and the Bento use
# Model input channels of a landmark joint: x, y, z and the mask channel (signflow.landmarks.normalize).
LANDMARK_CHANNELS = 4


class FeatureSpecError(ValueError):
    """A feature spec that cannot be used; the message names the file and the field."""


def _from_params(section: type[BaseModel], name: str) -> Any:
    """``section.name``'s type and bounds without its default: a spec states every value it records."""
    info = section.model_fields[name]
    return Annotated[info.annotation, *info.metadata, Field(description=info.description)]


SeqLen = _from_params(ExtractParams, "seq_len")
StoredFrames = _from_params(ExtractParams, "stored_frames")
FrameSize = _from_params(ExtractParams, "frame_size")
MinFrames = _from_params(ExtractParams, "min_frames")
Resize = _from_params(ExtractParams, "resize")
UseBbox = _from_params(CropParams, "use_bbox")
Margin = _from_params(CropParams, "margin")
Square = _from_params(CropParams, "square")
MaxGap = _from_params(LandmarksParams, "max_gap")
ModelComplexity = _from_params(LandmarksParams, "model_complexity")
DetectionConfidence = _from_params(LandmarksParams, "min_detection_confidence")
TrackingConfidence = _from_params(LandmarksParams, "min_tracking_confidence")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class _ClipSpec(_Record):
    """What both kinds share: the schema version and the temporal sampling."""

    version: Literal[1] = Field(description="feature spec schema version (SPEC_VERSION)")
    seq_len: SeqLen
    stored_frames: StoredFrames

    @model_validator(mode="after")
    def _stored_covers_seq(self) -> _ClipSpec:
        if self.stored_frames < self.seq_len:
            raise ValueError(f"stored_frames ({self.stored_frames}) must be >= seq_len ({self.seq_len})")
        return self


class RgbFeatureSpec(_ClipSpec):
    """Everything that decides the stored pixels of an RGB clip (:mod:`signflow.preprocess`)."""

    kind: Literal["rgb"] = "rgb"
    frame_size: FrameSize
    min_frames: MinFrames
    use_bbox: UseBbox
    margin: Margin
    square: Square
    # The one field with a default: specs written before it existed were all made with OpenCV.
    resize: Resize = "opencv_area"

    @classmethod
    def from_params(cls, extract: ExtractParams, crop: CropParams) -> RgbFeatureSpec:
        return cls(
            version=SPEC_VERSION,
            seq_len=extract.seq_len,
            stored_frames=extract.stored_frames,
            frame_size=extract.frame_size,
            min_frames=extract.min_frames,
            use_bbox=crop.use_bbox,
            margin=crop.margin,
            square=crop.square,
            resize=extract.resize,
        )

    @property
    def stored_shape(self) -> tuple[int, int, int, int]:
        return (self.stored_frames, self.frame_size, self.frame_size, 3)


class HolisticExtractor(_Record):
    """MediaPipe Holistic run by :mod:`signflow.landmarks.worker` in ``.venv-landmarks``."""

    name: Literal["mediapipe-holistic"] = "mediapipe-holistic"
    mediapipe_version: str = Field(min_length=1, description="the mediapipe package version that ran")
    model_complexity: ModelComplexity
    min_detection_confidence: DetectionConfidence
    min_tracking_confidence: TrackingConfidence

    @classmethod
    def from_params(cls, params: LandmarksParams, mediapipe_version: str) -> HolisticExtractor:
        return cls(
            mediapipe_version=mediapipe_version,
            model_complexity=params.model_complexity,
            min_detection_confidence=params.min_detection_confidence,
            min_tracking_confidence=params.min_tracking_confidence,
        )


class HandKeypointFiles(_Record):
    """Precomputed MediaPipe Hands keypoints (:mod:`signflow.landmarks.hand_keypoints`): not run here."""

    name: Literal["mediapipe-hands-files"] = "mediapipe-hands-files"
    source: str = Field(min_length=1, description="the keypoint folder's name")


Extractor = Annotated[HolisticExtractor | HandKeypointFiles, Field(discriminator="name")]


class LandmarkFeatureSpec(_ClipSpec):
    """Keypoint sequences (:mod:`signflow.landmarks`): joint layout, gap filling, normalisation, extractor.

    ``num_joints`` and ``channels`` are the model input's ``J`` and ``C`` (x, y, z + mask),
    what ``build_model(num_joints=..., channels=...)`` takes; both must agree with ``layout``.
    """

    kind: Literal["landmarks"] = "landmarks"
    layout: str = Field(description="joint layout (signflow.landmarks.layout): holistic, holistic_face, hands")
    num_joints: int = Field(ge=1)
    channels: Literal[4] = LANDMARK_CHANNELS
    max_gap: MaxGap
    normalize: Literal["shoulder_centre_width"] = "shoulder_centre_width"
    extractor: Extractor

    @model_validator(mode="after")
    def _layout_fits(self) -> LandmarkFeatureSpec:
        layout = LAYOUTS.get(self.layout)
        if layout is None:
            raise ValueError(f"layout {self.layout!r} is not one of {sorted(LAYOUTS)}")
        if self.num_joints != layout.num_joints:
            raise ValueError(f"num_joints {self.num_joints} does not fit layout {self.layout!r} ({layout.num_joints})")
        holistic = isinstance(self.extractor, HolisticExtractor)
        if holistic != (self.layout != "hands"):
            raise ValueError(f"layout {self.layout!r} cannot come from the {self.extractor.name} extractor")
        return self

    @property
    def face(self) -> bool:
        return self.layout == "holistic_face"


FeatureSpec = Annotated[RgbFeatureSpec | LandmarkFeatureSpec, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[RgbFeatureSpec | LandmarkFeatureSpec] = TypeAdapter(FeatureSpec)


def _format(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        # loc starts with the union member ("rgb"/"landmarks"); a bad tag is the "kind" field's fault.
        where = ".".join(str(part) for part in item["loc"][1:]) if len(item["loc"]) > 1 else ""
        where = where or ("kind" if item["type"].startswith("union_tag") else "spec")
        got = item.get("input")
        shown = "" if isinstance(got, dict) or item["type"] == "missing" else f" (got {got!r})"
        lines.append(f"{where}: {item['msg'].removeprefix('Value error, ')}{shown}")
    return "; ".join(lines)


def load_spec(
    source: str | os.PathLike[str] | dict[str, Any] | RgbFeatureSpec | LandmarkFeatureSpec, *, origin: str | None = None
) -> RgbFeatureSpec | LandmarkFeatureSpec:
    """A feature spec from a ``preprocess.json`` path, a folder holding one, or an already-read dict.

    ``origin`` names a dict's source in errors (a model file, a Bento). Raises
    :class:`FeatureSpecError` saying which file, which field and what to re-run.
    """
    if isinstance(source, (RgbFeatureSpec, LandmarkFeatureSpec)):
        return source
    if isinstance(source, dict):
        raw: Any = source
        origin = origin or "feature spec"
    else:
        path = Path(source)
        if path.is_dir():
            path = path / SPEC_FILE
        origin = origin or str(path)
        if not path.is_file():
            raise FeatureSpecError(f"{origin}: feature spec not found; run the extract stage first")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise FeatureSpecError(f"{origin}: not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise FeatureSpecError(f"{origin}: a feature spec is a JSON object, got {type(raw).__name__}")
    version = raw.get("version")
    if version is None:
        raise FeatureSpecError(
            f"{origin}: an unversioned feature spec, written before signflow versioned them; "
            "re-run extract and train (dvc repro train) to write a current one"
        )
    if version != SPEC_VERSION:
        raise FeatureSpecError(
            f"{origin}: feature spec version {version!r}; this signflow reads version {SPEC_VERSION}: "
            "re-run extract and train with this signflow, or serve with the signflow that wrote it"
        )
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as error:
        raise FeatureSpecError(f"{origin}: invalid feature spec: {_format(error)}") from None


def write_spec(directory: str | os.PathLike[str], spec: RgbFeatureSpec | LandmarkFeatureSpec) -> Path:
    """Write ``spec`` as ``<directory>/preprocess.json``, atomically; returns the path."""
    path = Path(directory) / SPEC_FILE
    atomic.write_json(path, spec.to_json())
    return path

"""Inference: a trained model folder -> logits and top-k glosses for stored clips.

:class:`Predictor` loads ``model.pt`` (weights, arch, label map, input config and the feature spec
it was trained with, :mod:`signflow.feature_spec`) and scores *stored clips*, the extract stage's output, with
:meth:`Predictor.logits`: :func:`signflow.sampling.clip_indices` picks ``seq_len`` frames (with
``clips > 1``, several evenly spaced windows whose logits are averaged), then
:func:`signflow.transforms.to_model_input` and the network.

Who calls what:

* evaluate: :func:`signflow.evaluation.predict_split` feeds the extracted shards to :meth:`Predictor.logits`.
* the service: its model worker (``serving.service.SignflowModel``) calls only :meth:`Predictor.logits`,
  with evaluate's ``clips``. Its API worker makes the stored clips itself (:mod:`serving.clips`:
  :func:`signflow.preprocess.decode_to_stored` / :func:`~signflow.preprocess.frames_to_stored` with
  the Bento's feature spec, or the landmark preprocessor), the extract stage's code, so a
  served clip goes through the code that produced the reported metrics.
* package: the latency tie-break (:mod:`signflow.packaging.latency`) times :meth:`Predictor.logits`.
* :meth:`Predictor.preprocess_video`, :meth:`~Predictor.preprocess_frames`, :meth:`~Predictor.predict`
  and :meth:`~Predictor.predict_video` (decode + preprocess + top-k in one process) serve benchmarks,
  tests and scripts; the service does not call them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from signflow.feature_spec import LandmarkFeatureSpec, RgbFeatureSpec
from signflow.models import load_model_file
from signflow.sampling import clip_indices
from signflow.scores import softmax, top_classes
from signflow.transforms import InputConfig, input_config_for, to_model_input

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"


@dataclass(frozen=True)
class Prediction:
    label: int
    gloss: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "gloss": self.gloss, "probability": self.probability}


class Predictor:
    """A loaded model plus the exact preprocessing it was trained with.

    ``meta`` is :func:`signflow.models.load_model_file`'s: the validated feature spec
    (``feature_spec``) and the network's input config (``input_config``) come from there.
    """

    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], *, device: str | torch.device = "cpu"):
        self.model = model.eval()
        self.meta = meta
        self.device = torch.device(device)
        self.arch: str = meta["arch"]
        self.label_map: list[str] = list(meta["label_map"])
        self.feature_spec: RgbFeatureSpec | LandmarkFeatureSpec = meta["feature_spec"]
        self.seq_len = int(meta["input"]["seq_len"])
        # As trained (saved by the train stage), else the arch's own normalisation and layout.
        saved = meta.get("input_config")
        self.input_config = InputConfig.model_validate(saved) if saved is not None else input_config_for(self.arch)

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> Predictor:
        """Load ``<model_dir>/model.pt`` (or a model file path); ``torch.load(weights_only=True)`` inside."""
        path = Path(model_dir)
        if path.is_dir():
            path = path / MODEL_FILE
        model, meta = load_model_file(path, device=device)
        log.info("loaded %s (%d glosses) from %s", meta["arch"], meta["num_classes"], path)
        return cls(model, meta, device=device)

    @property
    def num_classes(self) -> int:
        return len(self.label_map)

    @property
    def stored_ndim(self) -> int:
        """Dimensions of one stored clip: ``(S, H, W, 3)`` for video models, ``(S, J, C)`` for landmarks."""
        return 3 if self.input_config.layout == "TJC" else 4

    @property
    def rgb_spec(self) -> RgbFeatureSpec:
        """The extract stage's RGB feature spec saved with the model (landmark models have none)."""
        if isinstance(self.feature_spec, RgbFeatureSpec):
            return self.feature_spec
        raise ValueError(
            f"{self.arch} reads landmark sequences: videos need the MediaPipe landmarks extractor "
            "(signflow.landmarks), not RGB frame preprocessing"
        )

    # ------------------------------------------------------------------ preprocessing

    def preprocess_video(
        self,
        path: str | os.PathLike[str],
        *,
        box: Sequence[int] | None = None,
        max_frames: int | None = None,
        start: int = 0,
        stop: int | None = None,
    ) -> np.ndarray:
        """Decode a video into one stored clip ``uint8 (stored_frames, S, S, 3)``.

        Raises :class:`signflow.video.VideoError` (with a ``reason``) for unusable videos.
        """
        from signflow.preprocess import decode_to_stored

        config = self.rgb_spec
        stored, _ = decode_to_stored(
            path, start=start, stop=stop, box=box if config.use_bbox else None, config=config, max_frames=max_frames
        )
        return stored

    def preprocess_frames(
        self, frames: np.ndarray | Iterable[np.ndarray], box: Sequence[int] | None = None
    ) -> np.ndarray:
        """RGB ``uint8 (H, W, 3)`` frames already in memory -> one stored clip."""
        from signflow.preprocess import frames_to_stored

        config = self.rgb_spec
        stored, _ = frames_to_stored(frames, box if config.use_bbox else None, config)
        return stored

    # ------------------------------------------------------------------ scoring

    @torch.inference_mode()
    def logits(self, stored_batch: np.ndarray | torch.Tensor, clips: int = 1, *, batch_size: int = 32) -> np.ndarray:
        """``(B, stored_frames, ...)`` stored clips -> ``(B, num_classes)`` logits.

        ``clips > 1``: the logits of ``clips`` evenly spaced temporal windows are
        averaged (test-time augmentation); 1 is plain uniform sampling, exactly what
        training validated on.
        """
        batch = stored_batch if isinstance(stored_batch, torch.Tensor) else torch.as_tensor(np.asarray(stored_batch))
        if batch.dim() != self.stored_ndim + 1:
            raise ValueError(
                f"expected a batch of stored clips with {self.stored_ndim + 1} dims, got shape {tuple(batch.shape)}"
            )
        if batch.shape[0] == 0:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        indices = torch.from_numpy(clip_indices(int(batch.shape[1]), self.seq_len, clips))  # (clips, seq_len)
        windows = batch[:, indices]  # (B, clips, seq_len, ...)
        flat = windows.reshape(-1, *windows.shape[2:])
        outputs = []
        for begin in range(0, flat.shape[0], batch_size):
            x = to_model_input(flat[begin : begin + batch_size].to(self.device), self.input_config)
            outputs.append(self.model(x).float().cpu())
        logits = torch.cat(outputs).reshape(batch.shape[0], indices.shape[0], -1).mean(dim=1)
        return logits.numpy()

    def probabilities(self, stored_batch: np.ndarray | torch.Tensor, clips: int = 1) -> np.ndarray:
        return softmax(self.logits(stored_batch, clips))

    def predict(
        self, stored: np.ndarray | torch.Tensor, *, k: int = 5, clips: int = 1
    ) -> list[Prediction] | list[list[Prediction]]:
        """Top-``k`` glosses with probabilities, for one stored clip or a batch of them."""
        array = np.asarray(stored)
        single = array.ndim == self.stored_ndim
        probabilities = self.probabilities(array[None] if single else array, clips)
        k = max(1, min(k, self.num_classes))
        results = []
        for row in probabilities:
            top = top_classes(row, k)
            results.append([Prediction(int(c), self.label_map[int(c)], float(row[c])) for c in top])
        return results[0] if single else results

    def predict_video(
        self,
        path: str | os.PathLike[str],
        *,
        k: int = 5,
        clips: int = 1,
        box: Sequence[int] | None = None,
        max_frames: int | None = None,
    ) -> list[Prediction]:
        """Decode + preprocess + top-``k`` for one video file."""
        return self.predict(self.preprocess_video(path, box=box, max_frames=max_frames), k=k, clips=clips)

"""Torch dataset over a landmark shard folder (``metadata.kind == "landmarks"``).

Used by :func:`signflow.training.data.open_split` (which calls :func:`open_landmark_split`
for landmark folders), so landmark models train and evaluate through the same
loop, sampler, checkpoints and metrics as the video models. Main env only (torch).

An item is ``(x, label)`` with ``x`` float32 ``(seq_len, J, C + 1)``: the
normalised coordinates (:func:`signflow.landmarks.normalize.prepare`, with the
``max_gap`` recorded at extraction) and, as the last channel, the mask
(1 = seen or interpolated, 0 = missing; missing coordinates are 0). Models get
``num_joints = J`` and ``channels = C + 1`` from :attr:`LandmarkDataset.num_joints`
/ :attr:`LandmarkDataset.channels`.

Training adds, each drawn from a generator seeded by ``(seed, epoch, index)``
(the same rule as the RGB dataset, so results do not depend on worker count):
the temporal window of :meth:`TemporalDataset.frame_indices` (speed + jitter from
``train.augment``), a random rotation (``train.augment.landmarks.rotate_deg``) and scale
(``train.augment.landmarks.scale_jitter``) about the shoulder centre, and, with
``train.augment.landmarks.mirror``, a horizontal flip that swaps left/right joints half the time.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from signflow.config import AugmentParams, LandmarksParams
from signflow.feature_spec import LandmarkFeatureSpec
from signflow.landmarks.layout import Layout, get_layout
from signflow.landmarks.normalize import mirror, model_input, prepare
from signflow.seed import derive_seed
from signflow.shards import ShardReader
from signflow.training.base_dataset import DataError, TemporalDataset


class LandmarkDataset(TemporalDataset):
    """``LandmarkDataset(split_dir, *, seq_len, train, seed, augment)`` -> ``(x (seq_len, J, C+1), label)``.

    ``split_dir`` is a landmark shard folder (or an open :class:`ShardReader`); ``augment`` the
    ``train.augment`` section: temporal jitter/speed, and ``landmarks`` (mirror, rotation, scale).
    """

    def __init__(
        self,
        split_dir: str | os.PathLike[str] | ShardReader,
        *,
        seq_len: int,
        train: bool,
        seed: int = 0,
        augment: AugmentParams | None = None,
    ):
        reader = split_dir if isinstance(split_dir, ShardReader) else _open_reader(Path(split_dir))
        super().__init__(reader, seq_len=seq_len, train=train, augment=augment, seed=seed)
        metadata = reader.metadata
        if metadata.get("kind") != LandmarkFeatureSpec.model_fields["kind"].default:
            raise DataError(f"{reader.directory}: not a landmark split (metadata kind {metadata.get('kind')!r})")
        missing = {"points", "mask"} - set(reader.fields)
        if missing:
            raise DataError(f"{reader.directory}: landmark split lacks field(s) {sorted(missing)}")
        self.layout: Layout = get_layout(str(metadata.get("layout")))
        stored_joints = reader.fields["points"].shape[1]
        if stored_joints != self.layout.num_joints:
            raise DataError(
                f"{reader.directory}: {stored_joints} joints stored but layout {self.layout.name!r} has "
                f"{self.layout.num_joints}"
            )
        # Gap filling is part of the features' definition: use what extraction recorded.
        self.max_gap = int(metadata.get("max_gap", LandmarksParams().max_gap))

    @property
    def num_joints(self) -> int:
        return self.layout.num_joints

    @property
    def channels(self) -> int:
        return int(self.reader.fields["points"].shape[2]) + 1  # coordinates + mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.reader.items[index]
        points = self.reader.read(index, "points").astype(np.float32)
        mask = self.reader.read(index, "mask").astype(bool)
        width, height = item.get("width") or 0, item.get("height") or 0
        aspect = float(width) / float(height) if width and height else 1.0
        points, mask = prepare(points, mask, self.layout, aspect=aspect, max_gap=self.max_gap)
        keep = self.frame_indices(index, len(points))
        points, mask = points[keep], mask[keep]
        if self.train:
            points, mask = self._augment(points, mask, index)
        return torch.from_numpy(model_input(points, mask)), self.labels[index]

    def _augment(self, points: np.ndarray, mask: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(derive_seed(self.seed, "landmarks", self.epoch, index))
        params = self.augment.landmarks
        if params.mirror and rng.random() < 0.5:
            points, mask = mirror(points, mask, self.layout)
        angle = np.deg2rad(rng.uniform(-params.rotate_deg, params.rotate_deg))
        scale = rng.uniform(1.0 - params.scale_jitter, 1.0 + params.scale_jitter)
        cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
        rotation = np.array([[cos, -sin], [sin, cos]], dtype=np.float32)
        points = points.copy()
        points[..., :2] = points[..., :2] @ rotation.T
        if points.shape[-1] > 2:
            points[..., 2] *= scale
        points[~mask] = 0.0  # missing stays exactly 0 whatever the transform
        return points, mask


def _open_reader(directory: Path) -> ShardReader:
    if not (directory / "index.json").is_file():
        raise DataError(f"{directory}: landmark split folder missing (no index.json); run the extract stage first")
    return ShardReader(directory)


def open_landmark_split(
    reader: ShardReader,
    *,
    seq_len: int,
    train: bool,
    augment: AugmentParams | None = None,
    seed: int = 0,
) -> LandmarkDataset:
    """Entry point for :func:`signflow.training.data.open_split` (``kind == "landmarks"``)."""
    return LandmarkDataset(reader, seq_len=seq_len, train=train, seed=seed, augment=augment)

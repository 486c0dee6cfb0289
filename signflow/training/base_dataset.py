"""What every dataset over a shard folder shares: :class:`DataError` and :class:`TemporalDataset`.

Its own module so that the RGB datasets (:mod:`signflow.training.data`), the landmark dataset
(:mod:`signflow.training.landmark_data`) and the feature cache build on it without importing
one another (``data.open_split`` picks between them).
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from signflow.config import AugmentParams
from signflow.sampling import train_indices, uniform_indices
from signflow.seed import derive_seed
from signflow.shards import ShardReader


class DataError(ValueError):
    """Features on disk that do not fit the training run (missing split, label mismatch...)."""


class TemporalDataset(Dataset):
    """Shared part of RGB and cached-feature datasets: labels and per-clip temporal sampling."""

    def __init__(
        self,
        reader: ShardReader,
        *,
        seq_len: int,
        train: bool,
        augment: AugmentParams | None = None,
        seed: int = 0,
    ):
        self.reader = reader
        self.seq_len = seq_len
        self.train = train
        self.augment = augment if augment is not None else AugmentParams()
        self.seed = seed
        self.epoch = 0
        self.labels: list[int] = [int(item["label"]) for item in reader.items]

    def __len__(self) -> int:
        return len(self.reader)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def frame_indices(self, index: int, num_frames: int) -> np.ndarray:
        """Training: random window (speed + jitter); evaluation: uniform over the clip."""
        if not self.train:
            return uniform_indices(num_frames, self.seq_len)
        rng = np.random.default_rng(derive_seed(self.seed, "temporal", self.epoch, index))
        aug = self.augment
        return train_indices(
            rng, num_frames, self.seq_len, jitter=aug.temporal_jitter, speed_min=aug.speed_min, speed_max=aug.speed_max
        )

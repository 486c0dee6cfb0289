"""Training and evaluation datasets over the extract stage's shard folders.

One entry point, :func:`open_split`, reads a split folder's metadata ``kind``
and builds the matching dataset (``video``: RGB clips, here; ``landmarks``:
keypoint sequences, :mod:`signflow.training.landmark_data`, imported only when used).

Every random choice for a clip (temporal window, speed, crop, colour) comes
from a generator seeded by ``(seed, epoch, clip index)``. Results therefore do
not depend on the number of DataLoader workers or DDP ranks, and a resumed run
sees exactly the augmentations an uninterrupted run would have. Call
:meth:`ClipDataset.set_epoch` before each epoch; DataLoader workers are not
persistent, so each epoch's workers get a fresh copy with the right epoch.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from signflow.config import AugmentParams
from signflow.seed import derive_seed
from signflow.shards import ShardReader
from signflow.training.base_dataset import DataError, TemporalDataset

log = logging.getLogger(__name__)



def read_label_map(path: str | os.PathLike[str]) -> list[str]:
    """``label_map.json`` -> the gloss list (index = class label)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: label map not found; run the split stage first")
    glosses = json.loads(path.read_text(encoding="utf-8")).get("glosses")
    if not isinstance(glosses, list) or not glosses or not all(isinstance(g, str) for g in glosses):
        raise DataError(f"{path}: expected {{\"glosses\": [non-empty list of strings]}}")
    return glosses


def check_labels(reader: ShardReader, glosses: Sequence[str]) -> None:
    """Every item's label must be in range and name the same gloss as the label map."""
    for item in reader.items:
        label = item.get("label")
        if not isinstance(label, int) or not 0 <= label < len(glosses):
            raise DataError(
                f"{reader.directory}: clip {item.get('video_id')!r} has label {label!r}, "
                f"outside the label map's {len(glosses)} classes; re-run extract after split"
            )
        gloss = item.get("gloss")
        if gloss is not None and gloss != glosses[label]:
            raise DataError(
                f"{reader.directory}: clip {item.get('video_id')!r} is {gloss!r} with label {label}, "
                f"but the label map says {glosses[label]!r}; features and label map are from different splits"
            )


class ClipDataset(TemporalDataset):
    """Stored RGB clips -> ``(model input tensor, label)`` in the arch's layout.

    ``pixel_augment`` switches the pixel-changing augmentations (crop, flip,
    colour) on for training; temporal sampling augmentation is separate.
    """

    def __init__(
        self,
        reader: ShardReader,
        *,
        seq_len: int,
        input_config: Any,
        train: bool,
        augment: AugmentParams | None = None,
        seed: int = 0,
        pixel_augment: bool = True,
    ):
        super().__init__(reader, seq_len=seq_len, train=train, augment=augment, seed=seed)
        from signflow.transforms import TrainAugmenter

        self.input_config = input_config
        self.frame_size = int(reader.fields["frames"].shape[1])
        self.augmenter = TrainAugmenter(self.augment, self.frame_size) if train and pixel_augment else None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from signflow.transforms import to_model_input

        frames = self.reader.read(index, "frames")  # (stored, S, S, 3) uint8
        clip = torch.from_numpy(np.ascontiguousarray(frames[self.frame_indices(index, len(frames))]))
        if self.augmenter is not None:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, "pixels", self.epoch, index))
            clip = self.augmenter(clip, generator)
        return to_model_input(clip, self.input_config), self.labels[index]


def open_split(
    directory: str | os.PathLike[str],
    *,
    glosses: Sequence[str],
    seq_len: int,
    input_config: Any,
    train: bool,
    augment: AugmentParams | None = None,
    seed: int = 0,
    pixel_augment: bool = True,
) -> TemporalDataset:
    """The dataset for one split folder, chosen by its metadata ``kind`` (video | landmarks)."""
    directory = Path(directory)
    if not (directory / "index.json").is_file():
        raise DataError(f"{directory}: split folder missing (no index.json); run the extract stage first")
    reader = ShardReader(directory)
    check_labels(reader, glosses)
    kind = reader.metadata.get("kind", "video")
    if kind == "video":
        if "frames" not in reader.fields:
            raise DataError(f"{directory}: a 'video' split needs a 'frames' field, has {sorted(reader.fields)}")
        stored = reader.fields["frames"].shape[0]
        if stored < seq_len:
            log.warning("%s: %d stored frames < seq_len %d; clips are edge-padded", directory, stored, seq_len)
        return ClipDataset(
            reader,
            seq_len=seq_len,
            input_config=input_config,
            train=train,
            augment=augment,
            seed=seed,
            pixel_augment=pixel_augment,
        )
    if kind == "landmarks":
        # Imported here so RGB training never loads the landmark stack.
        from signflow.training import landmark_data

        return landmark_data.open_landmark_split(reader, seq_len=seq_len, train=train, augment=augment, seed=seed)
    raise DataError(f"{directory}: unknown split kind {kind!r} (expected 'video' or 'landmarks')")

"""Frozen-backbone feature cache: run the 2D CNN once, train the temporal head many times.

For an arch whose registry entry has a ``frozen_backbone`` predicate that holds
(``model.arch: cnn_lstm`` with ``model.cnn_lstm.freeze: all``) the backbone
never changes, so its per-frame features are a pure function of (backbone
weights, input normalisation, stored frames). They are computed once for every
stored frame of every clip and kept as a shard folder under the cache directory,
named by a hash of exactly those inputs; a later run (another lr, epochs,
temporal model...) with the same key reuses them. Training then feeds
``(T, F)`` feature sequences to ``model.forward_features``.

What changes: pixel augmentations (crop, flip, colour jitter) cannot be applied
to cached features, so they are off (logged). Temporal sampling (jitter,
speed) still applies, since it only picks which stored frames' features are used.
The backbone runs in eval mode (frozen BatchNorm), exactly as during training
without the cache, so the cached head sees the same features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from signflow import archs
from signflow.config import AugmentParams
from signflow.shards import ShardReader, ShardWriter
from signflow.training.base_dataset import TemporalDataset

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def cache_applies(model_params: Any, train_params: Any) -> bool:
    """With ``train.feature_cache`` on, for an arch whose registry entry says its backbone is frozen.

    The arch's model must then offer ``backbone``, ``backbone_features``, ``forward_features``,
    ``feature_dim`` and ``params.backbone``, as :class:`signflow.models.cnn_lstm.CnnLstm` does.
    """
    spec = archs.get(model_params.arch)
    if not (train_params.feature_cache and spec.frozen_backbone is not None):
        return False
    return bool(archs.resolve(spec.frozen_backbone)(model_params))


def _split_identity(split_dir: Path) -> dict[str, Any]:
    # index.json names every clip and shard; size + mtime of each shard file stand in for
    # its content (hashing gigabytes of frames every run would cost as much as the cache saves).
    index_bytes = (split_dir / "index.json").read_bytes()
    shards = sorted(p for p in split_dir.glob("*.npy"))
    return {
        "index": hashlib.sha256(index_bytes).hexdigest(),
        "shards": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in shards],
    }


def cache_key(backbone: nn.Module, *, backbone_name: str, input_config: Any, split_dir: str | os.PathLike[str]) -> str:
    """sha256 over backbone name + weights (incl. BN statistics) + normalisation + the split's data."""
    digest = hashlib.sha256()
    grid = getattr(backbone, "grid", 1)  # pooling has no weights: the grid is part of the key
    digest.update(json.dumps({"version": CACHE_VERSION, "backbone": backbone_name, "grid": grid}).encode())
    for name, tensor in sorted(backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    config = input_config.model_dump(mode="json") if hasattr(input_config, "model_dump") else input_config
    digest.update(json.dumps(config, sort_keys=True).encode())
    digest.update(json.dumps(_split_identity(Path(split_dir))).encode())
    return digest.hexdigest()


@torch.no_grad()
def compute_features(
    model: nn.Module,
    reader: ShardReader,
    out_dir: Path,
    *,
    input_config: Any,
    device: torch.device,
    batch_size: int = 8,
    metadata: dict[str, Any] | None = None,
    progress: bool = True,
) -> None:
    """Every stored frame of every clip through ``model.backbone_features`` into a shard folder."""
    from signflow.transforms import to_model_input

    model.eval()
    stored = reader.fields["frames"].shape[0]
    fields = {"features": ((stored, int(model.feature_dim)), "float32")}
    keep = ("video_id", "label", "gloss")
    with ShardWriter(out_dir, fields, metadata={"kind": "features", **(metadata or {})}) as writer:
        positions = range(len(reader))
        for start in tqdm(range(0, len(reader), batch_size), desc=f"feature cache {out_dir.name}", disable=not progress):
            batch = positions[start : start + batch_size]
            frames = torch.from_numpy(np.stack([reader.read(i, "frames") for i in batch])).to(device)
            features = model.backbone_features(to_model_input(frames, input_config)).float().cpu().numpy()
            for i, row in zip(batch, features):
                writer.add({"features": row}, **{k: reader.items[i][k] for k in keep if k in reader.items[i]})


def ensure_cache(
    model: nn.Module,
    split_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    *,
    input_config: Any,
    device: torch.device,
    compute: bool = True,
    progress: bool = True,
) -> Path:
    """The cache folder for ``split_dir`` under ``cache_dir``, computed if absent.

    ``compute=False`` (non-zero DDP ranks) only returns the path; rank 0 builds
    it and the others wait at a barrier before opening it. Older caches of the
    same split (other keys) are removed so the directory does not grow without bound.
    """
    split_dir = Path(split_dir)
    key = cache_key(
        model.backbone, backbone_name=model.params.backbone, input_config=input_config, split_dir=split_dir
    )
    target = Path(cache_dir) / f"{split_dir.name}-{key[:20]}"
    if not compute:
        return target
    if (target / "index.json").is_file():
        log.info("feature cache hit: %s", target)
        return target
    for stale in Path(cache_dir).glob(f"{split_dir.name}-*"):
        if stale.is_dir() and stale != target:
            shutil.rmtree(stale, ignore_errors=True)
    log.info("feature cache miss: computing %s features for %s -> %s", model.params.backbone, split_dir, target)
    compute_features(
        model,
        ShardReader(split_dir),
        target,
        input_config=input_config,
        device=device,
        metadata={"key": key, "backbone": model.params.backbone, "source": str(split_dir)},
        progress=progress,
    )
    return target


class FeatureDataset(TemporalDataset):
    """Cached ``(stored, F)`` features -> ``((seq_len, F) float tensor, label)`` with temporal sampling."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        features = self.reader.read(index, "features")
        return torch.from_numpy(features[self.frame_indices(index, len(features))]), self.labels[index]


def open_cached_split(
    cache_split_dir: Path, *, seq_len: int, train: bool, augment: AugmentParams | None, seed: int
) -> FeatureDataset:
    return FeatureDataset(ShardReader(cache_split_dir), seq_len=seq_len, train=train, augment=augment, seed=seed)


class TemporalHead(nn.Module):
    """The trainable half of a frozen-backbone CnnLstm: ``(B, T, F)`` features -> logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(features)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # Checkpoints hold the full CnnLstm's keys, same as a run without the cache.
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)

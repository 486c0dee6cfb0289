"""Frozen-backbone feature cache: same features as the backbone, keyed, reused, head-only training."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from signflow.models import build_model
from signflow.shards import ShardReader
from signflow.training import feature_cache
from signflow.training.run import TrainPaths, train
from signflow.transforms import input_config_for, to_model_input
from training_data import make_features, tiny_params

FROZEN = ("model.cnn_lstm.freeze=all", "train.feature_cache=true")


def _model(params):
    torch.manual_seed(0)
    return build_model(params.model, 4, seq_len=4, frame_size=32)


def test_cached_features_equal_the_backbone_and_key_tracks_weights(tmp_path: Path) -> None:
    features, _ = make_features(tmp_path, per_class={"train": 2})
    params = tiny_params(*FROZEN)
    model, cfg = _model(params), input_config_for("cnn_lstm")
    cached_dir = feature_cache.ensure_cache(model, features / "train", tmp_path / "cache", input_config=cfg, device=torch.device("cpu"))
    reader, source = ShardReader(cached_dir), ShardReader(features / "train")
    assert len(reader) == len(source) and reader.metadata["kind"] == "features"
    model.eval()
    with torch.no_grad():
        direct = model.backbone_features(to_model_input(torch.from_numpy(source.read(3))[None], cfg))[0]
    np.testing.assert_allclose(reader.read(3), direct.numpy(), rtol=1e-5, atol=1e-5)

    key = feature_cache.cache_key(model.backbone, backbone_name="small_cnn", input_config=cfg, split_dir=features / "train")
    with torch.no_grad():
        model.backbone.blocks[0][0].weight.add_(0.01)
    assert feature_cache.cache_key(model.backbone, backbone_name="small_cnn", input_config=cfg, split_dir=features / "train") != key


def test_training_on_cache_reuses_it_and_disables_pixel_augmentation(tmp_path: Path, caplog) -> None:
    features, labels = make_features(tmp_path, per_class={"train": 3, "val": 1})
    params = tiny_params(*FROZEN)
    paths = TrainPaths(features, labels, tmp_path / "m")
    with caplog.at_level(logging.INFO):
        result = train(params.model, params.train, paths, progress=False, resume="never")
    assert result.used_feature_cache
    assert "pixel augmentations" in caplog.text and "feature cache miss" in caplog.text
    cache_dirs = sorted(p.name for p in paths.feature_cache.iterdir())
    assert [name.split("-")[0] for name in cache_dirs] == ["train", "val"]

    caplog.clear()
    with caplog.at_level(logging.INFO):
        train(params.model, params.train, paths, progress=False, resume="never")
    assert "feature cache hit" in caplog.text and "feature cache miss" not in caplog.text


def test_cache_only_for_frozen_cnn_lstm() -> None:
    assert feature_cache.cache_applies(tiny_params(*FROZEN).model, tiny_params(*FROZEN).train)
    assert not feature_cache.cache_applies(tiny_params().model, tiny_params().train)
    off = tiny_params("model.cnn_lstm.freeze=all", "train.feature_cache=false")
    assert not feature_cache.cache_applies(off.model, off.train)

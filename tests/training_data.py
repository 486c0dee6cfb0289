"""Tiny extract-stage outputs for training tests: real shard folders with learnable clips.

Class ``c`` is a bright square moving in direction ``c`` (of 4) over noise, so a
small model learns it in a few epochs on CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from feature_specs import rgb_spec

from signflow.feature_spec import write_spec
from signflow.shards import ShardWriter

DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))


def clip(label: int, stored: int, size: int, rng: np.random.Generator) -> np.ndarray:
    frames = rng.integers(0, 50, size=(stored, size, size, 3), dtype=np.uint8)
    side = max(4, size // 4)
    dy, dx = DIRECTIONS[label % len(DIRECTIONS)]
    start = rng.integers(-2, 3, size=2)
    for t in range(stored):
        frac = t / max(1, stored - 1)
        cy = int(size / 2 + dy * (frac - 0.5) * (size - side) + start[0])
        cx = int(size / 2 + dx * (frac - 0.5) * (size - side) + start[1])
        y0, x0 = np.clip([cy - side // 2, cx - side // 2], 0, size - side)
        frames[t, y0 : y0 + side, x0 : x0 + side] = (230, 200, 40)
    return frames


def make_features(
    root: Path,
    *,
    num_classes: int = 4,
    per_class: dict[str, int] | None = None,
    stored: int = 8,
    seq_len: int = 4,
    size: int = 32,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write ``root/features/{train,val,test}`` + ``preprocess.json`` and ``root/label_map.json``."""
    per_class = per_class or {"train": 6, "val": 2, "test": 2}
    glosses = [f"gloss{c}" for c in range(num_classes)]
    rng = np.random.default_rng(seed)
    features = root / "features"
    for split, count in per_class.items():
        with ShardWriter(
            features / split, {"frames": ((stored, size, size, 3), "uint8")}, metadata={"kind": "video", "split": split}
        ) as writer:
            for label in range(num_classes):
                for rep in range(count):
                    writer.add(
                        {"frames": clip(label, stored, size, rng)},
                        video_id=f"{split}-{label}-{rep}",
                        label=label,
                        gloss=glosses[label],
                        source_frames=stored,
                    )
    write_spec(features, rgb_spec(seq_len=seq_len, stored_frames=stored, frame_size=size))
    label_map = root / "label_map.json"
    label_map.write_text(json.dumps({"glosses": glosses}), encoding="utf-8")
    return features, label_map


def tiny_params(*overrides: str):
    """Default params shrunk for CPU tests (small model, few epochs), plus ``key=value`` overrides."""
    from signflow.config import Params, apply_overrides

    base = [
        "model.cnn_lstm.hidden=16",
        "model.cnn_lstm.spatial_grid=1",  # tiny test frames: global pooling
        "model.dropout=0.0",
        "train.epochs=2",
        "train.batch_size=8",
        "train.lr=0.01",
    ]
    return apply_overrides(Params(), [*base, *overrides])

"""Convert MediaPipe Hands keypoint files (``wlasl-hand-keypoints``) into landmark shard folders.

Input folder: ``<video_id>.npy`` float32 ``(T, 126)`` = 2 hands x 21 points x
(x, y, z), left hand first, a hand that was not detected stored as 126/2 zeros;
``labels.csv`` with ``file, video_id, gloss, split_wlasl2000`` (the official
WLASL split). Output: the same layout the landmark extract writes, with the
hands-only ``hands`` layout (J = 42), so the landmark models, datasets and the
training stage use it unchanged::

    <out>/{train,val,test}/   ShardWriter folders (points, mask, score)
    <out>/label_map.json      {"glosses": [...]} (sorted glosses; index = label)
    <out>/preprocess.json     the feature spec (signflow.extract.landmarks.landmark_spec): layout "hands",
                              extractor "mediapipe-hands-files" (the files were made elsewhere)
    <out>/skipped.csv         video_id,reason,detail (unlabelled, unreadable, bad shape)

Run: ``python -m signflow.landmarks.hand_keypoints ../shared/data/wlasl-hand-keypoints data/hands``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from signflow import atomic
from signflow.config import Params, ParamsError, load_params
from signflow.extract.landmarks import landmark_spec
from signflow.extract.plans import SKIPPED_NAME, write_skipped
from signflow.feature_spec import HandKeypointFiles, write_spec
from signflow.index import SPLITS
from signflow.landmarks.layout import HAND_JOINTS, get_layout
from signflow.sampling import uniform_indices
from signflow.shards import ShardWriter

log = logging.getLogger(__name__)

LAYOUT = get_layout("hands")
VALUES_PER_FRAME = 2 * HAND_JOINTS * 3


def to_landmarks(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(T, 126)`` -> ``points (T, 42, 3)`` and ``mask (T, 42)``; an all-zero hand is missing."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != VALUES_PER_FRAME or len(array) == 0:
        raise ValueError(f"expected (T, {VALUES_PER_FRAME}) with T > 0, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("contains NaN or infinite values")
    points = array.reshape(len(array), 2, HAND_JOINTS, 3)
    # MediaPipe never returns a hand whose 21 points are all exactly 0: that is the "absent" filler.
    present = np.abs(points).sum(axis=(2, 3)) > 0  # (T, 2)
    mask = np.repeat(present, HAND_JOINTS, axis=1)
    return points.reshape(len(array), LAYOUT.num_joints, 3), mask


def read_labels(source: Path) -> list[dict[str, str]]:
    path = source / "labels.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels.csv not found in the keypoint folder")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    required = {"video_id", "gloss", "split_wlasl2000"}
    if rows and not required <= set(rows[0]):
        raise ValueError(f"{path}: needs columns {sorted(required)}, has {sorted(rows[0])}")
    return rows


def convert(
    source: str | os.PathLike[str], out_dir: str | os.PathLike[str], params: Params | None = None
) -> dict[str, Any]:
    """Write the shard folders described in the module docstring; returns a summary.

    Reads ``params.extract`` (``seq_len``, ``stored_frames``) and ``params.landmarks.max_gap``.
    """
    params = params or Params()
    source = Path(source)
    rows = read_labels(source)
    labelled = [row for row in rows if row.get("gloss") and row.get("split_wlasl2000") in SPLITS]
    glosses = sorted({row["gloss"] for row in labelled})
    if len(glosses) < 2:
        raise ValueError(f"{source}: need at least 2 labelled glosses, found {glosses}")
    label_of = {gloss: index for index, gloss in enumerate(glosses)}
    skipped: list[dict[str, str]] = [
        {"video_id": row["video_id"], "reason": "unlabelled", "detail": "no gloss/split in labels.csv"}
        for row in rows
        if row not in labelled
    ]
    listed = {row.get("file") or f"{row['video_id']}.npy" for row in rows}
    skipped += [
        {"video_id": path.stem, "reason": "unlabelled", "detail": "not in labels.csv"}
        for path in sorted(source.glob("*.npy"))
        if path.name not in listed
    ]
    spec = landmark_spec(params.landmarks, params.extract, HandKeypointFiles(source=source.name))
    stored = spec.stored_frames
    fields = {
        "points": ((stored, LAYOUT.num_joints, 3), "float16"),
        "mask": ((stored, LAYOUT.num_joints), "bool"),
        "score": ((stored, LAYOUT.num_joints), "float16"),
    }
    per_split: Counter = Counter()
    hand_frames = Counter()
    total_frames = 0
    with atomic.atomic_path(out_dir, is_dir=True) as tmp:
        for split in SPLITS:
            metadata = {**spec.to_json(), "coords": "mediapipe", "split": split}
            with ShardWriter(tmp / split, fields, metadata=metadata) as writer:
                for row in (row for row in labelled if row["split_wlasl2000"] == split):
                    path = source / (row.get("file") or f"{row['video_id']}.npy")
                    try:
                        points, mask = to_landmarks(np.load(path, allow_pickle=False))
                    except FileNotFoundError:
                        skipped.append({"video_id": row["video_id"], "reason": "missing", "detail": f"{path.name}"})
                        continue
                    except (ValueError, OSError) as error:
                        skipped.append({"video_id": row["video_id"], "reason": "bad_array", "detail": str(error)})
                        continue
                    keep = uniform_indices(len(points), stored)
                    writer.add(
                        {"points": points[keep], "mask": mask[keep], "score": mask[keep].astype(np.float16)},
                        video_id=row["video_id"],
                        label=label_of[row["gloss"]],
                        gloss=row["gloss"],
                        source_frames=len(points),
                        width=0,  # unknown: the files keep only normalised coordinates
                        height=0,
                    )
                    per_split[split] += 1
                    total_frames += len(points)
                    hand_frames["left_hand"] += int(mask[:, LAYOUT.part("left_hand")].any(axis=1).sum())
                    hand_frames["right_hand"] += int(mask[:, LAYOUT.part("right_hand")].any(axis=1).sum())
        atomic.write_json(tmp / "label_map.json", {"glosses": glosses})
        write_spec(tmp, spec)
        write_skipped(tmp / SKIPPED_NAME, skipped)
    return {
        "glosses": glosses,
        "per_split": {split: per_split[split] for split in SPLITS},
        "per_class": dict(Counter(row["gloss"] for row in labelled)),
        "skipped": len(skipped),
        "frames": total_frames,
        "hand_rate": {part: round(count / max(total_frames, 1), 4) for part, count in hand_frames.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert wlasl-hand-keypoints into landmark shard folders.")
    parser.add_argument("source", help="folder with <video_id>.npy files and labels.csv")
    parser.add_argument("out", help="output folder (replaced)")
    parser.add_argument("--params", default="params.yaml", help="reads extract (seq_len, stored_frames), landmarks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        params = load_params(args.params) if Path(args.params).is_file() else Params()
        summary = convert(args.source, args.out, params)
    except (ParamsError, FileNotFoundError, ValueError) as error:
        print(f"hand_keypoints: error: {error}", file=sys.stderr)
        return 2
    glosses = len(summary["glosses"])
    print(f"hand_keypoints: {summary['per_split']} clips of {glosses} glosses, {summary['skipped']} skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Content-addressed cache of MediaPipe results, one entry per (video bytes, extractor settings, range).

Why: MediaPipe Holistic is by far the slowest step of the pipeline (about an hour for
the 2038 WLASL100 clips on 2 cores, days for WLASL2000). DVC re-runs the whole extract
stage when any of its params or code changes, even ones that do not change what
MediaPipe sees (``stored_frames``, the shard size, a bug fix in the shard writer). With
this cache such a re-run costs seconds, and a killed extraction resumes where it
stopped instead of from the first clip.

The key hashes the video file's bytes (not its name or mtime), the worker's settings
(:func:`signflow.landmarks.pool.worker_config`: model complexity, confidences, face), the
MediaPipe version (another version gives other landmarks for the same frames) and the
frame range and crop box, so an entry can only be reused for exactly the same input.
An entry is the worker's ``.npz`` (every frame, as :mod:`signflow.landmarks.worker`
wrote it) plus its answer JSON; both are written atomically, the JSON last, so a
half-written entry is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from signflow import atomic


def file_digest(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class LandmarkCache:
    """``key(task)``; ``get(key)`` -> ``(npz path, answer)`` or None; ``put(key, npz path, answer)``."""

    def __init__(self, folder: str | os.PathLike[str], config: dict[str, Any], *, mediapipe_version: str):
        if not mediapipe_version:
            raise ValueError("a landmark cache needs the MediaPipe version its entries come from")
        self.folder = Path(folder)
        self.config = dict(config)
        self.mediapipe_version = mediapipe_version
        self.hits = 0
        self.misses = 0

    def key(self, task: dict[str, Any]) -> str:
        described = {
            "video_sha256": file_digest(task["path"]),
            "config": self.config,
            "mediapipe_version": self.mediapipe_version,
            "start": task.get("start") or 0,
            "stop": task.get("stop"),
            "box": task.get("box"),
        }
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path]:
        base = self.folder / key[:2] / key
        return base.with_suffix(".npz"), base.with_suffix(".json")

    def get(self, key: str) -> tuple[Path, dict[str, Any]] | None:
        arrays, answer = self._paths(key)
        if not (answer.is_file() and arrays.is_file()):
            self.misses += 1
            return None
        try:
            stored = json.loads(answer.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            self.misses += 1
            return None
        self.hits += 1
        return arrays, stored

    def put(self, key: str, arrays_path: str | os.PathLike[str], answer: dict[str, Any]) -> None:
        """Keep a successful answer (failures are retried next time: they may be transient)."""
        if not answer.get("ok"):
            return
        arrays, answer_path = self._paths(key)
        arrays.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(arrays) as tmp:
            shutil.copyfile(arrays_path, tmp)
        kept = {k: v for k, v in answer.items() if k != "key"}
        atomic.write_json(answer_path, kept)

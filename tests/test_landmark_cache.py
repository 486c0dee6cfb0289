"""The MediaPipe result cache: a re-run reuses identical inputs and never starts MediaPipe for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from feature_specs import holistic_spec

from signflow.config import LandmarksParams
from signflow.landmarks import extract_split, worker_config
from signflow.landmarks.cache import LandmarkCache
from signflow.shards import ShardReader


def _task(path: Path, box: list[int] | None = None) -> dict:
    return {"key": "0", "path": str(path), "start": 0, "stop": None, "box": box, "out": "unused"}


def test_key_follows_content_settings_and_range(tmp_path: Path) -> None:
    clip, copy, other = tmp_path / "a.mp4", tmp_path / "renamed.mp4", tmp_path / "b.mp4"
    clip.write_bytes(b"video bytes")
    copy.write_bytes(b"video bytes")
    other.write_bytes(b"other bytes")
    cache = LandmarkCache(tmp_path / "cache", worker_config(LandmarksParams()))
    key = cache.key(_task(clip))
    assert cache.key(_task(copy)) == key  # same bytes under another name: same MediaPipe result
    assert cache.key(_task(other)) != key
    assert cache.key(_task(clip, box=[0, 0, 10, 10])) != key
    lite = LandmarkCache(tmp_path / "cache", worker_config(LandmarksParams(model_complexity=0)))
    assert lite.key(_task(clip)) != key


def test_extract_split_reads_hits_without_starting_mediapipe(tmp_path: Path) -> None:
    params = LandmarksParams()
    spec = holistic_spec(stored_frames=4, seq_len=2)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "v1.mp4").write_bytes(b"clip one")
    cache = LandmarkCache(tmp_path / "cache", worker_config(params))
    rng = np.random.default_rng(0)
    arrays = tmp_path / "worker-output.npz"
    points = rng.random((6, 75, 3), dtype=np.float32)
    np.savez(arrays, points=points, mask=np.ones((6, 75), bool), score=np.ones((6, 75), np.float16))
    answer = {"key": "0", "ok": True, "frames": 6, "width": 256, "height": 256, "detected": {"pose": 6}}
    plan = {"video_id": "v1", "label": 0, "gloss": "book", "file": "v1.mp4", "start": 0, "stop": None, "box": None}
    cache.put(cache.key({**_task(raw / "v1.mp4")}), arrays, answer)
    cache.put(cache.key(_task(raw / "v1.mp4")), arrays, {**answer, "ok": False})  # failures are never kept

    result = extract_split([plan], raw, tmp_path / "train", params, spec=spec, python="/nonexistent/python",
                           progress=False, cache=LandmarkCache(tmp_path / "cache", worker_config(params)))  # fmt: skip
    assert result.written == 1 and result.frames == 6 and not result.skipped
    reader = ShardReader(tmp_path / "train")
    np.testing.assert_allclose(reader.read(0, "points"), points[[0, 2, 3, 5]].astype(np.float16), rtol=1e-3)

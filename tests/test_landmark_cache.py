"""The MediaPipe result cache: a re-run reuses identical inputs and never starts MediaPipe for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from feature_specs import MEDIAPIPE, holistic_spec

from signflow.config import LandmarksParams
from signflow.extract.landmarks import extract_split
from signflow.landmarks.cache import LandmarkCache
from signflow.landmarks.pool import worker_config
from signflow.shards import ShardReader


def _task(path: Path, box: list[int] | None = None) -> dict:
    return {"key": "0", "path": str(path), "start": 0, "stop": None, "box": box, "out": "unused"}


def test_key_follows_content_settings_and_range(tmp_path: Path) -> None:
    clip, copy, other = tmp_path / "a.mp4", tmp_path / "renamed.mp4", tmp_path / "b.mp4"
    clip.write_bytes(b"video bytes")
    copy.write_bytes(b"video bytes")
    other.write_bytes(b"other bytes")
    cache = LandmarkCache(tmp_path / "cache", worker_config(LandmarksParams()), mediapipe_version=MEDIAPIPE)
    key = cache.key(_task(clip))
    assert cache.key(_task(copy)) == key  # same bytes under another name: same MediaPipe result
    assert cache.key(_task(other)) != key
    assert cache.key(_task(clip, box=[0, 0, 10, 10])) != key
    lite_config = worker_config(LandmarksParams(model_complexity=0))
    lite = LandmarkCache(tmp_path / "cache", lite_config, mediapipe_version=MEDIAPIPE)
    assert lite.key(_task(clip)) != key


def test_extract_split_reads_hits_without_starting_mediapipe(tmp_path: Path) -> None:
    params = LandmarksParams()
    spec = holistic_spec(stored_frames=4, seq_len=2)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "v1.mp4").write_bytes(b"clip one")
    cache = LandmarkCache(tmp_path / "cache", worker_config(params), mediapipe_version=MEDIAPIPE)
    rng = np.random.default_rng(0)
    arrays = tmp_path / "worker-output.npz"
    points = rng.random((6, 75, 3), dtype=np.float32)
    np.savez(arrays, points=points, mask=np.ones((6, 75), bool), score=np.ones((6, 75), np.float16))
    answer = {"key": "0", "ok": True, "frames": 6, "width": 256, "height": 256, "detected": {"pose": 6}}
    plan = {"video_id": "v1", "label": 0, "gloss": "book", "file": "v1.mp4", "start": 0, "stop": None, "box": None}
    cache.put(cache.key({**_task(raw / "v1.mp4")}), arrays, answer)
    cache.put(cache.key(_task(raw / "v1.mp4")), arrays, {**answer, "ok": False})  # failures are never kept

    reread = LandmarkCache(tmp_path / "cache", worker_config(params), mediapipe_version=MEDIAPIPE)
    result = extract_split([plan], raw, tmp_path / "train", params, spec=spec, python="/nonexistent/python",
                           progress=False, cache=reread)  # fmt: skip
    assert result.written == 1 and result.frames == 6 and not result.skipped
    reader = ShardReader(tmp_path / "train")
    np.testing.assert_allclose(reader.read(0, "points"), points[[0, 2, 3, 5]].astype(np.float16), rtol=1e-3)


def test_another_mediapipe_version_is_another_key(tmp_path: Path) -> None:
    """Another MediaPipe gives other landmarks for the same frames: its entries are never reused."""
    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"video bytes")
    arrays = tmp_path / "worker-output.npz"
    np.savez(arrays, points=np.zeros((2, 75, 3), np.float32), mask=np.ones((2, 75), bool),
             score=np.ones((2, 75), np.float16))  # fmt: skip
    config = worker_config(LandmarksParams())
    old = LandmarkCache(tmp_path / "cache", config, mediapipe_version="0.10.14")
    old.put(old.key(_task(clip)), arrays, {"ok": True, "frames": 2, "width": 8, "height": 8})
    assert old.get(old.key(_task(clip))) is not None

    current = LandmarkCache(tmp_path / "cache", config, mediapipe_version=MEDIAPIPE)
    assert current.key(_task(clip)) != old.key(_task(clip))
    assert current.get(current.key(_task(clip))) is None and current.misses == 1
    with pytest.raises(ValueError, match="MediaPipe version"):
        LandmarkCache(tmp_path / "cache", config, mediapipe_version="")
    spec = holistic_spec(stored_frames=4, seq_len=2)
    with pytest.raises(ValueError, match=r"cache keys mediapipe 0\.10\.14 results, but these features record"):
        extract_split([], tmp_path, tmp_path / "train", LandmarksParams(), spec=spec, cache=old, progress=False)

"""Shared fixtures: the real data in ../shared (skipped with a reason when absent) and tiny real videos."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from signflow import video

REPO_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")


def _shared_data_dir() -> Path:
    return Path(os.environ.get("SIGNFLOW_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real WLASL files); tests using it skip when it is absent."""
    path = _shared_data_dir()
    if not (path / "README.md").is_file():
        pytest.skip(f"real data not found at {path} (set SIGNFLOW_SHARED_DATA)")
    return path


def moving_square_frames(num_frames: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Frames with known content: a bright square moving left to right over noise."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 60, size=(num_frames, height, width, 3), dtype=np.uint8)
    side = max(4, height // 4)
    for index in range(num_frames):
        x = int((width - side) * index / max(1, num_frames - 1))
        frames[index, height // 2 - side // 2 : height // 2 + side // 2, x : x + side] = (230, 200, 40)
    return frames


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., tuple[Path, np.ndarray]]:
    """Factory writing a real mp4; lossless by default so decoded pixels equal ``frames``."""

    def _make(
        name: str = "clip.mp4",
        num_frames: int = 20,
        height: int = 48,
        width: int = 64,
        fps: float = 25.0,
        lossless: bool = True,
        seed: int = 0,
    ) -> tuple[Path, np.ndarray]:
        frames = moving_square_frames(num_frames, height, width, seed)
        path = tmp_path / name
        video.write_video(path, frames, fps, lossless=lossless)
        return path, frames

    return _make

"""Temporal sampling: which frames of a clip a model sees.

Used by extract (source frames -> ``stored_frames``), by the training loader
(``stored_frames`` -> ``seq_len``, with jitter/speed augmentation) and by
evaluation/serving (deterministic, optionally several clips for test-time
averaging). One implementation, so train and serve agree.

Policies, documented for users:
- *uniform*: ``count`` indices at the centres of ``count`` equal segments of the clip.
- *pad*: a clip shorter than ``count`` keeps every frame and is padded by
  repeating its first and last frames (half each side), never by stretching.
- *train window*: a random speed factor picks a window length, a random offset
  places it (temporal jitter), then *uniform* sampling inside the window.
"""

from __future__ import annotations

import numpy as np


def uniform_indices(num_frames: int, count: int) -> np.ndarray:
    """``count`` frame indices spread evenly over ``[0, num_frames)``; edge-padded if short."""
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    if num_frames < count:
        pad = count - num_frames
        left = pad // 2
        return np.concatenate(
            [np.zeros(left, dtype=np.int64), np.arange(num_frames), np.full(pad - left, num_frames - 1)]
        ).astype(np.int64)
    centres = (np.arange(count) + 0.5) * num_frames / count
    return np.minimum(np.floor(centres).astype(np.int64), num_frames - 1)


def train_indices(
    rng: np.random.Generator,
    num_frames: int,
    count: int,
    *,
    jitter: bool = True,
    speed_min: float = 1.0,
    speed_max: float = 1.0,
) -> np.ndarray:
    """Random training window: speed perturbation then temporal jitter, then uniform inside.

    A speed factor ``s`` shows ``num_frames / s`` frames' worth of motion, clipped
    to what is stored, so ``s > 1`` cannot be simulated beyond the full clip and
    ``s < 1`` zooms into a shorter window.
    """
    if num_frames <= count:
        return uniform_indices(num_frames, count)
    speed = float(rng.uniform(speed_min, speed_max)) if speed_max > speed_min else speed_min
    window = int(round(num_frames * min(1.0, speed)))
    window = max(count, min(num_frames, window))
    offset = int(rng.integers(0, num_frames - window + 1)) if jitter else (num_frames - window) // 2
    return offset + uniform_indices(window, count)


def clip_indices(num_frames: int, count: int, clips: int) -> np.ndarray:
    """``(clips, count)`` deterministic windows for test-time averaging.

    One clip is plain uniform sampling; several are evenly spaced windows of
    ``max(count, num_frames // clips * 2)`` frames covering the clip.
    """
    if clips <= 1 or num_frames <= count:
        return uniform_indices(num_frames, count)[None, :].repeat(max(clips, 1), axis=0)[:max(clips, 1)]
    window = min(num_frames, max(count, 2 * num_frames // clips))
    offsets = np.linspace(0, num_frames - window, clips).round().astype(np.int64)
    return np.stack([offset + uniform_indices(window, count) for offset in offsets])

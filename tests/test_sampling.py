"""Temporal sampling policies shared by extract, the training loader and serving."""

from __future__ import annotations

import numpy as np
import pytest

from signflow import sampling


def test_uniform_takes_segment_centres() -> None:
    np.testing.assert_array_equal(sampling.uniform_indices(10, 5), [1, 3, 5, 7, 9])
    np.testing.assert_array_equal(sampling.uniform_indices(4, 4), [0, 1, 2, 3])


def test_short_clip_is_edge_padded_not_stretched() -> None:
    np.testing.assert_array_equal(sampling.uniform_indices(3, 8), [0, 0, 0, 1, 2, 2, 2, 2])


@pytest.mark.parametrize(("num_frames", "count"), [(0, 4), (4, 0)])
def test_invalid_sizes(num_frames: int, count: int) -> None:
    with pytest.raises(ValueError):
        sampling.uniform_indices(num_frames, count)


def test_train_window_stays_inside_sorted_and_seeded() -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        idx = sampling.train_indices(rng, 32, 8, speed_min=0.5, speed_max=1.5)
        assert len(idx) == 8 and idx.min() >= 0 and idx.max() < 32 and (np.diff(idx) >= 0).all()
    a = sampling.train_indices(np.random.default_rng(1), 32, 8, speed_min=0.8, speed_max=1.2)
    b = sampling.train_indices(np.random.default_rng(1), 32, 8, speed_min=0.8, speed_max=1.2)
    np.testing.assert_array_equal(a, b)
    no_jitter = sampling.train_indices(np.random.default_rng(0), 32, 8, jitter=False)
    np.testing.assert_array_equal(no_jitter, sampling.uniform_indices(32, 8))


def test_clip_indices_cover_the_clip() -> None:
    clips = sampling.clip_indices(40, 8, 3)
    assert clips.shape == (3, 8) and clips[0, 0] < clips[-1, 0] and clips.max() < 40
    np.testing.assert_array_equal(sampling.clip_indices(40, 8, 1)[0], sampling.uniform_indices(40, 8))

"""Samplers: shuffled or class-balanced epochs, sharded over DDP ranks.

Each epoch's order is a pure function of ``(seed, epoch)``: no hidden RNG state
to checkpoint, a resumed run replays exactly the same order, and every rank
computes the same global order and takes its own slice (as
``torch.utils.data.DistributedSampler`` does). Balanced oversampling draws
clips with probability ``1 / count(class)``, with replacement, so each class is
seen about equally often per epoch (same epoch length as the data).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from signflow.seed import derive_seed


class EpochSampler(Sampler[int]):
    """Training order for one rank; call :meth:`set_epoch` before each epoch."""

    def __init__(
        self,
        labels: Sequence[int],
        *,
        seed: int,
        shuffle: bool = True,
        balanced: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} not in [0, {num_replicas})")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.seed = seed
        self.shuffle = shuffle
        self.balanced = balanced
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        # Every rank gets the same count (DDP needs equal steps): pad by wrapping around.
        self.per_rank = math.ceil(len(self.labels) / num_replicas) if len(self.labels) else 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_order(self) -> np.ndarray:
        """This epoch's order over all ranks (before sharding)."""
        count = len(self.labels)
        rng = np.random.default_rng(derive_seed(self.seed, "sampler", self.epoch))
        if self.balanced and count:
            class_counts = np.bincount(self.labels)
            weights = 1.0 / class_counts[self.labels]
            order = rng.choice(count, size=count, replace=True, p=weights / weights.sum())
        elif self.shuffle:
            order = rng.permutation(count)
        else:
            order = np.arange(count)
        total = self.per_rank * self.num_replicas
        if total > count:
            order = np.concatenate([order, order[: total - count]])
        return order

    def __iter__(self) -> Iterator[int]:
        order = self.global_order()
        # Interleaved slices: with per-rank batch b, global batch k is the same set of
        # clips as batch k of a single process with batch b * num_replicas.
        return iter(order[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.per_rank

    def state_dict(self) -> dict[str, int | bool]:
        return {"seed": self.seed, "epoch": self.epoch, "balanced": self.balanced, "shuffle": self.shuffle}


class ShardSampler(Sampler[int]):
    """Evaluation order for one rank: a strided slice, no padding (no clip counted twice)."""

    def __init__(self, length: int, *, num_replicas: int = 1, rank: int = 0):
        self.indices = list(range(rank, length, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

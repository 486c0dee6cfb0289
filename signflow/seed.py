"""The one place that seeds every random number generator signflow uses.

Training is reproducible given ``train.seed``: Python's ``random``, NumPy's
legacy global RNG and torch (CPU and CUDA) are seeded here. Code that needs
randomness per sample or per epoch derives its own generator from the seed with
:func:`derive_seed`, so the result does not depend on how many DataLoader
workers or processes draw from a shared stream.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from ``parts`` (e.g. ``(seed, "augment", epoch, index)``).

    Hash-based rather than ``seed + epoch`` so nearby inputs give unrelated streams.
    """
    text = "/".join(str(part) for part in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & ((1 << 63) - 1)


def set_seed(seed: int) -> None:
    """Seed ``random``, ``numpy`` and ``torch`` (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)

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


def set_seed(seed: int, *, deterministic: bool = False) -> None:
    """Seed ``random``, ``numpy`` and ``torch`` (all devices).

    ``deterministic`` also asks torch for deterministic kernels (slower on GPU;
    cuDNN autotuning off), for runs that must match bit for bit.
    """
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)

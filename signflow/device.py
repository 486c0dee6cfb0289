"""Which torch device a ``device`` setting (``auto`` / ``cpu`` / ``cuda``) means on this machine.

One rule for training, evaluation and serving: ``auto`` takes CUDA when present, else the CPU;
``cuda`` on a machine without a GPU is a params error naming the setting, not a crash later.
"""

from __future__ import annotations

import torch

from signflow.config import ParamsError


def select_device(preference: str, *, setting: str, local_rank: int = 0) -> torch.device:
    """The device for ``preference`` (the value of the params key ``setting``); ``local_rank`` picks the GPU."""
    if preference not in ("auto", "cpu", "cuda"):
        raise ParamsError(f"{setting} must be auto, cpu or cuda, not {preference!r}")
    if preference == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if preference == "cuda":
            raise ParamsError(f"{setting} is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
        return torch.device("cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())

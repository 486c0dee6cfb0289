"""Checkpoints: resume exactly after a kill, keep the best and the last epoch.

``last.pt`` holds everything needed to continue as if nothing happened: model,
optimiser, schedule, grad scaler, the epoch counter, best metric, per-epoch
history (replayed into dvclive on resume) and the RNG states of Python, NumPy
and torch. ``best.pt`` holds the best epoch's weights (for restore-best and
early stopping). Both are written atomically by rank 0 only, and read with
``torch.load(weights_only=True)``: only tensors and plain containers are
stored (RNG states converted), so loading never executes pickled code.

Each checkpoint carries ``meta``: arch, num_classes and a ``fingerprint`` of
params + data, checked before anything is loaded into a model.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from signflow import atomic

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
LAST_NAME = "last.pt"
BEST_NAME = "best.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed into this run (other arch, classes, corrupt)."""


@dataclass
class TrainState:
    """Loop bookkeeping that must survive a restart."""

    epoch: int = 0  # epochs completed
    best_metric: float | None = None
    best_epoch: int | None = None
    epochs_since_best: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        return cls(**data)


def rng_state() -> dict[str, Any]:
    """Python, NumPy (legacy global) and torch RNG states as tensors and plain types."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state(
        (nps["name"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"], nps["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically: a kill mid-write leaves the previous file intact."""
    with atomic.atomic_path(path) as tmp:
        torch.save({"format_version": FORMAT_VERSION, **payload}, tmp)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a clear error for junk files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated/foreign files
        raise CheckpointError(f"{path}: not a readable signflow checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION or "meta" not in payload:
        raise CheckpointError(f"{path}: not a signflow training checkpoint (format {FORMAT_VERSION})")
    return payload


def check_compatible(payload: dict[str, Any], path: Path | str, *, arch: str, num_classes: int) -> None:
    """Refuse a checkpoint from another arch or class count, naming both sides."""
    meta = payload["meta"]
    if meta.get("arch") != arch:
        raise CheckpointError(
            f"{path}: checkpoint is for model.arch {meta.get('arch')!r}, params say {arch!r}; "
            "remove it or point --resume elsewhere"
        )
    if meta.get("num_classes") != num_classes:
        raise CheckpointError(
            f"{path}: checkpoint has {meta.get('num_classes')} classes, the label map has {num_classes}; "
            "it was trained on another split/vocabulary"
        )


class CheckpointManager:
    """``<dir>/last.pt`` every epoch and ``<dir>/best.pt`` on improvement (rank 0 writes)."""

    def __init__(self, directory: str | os.PathLike[str], meta: dict[str, Any], *, writer: bool = True):
        self.directory = Path(directory)
        self.meta = meta
        self.writer = writer

    @property
    def last_path(self) -> Path:
        return self.directory / LAST_NAME

    @property
    def best_path(self) -> Path:
        return self.directory / BEST_NAME

    def save(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: Any,
        scaler: torch.amp.GradScaler | None,
        state: TrainState,
        improved: bool,
    ) -> None:
        if not self.writer:
            return
        weights = model.state_dict()
        if improved:
            save_checkpoint(
                self.best_path,
                {"meta": self.meta, "epoch": state.epoch, "metric": state.best_metric, "model": weights},
            )
        save_checkpoint(
            self.last_path,
            {
                "meta": self.meta,
                "model": weights,
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "state": state.to_dict(),
                "rng": rng_state(),
            },
        )

    def restore(
        self,
        payload: dict[str, Any],
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: Any,
        scaler: torch.amp.GradScaler | None,
    ) -> TrainState:
        """Load a ``last.pt`` payload into the live objects; returns the loop state."""
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        schedule.load_state_dict(payload["schedule"])
        if scaler is not None and payload.get("scaler"):
            scaler.load_state_dict(payload["scaler"])
        set_rng_state(payload["rng"])
        return TrainState.from_dict(payload["state"])

    def load_best_weights(self) -> dict[str, torch.Tensor] | None:
        if not self.best_path.is_file():
            return None
        return load_checkpoint(self.best_path)["model"]

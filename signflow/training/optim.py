"""Optimisers and learning-rate schedules from ``train.*`` params.

- Two learning rates: the backbone (``train.backbone_lr``, default = ``lr``) and
  the head (``train.lr``), from the model's ``param_groups``; a pretrained
  backbone usually wants a smaller one.
- Weight decay applies to weights only: biases and normalisation scales
  (1-D tensors) are excluded, as decaying them only hurts.
- :class:`Schedule` puts a linear warm-up in front of any main schedule and
  knows whether that schedule steps per batch (one-cycle, cosine restarts) or
  per epoch on a metric (reduce-on-plateau), so the loop does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import lr_scheduler

from signflow.config import ParamsError, TrainParams

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine_warm_restarts", "plateau", "one_cycle")
_WARMUP_START_FACTOR = 0.01


def _split_decay(params: Iterable[nn.Parameter]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    decay, no_decay = [], []
    for param in params:
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return decay, no_decay


def build_optimizer(groups: dict[str, list[nn.Parameter]], train: TrainParams) -> torch.optim.Optimizer:
    """An optimiser over ``{"backbone": [...], "head": [...]}`` with per-group lr and decay."""
    if train.optimizer not in OPTIMIZERS:
        raise ParamsError(f"train.optimizer: unknown optimiser {train.optimizer!r} (choose from {OPTIMIZERS})")
    rates = {"backbone": train.backbone_lr if train.backbone_lr is not None else train.lr, "head": train.lr}
    param_groups: list[dict[str, Any]] = []
    for name, params in groups.items():
        if name not in rates:
            raise ValueError(f"unknown parameter group {name!r} (expected backbone/head)")
        decay, no_decay = _split_decay(params)
        for subset, weight_decay, suffix in ((decay, train.weight_decay, ""), (no_decay, 0.0, "_no_decay")):
            if subset:
                param_groups.append(
                    {"params": subset, "lr": rates[name], "weight_decay": weight_decay, "name": name + suffix}
                )
    if not param_groups:
        raise ParamsError("nothing to train: every model parameter is frozen (check model.cnn_lstm.freeze)")
    if train.optimizer == "adam":
        return torch.optim.Adam(param_groups)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(param_groups)
    return torch.optim.SGD(param_groups, momentum=train.momentum, nesterov=train.nesterov and train.momentum > 0)


class Schedule:
    """Warm-up + main learning-rate schedule with one interface for the loop.

    Call :meth:`after_batch` after every optimiser step and :meth:`after_epoch`
    with the validation metric; each forwards to whichever scheduler owns that
    cadence. Its state (including the step counter) goes into checkpoints.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, train: TrainParams, steps_per_epoch: int, epochs: int):
        if train.scheduler not in SCHEDULERS:
            raise ParamsError(f"train.scheduler: unknown scheduler {train.scheduler!r} (choose from {SCHEDULERS})")
        if steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1")
        self.kind = train.scheduler
        self.steps = 0
        total = steps_per_epoch * epochs
        self.warmup_steps = min(train.warmup_epochs * steps_per_epoch, total)
        self.warmup: lr_scheduler.LRScheduler | None = None
        self.batch_scheduler: lr_scheduler.LRScheduler | None = None
        self.plateau: lr_scheduler.ReduceLROnPlateau | None = None
        self.plateau_mode = "max"

        if self.kind == "one_cycle":
            # One-cycle has its own warm-up phase: warmup_epochs sets its length (default 30%).
            pct = self.warmup_steps / total if self.warmup_steps else 0.3
            max_lrs = [group["lr"] for group in optimizer.param_groups]
            self.batch_scheduler = lr_scheduler.OneCycleLR(
                optimizer, max_lr=max_lrs, total_steps=total, pct_start=min(max(pct, 1e-3), 0.999)
            )
            self.warmup_steps = 0
            return
        if self.warmup_steps:
            self.warmup = lr_scheduler.LinearLR(
                optimizer, start_factor=_WARMUP_START_FACTOR, end_factor=1.0, total_iters=self.warmup_steps
            )
        if self.kind == "cosine_warm_restarts":
            self.batch_scheduler = lr_scheduler.CosineAnnealingWarmRestarts(
                optimizer, T_0=train.restart_epochs * steps_per_epoch, T_mult=train.restart_mult
            )
            if self.warmup is not None:
                # LinearLR ran first and scaled the lr; the cosine must start from the base lr.
                for group in optimizer.param_groups:
                    group["lr"] = group["initial_lr"] * _WARMUP_START_FACTOR
        elif self.kind == "plateau":
            self.plateau_mode = "min" if train.early_stopping.metric == "val_loss" else "max"
            self.plateau = lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=self.plateau_mode, factor=train.plateau_factor, patience=train.plateau_patience
            )

    def after_batch(self) -> None:
        self.steps += 1
        if self.warmup is not None and self.steps <= self.warmup_steps:
            self.warmup.step()
        elif self.batch_scheduler is not None:
            self.batch_scheduler.step()

    def after_epoch(self, metric: float | None) -> None:
        in_warmup = self.warmup is not None and self.steps <= self.warmup_steps
        if self.plateau is not None and not in_warmup and metric is not None and math.isfinite(metric):
            self.plateau.step(metric)

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "steps": self.steps,
            "warmup": self.warmup.state_dict() if self.warmup else None,
            "batch": self.batch_scheduler.state_dict() if self.batch_scheduler else None,
            "plateau": self.plateau.state_dict() if self.plateau else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"checkpoint scheduler is {state.get('kind')!r}, params say {self.kind!r}")
        self.steps = int(state["steps"])
        for name, scheduler in (("warmup", self.warmup), ("batch", self.batch_scheduler), ("plateau", self.plateau)):
            if scheduler is not None and state.get(name) is not None:
                scheduler.load_state_dict(state[name])


def current_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """``{"head": lr, "backbone": lr}`` (first group of each name) for logging."""
    rates: dict[str, float] = {}
    for group in optimizer.param_groups:
        rates.setdefault(group.get("name", "head").removesuffix("_no_decay"), float(group["lr"]))
    return rates

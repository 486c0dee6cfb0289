"""The one train/validate loop (read it top to bottom: :func:`fit`).

Per epoch: reseed, train (AMP autocast, grad scaling for fp16, mixup, clipping,
per-batch lr schedule), validate, step the per-epoch schedule, decide
"improved?" on the chosen metric, checkpoint (rank 0), log to dvclive (rank 0),
maybe stop early. At the end the best epoch's weights are restored if asked.

The same loop trains a full model on clips or a temporal head on cached
features: it only sees ``model(inputs) -> logits``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from signflow.config import ParamsError, TrainParams
from signflow.models import unwrap
from signflow.seed import derive_seed
from signflow.training.checkpoint import CheckpointManager, TrainState
from signflow.training.distributed import DistContext, all_reduce_sum, barrier
from signflow.training.losses import mixup, mixup_loss
from signflow.training.optim import Schedule, current_lrs

log = logging.getLogger(__name__)

# Which direction is "better" for each early-stopping metric.
METRIC_MODE = {"val_loss": "min", "val_top1": "max", "val_top5": "max"}
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class LoopConfig:
    """Everything :func:`fit` needs from ``train.*``, resolved for one device."""

    epochs: int
    device: torch.device
    seed: int = 0
    amp: str = "none"  # none | fp16 | bf16
    grad_clip: float | None = None
    mixup_alpha: float = 0.0
    monitor: str = "val_top1"
    patience: int | None = None
    restore_best: bool = True
    progress: bool = True

    @classmethod
    def from_params(cls, train: TrainParams, device: torch.device, *, progress: bool = True) -> LoopConfig:
        if train.amp == "fp16" and device.type != "cuda":
            raise ParamsError("train.amp: fp16 autocast needs CUDA (the grad scaler is CUDA-only); use bf16 on CPU")
        return cls(
            epochs=train.epochs,
            device=device,
            seed=train.seed,
            amp=train.amp,
            grad_clip=train.grad_clip,
            mixup_alpha=train.mixup_alpha,
            monitor=train.early_stopping.metric,
            patience=train.early_stopping.patience,
            restore_best=train.early_stopping.restore_best,
            progress=progress,
        )

    def autocast(self) -> torch.autocast:
        dtype = AMP_DTYPES.get(self.amp, torch.float32)
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=self.amp != "none")

    def make_scaler(self) -> torch.amp.GradScaler | None:
        # bf16 has fp32's exponent range, so only fp16 needs loss scaling.
        return torch.amp.GradScaler("cuda") if self.amp == "fp16" else None


class EpochLogger(Protocol):
    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...


@dataclass
class Totals:
    """Running sums for one epoch on one rank (summed over ranks at the end)."""

    loss: float = 0.0
    top1: float = 0.0
    top5: float = 0.0
    count: float = 0.0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        n = targets.shape[0]
        k = min(5, logits.shape[1])
        topk = logits.detach().float().topk(k, dim=1).indices
        hits = topk == targets[:, None]
        self.loss += float(loss.detach()) * n
        self.top1 += float(hits[:, 0].sum())
        self.top5 += float(hits.any(dim=1).sum())
        self.count += n

    def reduce(self, ctx: DistContext, prefix: str) -> dict[str, float]:
        loss, top1, top5, count = all_reduce_sum(
            torch.tensor([self.loss, self.top1, self.top5, self.count], dtype=torch.float64), ctx
        ).tolist()
        if count == 0:
            return {}
        return {f"{prefix}_loss": loss / count, f"{prefix}_top1": top1 / count, f"{prefix}_top5": top5 / count}


def _set_epoch(loader: DataLoader, epoch: int) -> None:
    # Both the sampler (order) and the dataset (augmentation) are keyed by epoch.
    for obj in (loader.sampler, loader.dataset):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    scaler: torch.amp.GradScaler | None,
    cfg: LoopConfig,
    ctx: DistContext,
    epoch: int,
) -> dict[str, float]:
    model.train()
    totals = Totals()
    mix_rng = np.random.default_rng(derive_seed(cfg.seed, "mixup", epoch, ctx.rank))
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs} train", leave=False, disable=not (cfg.progress and ctx.is_main))
    for inputs, targets in bar:
        inputs = inputs.to(cfg.device, non_blocking=True)
        targets = targets.to(cfg.device, non_blocking=True)
        with cfg.autocast():
            if cfg.mixup_alpha > 0:
                inputs, y_a, y_b, lam = mixup(inputs, targets, cfg.mixup_alpha, mix_rng)
                logits = model(inputs)
                loss = mixup_loss(criterion, logits.float(), y_a, y_b, lam)
            else:
                logits = model(inputs)
                loss = criterion(logits.float(), targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"epoch {epoch + 1}: loss is {loss.item()}; lower train.lr or enable grad_clip")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        else:
            loss.backward()
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        schedule.after_batch()
        totals.add(loss, logits, targets)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return totals.reduce(ctx, "train")


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, criterion: nn.Module, cfg: LoopConfig, ctx: DistContext, prefix: str = "val"
) -> dict[str, float]:
    """Loss, top-1 and top-5 over ``loader`` (summed over ranks)."""
    model.eval()
    totals = Totals()
    bar = tqdm(loader, desc=f"{prefix}", leave=False, disable=not (cfg.progress and ctx.is_main))
    for inputs, targets in bar:
        inputs = inputs.to(cfg.device, non_blocking=True)
        targets = targets.to(cfg.device, non_blocking=True)
        with cfg.autocast():
            logits = model(inputs)
        totals.add(criterion(logits.float(), targets), logits, targets)
    return totals.reduce(ctx, prefix)


def is_better(value: float, best: float | None, mode: str) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(value)
    return value < best if mode == "min" else value > best


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    *,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    scaler: torch.amp.GradScaler | None,
    cfg: LoopConfig,
    ctx: DistContext,
    checkpoints: CheckpointManager | None = None,
    logger: EpochLogger | None = None,
    state: TrainState | None = None,
) -> TrainState:
    """Train from ``state`` (a resumed run) or from scratch up to ``cfg.epochs``."""
    state = state or TrainState()
    # Without a validation split, "best" is judged on the training loss.
    monitor = cfg.monitor if val_loader is not None else "train_loss"
    mode = METRIC_MODE.get(monitor, "min")
    if val_loader is None:
        log.warning("no validation clips: best epoch and early stopping use the training loss")

    # A resumed run that had already stopped early is finished.
    first_epoch = cfg.epochs if state.stopped_early else state.epoch
    for epoch in range(first_epoch, cfg.epochs):
        # Stateless per-epoch seeding (dropout etc.): a resumed or DDP run draws the same numbers.
        torch.manual_seed(derive_seed(cfg.seed, "epoch", epoch, ctx.rank))
        _set_epoch(train_loader, epoch)

        metrics = train_one_epoch(model, train_loader, criterion, optimizer, schedule, scaler, cfg, ctx, epoch)
        if val_loader is not None:
            metrics.update(evaluate(model, val_loader, criterion, cfg, ctx))
        metrics.update({f"lr_{name}": lr for name, lr in current_lrs(optimizer).items()})
        schedule.after_epoch(metrics.get(monitor))

        value = metrics.get(monitor, float("nan"))
        improved = is_better(value, state.best_metric, mode)
        state.epoch = epoch + 1
        state.history.append({"epoch": float(epoch + 1), **metrics})
        if improved:
            state.best_metric, state.best_epoch, state.epochs_since_best = value, epoch + 1, 0
        else:
            state.epochs_since_best += 1
        # Every rank saw the same all-reduced metrics, so they all decide to stop together.
        state.stopped_early = cfg.patience is not None and state.epochs_since_best >= cfg.patience
        if checkpoints is not None:
            checkpoints.save(
                model=unwrap(model), optimizer=optimizer, schedule=schedule, scaler=scaler, state=state, improved=improved
            )
        if ctx.is_main:
            if logger is not None:
                logger.log_epoch(epoch + 1, metrics)
            log.info("epoch %d/%d %s%s", epoch + 1, cfg.epochs, _format(metrics), " *" if improved else "")
        barrier(ctx)  # nobody races ahead (or reads best.pt) before rank 0 has written it
        if state.stopped_early:
            if ctx.is_main:
                log.info("early stopping: %s did not improve for %d epochs", monitor, cfg.patience)
            break

    if cfg.restore_best and checkpoints is not None and state.best_epoch not in (None, state.epoch):
        weights = checkpoints.load_best_weights()
        if weights is not None:
            unwrap(model).load_state_dict(weights)
            if ctx.is_main:
                log.info("restored the best weights (epoch %d, %s=%.4f)", state.best_epoch, monitor, state.best_metric)
    return state


def _format(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in metrics.items())


class LiveLogger:
    """dvclive on rank 0: one step per epoch; a resumed run replays its history first."""

    def __init__(self, directory: str | os.PathLike[str], history: Iterable[dict[str, float]] = ()):
        from dvclive import Live

        # dvc.yaml declares these metrics/plots itself, and the stage is not a DVC experiment maker.
        self.live = Live(os.fspath(directory), save_dvc_exp=False, dvcyaml=None, report=None)
        for row in history:
            self.log_epoch(int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"})

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.live.step = epoch - 1
        for name, value in metrics.items():
            split, _, metric = name.partition("_")
            # train_loss -> train/loss, so dvc plots overlays train and val curves.
            self.live.log_metric(f"{split}/{metric}" if split in ("train", "val") else name, value)
        self.live.next_step()

    def summary(self, values: dict[str, Any]) -> None:
        self.live.summary.update(values)

    def close(self) -> None:
        self.live.end()

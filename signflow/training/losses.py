"""Loss functions for imbalanced, small sign-language datasets.

- Cross-entropy with label smoothing and optional class weights.
- Focal loss (Lin et al. 2017): down-weights easy clips so rare/hard glosses
  get more gradient; composes with class weights and label smoothing.
- Mixup (Zhang et al. 2018) on whole clips: the loss of a mixed batch is the
  same mix of the losses against both label sets.
Class weights are inverse class frequency, normalised to mean 1 so the loss
scale (and a tuned lr) does not change when they are switched on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from signflow.config import TrainParams


def class_weights(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (mean 1); classes absent from training get weight 0."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    weights = np.zeros(num_classes, dtype=np.float64)
    present = counts > 0
    weights[present] = 1.0 / counts[present]
    weights[present] *= present.sum() / weights[present].sum()
    return torch.tensor(weights, dtype=torch.float32)


class FocalLoss(nn.Module):
    """``mean(w_y * (1 - p_y)^gamma * CE)``; ``gamma = 0`` is (weighted) cross-entropy."""

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight if weight is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        ce = F.cross_entropy(logits, target, reduction="none", label_smoothing=self.label_smoothing)
        # p_y from the unsmoothed distribution: the modulating factor measures how easy the clip is.
        p_true = torch.softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        loss = (1.0 - p_true).clamp(min=0.0).pow(self.gamma) * ce
        if self.weight is not None:
            w = self.weight[target]
            return (loss * w).sum() / w.sum().clamp(min=1e-12)
        return loss.mean()


def build_loss(train: TrainParams, train_labels: Sequence[int], num_classes: int) -> nn.Module:
    """The criterion named by ``train.loss`` with ``train.class_weights``/``label_smoothing``."""
    weight = class_weights(train_labels, num_classes) if train.class_weights else None
    if train.loss == "focal":
        return FocalLoss(train.focal_gamma, weight, train.label_smoothing)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=train.label_smoothing)


def mixup(
    inputs: torch.Tensor, targets: torch.Tensor, alpha: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mix each clip with a shuffled partner: returns ``(mixed, targets, partner_targets, lam)``.

    ``lam ~ Beta(alpha, alpha)`` and the pairing come from ``rng`` (seeded per epoch,
    so a resumed run mixes the same pairs).
    """
    lam = float(rng.beta(alpha, alpha))
    order = torch.from_numpy(rng.permutation(inputs.shape[0])).to(inputs.device)
    mixed = lam * inputs + (1.0 - lam) * inputs[order]
    return mixed, targets, targets[order], lam


def mixup_loss(criterion: nn.Module, logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float) -> torch.Tensor:
    return lam * criterion(logits, y_a) + (1.0 - lam) * criterion(logits, y_b)

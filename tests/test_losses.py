"""Losses: class weights, focal loss, label smoothing, mixup."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from signflow.training.losses import FocalLoss, build_loss, class_weights, mixup, mixup_loss
from training_data import tiny_params


def test_class_weights_are_inverse_frequency_with_mean_one() -> None:
    weights = class_weights([0, 0, 0, 1, 2, 2], num_classes=4)
    assert weights[3] == 0  # absent class
    present = weights[:3]
    assert present.mean().item() == pytest.approx(1.0)
    assert weights[1] == pytest.approx(3 * weights[0]) and weights[2] == pytest.approx(1.5 * weights[0])


def test_focal_with_gamma_zero_is_cross_entropy_and_down_weights_easy_examples() -> None:
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.2, 0.1, 0.0]])
    target = torch.tensor([0, 0])
    assert FocalLoss(gamma=0.0)(logits, target).item() == pytest.approx(F.cross_entropy(logits, target).item())
    per_sample = F.cross_entropy(logits, target, reduction="none")
    focal = [FocalLoss(gamma=2.0)(logits[i : i + 1], target[i : i + 1]).item() for i in range(2)]
    # the easy clip (p≈0.96) loses far more of its loss than the hard one
    assert focal[0] / per_sample[0].item() < 0.01 < focal[1] / per_sample[1].item()


def test_build_loss_reads_params() -> None:
    labels = [0, 0, 1]
    ce = build_loss(tiny_params("train.label_smoothing=0.1", "train.class_weights=true").train, labels, 2)
    assert isinstance(ce, nn.CrossEntropyLoss) and ce.label_smoothing == 0.1 and ce.weight is not None
    focal = build_loss(tiny_params("train.loss=focal", "train.focal_gamma=1.5").train, labels, 2)
    assert isinstance(focal, FocalLoss) and focal.gamma == 1.5
    logits = torch.randn(3, 2, requires_grad=True)
    focal(logits, torch.tensor(labels)).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_mixup_is_deterministic_and_mixes_losses() -> None:
    x = torch.arange(4, dtype=torch.float32)[:, None].repeat(1, 3)
    y = torch.tensor([0, 1, 2, 3])
    a = mixup(x, y, 0.4, np.random.default_rng(7))
    b = mixup(x, y, 0.4, np.random.default_rng(7))
    assert torch.equal(a[0], b[0]) and a[3] == b[3]
    mixed, y_a, y_b, lam = a
    assert 0.0 <= lam <= 1.0 and sorted(y_b.tolist()) == [0, 1, 2, 3]
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[y_b])
    logits = torch.randn(4, 4)
    expected = lam * F.cross_entropy(logits, y_a) + (1 - lam) * F.cross_entropy(logits, y_b)
    assert mixup_loss(nn.CrossEntropyLoss(), logits, y_a, y_b, lam).item() == pytest.approx(expected.item())

"""Optimisers (param groups, decay exclusion) and learning-rate schedules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from signflow.config import ParamsError
from signflow.training.optim import Schedule, build_optimizer, current_lrs
from training_data import tiny_params


def _groups() -> dict[str, list[nn.Parameter]]:
    backbone, head = nn.Linear(4, 4), nn.Linear(4, 2)
    return {"backbone": list(backbone.parameters()), "head": list(head.parameters())}


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)])
def test_optimizer_kinds_with_separate_lrs_and_no_decay_on_biases(name: str, cls: type) -> None:
    train = tiny_params(f"train.optimizer={name}", "train.lr=0.1", "train.backbone_lr=0.01", "train.weight_decay=0.5").train
    opt = build_optimizer(_groups(), train)
    assert isinstance(opt, cls)
    by_name = {g["name"]: g for g in opt.param_groups}
    assert by_name["backbone"]["lr"] == 0.01 and by_name["head"]["lr"] == 0.1
    assert by_name["head"]["weight_decay"] == 0.5
    assert by_name["head_no_decay"]["weight_decay"] == 0.0  # biases are not decayed
    assert all(p.ndim == 1 for p in by_name["head_no_decay"]["params"])
    if name == "sgd":
        assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    assert current_lrs(opt) == {"backbone": 0.01, "head": 0.1}


def test_unknown_optimiser_and_scheduler_name_the_key() -> None:
    with pytest.raises(ParamsError, match="train.optimizer"):
        tiny_params("train.optimizer=rmsprop")
    with pytest.raises(ParamsError, match="train.scheduler"):
        tiny_params("train.scheduler=step")


def test_all_frozen_is_a_clear_error() -> None:
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ParamsError, match="nothing to train"):
        build_optimizer({"head": list(frozen.parameters())}, tiny_params().train)


def _run(schedule: Schedule, opt: torch.optim.Optimizer, epochs: int, steps: int, metric=lambda e: 1.0) -> list[float]:
    lrs = []
    for epoch in range(epochs):
        for _ in range(steps):
            opt.step()
            schedule.after_batch()
            lrs.append(opt.param_groups[0]["lr"])
        schedule.after_epoch(metric(epoch))
    return lrs


def test_one_cycle_rises_to_lr_then_anneals() -> None:
    train = tiny_params("train.scheduler=one_cycle", "train.lr=0.1").train
    opt = build_optimizer(_groups(), train)
    lrs = _run(Schedule(opt, train, steps_per_epoch=10, epochs=4), opt, 4, 10)
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[peak] == pytest.approx(0.1, rel=0.02) and 5 < peak < 20
    assert lrs[-1] < 1e-3


def test_linear_warmup_then_cosine_restarts() -> None:
    train = tiny_params("train.scheduler=cosine_warm_restarts", "train.warmup_epochs=1", "train.restart_epochs=1").train
    opt = build_optimizer(_groups(), train)
    lrs = _run(Schedule(opt, train, steps_per_epoch=10, epochs=3), opt, 3, 10)
    warmup = lrs[:10]
    assert warmup == sorted(warmup) and warmup[0] < 0.2 * train.lr and warmup[-1] == pytest.approx(train.lr)
    # after warm-up: cosine down within each 10-step period, back up at the restart
    assert lrs[18] < lrs[11] and lrs[19] > lrs[18]


def test_plateau_halves_lr_when_metric_stalls() -> None:
    train = tiny_params("train.scheduler=plateau", "train.plateau_patience=1", "train.plateau_factor=0.5").train
    opt = build_optimizer(_groups(), train)
    lrs = _run(Schedule(opt, train, steps_per_epoch=2, epochs=4), opt, 4, 2, metric=lambda e: 0.5)
    assert lrs[0] == train.lr and lrs[-1] == pytest.approx(train.lr / 2)


def test_schedule_state_round_trip_continues_identically() -> None:
    train = tiny_params("train.scheduler=one_cycle").train
    opt_a = build_optimizer(_groups(), train)
    sched_a = Schedule(opt_a, train, steps_per_epoch=5, epochs=4)
    _run(sched_a, opt_a, 2, 5)
    opt_b = build_optimizer(_groups(), train)
    sched_b = Schedule(opt_b, train, steps_per_epoch=5, epochs=4)
    opt_b.load_state_dict(opt_a.state_dict())
    sched_b.load_state_dict(sched_a.state_dict())
    assert _run(sched_a, opt_a, 2, 5) == _run(sched_b, opt_b, 2, 5)

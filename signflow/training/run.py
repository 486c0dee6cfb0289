"""One training run, from params and the extract stage's features to ``models/``.

:func:`train` is what ``stages/train.py`` calls (and the Kubeflow component):
validate everything that can be validated before any epoch (params vs data,
arch vs seq_len/frame size, device, AMP, checkpoint compatibility), build
model/data/optimiser/schedule/loss, resume from ``last.pt`` when it belongs to
this exact run, :func:`signflow.training.loop.fit`, and write ``model.pt`` plus
``preprocess.json`` (rank 0). The extract stage's feature spec
(:mod:`signflow.feature_spec`) is read once and carried unchanged into both.
Works as 1 process or under ``torchrun``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from signflow import archs
from signflow.archs import Representation
from signflow.config import ModelParams, ParamsError, TrainParams
from signflow.feature_spec import FeatureSpecError, LandmarkFeatureSpec, RgbFeatureSpec, load_spec, write_spec
from signflow.seed import set_seed
from signflow.training import feature_cache
from signflow.training.checkpoint import (
    CheckpointError,
    CheckpointManager,
    TrainState,
    check_compatible,
    load_checkpoint,
)
from signflow.training.data import DataError, check_labels, open_split, read_label_map
from signflow.training.distributed import DistContext, barrier, cleanup, init_distributed, wrap_model
from signflow.training.losses import build_loss
from signflow.training.loop import LiveLogger, LoopConfig, fit
from signflow.training.optim import Schedule, build_optimizer
from signflow.training.sampler import EpochSampler, ShardSampler

log = logging.getLogger(__name__)

# Params that change nothing about the numbers a run produces (resume across them is exact).
_NON_RESULT_KEYS = ("num_workers", "device")


@dataclass
class TrainPaths:
    features: Path
    label_map: Path
    out: Path
    live: Path | None = None
    checkpoints: Path | None = None  # default <out>/checkpoints
    feature_cache: Path | None = None  # default <out>/feature_cache
    weights: Path | None = None  # the weights stage's folder (model.pretrained)

    def __post_init__(self) -> None:
        self.features, self.label_map, self.out = Path(self.features), Path(self.label_map), Path(self.out)
        self.checkpoints = Path(self.checkpoints) if self.checkpoints else self.out / "checkpoints"
        self.feature_cache = Path(self.feature_cache) if self.feature_cache else self.out / "feature_cache"
        self.live = Path(self.live) if self.live else None


@dataclass
class TrainResult:
    state: TrainState
    model_path: Path
    resumed_from_epoch: int = 0
    used_feature_cache: bool = False
    summary: dict[str, Any] = field(default_factory=dict)


def _fingerprint(model: ModelParams, train: TrainParams, data: dict[str, Any], world_size: int) -> str:
    """Hash of everything that determines the result: a checkpoint resumes only into the same run."""
    train_dump = {k: v for k, v in train.model_dump(mode="json").items() if k not in _NON_RESULT_KEYS}
    blob = json.dumps(
        {"model": model.model_dump(mode="json"), "train": train_dump, "data": data, "world_size": world_size},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _data_identity(
    paths: TrainPaths, spec: RgbFeatureSpec | LandmarkFeatureSpec, glosses: list[str]
) -> dict[str, Any]:
    def index_hash(split: str) -> str | None:
        index = paths.features / split / "index.json"
        return hashlib.sha256(index.read_bytes()).hexdigest() if index.is_file() else None

    return {"preprocess": spec.to_json(), "glosses": glosses, "train": index_hash("train"), "val": index_hash("val")}


def _check_params(
    model_params: ModelParams,
    train: TrainParams,
    *,
    seq_len: int,
    frame_size: int | None,
    representation: Representation,
    world: int,
) -> None:
    """Everything that can be known to fail, before a single batch (message names the key)."""
    from signflow.models import check_fit

    try:
        check_fit(model_params, seq_len=seq_len, frame_size=frame_size, representation=representation)
    except ValueError as error:
        raise ParamsError(str(error)) from None
    if train.batch_size % world:
        raise ParamsError(
            f"train.batch_size={train.batch_size} is the global batch and must divide evenly over "
            f"{world} processes"
        )


def _resume_payload(
    resume: str, paths: TrainPaths, *, arch: str, num_classes: int, fingerprint: str, epochs: int
) -> dict | None:
    """The ``last.pt`` payload to continue from, or None for a fresh start.

    ``auto``: the checkpoint dir's ``last.pt`` if it was written by this exact
    configuration (params + data) and that run did not finish; anything else is
    ignored with a log line, since after a param change (``dvc exp run -S ...``)
    a fresh start is right, and DVC re-runs a finished training only because its
    code changed, which a finished checkpoint knows nothing of.
    A path: that checkpoint must fit (same arch, classes and configuration) or
    the run fails with the reason.
    """
    if resume == "never":
        return None
    explicit = resume != "auto"
    path = Path(resume) if explicit else paths.checkpoints / "last.pt"
    if not explicit and not path.is_file():
        return None
    payload = load_checkpoint(path)
    try:
        check_compatible(payload, path, arch=arch, num_classes=num_classes)
        if payload["meta"].get("fingerprint") != fingerprint:
            raise CheckpointError(
                f"{path}: written by a run with other params or data (model/train params, features or label "
                "map changed); delete it to start fresh"
            )
    except CheckpointError as error:
        if explicit:
            raise
        log.info("not resuming: %s", error)
        return None
    state = payload.get("state") or {}
    if not explicit and (state.get("epoch", 0) >= epochs or state.get("stopped_early")):
        log.info("not resuming: %s is a finished run (%d epochs); training afresh", path, state.get("epoch", 0))
        return None
    return payload


def _loader(dataset: Any, sampler: Any, batch_size: int, train: TrainParams, device: torch.device) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=train.num_workers,
        # Workers are re-created each epoch on purpose: they copy the dataset with its current epoch.
        persistent_workers=False,
        pin_memory=device.type == "cuda",
    )


def train(
    model_params: ModelParams,
    train_params: TrainParams,
    paths: TrainPaths,
    *,
    resume: str = "auto",
    progress: bool = True,
    ctx: DistContext | None = None,
) -> TrainResult:
    """Train ``model_params.arch`` on ``paths.features`` with ``train_params``; see the module docstring."""
    ctx = ctx or init_distributed(train_params.device)
    try:
        return _train(model_params, train_params, paths, resume=resume, progress=progress, ctx=ctx)
    finally:
        cleanup(ctx)


def _train(
    model_params: ModelParams, train_params: TrainParams, paths: TrainPaths, *, resume: str, progress: bool, ctx: DistContext
) -> TrainResult:
    from signflow.models import build_model, param_groups, save_model_file
    from signflow.transforms import input_config_for

    arch = model_params.arch
    # ---- inputs and params, checked before anything is built
    try:
        feature_spec = load_spec(paths.features)
    except FeatureSpecError as error:
        raise DataError(str(error)) from None
    glosses = read_label_map(paths.label_map)
    num_classes = len(glosses)
    seq_len = feature_spec.seq_len
    frame_size = feature_spec.frame_size if isinstance(feature_spec, RgbFeatureSpec) else None
    cfg = LoopConfig.from_params(train_params, ctx.device, progress=progress and ctx.is_main)
    representation: Representation = feature_spec.kind
    _check_params(
        model_params, train_params, seq_len=seq_len, frame_size=frame_size, representation=representation,
        world=ctx.world_size,
    )  # fmt: skip
    input_config = input_config_for(arch)
    use_cache = feature_cache.cache_applies(model_params, train_params)
    spec = archs.get(arch)
    own = getattr(model_params, spec.params_section).model_dump(mode="json") if spec.params_section else {}
    log.info("model.arch=%s: %s; model.%s=%s", arch, spec.description, spec.params_section or "(no section)", own)

    if ctx.is_main:
        # Declared DVC outputs: they must exist even when this run uses no cache / resumes nothing.
        paths.checkpoints.mkdir(parents=True, exist_ok=True)
        paths.feature_cache.mkdir(parents=True, exist_ok=True)

    # ---- model (seeded: every rank builds the same initial weights; DDP also broadcasts rank 0's)
    set_seed(train_params.seed)
    # Landmark features record the model input's joints/channels in their spec (video: None).
    landmarks = feature_spec if isinstance(feature_spec, LandmarkFeatureSpec) else None
    model = build_model(
        model_params, num_classes, seq_len=seq_len, frame_size=frame_size,
        num_joints=landmarks.num_joints if landmarks else None, channels=landmarks.channels if landmarks else None,
        weights_dir=paths.weights,
    ).to(ctx.device)  # fmt: skip

    # ---- data
    splits: dict[str, Any] = {}
    augment = train_params.augment
    if use_cache:
        log.info(
            "feature cache on (%s backbone frozen): pixel augmentations (random_resized_crop, hflip, "
            "color_jitter) are disabled; temporal jitter and speed perturbation still apply",
            arch,
        )
        for split in ("train", "val"):
            split_dir = paths.features / split
            if split == "val" and not (split_dir / "index.json").is_file():
                continue
            if not (split_dir / "index.json").is_file():
                raise DataError(f"{split_dir}: split folder missing; run the extract stage first")
            from signflow.shards import ShardReader

            check_labels(ShardReader(split_dir), glosses)
            cached = feature_cache.ensure_cache(
                model, split_dir, paths.feature_cache, input_config=input_config, device=ctx.device,
                compute=ctx.is_main, progress=progress and ctx.is_main,
            )  # fmt: skip
            barrier(ctx)  # rank 0 computed it; now everyone may open it
            splits[split] = feature_cache.open_cached_split(
                cached, seq_len=seq_len, train=split == "train", augment=augment, seed=train_params.seed
            )
        trainable: nn.Module = feature_cache.TemporalHead(model)
    else:
        for split in ("train", "val"):
            split_dir = paths.features / split
            if split == "val" and not (split_dir / "index.json").is_file():
                continue
            splits[split] = open_split(
                split_dir, glosses=glosses, seq_len=seq_len, input_config=input_config, train=split == "train",
                augment=augment, seed=train_params.seed,
            )  # fmt: skip
        trainable = model
    train_set, val_set = splits["train"], splits.get("val")
    if len(train_set) == 0:
        raise DataError(f"{paths.features / 'train'}: no training clips")
    if val_set is not None and len(val_set) == 0:
        val_set = None

    per_rank_batch = train_params.batch_size // ctx.world_size
    sampler = EpochSampler(
        train_set.labels, seed=train_params.seed, balanced=train_params.balanced_sampler,
        num_replicas=ctx.world_size, rank=ctx.rank,
    )  # fmt: skip
    train_loader = _loader(train_set, sampler, per_rank_batch, train_params, ctx.device)
    val_loader = (
        _loader(val_set, ShardSampler(len(val_set), num_replicas=ctx.world_size, rank=ctx.rank),
                per_rank_batch, train_params, ctx.device)
        if val_set is not None else None
    )  # fmt: skip

    # ---- optimisation
    criterion = build_loss(train_params, train_set.labels, num_classes).to(ctx.device)
    optimizer = build_optimizer(param_groups(model), train_params)
    schedule = Schedule(optimizer, train_params, steps_per_epoch=len(train_loader), epochs=train_params.epochs)
    scaler = cfg.make_scaler()

    # ---- checkpoints and resume
    fingerprint = _fingerprint(
        model_params, train_params, _data_identity(paths, feature_spec, glosses), ctx.world_size
    )
    checkpoints = CheckpointManager(
        paths.checkpoints, {"arch": arch, "num_classes": num_classes, "fingerprint": fingerprint}, writer=ctx.is_main
    )
    payload = _resume_payload(
        resume, paths, arch=arch, num_classes=num_classes, fingerprint=fingerprint, epochs=train_params.epochs
    )
    if payload is not None:
        state = checkpoints.restore(payload, model=model, optimizer=optimizer, schedule=schedule, scaler=scaler)
        log.info("resuming from %s after epoch %d", paths.checkpoints / "last.pt", state.epoch)
    else:
        state = TrainState()
        if ctx.is_main:
            for stale in (checkpoints.last_path, checkpoints.best_path):
                stale.unlink(missing_ok=True)  # a fresh run must never restore another run's best
    resumed_from = state.epoch
    barrier(ctx)

    # ---- train
    logger = LiveLogger(paths.live, state.history) if (ctx.is_main and paths.live is not None) else None
    wrapped = wrap_model(trainable, ctx)
    fit_started = time.perf_counter()
    state = fit(
        wrapped, train_loader, val_loader, criterion=criterion, optimizer=optimizer, schedule=schedule,
        scaler=scaler, cfg=cfg, ctx=ctx, checkpoints=checkpoints, logger=logger, state=state,
    )  # fmt: skip

    # ---- outputs (rank 0)
    model_path = paths.out / "model.pt"
    summary = {
        "epochs_trained": state.epoch,
        "best_epoch": state.best_epoch,
        "best_metric": state.best_metric,
        "monitor": cfg.monitor if val_loader is not None else "train_loss",
        "stopped_early": state.stopped_early,
        "feature_cache": use_cache,
        # Wall time of this process's epochs (a resumed run counts only what it ran): benchmark tables.
        "train_seconds": round(time.perf_counter() - fit_started, 1),
    }
    if state.history:
        best_row = next((r for r in state.history if int(r["epoch"]) == state.best_epoch), state.history[-1])
        summary.update({f"best_{k}": v for k, v in best_row.items() if k != "epoch" and not k.startswith("lr_")})
    if ctx.is_main:
        save_model_file(
            model_path, model.cpu(), arch=arch, model_params=model_params, num_classes=num_classes,
            label_map=glosses, feature_spec=feature_spec, input_config=input_config,
            extra={"train": summary, "fingerprint": fingerprint},
        )  # fmt: skip
        write_spec(paths.out, feature_spec)
        if logger is not None:
            logger.summary({k: v for k, v in summary.items() if isinstance(v, (int, float)) and v is not None})
            logger.close()
    barrier(ctx)
    return TrainResult(state, model_path, resumed_from, use_cache, summary)

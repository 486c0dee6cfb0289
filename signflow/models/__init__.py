"""Models: one entry point, :func:`build_model`, chosen by ``model.arch`` in params.

- ``cnn_lstm``: per-frame 2D backbone (``small_cnn`` or ``mobilenet_v2``) + (Bi)LSTM,
  input ``(B, T, C, H, W)`` (:mod:`signflow.models.cnn_lstm`);
- ``r3d_18`` / ``r2plus1d_18``: torchvision video ResNets, input ``(B, C, T, H, W)``
  (:mod:`signflow.models.video3d`);
- ``landmark_lstm`` / ``landmark_gcn``: keypoint sequences, input ``(B, T, J, C)``
  (:mod:`signflow.models.landmark`).

Also here: :func:`check_fit` (fail before training when params cannot work),
:func:`param_groups` (backbone/head learning rates) and the model file
(:func:`save_model_file` / :func:`load_model_file`): everything serving and
evaluation need to rebuild the network, in one ``torch.load(weights_only=True)``-safe dict.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from signflow import atomic
from signflow.config import ModelParams
from signflow.feature_spec import LandmarkFeatureSpec, RgbFeatureSpec, load_spec

log = logging.getLogger(__name__)

ARCHS = ("cnn_lstm", "r3d_18", "r2plus1d_18", "landmark_lstm", "landmark_gcn")
MODEL_FILE_FORMAT = "signflow-model"
MODEL_FILE_VERSION = 2  # 2: a versioned feature spec and the input config, no merged "preprocess" dict

Layout = Literal["TCHW", "CTHW", "TJC"]


def input_layout(arch: str) -> Layout:
    """The tensor layout ``arch`` expects after the batch dimension."""
    if arch == "cnn_lstm":
        return "TCHW"
    if arch in ("r3d_18", "r2plus1d_18"):
        return "CTHW"
    if arch.startswith("landmark_"):
        return "TJC"
    raise ValueError(f"unknown model.arch {arch!r} (expected one of {', '.join(ARCHS)})")


def check_fit(params: ModelParams, *, seq_len: int, frame_size: int | None) -> None:
    """Raise ``ValueError`` naming the param when ``params`` cannot work with these inputs.

    Called before any training so a bad ``dvc exp run -S ...`` fails in a second,
    not after an epoch. Checks: known arch, ``seq_len`` long enough for the temporal
    strides, ``frame_size`` large enough for the spatial strides, pretrained weights
    that exist for the chosen backbone.
    """
    from signflow.models import cnn_lstm, video3d

    arch = params.arch
    input_layout(arch)  # unknown arch -> ValueError
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    if arch == "cnn_lstm":
        backbone = params.cnn_lstm.backbone
        if seq_len < cnn_lstm.MIN_SEQ_LEN:
            raise ValueError(
                f"extract.seq_len={seq_len} is too short for cnn_lstm: the LSTM needs at least "
                f"{cnn_lstm.MIN_SEQ_LEN} frames to see motion"
            )
        minimum = cnn_lstm.BACKBONE_STRIDE[backbone]
        if frame_size is None or frame_size < minimum:
            raise ValueError(
                f"extract.frame_size={frame_size} is too small for model.cnn_lstm.backbone={backbone}: "
                f"it downsamples {minimum}x, so frames must be at least {minimum}x{minimum}"
            )
        grid, side = params.cnn_lstm.spatial_grid, -(-frame_size // minimum)  # stride-2 convs round up
        if side < grid:
            raise ValueError(
                f"model.cnn_lstm.spatial_grid={grid} is finer than the {side}x{side} feature map of "
                f"{backbone} at extract.frame_size={frame_size}: use spatial_grid <= {side} or larger frames"
            )
        if params.pretrained and backbone not in _pretrained_names():
            raise ValueError(
                f"model.pretrained is true but model.cnn_lstm.backbone={backbone} has no pretrained weights "
                f"(use mobilenet_v2, or pretrained: false)"
            )
        if params.cnn_lstm.freeze == "all" and not params.pretrained:
            log.warning("model.cnn_lstm.freeze=all with pretrained=false trains on a random, frozen backbone")
    elif arch in video3d.BUILDERS:
        if seq_len < video3d.MIN_SEQ_LEN:
            raise ValueError(
                f"extract.seq_len={seq_len} is too short for {arch}: it halves time 3 times, "
                f"so it needs at least {video3d.MIN_SEQ_LEN} frames"
            )
        if frame_size is None or frame_size < video3d.SPATIAL_STRIDE:
            stride = video3d.SPATIAL_STRIDE
            raise ValueError(
                f"extract.frame_size={frame_size} is too small for {arch}: it downsamples "
                f"{stride}x, so frames must be at least {stride}x{stride}"
            )
    else:  # landmark_*: no image backbone
        if seq_len < 2:
            raise ValueError(f"seq_len={seq_len} is too short for {arch}: it needs at least 2 frames")
        if params.pretrained:
            raise ValueError(f"model.pretrained is true but {arch} has no pretrained weights; set it to false")
    if params.weights_path is not None and not params.pretrained:
        raise ValueError(
            f"model.weights_path is set ({params.weights_path}) but model.pretrained is false: "
            "set model.pretrained: true to load it, or remove weights_path"
        )


def _pretrained_names() -> set[str]:
    from signflow.models.weights import PRETRAINED

    return set(PRETRAINED)


def build_model(
    params: ModelParams,
    num_classes: int,
    *,
    seq_len: int,
    frame_size: int | None = None,
    num_joints: int | None = None,
    channels: int | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
) -> nn.Module:
    """Build (and, with ``model.pretrained``, load weights into) the network ``params.arch`` names.

    ``weights_dir``: the ``weights`` stage's output, searched for the pretrained file first.
    The returned module carries ``signflow_input`` (the shapes it was built for),
    so :func:`save_model_file` can record them for serving without extra arguments.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    arch = params.arch
    if arch.startswith("landmark_"):
        model = _build_landmark(params, num_classes, seq_len=seq_len, num_joints=num_joints, channels=channels)
    else:
        check_fit(params, seq_len=seq_len, frame_size=frame_size)
        if arch == "cnn_lstm":
            from signflow.models.cnn_lstm import CnnLstm

            model = CnnLstm(params.cnn_lstm, num_classes, dropout=params.dropout)
            if params.pretrained:
                from signflow.models.weights import load_pretrained, pretrained_backbone

                # ``blocks`` is torchvision's ``features``; the ImageNet classifier is not used.
                features_holder = nn.Module()
                features_holder.features = model.backbone.blocks
                load_pretrained(
                    features_holder, pretrained_backbone(params), params.weights_path, ignore_prefixes=("classifier.",),
                    weights_dir=weights_dir,
                )  # fmt: skip
        else:
            from signflow.models.video3d import Video3D

            model = Video3D(arch, num_classes, dropout=params.dropout)
            if params.pretrained:
                from signflow.models.weights import load_pretrained, pretrained_backbone

                load_pretrained(
                    model.backbone, pretrained_backbone(params), params.weights_path, ignore_prefixes=("fc.",),
                    weights_dir=weights_dir,
                )  # fmt: skip
    model.signflow_input = {
        "arch": arch,
        "seq_len": seq_len,
        "frame_size": frame_size,
        "num_joints": num_joints,
        "channels": channels,
    }
    return model


def _build_landmark(
    params: ModelParams, num_classes: int, *, seq_len: int, num_joints: int | None, channels: int | None
) -> nn.Module:
    check_fit(params, seq_len=seq_len, frame_size=None)
    if num_joints is None or channels is None:
        raise ValueError(f"{params.arch} needs num_joints and channels (from the landmarks extract output)")
    from signflow.models.landmark import build_landmark_model

    return build_landmark_model(params, num_classes, num_joints=num_joints, channels=channels, seq_len=seq_len)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def param_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters split into ``backbone`` (pretrained trunk) and ``head`` (the rest).

    So the trunk can train with a smaller learning rate than the freshly
    initialised temporal model and classifier. Frozen parameters are left out;
    models without a ``backbone`` attribute (landmark models) have all in ``head``.
    """
    model = unwrap(model)
    backbone = getattr(model, "backbone", None)
    backbone_ids = {id(p) for p in backbone.parameters()} if isinstance(backbone, nn.Module) else set()
    groups: dict[str, list[nn.Parameter]] = {"backbone": [], "head": []}
    for parameter in model.parameters():
        if parameter.requires_grad:
            groups["backbone" if id(parameter) in backbone_ids else "head"].append(parameter)
    return groups


# --------------------------------------------------------------------------- model file


def save_model_file(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    arch: str,
    model_params: ModelParams,
    num_classes: int,
    label_map: list[str],
    feature_spec: RgbFeatureSpec | LandmarkFeatureSpec,
    input_config: BaseModel | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write everything needed to rebuild and use ``model`` to ``path``, atomically.

    ``feature_spec``: the extract stage's, carried unchanged; ``input_config``
    (:class:`signflow.transforms.InputConfig`; None: the arch's, chosen when loaded) says
    how stored features become the network's input. Only tensors and plain Python values
    go in, so :func:`load_model_file` can use ``torch.load(weights_only=True)`` (a model
    file never runs code on load).
    """

    model = unwrap(model)
    if arch != model_params.arch:
        raise ValueError(f"arch {arch!r} != model_params.arch {model_params.arch!r}")
    if len(label_map) != num_classes:
        raise ValueError(f"label_map has {len(label_map)} glosses but num_classes is {num_classes}")
    built = dict(getattr(model, "signflow_input", {}))
    if built.get("arch", arch) != arch:
        raise ValueError(f"the model was built as {built['arch']!r}, not {arch!r}")
    input_spec = {
        key: built.get(key, getattr(feature_spec, key, None)) for key in ("seq_len", "frame_size", "num_joints", "channels")
    }
    payload = {
        "format": MODEL_FILE_FORMAT,
        "format_version": MODEL_FILE_VERSION,
        "arch": arch,
        "model_params": model_params.model_dump(mode="json"),
        "num_classes": int(num_classes),
        "label_map": [str(gloss) for gloss in label_map],
        "input": input_spec,
        "feature_spec": feature_spec.to_json(),
        "input_config": None if input_config is None else input_config.model_dump(mode="json"),
        "extra": extra or {},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic.atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_model_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw model-file dict, validated as a signflow model file (no network built)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found (run the train stage first)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in many types; all mean "not a model file"
        raise ValueError(f"{path}: not a readable signflow model file ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FILE_FORMAT:
        raise ValueError(f"{path}: not a signflow model file (no format={MODEL_FILE_FORMAT!r} marker)")
    if payload.get("format_version") != MODEL_FILE_VERSION:
        raise ValueError(
            f"{path}: model file version {payload.get('format_version')!r}, this signflow reads {MODEL_FILE_VERSION}; "
            "re-run the train stage (dvc repro train) to write a current one"
        )
    return payload


def check_model_meta(
    meta: dict[str, Any], *, source: str, expected_arch: str | None = None, expected_num_classes: int | None = None
) -> None:
    """Refuse a model/checkpoint that does not match what the params ask for."""
    if expected_arch is not None and meta["arch"] != expected_arch:
        raise ValueError(
            f"{source}: was trained with model.arch={meta['arch']}, but model.arch is {expected_arch}; "
            "use a checkpoint of the same arch (or delete it to start fresh)"
        )
    if expected_num_classes is not None and meta["num_classes"] != expected_num_classes:
        raise ValueError(
            f"{source}: has {meta['num_classes']} classes, but the data has {expected_num_classes}; "
            "it was trained on another label map"
        )


def load_model_file(
    path: str | os.PathLike[str],
    *,
    expected_arch: str | None = None,
    expected_num_classes: int | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network saved by :func:`save_model_file`; returns ``(model in eval mode, meta)``.

    ``meta`` holds ``arch``, ``model_params`` (:class:`ModelParams`), ``num_classes``,
    ``label_map``, ``input`` (seq_len, frame_size, ...), ``feature_spec`` (validated,
    :mod:`signflow.feature_spec`), ``input_config`` (a dict or None, read by
    :class:`signflow.inference.Predictor`) and ``extra``. A file whose feature spec does
    not validate is refused (:class:`signflow.feature_spec.FeatureSpecError`).
    """
    payload = read_model_file(path)
    meta = {key: value for key, value in payload.items() if key != "state_dict"}
    meta["feature_spec"] = load_spec(payload.get("feature_spec") or {}, origin=f"{path} (its feature_spec)")
    check_model_meta(meta, source=str(path), expected_arch=expected_arch, expected_num_classes=expected_num_classes)
    try:
        model_params = ModelParams.model_validate(payload["model_params"])
    except ValidationError as error:
        raise ValueError(f"{path}: its model_params no longer validate: {error}") from None
    meta["model_params"] = model_params
    if len(payload["label_map"]) != payload["num_classes"]:
        raise ValueError(
            f"{path}: label_map has {len(payload['label_map'])} entries for {payload['num_classes']} classes"
        )
    # The state dict holds every weight, so pretrained files are not needed (or read) here.
    offline = model_params.model_copy(update={"pretrained": False, "weights_path": None})
    spec = payload["input"]
    model = build_model(
        offline,
        payload["num_classes"],
        seq_len=spec["seq_len"],
        frame_size=spec.get("frame_size"),
        num_joints=spec.get("num_joints"),
        channels=spec.get("channels"),
    )
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"{path}: weights do not fit a {payload['arch']} network: {error}") from None
    model.to(device).eval()
    return model, meta

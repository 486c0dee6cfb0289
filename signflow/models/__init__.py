"""Models: one entry point, :func:`build_model`, for whichever arch ``model.arch`` names.

The architectures themselves are entries of :mod:`signflow.archs` (layout, fit check,
builder, pretrained weights); their networks live in this package:

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
from typing import Any

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from signflow import archs, atomic
from signflow.archs import InputShape, Layout, Representation
from signflow.config import ModelParams
from signflow.feature_spec import LandmarkFeatureSpec, RgbFeatureSpec, load_spec

log = logging.getLogger(__name__)

MODEL_FILE_FORMAT = "signflow-model"
MODEL_FILE_VERSION = 2  # 2: a versioned feature spec and the input config, no merged "preprocess" dict


def input_layout(arch: str) -> Layout:
    """The tensor layout ``arch`` expects after the batch dimension."""
    return archs.get(arch).layout


def check_fit(
    params: ModelParams, *, seq_len: int, frame_size: int | None, representation: Representation | None = None
) -> None:
    """Raise ``ValueError`` naming the param when ``params`` cannot work with these inputs.

    Called before any training so a bad ``dvc exp run -S ...`` fails in a second,
    not after an epoch. Checks here, for every arch: a known arch, features of the
    representation it reads (when ``representation`` is given), a positive ``seq_len``,
    pretrained weights that exist for the chosen backbone; then the arch's own
    ``fit_check`` (temporal and spatial strides against ``seq_len`` and ``frame_size``).
    """
    spec = archs.get(params.arch)
    if representation is not None and representation != spec.representation:
        raise ValueError(
            f"model.arch={spec.name} reads {spec.representation} features but the extract output holds "
            f"{representation} (extract.representation): use an arch for {representation} "
            f"({', '.join(s for s in archs.names() if archs.get(s).representation == representation)}) "
            f"or re-extract as {spec.representation}"
        )
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    if params.pretrained:
        backbone = spec.backbone(params)
        if backbone not in spec.pretrained:
            where = f"model.{spec.backbone_param}={backbone}" if spec.backbone_param else spec.name
            instead = f"use {', '.join(spec.pretrained)}, or " if spec.pretrained else ""
            raise ValueError(
                f"model.pretrained is true but {where} has no pretrained weights "
                f"({instead}set model.pretrained: false)"
            )
    if params.weights_path is not None and not params.pretrained:
        raise ValueError(
            f"model.weights_path is set ({params.weights_path}) but model.pretrained is false: "
            "set model.pretrained: true to load it, or remove weights_path"
        )
    if spec.fit_check is not None:
        archs.resolve(spec.fit_check)(params, InputShape(seq_len, frame_size))


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
    spec = archs.get(params.arch)
    check_fit(params, seq_len=seq_len, frame_size=frame_size)
    shape = InputShape(seq_len=seq_len, frame_size=frame_size, num_joints=num_joints, channels=channels)
    model = archs.resolve(spec.builder)(params, num_classes, shape, weights_dir)
    model.signflow_input = {
        "arch": spec.name,
        "seq_len": seq_len,
        "frame_size": frame_size,
        "num_joints": num_joints,
        "channels": channels,
    }
    return model


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

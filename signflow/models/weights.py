"""Pretrained weights, offline only: torchvision's weight enums resolved to local files.

signflow never downloads weights (training machines are often offline, and a
silent download at build time would make runs depend on the network). A weight
enum such as ``R3D_18_Weights.KINETICS400_V1`` only names the file: it is looked
up in the torch hub cache (``$TORCH_HOME/hub/checkpoints/<file>``, the place
``torch.hub`` itself would have saved it) or taken from ``model.weights_path``.
When neither exists the error says exactly where to put the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import MobileNet_V2_Weights, WeightsEnum
from torchvision.models.video import R2Plus1D_18_Weights, R3D_18_Weights

log = logging.getLogger(__name__)

# backbone name -> the torchvision weights signflow uses for it.
PRETRAINED: dict[str, WeightsEnum] = {
    "mobilenet_v2": MobileNet_V2_Weights.IMAGENET1K_V1,
    "r3d_18": R3D_18_Weights.KINETICS400_V1,
    "r2plus1d_18": R2Plus1D_18_Weights.KINETICS400_V1,
}


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights requested but not on disk (signflow does not download)."""


def cache_path(weights: WeightsEnum) -> Path:
    """Where torch hub keeps ``weights``: ``$TORCH_HOME/hub/checkpoints/<file name of its URL>``."""
    file_name = os.path.basename(urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def resolve_weights_file(backbone: str, weights_path: str | os.PathLike[str] | None = None) -> Path:
    """The local file holding ``backbone``'s pretrained weights, or a clear error saying where to put it."""
    if backbone not in PRETRAINED:
        raise ValueError(
            f"no pretrained weights for backbone {backbone!r} "
            f"(available: {', '.join(sorted(PRETRAINED))}); set model.pretrained: false"
        )
    weights = PRETRAINED[backbone]
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"model.weights_path {path} does not exist (expected {weights} weights)")
        return path
    path = cache_path(weights)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"pretrained weights for {backbone} ({weights}) are not available offline: "
            f"put the file from {weights.url} at {path} "
            f"(or set model.weights_path, or model.pretrained: false); signflow never downloads weights"
        )
    return path


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a state dict with ``weights_only=True`` (no pickled code runs); unwraps ``{"state_dict": ...}``."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file; all mean "unusable weights"
        raise ValueError(f"{path}: not a readable weights file ({type(error).__name__}: {error})") from None
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{path}: expected a state dict (parameter name -> tensor)")
    return dict(loaded)


def load_pretrained(
    module: nn.Module,
    backbone: str,
    weights_path: str | os.PathLike[str] | None = None,
    *,
    ignore_prefixes: tuple[str, ...] = (),
) -> Path:
    """Load ``backbone``'s pretrained weights into the torchvision ``module`` in place.

    Keys under ``ignore_prefixes`` (the original classifier: ImageNet's 1000 or
    Kinetics' 400 classes) may be present or absent; every other key must match,
    so a file for the wrong network fails loudly instead of half-loading.
    """
    path = resolve_weights_file(backbone, weights_path)
    state = read_state_dict(path)
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    expected = {k for k in module.state_dict() if not k.startswith(ignore_prefixes)}
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{path}: does not hold {backbone} weights "
            f"(missing {len(missing)} keys e.g. {missing[:3]}, unexpected {len(unexpected)} e.g. {unexpected[:3]})"
        )
    try:
        module.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise ValueError(f"{path}: weights do not fit {backbone}: {error}") from None
    log.info("loaded pretrained %s weights from %s", backbone, path)
    return path

"""Pretrained weights: fetched once by the ``weights`` stage, never during training.

Training never downloads (machines are often offline, and a silent download at
build time would make runs depend on the network). With ``model.pretrained: true``
the ``weights`` stage (:func:`fetch_weights`) puts the file into ``data/weights/``,
a DVC-tracked, cached output that train declares as a dependency: downloaded from
torchvision's URL (or ``model.weights_url``, e.g. a mirror) with its SHA-256
checked against the prefix torchvision puts in its file names (or
``model.weights_sha256``), or copied from ``model.weights_path`` / the torch hub
cache when already on disk. Offline, with no local copy, the error says where to
put the file. Train then resolves the file in that folder (``weights_dir``), then
``model.weights_path``, then ``$TORCH_HOME/hub/checkpoints/<file>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import WeightsEnum

from signflow import archs
from signflow.config import ModelParams

log = logging.getLogger(__name__)


RECORD_NAME = "weights.json"  # what the weights stage fetched (or that none was requested)


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights requested but not on disk (signflow does not download)."""


def cache_path(weights: WeightsEnum) -> Path:
    """Where torch hub keeps ``weights``: ``$TORCH_HOME/hub/checkpoints/<file name of its URL>``."""
    file_name = os.path.basename(urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def weights_for(backbone: str) -> WeightsEnum:
    """The torchvision weights the arch registry names for ``backbone`` (``ArchSpec.pretrained``)."""
    available = archs.pretrained_backbones()
    if backbone not in available:
        raise ValueError(
            f"no pretrained weights for backbone {backbone!r} "
            f"(available: {', '.join(sorted(available))}); set model.pretrained: false"
        )
    return archs.resolve(available[backbone])


def pretrained_backbone(model: ModelParams) -> str:
    """The network ``model.pretrained`` loads weights into: cnn_lstm's backbone, or the 3D arch itself.

    Which one is the arch's registry entry's ``backbone_param``. Raises ``ValueError`` (naming
    what has weights) for small_cnn and the landmark models.
    """
    name = archs.get(model.arch).backbone(model)
    weights_for(name)
    return name


def file_name(url: str) -> str:
    return os.path.basename(urlparse(url).path)


def expected_sha256(url: str, sha256: str | None = None) -> str:
    """The full digest given, or the hex prefix torchvision/torch hub put in file names (``name-<hex>.pth``)."""
    if sha256:
        return sha256.lower()
    match = re.search(r"-([0-9a-f]{8,64})\.", file_name(url))
    if match is None:
        raise ValueError(f"{url}: no checksum in the file name; set model.weights_sha256 for this URL")
    return match.group(1)


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fetch_weights(
    backbone: str,
    out_dir: str | os.PathLike[str],
    *,
    url: str | None = None,
    sha256: str | None = None,
    weights_path: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """Put ``backbone``'s pretrained file into ``out_dir`` (checksum verified); return its record.

    Source: ``weights_path`` or the torch hub cache when the file is there, else a download of
    ``url`` (default torchvision's). Raises :class:`WeightsNotFoundError` (offline, with where
    to put the file) or ``ValueError`` (checksum mismatch: the file is not kept).
    """
    weights = weights_for(backbone)
    url = url or weights.url
    expected = expected_sha256(url, sha256)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / file_name(url)
    local = Path(weights_path).expanduser() if weights_path else cache_path(weights)
    tmp = target.with_name(f".{target.name}.part")
    try:
        if local.is_file():
            shutil.copyfile(local, tmp)
            source = str(local)
        else:
            try:
                torch.hub.download_url_to_file(url, str(tmp), progress=False)
            except OSError as error:  # URLError, HTTPError, timeouts: all "cannot reach it"
                raise WeightsNotFoundError(
                    f"cannot download {backbone} weights from {url} ({error}); offline, put the file at "
                    f"{local} or set model.weights_path (or model.pretrained: false)"
                ) from None
            source = url
        digest = _sha256(tmp)
        if not digest.startswith(expected):
            raise ValueError(
                f"{source}: SHA-256 {digest[:16]}... does not match the expected {expected[:16]}...: "
                "not the published weights file (corrupt or tampered download); nothing was kept"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return {"backbone": backbone, "weights": str(weights), "url": url, "source": source, "file": target.name,
            "sha256": digest}  # fmt: skip


def resolve_weights_file(
    backbone: str,
    weights_path: str | os.PathLike[str] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The local file holding ``backbone``'s pretrained weights, or a clear error saying where to put it."""
    weights = weights_for(backbone)
    if weights_dir is not None:
        record = Path(weights_dir) / RECORD_NAME
        if record.is_file():
            entry = json.loads(record.read_text(encoding="utf-8"))
            if entry.get("backbone") == backbone and entry.get("file"):
                return Path(weights_dir) / entry["file"]
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
            f"(or set model.weights_path, or model.pretrained: false); the weights stage downloads it when online"
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
    weights_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Load ``backbone``'s pretrained weights into the torchvision ``module`` in place.

    Keys under ``ignore_prefixes`` (the original classifier: ImageNet's 1000 or
    Kinetics' 400 classes) may be present or absent; every other key must match,
    so a file for the wrong network fails loudly instead of half-loading.
    """
    path = resolve_weights_file(backbone, weights_path, weights_dir)
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

"""The architecture registry: one :class:`ArchSpec` per ``model.arch``, the only place an arch name is looked up.

Everything that differs between architectures is a field of its entry: the input
layout (and so which ``extract`` representation it reads), the input normalisation,
its params section, the fit check and the builder, its pretrained weights, and
whether the frozen-backbone feature cache applies. Code elsewhere asks the entry
(``archs.get(model.arch).layout``) instead of comparing names.

Why one table here and not a ``@register`` decorator in each model module (timm's
way): the tools that validate params before a run (experiments, the kfp compiler)
check ``model.arch`` against these names and must not import torch. So an entry
is plain data, and the code it names (builder, fit check) is a ``"module:attribute"``
reference imported only when a model is checked or built. Adding an architecture = one module (its network, ``build`` and
``check_fit``) + one entry in :data:`BUILTIN` (or :func:`register` for an arch
that lives outside signflow, as ``tests/test_archs.py`` does with ``tests/linear_probe.py``).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from signflow.config import ParamsError

if TYPE_CHECKING:
    from signflow.config import ModelParams, Params

# The tensor layout after the batch dimension; saved in model files (``input_config.layout``).
Layout = Literal["TCHW", "CTHW", "TJC"]
# What the extract stage stored: RGB frames or landmark sequences (``extract.representation``).
Representation = Literal["rgb", "landmarks"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's video models were trained with these (Kinetics-400 statistics).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class UnknownArchError(ParamsError):
    """``model.arch`` names no registered architecture (a params error: the run cannot start)."""


@dataclass(frozen=True)
class InputShape:
    """The input a network is built for: from the extract stage's feature spec (``preprocess.json``) or the model file."""

    seq_len: int
    frame_size: int | None = None  # RGB: square side in pixels
    num_joints: int | None = None  # landmarks: joints of the skeleton layout
    channels: int | None = None  # landmarks: coordinates + mask channel


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: what it reads, how it is checked and built, what it can load.

    ``builder`` and ``fit_check`` are ``"module:function"`` references (imported on use):
    ``builder(params: ModelParams, num_classes: int, shape: InputShape, weights_dir) -> nn.Module``
    loads pretrained weights itself when ``params.pretrained``; ``fit_check(params, shape)``
    raises ``ValueError`` naming the param that cannot work with ``shape``.
    """

    name: str
    layout: Layout
    builder: str
    fit_check: str | None = None
    # ModelParams field holding this arch's own knobs (None: only the shared ones, e.g. dropout).
    params_section: str | None = None
    # Per-channel input normalisation on the 0..1 scale: the statistics its pretrained trunk saw.
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    # backbone name -> torchvision weights, "module:Enum.MEMBER" (fetched by the weights stage).
    pretrained: dict[str, str] = field(default_factory=dict)
    # Dotted ModelParams path naming the backbone that gets pretrained weights; None: the arch itself.
    backbone_param: str | None = None
    # "module:predicate(params) -> bool": the backbone is frozen, so the feature cache applies.
    # None: the cache never applies (the model has no frozen per-frame trunk to cache).
    frozen_backbone: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"arch name {self.name!r}: use lower_snake_case (it is a params.yaml value)")
        if self.layout not in get_args(Layout):
            raise ValueError(f"arch {self.name}: layout {self.layout!r} is not one of {', '.join(get_args(Layout))}")
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"arch {self.name}: give both mean and std, or neither")
        references = [self.builder, self.fit_check, self.frozen_backbone, *self.pretrained.values()]
        for reference in filter(None, references):
            if not _REFERENCE.match(reference):
                raise ValueError(f"arch {self.name}: {reference!r} is not a 'module:attribute' reference")

    @property
    def representation(self) -> Representation:
        """The extract output this arch reads (follows from its layout)."""
        return "landmarks" if self.layout == "TJC" else "rgb"

    @property
    def uses_feature_cache(self) -> bool:
        return self.frozen_backbone is not None

    def backbone(self, params: ModelParams) -> str:
        """The backbone name ``model.pretrained`` loads weights into (``cnn_lstm.backbone`` or the arch)."""
        if self.backbone_param is None:
            return self.name
        value: Any = params
        for part in self.backbone_param.split("."):
            value = getattr(value, part)
        return str(value)


def resolve(reference: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute."""
    module_name, _, attribute = reference.partition(":")
    value: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


_CNN_LSTM = "signflow.models.cnn_lstm"
_VIDEO3D = "signflow.models.video3d"
_LANDMARK = "signflow.models.landmark"
_VIDEO3D_DOC = "torchvision video ResNet over (B, C, T, H, W) clips"
_LANDMARK_DOC = "over (B, T, J, C) keypoint sequences (extract.representation: landmarks)"

BUILTIN: tuple[ArchSpec, ...] = (
    ArchSpec(
        name="cnn_lstm", layout="TCHW", builder=f"{_CNN_LSTM}:build", fit_check=f"{_CNN_LSTM}:check_fit",
        params_section="cnn_lstm", mean=IMAGENET_MEAN, std=IMAGENET_STD,
        pretrained={"mobilenet_v2": "torchvision.models:MobileNet_V2_Weights.IMAGENET1K_V1"},
        backbone_param="cnn_lstm.backbone", frozen_backbone=f"{_CNN_LSTM}:backbone_frozen",
        description="per-frame 2D CNN (small_cnn | mobilenet_v2) + (Bi)LSTM over (B, T, C, H, W) frames",
    ),
    ArchSpec(
        name="r3d_18", layout="CTHW", builder=f"{_VIDEO3D}:build", fit_check=f"{_VIDEO3D}:check_fit",
        mean=KINETICS_MEAN, std=KINETICS_STD,
        pretrained={"r3d_18": "torchvision.models.video:R3D_18_Weights.KINETICS400_V1"},
        description=f"R3D-18, {_VIDEO3D_DOC}",
    ),
    ArchSpec(
        name="r2plus1d_18", layout="CTHW", builder=f"{_VIDEO3D}:build", fit_check=f"{_VIDEO3D}:check_fit",
        mean=KINETICS_MEAN, std=KINETICS_STD,
        pretrained={"r2plus1d_18": "torchvision.models.video:R2Plus1D_18_Weights.KINETICS400_V1"},
        description=f"R(2+1)D-18, {_VIDEO3D_DOC}",
    ),
    ArchSpec(
        name="landmark_lstm", layout="TJC", builder=f"{_LANDMARK}:build", fit_check=f"{_LANDMARK}:check_fit",
        params_section="landmark", description=f"(Bi)LSTM {_LANDMARK_DOC}",
    ),
    ArchSpec(
        name="landmark_gcn", layout="TJC", builder=f"{_LANDMARK}:build", fit_check=f"{_LANDMARK}:check_fit",
        params_section="landmark", description=f"spatial-temporal graph convolution {_LANDMARK_DOC}",
    ),
)  # fmt: skip

_REGISTRY: dict[str, ArchSpec] = {}


def register(spec: ArchSpec) -> ArchSpec:
    """Add ``spec``; a name or pretrained backbone already taken (by another entry) is an error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model.arch {spec.name!r} is already registered")
    for backbone, reference in spec.pretrained.items():
        taken = next((s for s in _REGISTRY.values() if s.pretrained.get(backbone, reference) != reference), None)
        if taken is not None:
            raise ValueError(f"arch {spec.name}: backbone {backbone!r} already has other weights (arch {taken.name})")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove an entry added with :func:`register` (tests registering a throwaway arch)."""
    if any(spec.name == name for spec in BUILTIN):
        raise ValueError(f"model.arch {name!r} is built in and cannot be removed")
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    """Registered arch names, built-in ones first, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> ArchSpec:
    """The entry for ``name``, or :class:`UnknownArchError` listing every known arch."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownArchError(f"unknown model.arch {name!r} (expected one of {', '.join(_REGISTRY)})") from None


def check_params(params: Params) -> Params:
    """``params`` if its ``model.arch`` is registered, else :class:`UnknownArchError`.

    ``signflow.config`` does not check the name (every stage imports config; see ``ModelParams.arch``):
    the model-building stages fail on it at once, and the tools that validate params before a run
    (``signflow.experiments``, the kfp compiler and ``submit``) call this.
    """
    try:
        get(params.model.arch)
    except UnknownArchError as error:
        raise UnknownArchError(f"model.arch: {error}") from None
    return params


def pretrained_backbones() -> dict[str, str]:
    """Every backbone with pretrained weights -> its torchvision weights reference."""
    return {backbone: ref for spec in _REGISTRY.values() for backbone, ref in spec.pretrained.items()}


for _spec in BUILTIN:
    register(_spec)

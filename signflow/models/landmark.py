"""Keypoint-sequence classifiers: ``landmark_lstm`` and ``landmark_gcn``.

Input ``(B, T, J, C)`` as :class:`signflow.training.landmark_data.LandmarkDataset`
yields it: normalised coordinates plus a last mask channel (1 = seen). ``J``
picks the skeleton (:func:`signflow.landmarks.layout.layout_for_joints`:
75 holistic, 93 holistic + face, 42 hands only).

- ``landmark_lstm``: per-frame linear embedding of all joints of every stream in
  ``model.landmark.streams`` (early fusion, :class:`StreamInputs`), then stacked
  (Bi)LSTM layers, each followed by layer norm and dropout (residual between
  layers of equal width), then last / mean / attention pooling over time.
- ``landmark_gcn``: a spatial-temporal graph convolution network in the spirit of
  ST-GCN / Pose-TGCN / SL-GCN: each block mixes joints along the skeleton
  (three adjacency subsets: self, towards the body centre, away from it, plus a
  learned offset that can add edges the skeleton lacks, e.g. hand to hand as in
  2s-AGCN) and then frames with a temporal convolution. ``model.landmark.streams``
  chooses among the *joint* stream (coordinates), the *bone* stream (each joint
  minus its parent on the skeleton tree) and their *motion* (frame-to-frame
  differences): SL-GCN's four modalities. Each stream has its own network and
  their logits are averaged (late fusion).

Registry hooks (:mod:`signflow.archs` entries ``landmark_lstm``, ``landmark_gcn``):
:func:`check_fit`, :func:`build`; :data:`NETWORKS` maps each name to its network.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from signflow.archs import InputShape
from signflow.config import LandmarkModelParams, ModelParams
from signflow.landmarks.layout import HAND_MIDDLE_MCP, HAND_WRIST, Layout, get_layout, layout_for_joints

TEMPORAL_KERNEL = 9
STREAMS = ("joint", "bone", "joint_motion", "bone_motion", "hand_shape")
FIRST_LOWER_BODY_JOINT = 23  # MediaPipe pose: 23-24 hips, 25-32 knees, ankles, heels, feet


def build_landmark_model(
    params: ModelParams,
    num_classes: int,
    *,
    num_joints: int,
    channels: int,
    seq_len: int,
    layout: str | None = None,
) -> nn.Module:
    """The ``params.arch`` landmark network for ``(B, seq_len, num_joints, channels)`` input."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if channels < 2:
        raise ValueError(f"channels must be >= 2 (x, y[, z], mask), got {channels}")
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2 for {params.arch}, got {seq_len}")
    skeleton = get_layout(layout) if layout else layout_for_joints(num_joints)
    if skeleton.num_joints != num_joints:
        raise ValueError(f"layout {skeleton.name!r} has {skeleton.num_joints} joints, input has {num_joints}")
    if not params.landmark.streams:
        raise ValueError(f"model.landmark.streams must name at least one of {', '.join(STREAMS)}")
    network = NETWORKS.get(params.arch)
    if network is None:
        raise ValueError(f"model.arch={params.arch!r} is not a landmark model ({' | '.join(NETWORKS)})")
    return network(params.landmark, num_classes, skeleton, channels=channels, dropout=params.dropout)


# --------------------------------------------------------------------------- registry hooks


def check_fit(params: ModelParams, shape: InputShape) -> None:
    """No image backbone: only enough frames for motion."""
    if shape.seq_len < 2:
        raise ValueError(f"seq_len={shape.seq_len} is too short for {params.arch}: it needs at least 2 frames")


def build(
    params: ModelParams, num_classes: int, shape: InputShape, weights_dir: str | os.PathLike[str] | None
) -> nn.Module:
    """No pretrained weights (``weights_dir`` unused): the input's skeleton comes from the extract output."""
    if shape.num_joints is None or shape.channels is None:
        raise ValueError(f"{params.arch} needs num_joints and channels (from the landmarks extract output)")
    return build_landmark_model(
        params, num_classes, num_joints=shape.num_joints, channels=shape.channels, seq_len=shape.seq_len
    )


# --------------------------------------------------------------------------- input streams


class StreamInputs(nn.Module):
    """The ``model.landmark.streams`` views of one ``(B, T, J, C)`` input (coords + mask channel).

    - ``joint``: the input; ``bone``: each joint minus its skeleton parent;
    - ``joint_motion`` / ``bone_motion``: frame-to-frame differences of those (SL-GCN's four);
    - with ``lower_body: false`` the pose's hips and legs are zeroed (mask 0) in every view;
    - ``hand_shape``: each hand's joints relative to its own wrist, in units of that frame's
      palm length (wrist to middle knuckle). Body normalisation leaves a hand a few hundredths
      wide; this view gives the handshape at full scale whatever the arm does. Other joints are 0.

    Every stream keeps the ``(B, T, J, C)`` shape, the last channel saying where it is defined,
    so the same networks take any of them. Computed inside the model: training, evaluation
    and serving see the same thing by construction.
    """

    def __init__(self, layout: Layout, *, lower_body: bool = True):
        super().__init__()
        keep = torch.ones(layout.num_joints)
        if not lower_body and layout.has("pose"):
            keep[layout.parts["pose"][0] + FIRST_LOWER_BODY_JOINT : layout.parts["pose"][1]] = 0.0
        self.register_buffer("keep", keep[:, None], persistent=False)  # (J, 1): 0 = joint ignored
        # Derived from the layout, so not saved: model files stay loadable if the skeleton code changes.
        self.register_buffer("parents", torch.as_tensor(layout.parents(), dtype=torch.long), persistent=False)
        self.hands = [layout.parts[name] for name in ("left_hand", "right_hand") if layout.has(name)]

    def bones(self, x: torch.Tensor) -> torch.Tensor:
        parent = x[:, :, self.parents]
        seen = x[..., -1:] * parent[..., -1:]
        return torch.cat([(x[..., :-1] - parent[..., :-1]) * seen, seen], dim=-1)

    @staticmethod
    def motion(x: torch.Tensor) -> torch.Tensor:
        following = torch.cat([x[:, 1:], x[:, -1:]], dim=1)
        seen = x[..., -1:] * following[..., -1:]
        return torch.cat([(following[..., :-1] - x[..., :-1]) * seen, seen], dim=-1)

    def hand_shape(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        for start, stop in self.hands:
            hand = x[:, :, start:stop]
            wrist = hand[:, :, HAND_WRIST : HAND_WRIST + 1, :-1]
            palm = (hand[:, :, HAND_MIDDLE_MCP, :2] - hand[:, :, HAND_WRIST, :2]).norm(dim=-1)
            seen = hand[..., -1:] * (palm > 1e-4)[..., None, None].to(x.dtype)
            scale = palm.clamp(min=1e-4)[..., None, None]
            out[:, :, start:stop] = torch.cat([(hand[..., :-1] - wrist) / scale * seen, seen], dim=-1)
        return out

    def forward(self, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        x = x * self.keep  # an ignored joint looks missing: zero coordinates, mask 0
        views: dict[str, torch.Tensor] = {"joint": x}
        if "bone" in names or "bone_motion" in names:
            views["bone"] = self.bones(x)
        if "joint_motion" in names:
            views["joint_motion"] = self.motion(x)
        if "bone_motion" in names:
            views["bone_motion"] = self.motion(views["bone"])
        if "hand_shape" in names:
            views["hand_shape"] = self.hand_shape(x)
        return views


# --------------------------------------------------------------------------- LSTM


class TemporalPool(nn.Module):
    """``(B, T, D)`` -> ``(B, D)`` by last step, mean, or learned attention weights."""

    def __init__(self, mode: str, dim: int, bidirectional: bool):
        super().__init__()
        self.mode = mode
        self.bidirectional = bidirectional
        self.score = nn.Linear(dim, 1) if mode == "attention" else None

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        if self.mode == "mean":
            return sequence.mean(dim=1)
        if self.mode == "last":
            if not self.bidirectional:
                return sequence[:, -1]
            # The backward direction has seen the whole clip at t = 0, not at t = T - 1.
            half = sequence.shape[-1] // 2
            return torch.cat([sequence[:, -1, :half], sequence[:, 0, half:]], dim=-1)
        weights = torch.softmax(self.score(sequence).squeeze(-1), dim=1)
        return torch.einsum("bt,btd->bd", weights, sequence)


class LandmarkLSTM(nn.Module):
    """Per-frame embedding of the chosen streams, concatenated (early fusion), then (Bi)LSTM layers."""

    def __init__(
        self, params: LandmarkModelParams, num_classes: int, layout: Layout, *, channels: int, dropout: float
    ):
        super().__init__()
        hidden = params.hidden
        width = hidden * (2 if params.bidirectional else 1)
        self.streams = list(dict.fromkeys(params.streams))
        self.inputs = StreamInputs(layout, lower_body=params.lower_body)
        self.embed = nn.Sequential(
            nn.Linear(len(self.streams) * layout.num_joints * channels, hidden),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Dropout(dropout),
        )
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        size = hidden
        for _ in range(params.layers):
            self.layers.append(nn.LSTM(size, hidden, batch_first=True, bidirectional=params.bidirectional))
            self.norms.append(nn.LayerNorm(width))
            size = width
        self.dropout = nn.Dropout(dropout)
        self.pool = TemporalPool(params.pooling, width, params.bidirectional)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps = x.shape[:2]
        views = self.inputs(x, self.streams)
        frames = torch.cat([views[name].reshape(batch, steps, -1) for name in self.streams], dim=-1)
        sequence = self.embed(frames)
        for lstm, norm in zip(self.layers, self.norms):
            out, _ = lstm(sequence)
            out = self.dropout(norm(out))
            sequence = out + sequence if out.shape == sequence.shape else out
        return self.head(self.dropout(self.pool(sequence)))


# --------------------------------------------------------------------------- graph convolution


def adjacency_subsets(layout: Layout) -> np.ndarray:
    """``(3, J, J)``: self loops, centripetal and centrifugal neighbours, row-normalised.

    ST-GCN's *spatial* partition, with "closer to the centre" measured as depth
    on the skeleton's BFS tree (the root is the nose for holistic, each wrist for
    hands). Row ``i`` of subset ``k`` says from which joints joint ``i`` gathers.
    """
    parents = layout.parents()
    depth = np.zeros(layout.num_joints, dtype=np.int64)
    for joint in range(layout.num_joints):
        node, steps = joint, 0
        while parents[node] != node:
            node, steps = parents[node], steps + 1
        depth[joint] = steps
    subsets = np.zeros((3, layout.num_joints, layout.num_joints), dtype=np.float32)
    subsets[0] = np.eye(layout.num_joints, dtype=np.float32)
    for a, b in layout.edges:
        for i, j in ((a, b), (b, a)):
            # i gathers from j: centripetal if j is nearer the centre (or as near), else centrifugal.
            subsets[1 if depth[j] <= depth[i] else 2, i, j] = 1.0
    degree = subsets.sum(axis=2, keepdims=True)
    return subsets / np.maximum(degree, 1.0)


class GraphConv(nn.Module):
    """Spatial graph convolution: ``sum_k W_k (X (A_k + B_k))`` over joint neighbourhoods."""

    def __init__(self, in_channels: int, out_channels: int, subsets: torch.Tensor):
        super().__init__()
        self.register_buffer("subsets", subsets)
        # Learned offsets (2s-AGCN's B): start at 0 so training begins from the skeleton.
        self.offsets = nn.Parameter(torch.zeros_like(subsets))
        self.mix = nn.Conv2d(in_channels * subsets.shape[0], out_channels, kernel_size=1)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, J)
        adjacency = self.subsets + self.offsets
        gathered = torch.einsum("bctj,kvj->bkctv", x, adjacency)
        batch, subsets, channels, steps, joints = gathered.shape
        return self.norm(self.mix(gathered.reshape(batch, subsets * channels, steps, joints)))


class STBlock(nn.Module):
    """Graph conv over joints, then temporal conv over frames, with a residual path."""

    def __init__(self, in_channels: int, out_channels: int, subsets: torch.Tensor, *, stride: int, dropout: float):
        super().__init__()
        self.graph = GraphConv(in_channels, out_channels, subsets)
        self.temporal = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(
                out_channels,
                out_channels,
                kernel_size=(TEMPORAL_KERNEL, 1),
                stride=(stride, 1),
                padding=(TEMPORAL_KERNEL // 2, 0),
            ),
            nn.BatchNorm2d(out_channels),
            nn.Dropout(dropout),
        )
        if in_channels == out_channels and stride == 1:
            self.residual: nn.Module = nn.Identity()
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=(stride, 1)), nn.BatchNorm2d(out_channels)
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.temporal(self.graph(x)) + self.residual(x))


class GCNStream(nn.Module):
    """One ST-GCN over ``(B, T, J, C)``: input batch norm, blocks, global pooling, classifier."""

    def __init__(
        self, params: LandmarkModelParams, num_classes: int, subsets: torch.Tensor, *, channels: int, dropout: float
    ):
        super().__init__()
        joints = subsets.shape[-1]
        # ST-GCN's data_bn: per joint and channel, since hands and hips move on very different scales.
        self.input_norm = nn.BatchNorm1d(joints * channels)
        blocks = []
        width_in, width = channels, params.gcn_channels
        for index in range(params.gcn_blocks):
            # Halve time and double width once, halfway: longer receptive field for the same cost.
            stride = 2 if params.gcn_blocks > 1 and index == params.gcn_blocks // 2 else 1
            width_out = width * 2 if stride == 2 else width
            blocks.append(STBlock(width_in, width_out, subsets, stride=stride, dropout=dropout if index else 0.0))
            width_in = width = width_out
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, J, C)
        batch, steps, joints, channels = x.shape
        x = self.input_norm(x.permute(0, 2, 3, 1).reshape(batch, joints * channels, steps))
        x = x.reshape(batch, joints, channels, steps).permute(0, 2, 3, 1)  # (B, C, T, J)
        features = self.blocks(x).mean(dim=(2, 3))
        return self.head(self.dropout(features))


class LandmarkGCN(nn.Module):
    def __init__(self, params: LandmarkModelParams, num_classes: int, layout: Layout, *, channels: int, dropout: float):
        super().__init__()
        self.layout_name = layout.name
        self.streams = list(dict.fromkeys(params.streams))
        self.inputs = StreamInputs(layout, lower_body=params.lower_body)
        # Model files written before StreamInputs kept the bone parents as a saved buffer.
        self._register_load_state_dict_pre_hook(
            lambda state, prefix, *_: state.pop(f"{prefix}parents", None)
        )
        subsets = torch.as_tensor(adjacency_subsets(layout))
        self.nets = nn.ModuleDict(
            {
                stream: GCNStream(params, num_classes, subsets, channels=channels, dropout=dropout)
                for stream in self.streams
            }
        )

    def bones(self, x: torch.Tensor) -> torch.Tensor:
        """Joint minus parent for the coordinates; the mask channel becomes "both ends seen"."""
        return self.inputs.bones(x)

    def motion(self, x: torch.Tensor) -> torch.Tensor:
        """Frame-to-frame difference (last frame repeats); seen only where both frames saw the joint."""
        return self.inputs.motion(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = self.inputs(x, self.streams)
        logits = [self.nets[stream](inputs[stream]) for stream in self.streams]
        return torch.stack(logits).mean(dim=0)


# Each landmark arch's network (its signflow.archs entry points at :func:`build`).
NETWORKS: dict[str, type[nn.Module]] = {"landmark_lstm": LandmarkLSTM, "landmark_gcn": LandmarkGCN}

"""landmark_lstm / landmark_gcn: shapes for every layout, bone stream, build_model dispatch, learning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from feature_specs import hands_spec

from signflow.config import ModelParams
from signflow.landmarks.layout import LAYOUTS, get_layout
from signflow.models import build_model, load_model_file, save_model_file
from signflow.models.landmark import adjacency_subsets, build_landmark_model

SMALL = {"hidden": 16, "layers": 2, "gcn_channels": 8, "gcn_blocks": 2}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on 2 shared cores: intra-op threads only contend (10x+ slower under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_params(arch: str, **landmark: object) -> ModelParams:
    return ModelParams(arch=arch, dropout=0.1, landmark={**SMALL, **landmark})


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("arch", ["landmark_lstm", "landmark_gcn"])
def test_forward_and_backward_for_every_layout(arch: str, layout: str) -> None:
    joints = get_layout(layout).num_joints
    model = build_landmark_model(small_params(arch), 7, num_joints=joints, channels=4, seq_len=12)
    x = torch.randn(3, 12, joints, 4)
    logits = model(x)
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("pooling", ["last", "mean", "attention"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_lstm_pooling_variants(pooling: str, bidirectional: bool) -> None:
    params = small_params("landmark_lstm", pooling=pooling, bidirectional=bidirectional)
    model = build_landmark_model(params, 4, num_joints=42, channels=4, seq_len=10).eval()
    assert model(torch.randn(2, 10, 42, 4)).shape == (2, 4)


@pytest.mark.parametrize(
    "streams", [["joint"], ["bone"], ["joint", "bone"], ["joint", "bone", "joint_motion", "bone_motion"]]
)
def test_gcn_streams(streams: list[str]) -> None:
    model = build_landmark_model(small_params("landmark_gcn", streams=streams), 3, num_joints=75, channels=4, seq_len=8)
    assert list(model.nets) == streams
    assert model.eval()(torch.randn(2, 8, 75, 4)).shape == (2, 3)


def test_motion_stream_is_the_next_frame_minus_this_one_where_both_are_seen() -> None:
    model = build_landmark_model(small_params("landmark_gcn"), 3, num_joints=42, channels=4, seq_len=4)
    x = torch.zeros(1, 4, 42, 4)
    x[..., :3] = torch.randn(1, 4, 42, 3)
    x[..., 3] = 1.0
    x[0, 2, 7, 3] = 0.0  # joint 7 missing in frame 2
    motion = model.motion(x)
    torch.testing.assert_close(motion[0, 0, :, :3], x[0, 1, :, :3] - x[0, 0, :, :3])
    assert (motion[0, -1, :, :3] == 0).all()  # the last frame has no successor
    assert motion[0, 1, 7, 3] == 0 and motion[0, 2, 7, 3] == 0 and (motion[0, 1, 7, :3] == 0).all()


def test_bone_stream_is_joint_minus_parent_and_masks_missing_ends() -> None:
    model = build_landmark_model(small_params("landmark_gcn"), 3, num_joints=42, channels=4, seq_len=4)
    x = torch.zeros(1, 4, 42, 4)
    x[..., :3] = torch.randn(1, 4, 42, 3)
    x[..., 3] = 1.0
    x[:, :, 30, 3] = 0.0  # a joint of the right hand missing
    bones = model.bones(x)
    parents = get_layout("hands").parents()
    joint = 6  # left index finger, parent 5
    assert parents[joint] == 5
    torch.testing.assert_close(bones[0, :, joint, :3], x[0, :, joint, :3] - x[0, :, 5, :3])
    assert (bones[0, :, 0, :3] == 0).all()  # a root is its own parent: zero bone
    children_of_missing = np.flatnonzero(parents == 30)
    for j in [30, *children_of_missing]:
        assert (bones[0, :, j] == 0).all()


def test_adjacency_subsets_cover_every_edge_once_per_direction() -> None:
    layout = get_layout("holistic")
    subsets = adjacency_subsets(layout)
    assert subsets.shape == (3, 75, 75)
    np.testing.assert_allclose(subsets[0], np.eye(75))
    neighbours = (subsets[1] > 0) | (subsets[2] > 0)
    assert np.array_equal(neighbours, layout.adjacency() > 0)
    assert not ((subsets[1] > 0) & (subsets[2] > 0)).any()


def test_bad_inputs_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="no landmark layout has 50 joints"):
        build_landmark_model(small_params("landmark_gcn"), 3, num_joints=50, channels=4, seq_len=8)
    with pytest.raises(ValueError, match="streams"):
        build_landmark_model(small_params("landmark_gcn", streams=[]), 3, num_joints=42, channels=4, seq_len=8)
    with pytest.raises(ValueError, match="not a landmark model"):
        build_landmark_model(ModelParams(arch="cnn_lstm"), 3, num_joints=42, channels=4, seq_len=8)
    with pytest.raises(ValueError, match="num_joints and channels"):
        build_model(small_params("landmark_lstm"), 3, seq_len=8)


@pytest.mark.parametrize("arch", ["landmark_lstm", "landmark_gcn"])
def test_build_model_dispatch_and_model_file_round_trip(arch: str, tmp_path: Path) -> None:
    params = small_params(arch)
    model = build_model(params, 5, seq_len=8, num_joints=42, channels=4).eval()
    x = torch.randn(2, 8, 42, 4)
    path = tmp_path / "model.pt"
    save_model_file(
        path, model, arch=arch, model_params=params, num_classes=5, label_map=list("abcde"),
        feature_spec=hands_spec(seq_len=8, stored_frames=16),
    )
    loaded, meta = load_model_file(path, expected_arch=arch)
    assert meta["input"]["num_joints"] == 42 and meta["input"]["channels"] == 4
    torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.parametrize("arch", ["landmark_lstm", "landmark_gcn"])
def test_models_learn_a_motion_direction(arch: str) -> None:
    """Two classes that differ only in which way the right hand moves: both models must separate them."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    steps, joints = 8, 42
    labels = torch.arange(16) % 2
    x = 0.05 * torch.randn(16, steps, joints, 4, generator=generator)
    direction = (labels.float() * 2 - 1)[:, None, None]  # -1 down, +1 up
    x[:, :, 21:, 1] += direction * torch.linspace(-1, 1, steps)[None, :, None]
    x[..., 3] = 1.0
    model = build_landmark_model(small_params(arch), 2, num_joints=joints, channels=4, seq_len=steps)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == labels).float().mean().item()
    assert accuracy == 1.0, f"{arch} reached only {accuracy:.2f} on a separable task (final loss {loss.item():.3f})"


def test_hand_shape_stream_is_wrist_relative_in_palm_units() -> None:
    from signflow.models.landmark import StreamInputs

    layout = get_layout("holistic")
    inputs = StreamInputs(layout)
    x = torch.zeros(1, 2, 75, 4)
    x[..., :3] = torch.randn(1, 2, 75, 3)
    x[..., 3] = 1.0
    start = layout.parts["right_hand"][0]
    x[0, :, start + 9, :2] = x[0, :, start, :2] + torch.tensor([0.0, 0.05])  # palm length 0.05
    shape = inputs.hand_shape(x)
    torch.testing.assert_close(shape[0, :, start + 9, :2], torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    torch.testing.assert_close(shape[0, :, start + 4, :3], (x[0, :, start + 4, :3] - x[0, :, start, :3]) / 0.05)
    assert (shape[0, :, :33] == 0).all()  # pose joints are not part of any hand
    lstm = build_landmark_model(
        small_params("landmark_lstm", streams=["joint", "hand_shape", "joint_motion"]), 3, num_joints=75, channels=4,
        seq_len=2,
    )
    assert lstm.eval()(x).shape == (1, 3)


def test_lower_body_off_masks_hips_and_legs_in_every_view() -> None:
    from signflow.models.landmark import StreamInputs

    inputs = StreamInputs(get_layout("holistic"), lower_body=False)
    x = torch.randn(1, 3, 75, 4)
    x[..., 3] = 1.0
    views = inputs(x, ["joint", "bone", "joint_motion"])
    for view in views.values():
        assert (view[:, :, 23:33] == 0).all() and (view[:, :, :23, 3] != 0).any()
    torch.testing.assert_close(views["joint"][:, :, 33:], x[:, :, 33:])

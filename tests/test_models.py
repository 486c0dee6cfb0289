"""Models: every arch runs forward/backward with exact shapes and parameter counts; bad params fail clearly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from feature_specs import hands_spec, rgb_spec
from torch import nn
from torchvision.models import mobilenet_v2
from torchvision.models.video import r2plus1d_18, r3d_18

from signflow.config import ModelParams
from signflow.models import (
    build_model,
    check_fit,
    input_layout,
    load_model_file,
    param_groups,
    save_model_file,
)
from signflow.models.cnn_lstm import SmallCNN
from signflow.models.weights import WeightsNotFoundError, cache_path, weights_for

NUM_CLASSES = 7


def count_parameters(model: torch.nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def params(arch: str = "cnn_lstm", **cnn_lstm) -> ModelParams:
    """Global pooling (``spatial_grid=1``) unless asked: these tests use frames too small for a grid."""
    return ModelParams.model_validate({"arch": arch, "cnn_lstm": {"spatial_grid": 1, **cnn_lstm}})


def numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def lstm_count(inputs: int, hidden: int, layers: int, bidirectional: bool) -> int:
    directions = 2 if bidirectional else 1
    total = 0
    for layer in range(layers):
        layer_in = inputs if layer == 0 else hidden * directions
        total += directions * (4 * hidden * (layer_in + hidden) + 8 * hidden)  # W_ih, W_hh, b_ih, b_hh
    return total


def small_cnn_count() -> int:
    total, channels = 0, 3
    for width in SmallCNN.widths:
        total += channels * width * 9 + 2 * width + width * 9 + 2 * width  # conv, bn, depthwise conv, bn
        channels = width
    return total


def expected_cnn_lstm(backbone: str, hidden: int, layers: int, bidirectional: bool, pooling: str) -> int:
    if backbone == "small_cnn":
        trunk, features = small_cnn_count(), SmallCNN.widths[-1]
    else:
        reference = mobilenet_v2(weights=None)
        trunk, features = numel(reference.features), 1280
    out = hidden * (2 if bidirectional else 1)
    attention = (out * (out // 2) + out // 2 + out // 2 + 1) if pooling == "attention" else 0
    feature_norm = 2 * features  # LayerNorm weight + bias
    return trunk + feature_norm + lstm_count(features, hidden, layers, bidirectional) + attention + out * NUM_CLASSES + NUM_CLASSES


def forward_backward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.train()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, torch.arange(x.shape[0]) % NUM_CLASSES)
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable), "every trainable parameter gets a gradient"
    return logits


@pytest.mark.parametrize("backbone", ["small_cnn", "mobilenet_v2"])
@pytest.mark.parametrize("pooling", ["last", "mean", "attention"])
def test_cnn_lstm_forward_backward_shape_and_count(backbone: str, pooling: str) -> None:
    model = build_model(params(backbone=backbone, pooling=pooling, hidden=16), NUM_CLASSES, seq_len=8, frame_size=32)
    logits = forward_backward(model, torch.randn(2, 8, 3, 32, 32))
    assert logits.shape == (2, NUM_CLASSES)
    assert count_parameters(model) == expected_cnn_lstm(backbone, 16, 1, True, pooling)


def test_cnn_lstm_two_layer_unidirectional_count() -> None:
    model = build_model(
        params(hidden=12, layers=2, bidirectional=False, pooling="last"), NUM_CLASSES, seq_len=4, frame_size=16
    )
    assert forward_backward(model, torch.randn(3, 4, 3, 16, 16)).shape == (3, NUM_CLASSES)
    assert count_parameters(model) == expected_cnn_lstm("small_cnn", 12, 2, False, "last")


def test_cnn_lstm_feature_split_matches_forward() -> None:
    model = build_model(params(hidden=8), NUM_CLASSES, seq_len=6, frame_size=32).eval()
    x = torch.randn(2, 6, 3, 32, 32)
    features = model.backbone_features(x)
    assert features.shape == (2, 6, model.feature_dim) and model.feature_dim == SmallCNN.widths[-1]
    torch.testing.assert_close(model.forward_features(features), model(x))


def test_last_pooling_uses_both_directions() -> None:
    """Bidirectional 'last' pooling: the backward direction's final state depends on the first frame too."""
    model = build_model(params(hidden=8, pooling="last"), NUM_CLASSES, seq_len=5, frame_size=16).eval()
    features = torch.randn(1, 5, model.feature_dim)
    changed = features.clone()
    changed[:, 0, 0] += 1.0  # one feature (a shift of all of them is normalised away)
    assert not torch.allclose(model.forward_features(features), model.forward_features(changed))


@pytest.mark.parametrize("arch,builder", [("r3d_18", r3d_18), ("r2plus1d_18", r2plus1d_18)])
def test_video3d_forward_backward_shape_and_count(arch: str, builder) -> None:
    model = build_model(params(arch), NUM_CLASSES, seq_len=8, frame_size=32)
    logits = forward_backward(model, torch.randn(2, 3, 8, 32, 32))
    assert logits.shape == (2, NUM_CLASSES)
    kinetics = builder(weights=None)  # same trunk, 400-way fc replaced by our head
    expected = numel(kinetics) - numel(kinetics.fc) + 512 * NUM_CLASSES + NUM_CLASSES
    assert count_parameters(model) == expected
    assert weights_for(arch).meta["num_params"] == numel(kinetics)
    groups = param_groups(model)
    assert sum(p.numel() for p in groups["head"]) == 512 * NUM_CLASSES + NUM_CLASSES
    assert sum(p.numel() for p in groups["backbone"]) == expected - (512 * NUM_CLASSES + NUM_CLASSES)


def test_freeze_all_trains_only_temporal_head_and_keeps_bn_frozen() -> None:
    model = build_model(params(freeze="all", hidden=8), NUM_CLASSES, seq_len=4, frame_size=16)
    groups = param_groups(model)
    assert groups["backbone"] == []
    assert sum(p.numel() for p in groups["head"]) == count_parameters(model, trainable_only=True)
    assert model.backbone_frozen
    model.train()
    batchnorms = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batchnorms and not any(m.training for m in batchnorms)
    before = [m.running_mean.clone() for m in batchnorms]
    model(torch.randn(2, 4, 3, 16, 16))
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, batchnorms, strict=True))


def test_freeze_last_n_trains_exactly_the_last_blocks() -> None:
    model = build_model(
        params(backbone="mobilenet_v2", freeze="last_n", trainable_blocks=2, hidden=8),
        NUM_CLASSES,
        seq_len=4,
        frame_size=32,
    )
    blocks = list(model.backbone.blocks)
    assert len(blocks) == 19
    expected = numel(blocks[17]) + numel(blocks[18])
    assert sum(p.numel() for p in param_groups(model)["backbone"]) == expected
    assert not model.backbone_frozen


def test_input_layout() -> None:
    assert input_layout("cnn_lstm") == "TCHW"
    assert input_layout("r3d_18") == input_layout("r2plus1d_18") == "CTHW"
    assert input_layout("landmark_gcn") == "TJC"
    with pytest.raises(ValueError, match="unknown model.arch 'vit'"):
        input_layout("vit")


@pytest.mark.parametrize(
    "model_params,seq_len,frame_size,message",
    [
        (params(), 1, 64, "seq_len=1 is too short for cnn_lstm"),
        (params("r3d_18"), 4, 64, "seq_len=4 is too short for r3d_18.*at least 8"),
        (params("r2plus1d_18"), 16, 8, "frame_size=8 is too small for r2plus1d_18.*at least 16x16"),
        (params(backbone="mobilenet_v2"), 16, 16, "frame_size=16 is too small for .*backbone=mobilenet_v2"),
        (params(), 16, 8, "frame_size=8 is too small .*small_cnn"),
        (ModelParams.model_validate({"pretrained": True}), 16, 64, "small_cnn has no pretrained weights"),
        (ModelParams.model_validate({"weights_path": "x.pth"}), 16, 64, "model.pretrained is false"),
        (ModelParams.model_construct(arch="vit"), 16, 64, "unknown model.arch 'vit'"),
    ],
)
def test_check_fit_rejects_bad_params(model_params: ModelParams, seq_len: int, frame_size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_fit(model_params, seq_len=seq_len, frame_size=frame_size)
    with pytest.raises(ValueError, match=message):
        build_model(model_params, NUM_CLASSES, seq_len=seq_len, frame_size=frame_size)


def test_check_fit_accepts_defaults() -> None:
    for arch in ("cnn_lstm", "r3d_18", "r2plus1d_18"):
        check_fit(params(arch), seq_len=16, frame_size=64)


# --------------------------------------------------------------------------- pretrained (offline)


def test_missing_pretrained_weights_say_where_to_put_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    where = tmp_path / "torch" / "hub" / "checkpoints" / "r3d_18-b3b3357e.pth"
    assert cache_path(weights_for("r3d_18")) == where
    url = "https://download.pytorch.org/models/r3d_18-b3b3357e.pth"
    with pytest.raises(WeightsNotFoundError, match=re.escape(f"put the file from {url} at {where}")):
        build_model(ModelParams(arch="r3d_18", pretrained=True), NUM_CLASSES, seq_len=8, frame_size=32)
    with pytest.raises(WeightsNotFoundError, match="model.weights_path .*nope.pth does not exist"):
        build_model(
            ModelParams(arch="r3d_18", pretrained=True, weights_path=str(tmp_path / "nope.pth")),
            NUM_CLASSES,
            seq_len=8,
            frame_size=32,
        )


def test_pretrained_mobilenet_loads_from_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real torchvision-format file in the hub cache is loaded by name (no download is attempted)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(1)
    reference = mobilenet_v2(weights=None)  # full model, classifier included, like the real file
    path = cache_path(weights_for("mobilenet_v2"))
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model = build_model(
        ModelParams.model_validate({"pretrained": True, "cnn_lstm": {"backbone": "mobilenet_v2", "spatial_grid": 1}}),
        NUM_CLASSES,
        seq_len=4,
        frame_size=32,
    )
    for name, tensor in reference.features.state_dict().items():
        torch.testing.assert_close(model.backbone.blocks.state_dict()[name], tensor)


def test_pretrained_r3d_from_weights_path_and_wrong_file_refused(tmp_path: Path) -> None:
    torch.manual_seed(2)
    reference = r3d_18(weights=None)
    good = tmp_path / "r3d.pth"
    torch.save(reference.state_dict(), good)
    model = build_model(
        ModelParams(arch="r3d_18", pretrained=True, weights_path=str(good)), NUM_CLASSES, seq_len=8, frame_size=32
    )
    torch.testing.assert_close(model.backbone.layer4[1].conv2[0].weight, reference.layer4[1].conv2[0].weight)
    assert model.head[1].out_features == NUM_CLASSES

    wrong = tmp_path / "mobilenet.pth"
    torch.save(mobilenet_v2(weights=None).state_dict(), wrong)
    with pytest.raises(ValueError, match="does not hold r3d_18 weights"):
        build_model(
            ModelParams(arch="r3d_18", pretrained=True, weights_path=str(wrong)), NUM_CLASSES, seq_len=8, frame_size=32
        )


# --------------------------------------------------------------------------- model file


def saved(tmp_path: Path, model_params: ModelParams, **build) -> tuple[Path, nn.Module]:
    model = build_model(model_params, NUM_CLASSES, **build)
    path = tmp_path / "model.pt"
    save_model_file(
        path,
        model,
        arch=model_params.arch,
        model_params=model_params,
        num_classes=NUM_CLASSES,
        label_map=[f"g{i}" for i in range(NUM_CLASSES)],
        feature_spec=rgb_spec(seq_len=build["seq_len"], frame_size=build["frame_size"]),
        extra={"epoch": 3},
    )
    return path, model


def test_model_file_round_trip_gives_identical_logits(tmp_path: Path) -> None:
    model_params = params(pooling="mean", hidden=8)
    path, model = saved(tmp_path, model_params, seq_len=4, frame_size=16)
    loaded, meta = load_model_file(path, expected_arch="cnn_lstm", expected_num_classes=NUM_CLASSES)
    x = torch.randn(2, 4, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert meta["model_params"] == model_params
    assert meta["label_map"][3] == "g3" and meta["extra"] == {"epoch": 3}
    assert meta["input"] == {"seq_len": 4, "frame_size": 16, "num_joints": None, "channels": None}
    assert not list(tmp_path.glob(".tmp-*")), "atomic write leaves no temporaries"


def test_model_file_loads_without_pretrained_weights(tmp_path: Path) -> None:
    """The saved state dict has every weight: loading needs neither the hub cache nor weights_path."""
    weights = tmp_path / "r2.pth"
    torch.save(r2plus1d_18(weights=None).state_dict(), weights)
    model_params = ModelParams(arch="r2plus1d_18", pretrained=True, weights_path=str(weights))
    path, model = saved(tmp_path, model_params, seq_len=8, frame_size=16)
    weights.unlink()
    loaded, _ = load_model_file(path)
    x = torch.randn(1, 3, 8, 16, 16)
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_model_file_refuses_other_arch_and_class_count(tmp_path: Path) -> None:
    path, _ = saved(tmp_path, params(hidden=8), seq_len=4, frame_size=16)
    with pytest.raises(ValueError, match="trained with model.arch=cnn_lstm, but model.arch is r3d_18"):
        load_model_file(path, expected_arch="r3d_18")
    with pytest.raises(ValueError, match="has 7 classes, but the data has 10"):
        load_model_file(path, expected_num_classes=10)


def test_model_file_refuses_non_model_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_model_file(tmp_path / "absent.pt")
    state_only = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(2)}, state_only)
    with pytest.raises(ValueError, match="not a signflow model file"):
        load_model_file(state_only)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not a readable signflow model file"):
        load_model_file(garbage)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "signflow-model", "obj": Path("x")}, pickled)  # arbitrary object: weights_only refuses
    with pytest.raises(ValueError, match="not a readable signflow model file"):
        load_model_file(pickled)


def test_save_model_file_checks_label_map(tmp_path: Path) -> None:
    model_params = params(hidden=8)
    model = build_model(model_params, NUM_CLASSES, seq_len=4, frame_size=16)
    with pytest.raises(ValueError, match="label_map has 2 glosses but num_classes is 7"):
        save_model_file(
            tmp_path / "m.pt", model, arch="cnn_lstm", model_params=model_params,
            num_classes=NUM_CLASSES, label_map=["a", "b"], feature_spec=rgb_spec(seq_len=4, frame_size=16),
        )


# --------------------------------------------------------------------------- landmark dispatch


def test_landmark_arch_needs_shapes() -> None:
    with pytest.raises(ValueError, match="needs num_joints and channels"):
        build_model(ModelParams(arch="landmark_gcn"), NUM_CLASSES, seq_len=16)


@pytest.mark.parametrize("arch", ["landmark_lstm", "landmark_gcn"])
def test_landmark_archs_dispatch(arch: str) -> None:
    pytest.importorskip("signflow.models.landmark", reason="helper module signflow.models.landmark not present yet")
    # 42 joints = the two-hands skeleton; 4 channels = x, y, z + the "seen" mask.
    model = build_model(ModelParams(arch=arch), NUM_CLASSES, seq_len=8, num_joints=42, channels=4)
    logits = forward_backward(model, torch.randn(2, 8, 42, 4))
    assert logits.shape == (2, NUM_CLASSES)
    groups = param_groups(model)
    assert sum(p.numel() for group in groups.values() for p in group) == count_parameters(model, trainable_only=True)


def test_landmark_model_file_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("signflow.models.landmark", reason="helper module signflow.models.landmark not present yet")
    model_params = ModelParams(arch="landmark_lstm")
    model = build_model(model_params, NUM_CLASSES, seq_len=8, num_joints=42, channels=4).eval()
    path = tmp_path / "model.pt"
    save_model_file(
        path, model, arch="landmark_lstm", model_params=model_params, num_classes=NUM_CLASSES,
        label_map=[str(i) for i in range(NUM_CLASSES)], feature_spec=hands_spec(seq_len=8, stored_frames=16),
    )  # fmt: skip
    loaded, meta = load_model_file(path, expected_arch="landmark_lstm")
    assert meta["input"] == {"seq_len": 8, "frame_size": None, "num_joints": 42, "channels": 4}
    x = torch.randn(2, 8, 42, 4)
    torch.testing.assert_close(loaded(x), model(x))


def test_spatial_grid_keeps_where_the_hand_is() -> None:
    """grid=2 gives each quadrant's mean feature (where the hand is); grid=1 only their average."""
    coarse = build_model(params(hidden=8, spatial_grid=1), NUM_CLASSES, seq_len=4, frame_size=64).eval()
    fine = build_model(params(hidden=8, spatial_grid=2), NUM_CLASSES, seq_len=4, frame_size=64).eval()
    fine.backbone.blocks.load_state_dict(coarse.backbone.blocks.state_dict())
    x = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        feature_map = coarse.backbone.blocks(x.flatten(0, 1))  # (6, C, 4, 4)
        quadrants = feature_map.unflatten(2, (2, 2)).unflatten(4, (2, 2)).mean(dim=(3, 5))  # (6, C, 2, 2)
        cells = fine.backbone_features(x)
        pooled = coarse.backbone_features(x)
    width = SmallCNN.widths[-1]
    assert fine.feature_dim == width * 4 and coarse.feature_dim == width
    torch.testing.assert_close(cells, quadrants.flatten(1).reshape(2, 3, -1))
    torch.testing.assert_close(pooled, quadrants.mean(dim=(2, 3)).reshape(2, 3, -1))


def test_spatial_grid_finer_than_the_feature_map_is_refused() -> None:
    with pytest.raises(ValueError, match="spatial_grid=8 is finer than the 4x4 feature map"):
        build_model(params(spatial_grid=8), NUM_CLASSES, seq_len=4, frame_size=64)

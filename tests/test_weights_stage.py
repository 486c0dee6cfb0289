"""The ``weights`` stage: pretrained weights downloaded once (from a loopback server), checked, then used by train."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision
import yaml

from signflow.config import load_params
from signflow.models import build_model
from stages import weights as weights_stage
from tests.conftest import REPO_ROOT


@contextlib.contextmanager
def _serve_folder(folder: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, torch.Tensor]:
    """A MobileNetV2 feature extractor's weights, named as torchvision names its files (name-<sha prefix>.pth)."""
    folder = tmp_path_factory.mktemp("published")
    torch.manual_seed(3)
    state = torchvision.models.mobilenet_v2().state_dict()
    raw = folder / "raw.pth"
    torch.save(state, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    name = f"mobilenet_v2-{digest[:8]}.pth"
    raw.rename(folder / name)
    return folder, name, state["features.0.0.weight"]


def _params(tmp_path: Path, **model: object) -> Path:
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["model"].update({"arch": "cnn_lstm", "cnn_lstm": {**raw["model"]["cnn_lstm"], "backbone": "mobilenet_v2",
                         "spatial_grid": 1}, **model})  # fmt: skip
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_download_verify_and_train_uses_it(published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, name, first_conv = published
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))  # no local copy: it must download
    with _serve_folder(folder) as url:
        params = _params(tmp_path, pretrained=True, weights_url=f"{url}/{name}")
        assert weights_stage.main(["--params", str(params), "--out", str(tmp_path / "weights")]) == 0
    record = json.loads((tmp_path / "weights" / "weights.json").read_text())
    assert record["file"] == name and record["sha256"].startswith(name.split("-")[1][:8])
    assert record["source"].startswith("http://127.0.0.1")
    model = build_model(load_params(params).model, 5, seq_len=4, frame_size=64, weights_dir=tmp_path / "weights")
    torch.testing.assert_close(model.backbone.blocks[0][0].weight, first_conv)


def test_checksum_mismatch_keeps_nothing(published, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, name, _ = published
    with _serve_folder(folder) as url:
        params = _params(tmp_path, pretrained=True, weights_url=f"{url}/{name}", weights_sha256="0" * 64)
        assert weights_stage.main(["--params", str(params), "--out", str(tmp_path / "weights")]) == 2
    assert "does not match the expected" in capsys.readouterr().err
    assert not (tmp_path / "weights").exists()


def test_offline_says_where_to_put_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with _serve_folder(tmp_path) as url:
        pass  # the server is gone: connection refused, as offline
    params = _params(tmp_path, pretrained=True, weights_url=f"{url}/mobilenet_v2-b0353104.pth")
    assert weights_stage.main(["--params", str(params), "--out", str(tmp_path / "weights")]) == 2
    error = capsys.readouterr().err
    assert "cannot download mobilenet_v2 weights" in error and str(tmp_path / "hub") in error


def test_not_pretrained_writes_only_the_record(tmp_path: Path) -> None:
    assert weights_stage.main(["--params", str(REPO_ROOT / "params.yaml"), "--out", str(tmp_path / "w")]) == 0
    assert json.loads((tmp_path / "w" / "weights.json").read_text()) == {"pretrained": False}
    assert [p.name for p in (tmp_path / "w").iterdir()] == ["weights.json"]

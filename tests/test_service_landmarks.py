"""Serving a landmark model (``model.arch: landmark_*``) with the real ``bentoml serve``.

A video goes through MediaPipe Holistic in the isolated environment and the same normalisation
as extract + evaluate; a client's own landmarks go to ``/predict_landmarks``. Both must give the
logits that :class:`signflow.inference.Predictor` (what evaluate uses) gives on the same input.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from served import bentoml_serve
from tiny_model import make_landmark_model_dir

from signflow.inference import Predictor
from signflow.landmarks.online import LandmarkPreprocessor
from signflow.landmarks.pool import LandmarkEnvError, extract_video, installed_mediapipe_version, landmarks_python

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
CLIP = "01377"  # a real WLASL clip: 288x192, ~25 frames
OTHER_MEDIAPIPE = "0.10.9"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        landmarks_python()
    except LandmarkEnvError as error:
        pytest.skip(str(error))
    folder = tmp_path_factory.mktemp("serve-landmarks")
    # Features "extracted" by another MediaPipe than .venv-landmarks has: served with a warning (the default).
    make_model = functools.partial(make_landmark_model_dir, mediapipe_version=OTHER_MEDIAPIPE)
    with bentoml_serve(folder, {}, make_model=make_model) as running:
        yield running


@pytest.fixture(scope="module")
def clip(shared_data: Path) -> Path:
    return shared_data / "wlasl-clips" / f"{CLIP}.mp4"


def _post_video(url: str, path: Path) -> requests.Response:
    with open(path, "rb") as handle:
        files = {"video": (path.name, handle, "video/mp4")}
        return requests.post(f"{url}/predict_video", files=files, data={"return_logits": "true"}, timeout=120)


def test_video_through_mediapipe_gives_the_evaluate_logits(served: Any, clip: Path) -> None:
    response = _post_video(served.url, clip)
    assert response.status_code == 200, response.text
    body = response.json()
    frames = body["input"]["frames"]
    assert frames >= 20 and body["input"]["detected"]["pose"] >= 0.8 * frames, body["input"]  # a real signer
    assert [p["gloss"] for p in body["top_k"]] and len(body["top_k"]) == 3
    installed = installed_mediapipe_version()
    assert f"extracted with mediapipe {OTHER_MEDIAPIPE}, this server has {installed}" in body["extractor_warning"]

    predictor = Predictor.load(served.store_model_dir)
    preprocessor = LandmarkPreprocessor(predictor.feature_spec)
    points, mask = extract_video(clip)
    expected = predictor.logits(preprocessor.from_points(points, mask, width=288, height=192)[None])[0]
    np.testing.assert_allclose(body["logits"], expected, atol=1e-4)


def test_client_landmarks_give_the_same_answer(served: Any, clip: Path) -> None:
    points, mask = extract_video(clip)
    payload = {"points": points.tolist(), "mask": mask.tolist(), "width": 288, "height": 192, "return_logits": True}
    response = requests.post(f"{served.url}/predict_landmarks", json=payload, timeout=60)
    assert response.status_code == 200, response.text
    from_video = _post_video(served.url, clip).json()
    np.testing.assert_allclose(response.json()["logits"], from_video["logits"], atol=1e-4)


@pytest.mark.parametrize(
    "payload, reason",
    [
        ({"points": [[[0.5, 0.5, 0.0]] * 10] * 4}, "bad_shape"),  # 10 joints, the model reads 75
        ({"points": []}, "bad_shape"),
        ({"points": [[[0.5, 0.5, 0.0]] * 75] * 3, "mask": [[True] * 75]}, "bad_shape"),  # mask (1, 75) for 3 frames
        ({"points": [[[float("nan"), 0.5, 0.0]] * 75] * 3}, None),  # NaN (Python's JSON extension)
    ],
)
def test_bad_landmarks_are_refused_with_a_reason(served: Any, payload: dict, reason: str | None) -> None:
    body = json.dumps(payload)  # allow_nan: what a careless client would send
    response = requests.post(f"{served.url}/predict_landmarks", data=body,
                             headers={"content-type": "application/json"}, timeout=30)  # fmt: skip
    assert 400 <= response.status_code < 500, response.text
    if reason is not None:
        assert response.json()["error"] == reason, response.text
    assert requests.get(f"{served.url}/readyz", timeout=10).status_code == 200


def test_frames_are_refused_for_a_landmark_model(served: Any) -> None:
    frames = np.zeros((4, 16, 16, 3), dtype=np.uint8).tolist()
    response = requests.post(f"{served.url}/predict_frames", json={"frames": frames}, timeout=30)
    assert response.status_code == 400 and response.json()["error"] == "model_mismatch", response.text

"""The served model over HTTP: a real ``bentoml serve`` on 127.0.0.1 (slow: starts the server once)."""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import moving_square_frames
from served import Served, bentoml_serve
from signflow import video
from tiny_model import GLOSSES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

API_KEY = "test-secret-key"
AUTH = {"x-api-key": API_KEY}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Served:
    folder = tmp_path_factory.mktemp("served")
    serve = {
        "max_upload_mb": 3.0,
        "max_duration_s": 20.0,
        "max_frames": 300,
        "max_batch_size": 8,
        "max_latency_ms": 5000,
        "api_key_env": "SIGNFLOW_TEST_API_KEY",
    }
    with bentoml_serve(
        folder, serve, monitoring={"drift_window": 10}, extra_env={"SIGNFLOW_TEST_API_KEY": API_KEY}, drift=True
    ) as served:
        yield served


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A lossless clip: decoding gives back exactly ``frames``."""
    frames = moving_square_frames(20, 48, 64, seed=3)
    path = tmp_path_factory.mktemp("clips") / "sign.mp4"
    video.write_video(path, frames, 25.0, lossless=True)
    return path, frames


def post_video(server: Served, data: bytes, name: str = "clip.mp4", content_type: str = "video/mp4", **fields) -> requests.Response:
    files = {"video": (name, io.BytesIO(data), content_type)}
    return requests.post(f"{server.url}/predict_video", files=files, data=fields, headers=AUTH, timeout=60)


def post_frames(server: Served, frames, **fields) -> requests.Response:
    payload = {"frames": frames.tolist() if isinstance(frames, np.ndarray) else frames, **fields}
    return requests.post(f"{server.url}/predict_frames", json=payload, headers=AUTH, timeout=60)


def post_npy(server: Served, array: np.ndarray, **fields) -> requests.Response:
    buffer = io.BytesIO()
    np.save(buffer, array)
    files = {"npy": ("frames.npy", buffer.getvalue(), "application/octet-stream")}
    return requests.post(f"{server.url}/predict_frames", files=files, data=fields, headers=AUTH, timeout=60)


def assert_still_serving(server: Served, clip: tuple[Path, np.ndarray]) -> None:
    response = post_video(server, clip[0].read_bytes())
    assert response.status_code == 200, response.text


def test_health_endpoints(server: Served) -> None:
    assert requests.get(f"{server.url}/livez", timeout=5).status_code == 200
    assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 200


def test_predict_video_returns_top_k_glosses_with_probabilities_and_timings(server: Served, clip) -> None:
    response = post_video(server, clip[0].read_bytes(), top_k="4")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_tag"] == server.tag
    glosses = [item["gloss"] for item in body["top_k"]]
    assert sorted(glosses) == sorted(GLOSSES)
    probabilities = [item["probability"] for item in body["top_k"]]
    assert probabilities == sorted(probabilities, reverse=True) and abs(sum(probabilities) - 1) < 1e-5
    assert body["input"]["frames"] == 20 and body["input"]["width"] == 64 and body["input"]["height"] == 48
    assert set(body["timings_ms"]) == {"decode", "preprocess", "model", "total"}
    assert body["timings_ms"]["total"] >= body["timings_ms"]["model"] > 0


def test_served_logits_equal_the_predictor_used_by_evaluate(server: Served, clip) -> None:
    """One preprocessing implementation: the API and Predictor (evaluate's path) give the same logits."""
    from signflow.inference import Predictor

    predictor = Predictor.load(server.store_model_dir)
    clips = server.params["evaluate"]["clips"]
    expected = predictor.logits(predictor.preprocess_video(clip[0])[None], clips=clips)[0]

    served_video = np.array(post_video(server, clip[0].read_bytes(), return_logits="true").json()["logits"])
    np.testing.assert_allclose(served_video, expected, rtol=1e-4, atol=1e-5)
    # Frames decoded by the client (the lossless clip decodes to exactly these) give the same answer.
    served_frames = np.array(post_frames(server, clip[1], return_logits=True).json()["logits"])
    np.testing.assert_allclose(served_frames, expected, rtol=1e-4, atol=1e-5)
    served_npy = np.array(post_npy(server, clip[1], return_logits="true").json()["logits"])
    np.testing.assert_allclose(served_npy, expected, rtol=1e-4, atol=1e-5)


def test_predict_frames_batch_and_concurrent_requests(server: Served, clip) -> None:
    batch = np.stack([clip[1], clip[1][::-1]])
    body = post_frames(server, batch).json()
    assert len(body["predictions"]) == 2 and all(len(p["top_k"]) == 3 for p in body["predictions"])

    # Concurrent clients: the adaptive batcher merges them; every answer is still its own. Over 100
    # calls on purpose: BentoML's default recycles the API->model session every 100 calls and
    # broke the calls in flight (see runner_connection in serving/service.py).
    clips = [clip[1], clip[1][::-1]]
    expected = [post_npy(server, c, return_logits="true").json()["logits"] for c in clips]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: (i % 2, post_npy(server, clips[i % 2], return_logits="true")), range(120)))
    assert [r.status_code for _, r in responses] == [200] * 120
    for which, response in responses:
        np.testing.assert_allclose(response.json()["logits"], expected[which], rtol=1e-4, atol=1e-5)


def _video_bytes(tmp_path: Path, name: str, frames: np.ndarray, fps: float, lossless: bool = False) -> bytes:
    path = tmp_path / name
    video.write_video(path, frames, fps, lossless=lossless)
    return path.read_bytes()


def test_bad_videos_are_refused_with_a_reason_and_the_server_keeps_serving(server: Served, clip, tmp_path: Path) -> None:
    good = _video_bytes(tmp_path, "good.mp4", moving_square_frames(60, 96, 128), 25.0)
    four_k = _video_bytes(tmp_path, "4k.mp4", np.zeros((2, 2160, 3840, 3), np.uint8), 25.0)
    hour_long = _video_bytes(tmp_path, "long.mp4", moving_square_frames(4), 0.001)  # 4 frames over ~67 minutes
    cases = [
        ("non-video bytes", b"this is not a video at all" * 40, "video/mp4", 400, "not_video"),
        ("zero-byte file", b"", "video/mp4", 400, "empty"),
        ("truncated mp4", good[: len(good) // 2], "video/mp4", 400, None),
        ("4K video", four_k, "video/mp4", 413, "resolution_too_large"),
        ("hour-long video", hour_long, "video/mp4", 413, "too_long"),
        ("wrong content type", clip[0].read_bytes(), "text/plain", 415, "unsupported_media_type"),
        ("upload over the size limit", b"\0" * (4 * 1024 * 1024), "video/mp4", 413, "upload_too_large"),
    ]
    for label, data, content_type, status, reason in cases:
        response = post_video(server, data, content_type=content_type)
        assert response.status_code == status, f"{label}: {response.status_code} {response.text}"
        body = response.json()
        assert body["error"] in ((reason,) if reason else ("corrupt", "not_video", "no_frames")), label
        assert body["detail"], label
        assert_still_serving(server, clip)


def test_bad_frames_are_refused_with_a_reason(server: Served, clip) -> None:
    frames = clip[1]
    cases = [
        ("wrong shape", frames[..., 0], 400, "bad_shape"),
        ("float dtype", frames[:2].astype(np.float32) / 255.0, 400, "bad_dtype"),
        ("values out of range", frames[:2].astype(np.int64) + 300, 400, "bad_dtype"),
        ("empty batch", [], 400, "empty_batch"),
        ("too many clips", np.zeros((9, 2, 4, 4, 3), np.uint8), 413, "batch_too_large"),
        ("ragged frames", [[[[1, 2, 3]]], [[[1, 2]]]], 400, "bad_shape"),
        ("not numbers", [[[["a", "b", "c"]]]], 400, "bad_dtype"),
    ]
    for label, payload, status, reason in cases:
        response = post_frames(server, payload)
        assert response.status_code == status, f"{label}: {response.status_code} {response.text}"
        if reason:
            assert response.json()["error"] == reason, label
        assert_still_serving(server, clip)
    for label, response, reason in [
        ("neither frames nor npy", post_frames(server, None), "bad_shape"),
        (".npy that is not one", requests.post(
            f"{server.url}/predict_frames", files={"npy": ("x.npy", b"not numpy", "application/octet-stream")},
            headers=AUTH, timeout=30), "bad_npy"),
        (".npy of the wrong shape", post_npy(server, frames[..., :2]), "bad_shape"),
    ]:
        assert response.status_code == 400 and response.json()["error"] == reason, f"{label}: {response.text}"
        assert_still_serving(server, clip)
    bad_top_k = post_frames(server, frames, top_k=99)
    assert bad_top_k.status_code == 400 and bad_top_k.json()["error"] == "bad_top_k"


def test_api_key_is_required_when_configured(server: Served, clip) -> None:
    files = {"video": ("clip.mp4", clip[0].read_bytes(), "video/mp4")}
    for headers in ({}, {"x-api-key": "wrong"}):
        response = requests.post(f"{server.url}/predict_video", files=files, headers=headers, timeout=30)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    # Health and metrics stay open for probes and Prometheus.
    assert requests.get(f"{server.url}/metrics", timeout=5).status_code == 200


def test_metrics_follow_the_monitoring_contract(server: Served, clip) -> None:
    for _ in range(10):  # fills the drift window (monitoring.drift_window = 10)
        assert_still_serving(server, clip)
    post_video(server, b"", content_type="video/mp4")
    requests.post(f"{server.url}/predict_frames", json={"frames": [[[[0, 0, 0]]]]}, timeout=30)  # no API key
    text = requests.get(f"{server.url}/metrics", timeout=5).text

    def value(pattern: str) -> float:
        match = re.search(rf"^{pattern} ([0-9.e+-]+)$", text, re.MULTILINE)
        assert match, f"no sample matching {pattern!r} in /metrics"
        return float(match.group(1))

    for endpoint in ("predict_video", "predict_frames"):
        for stage in ("decode", "preprocess", "model"):
            assert value(rf'signflow_stage_latency_seconds_count\{{endpoint="{endpoint}",stage="{stage}"\}}') > 0
    assert sum(float(v) for v in re.findall(r'^signflow_predictions_total\{gloss="[^"]+"\} ([0-9.]+)$', text, re.M)) >= 10
    assert value("signflow_top1_confidence_count") >= 10
    assert value("signflow_input_frames_count") >= 10 and value("signflow_input_duration_seconds_count") >= 10
    assert 'signflow_low_confidence_total' in text
    assert value(r'signflow_rejected_requests_total\{endpoint="predict_video",reason="empty"\}') >= 1
    assert value(r'signflow_rejected_requests_total\{endpoint="predict_video",reason="unauthorized"\}') >= 1
    assert value(
        rf'signflow_model_info\{{arch="cnn_lstm",metric="val_top1",metric_value="0.5",model_tag="{server.tag}"\}}'
    ) == 1
    assert value("signflow_model_ready") == 1
    assert value("signflow_prediction_drift_psi") >= 0
    assert "bentoml_service_request_total" in text and "bentoml_service_request_duration_seconds" in text
    assert "bentoml_service_adaptive_batch_size" in text


def _png_bytes(tmp_path: Path) -> bytes:
    import subprocess

    png = tmp_path / "photo.png"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1",
                    str(png)], check=True)  # fmt: skip
    return png.read_bytes()


def test_malformed_forms_are_400s_with_a_reason_never_500(server: Served, clip, tmp_path: Path) -> None:
    """The exact requests that got 500 (BentoML json.loads a binary part it does not expect) or a
    misleading reason, as a client library sends them."""
    mp4 = clip[0].read_bytes()
    url = f"{server.url}/predict_video"
    cases = [
        ("binary part not named video", dict(files={"file": ("clip.mp4", mp4, "video/mp4")}), "unknown_field"),
        ("an extra binary part", dict(files={"video": ("clip.mp4", mp4, "video/mp4"),
                                             "thumbnail": ("t.jpg", b"\xff\xd8\xff", "image/jpeg")}), "unknown_field"),
        ("video as a urlencoded value (a URL)", dict(data={"video": "http://169.254.169.254/latest"}), "invalid_request"),
        ("top_k sent as a file", dict(files={"video": ("clip.mp4", mp4, "video/mp4"),
                                             "top_k": ("k", b"3", "application/json")}), "invalid_request"),
        ("a PNG renamed .mp4", dict(files={"video": ("clip.mp4", _png_bytes(tmp_path), "video/mp4")}), "not_video"),
        ("garbage named .mp4", dict(files={"video": ("clip.mp4", b"\x00junk" * 200, "video/mp4")}), "not_video"),
    ]
    for label, request, reason in cases:
        response = requests.post(url, headers=AUTH, timeout=30, **request)
        assert response.status_code == 400, f"{label}: {response.status_code} {response.text}"
        body = response.json()
        assert body["error"] == reason, f"{label}: {body}"
        # No server temp names, folders or FFmpeg errno numbers in what the client sees.
        assert "Errno" not in body["detail"] and "/tmp" not in body["detail"] and "tmp" not in body["detail"], body
        assert_still_serving(server, clip)
    junk = requests.post(f"{url}/evil_5393", files={"video": ("c.mp4", mp4, "video/mp4")}, headers=AUTH, timeout=30)
    assert junk.status_code == 404 and set(junk.json()) == {"error", "detail"}
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert "evil_5393" not in metrics
    assert 'signflow_rejected_requests_total{endpoint="other",reason="not_found"}' in metrics


def test_refused_inputs_log_one_line_not_a_traceback(server: Served, clip) -> None:
    before = server.log.read_text()
    for _ in range(3):
        assert post_video(server, clip[0].read_bytes(), content_type="text/plain").status_code == 415
        assert post_video(server, clip[0].read_bytes(), top_k="many").status_code == 400
    new = server.log.read_text()[len(before):]
    assert "Traceback" not in new and "ERROR" not in new, new[-3000:]


def test_ready_only_once_warmed_up(server: Served) -> None:
    log = server.log.read_text()
    assert re.search(r"warm-up done in [0-9.]+ s: ready", log), log[-2000:]
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert re.search(r"^signflow_model_ready 1\.0$", metrics, re.M)


def test_a_raw_stream_is_cut_at_the_frame_limit_while_decoding(server: Served, tmp_path: Path) -> None:
    """Raw H.264 has no frame count or duration to probe: the limit applies while decoding."""
    import subprocess

    raw = tmp_path / "stream.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-frames:v",
                    "400", "-c:v", "libx264", "-preset", "ultrafast", "-f", "h264", str(raw)], check=True)  # fmt: skip
    assert video.probe(raw).num_frames <= 300  # the probe cannot see the 400 frames
    response = post_video(server, raw.read_bytes(), name="stream.h264")
    assert response.status_code == 413 and response.json()["error"] == "too_many_frames", response.text


@pytest.fixture(scope="module")
def short_timeout_server(tmp_path_factory: pytest.TempPathFactory) -> Served:
    folder = tmp_path_factory.mktemp("served-timeout")
    serve = {"request_timeout_s": 1.0, "max_frames": 100_000, "max_duration_s": 3600.0, "max_upload_mb": 20.0}
    with bentoml_serve(folder, serve) as served:
        yield served


def test_a_decode_stops_when_its_request_times_out(short_timeout_server: Served, tmp_path: Path) -> None:
    """A 1080p raw H.264 stream (no duration metadata) that takes longer to decode than the
    request timeout: the client gets a shaped 504, and the decode stops within a frame or so,
    not when the file ends."""
    import subprocess
    import time

    raw = tmp_path / "long.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:size=1920x1080:rate=30",
                    "-frames:v", "3000", "-c:v", "libx264", "-preset", "ultrafast", "-f", "h264", str(raw)],
                   check=True)  # fmt: skip
    served = short_timeout_server
    response = requests.post(f"{served.url}/predict_video", files={"video": ("long.h264", raw.read_bytes(), "video/mp4")},
                             timeout=60)  # fmt: skip
    assert response.status_code == 504, response.text
    assert set(response.json()) == {"error", "detail"} and response.json()["error"] in ("timeout", "cancelled")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "decoding stopped" not in served.log.read_text():
        time.sleep(0.2)
    stopped = re.search(r"decoding stopped ([0-9.]+) s after its request ended", served.log.read_text())
    assert stopped, served.log.read_text()[-3000:]
    assert float(stopped.group(1)) < 2.0  # 3000 1080p frames would take far longer

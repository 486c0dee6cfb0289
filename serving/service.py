"""signflow's BentoML service: a sign-language clip in, the top-k glosses out.

Run:  ``bentoml serve serving.service:Signflow`` (from the repo root; see docs/serving.md)

Two services, one process group:

* :class:`Signflow` (the HTTP entry point): ``POST /predict_video`` (multipart upload),
  ``POST /predict_frames`` (JSON array of RGB frames), the web page at ``/``, BentoML's
  ``/livez``, ``/readyz``, ``/metrics``. Decoding and preprocessing run here, with
  :mod:`signflow.preprocess`, the same code the extract stage ran on the training data.
* :class:`SignflowModel`: holds the network (loaded once per worker, CUDA when present)
  behind a *batchable* API, so BentoML's adaptive batcher merges concurrent clips into
  one forward pass. Clips travel as compact ``uint8`` arrays (pickled between the two
  services, never JSON).

The model is the pinned tag from :mod:`serving.config` (env ``SIGNFLOW_MODEL_TAG`` or the
package stage's ``reports/package.json``); its folder carries the label map, the exact
preprocessing config, the metrics and the params it was evaluated with.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from pydantic import BeforeValidator, Field
from starlette.responses import JSONResponse

from serving.config import load_config
from serving.guard import REASON_HEADER, FormFields, GuardMiddleware, guard_installed, install_under_request_metrics
from serving.metrics import STAGES, drift_gauge, metrics, start_process_sampler
from signflow.config import SERVICE_PATHS, SERVING_ENDPOINTS, UNKNOWN_PATH_LABEL
from signflow.scores import softmax, top_classes

log = logging.getLogger("signflow.serving")

# Read at import because the decorators below need the values; this is one small YAML file.
CONFIG = load_config()
SERVE = CONFIG.serve

VIDEO_TYPES = {
    "video/mp4": ".mp4", "video/webm": ".webm", "video/x-msvideo": ".avi", "video/avi": ".avi",
    "video/msvideo": ".avi", "video/quicktime": ".mov", "video/x-matroska": ".mkv",
}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".webm", ".avi", ".mov", ".mkv"}
# Sent by clients that do not know the type; accepted when the file name says video.
GENERIC_TYPES = {"application/octet-stream", ""}
# Reason -> HTTP status for refused inputs (the body says which limit and by how much).
STATUS = {
    "empty": 400, "not_video": 400, "corrupt": 400, "no_frames": 400, "too_short": 400,
    "unsupported_codec": 415, "unsupported_media_type": 415,
    "too_large": 413, "too_many_frames": 413, "too_long": 413, "resolution_too_large": 413,
    "batch_too_large": 413, "bad_shape": 400, "bad_npy": 400, "bad_dtype": 400, "empty_batch": 400, "bad_top_k": 400,
    "model_mismatch": 400, "landmarks_unavailable": 503, "cancelled": 504,
}
ENDPOINTS = SERVING_ENDPOINTS
# Sequential model calls before /readyz says ready: BentoML's adaptive batcher spends its first
# ~11 calls per model worker calibrating one clip at a time and sheds (503) whatever queues past
# max_latency_ms meanwhile. Measured: 37 x 503 in the first 7 s of a cold 16-client load without it.
WARM_UP_CALLS = 12


def _check_upload_type(value: Any) -> Any:
    """Refuse uploads that say they are not video (415) before a decoder is spent on them.

    Runs on the raw multipart part (before BentoML spools it to a file), where the part's
    content type and file name are still known. Raises a pydantic error whose ``type``
    the guard middleware turns into the rejection reason.
    """
    from pydantic_core import PydanticCustomError
    from starlette.datastructures import UploadFile

    if not isinstance(value, UploadFile):
        return value
    content_type = (value.content_type or "").split(";")[0].strip().lower()
    suffix = Path(value.filename or "").suffix.lower()
    if content_type in VIDEO_TYPES or (content_type in GENERIC_TYPES and suffix in VIDEO_SUFFIXES):
        return value
    raise PydanticCustomError(
        "unsupported_media_type",
        "{name}: content type '{content_type}' is not a supported video (mp4, webm, avi, mov)",
        {"name": value.filename or "upload", "content_type": content_type},
    )


VideoUpload = Annotated[Path, BeforeValidator(_check_upload_type)]


class Rejected(Exception):
    """An input the service refuses; becomes a 4xx JSON body ``{"error": reason, "detail": ...}``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.reason, "detail": self.detail},
            status_code=STATUS.get(self.reason, 400),
            headers={REASON_HEADER.decode(): self.reason},
        )


class ClientErrorLogFilter(logging.Filter):
    """BentoML logs every refused input (pydantic ``ValidationError``) as an ERROR with a traceback:
    a flood of bad uploads would flood the log. Keep one INFO line; real exceptions stay ERRORs."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            fields = ",".join(str((e.get("loc") or ["?"])[-1]) for e in error.errors(include_input=False))
            record.msg, record.args = "%s (client input refused: %s)", (record.getMessage(), fields)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def enable_logging() -> None:
    """Let signflow's INFO lines through BentoML's server logging (root at WARNING, loggers set up after import)."""
    for name in ("signflow", "signflow.serving"):
        logger = logging.getLogger(name)
        logger.disabled = False
        logger.setLevel(logging.INFO)
    bentoml_http = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, ClientErrorLogFilter) for f in bentoml_http.filters):
        bentoml_http.addFilter(ClientErrorLogFilter())
    if CONFIG.tag_source.startswith("latest"):
        log.warning("no model pinned: serving %s (set SIGNFLOW_MODEL_TAG or run the package stage)", CONFIG.model_tag)


def read_model_folder(path: Path) -> dict[str, Any]:
    """Label map, preprocessing, params and metrics the package stage put in the model folder."""

    def load(name: str) -> Any:
        file = path / name
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None

    return {
        "glosses": (load("label_map.json") or {}).get("glosses"),
        "params": load("params.json") or {},
        "metrics": load("metrics.json") or {},
        "drift_reference": load("drift_reference.json"),
    }


@bentoml.service(
    name="signflow_model",
    workers=SERVE.model_workers,
    traffic={"timeout": SERVE.request_timeout_s},
    # BentoML 1.4.39 recycles the caller's HTTP session every `max_requests` (default 100) calls
    # or `max_age` s by closing it, which kills the calls still in flight on it (500s under
    # concurrency, "Server disconnected"). Connections are local; never recycle them.
    runner_connection={"max_requests": 2**31 - 1, "max_age": 10.0**9},
    resources={"gpu": 1} if SERVE.device == "cuda" else {"cpu": 1},
)
class SignflowModel:
    """The network behind BentoML's adaptive batcher (CUDA when present, else CPU)."""

    bento_model = bentoml.models.BentoModel(CONFIG.model_tag)

    def __init__(self) -> None:
        import torch

        from signflow.device import select_device
        from signflow.inference import Predictor

        enable_logging()
        start_process_sampler("signflow_model")
        if SERVE.model_threads is not None:
            torch.set_num_threads(SERVE.model_threads)
        self.device = select_device(SERVE.device, setting="serve.device")
        path = Path(self.bento_model.path)
        self.predictor = Predictor.load(path, device=self.device)
        folder = read_model_folder(path)
        # Test-time clips exactly as evaluate used them, so served logits equal evaluated ones.
        self.clips = int(folder["params"].get("evaluate", {}).get("clips", 1))
        log.info("model %s loaded on %s (clips=%d, torch threads=%d)", CONFIG.model_tag, self.device, self.clips,
                 torch.get_num_threads())
        # This worker's part of signflow_model_ready (livemin over all workers): loaded. The API
        # workers add theirs once warmed up.
        metrics().model_ready.set(1)

    @bentoml.api(batchable=True, max_batch_size=SERVE.max_batch_size, max_latency_ms=SERVE.max_latency_ms)
    def logits(self, stored: np.ndarray) -> np.ndarray:
        """``(B, stored_frames, S, S, 3)`` uint8 clips (landmark models: ``(B, stored_frames, J, C)``
        float32) -> ``(B, num_classes)`` float32 logits."""
        return np.asarray(self.predictor.logits(stored, clips=self.clips), dtype=np.float32)


def _web_app():  # noqa: ANN202 - a Starlette app
    """The page at ``/`` and its files; ``/ui/config.json`` tells it the limits."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    static = Path(__file__).parent / "static"

    async def index(_request):  # noqa: ANN001, ANN202
        return FileResponse(static / "index.html", headers={"Cache-Control": "no-cache"})

    async def ui_config(_request):  # noqa: ANN001, ANN202
        return JSONResponse(
            {
                "model_tag": CONFIG.model_tag,
                "top_k": SERVE.top_k,
                "max_upload_mb": SERVE.max_upload_mb,
                "max_duration_s": SERVE.max_duration_s,
                "api_key_required": _api_key() is not None,
            }
        )

    return Starlette(
        routes=[
            Route("/", index),
            Route("/ui/config.json", ui_config),
            Mount("/static", app=StaticFiles(directory=static), name="static"),
        ]
    )


def _api_key() -> str | None:
    if SERVE.api_key_env and os.environ.get(SERVE.api_key_env):
        return os.environ[SERVE.api_key_env]
    return None


@bentoml.asgi_app(_web_app(), path="/")
@bentoml.service(
    name="signflow",
    workers=SERVE.workers,
    traffic={"timeout": SERVE.request_timeout_s, "max_concurrency": SERVE.max_concurrency},
)
class Signflow:
    """HTTP entry point: uploads and frames in, top-k glosses with probabilities and timings out."""

    model = bentoml.depends(SignflowModel)

    def __init__(self) -> None:
        from signflow.feature_spec import LandmarkFeatureSpec, load_spec

        enable_logging()
        start_process_sampler("signflow")
        self.tag = CONFIG.model_tag
        stored = bentoml.models.get(self.tag)
        self.tag = str(stored.tag)  # "name:latest" resolved to the version actually served
        folder = read_model_folder(Path(stored.path))
        if not folder["glosses"]:
            raise RuntimeError(f"model {self.tag} lacks label_map.json: package it with stages.package")
        self.glosses: list[str] = list(folder["glosses"])
        # The extract stage's feature spec, as packaged (an invalid one is refused, naming the field).
        spec = load_spec(Path(stored.path), origin=f"model {self.tag} (preprocess.json)")
        # Landmark models (model.arch landmark_*): MediaPipe + the same normalisation as extract/evaluate.
        self.landmarks = None
        self.extractor_warning: str | None = None  # this server's MediaPipe is not the model's
        if isinstance(spec, LandmarkFeatureSpec):
            from signflow.landmarks.online import LandmarkPreprocessor

            self.landmarks = LandmarkPreprocessor(spec)
            self.extractor_warning = self.landmarks.check_extractor(SERVE.landmark_extractor_mismatch)
        self.preprocess = None if self.landmarks else spec
        self.drift = self._drift_monitor(folder)
        # Chosen on val by the evaluate stage (signflow.calibration); None = always answer.
        threshold = folder["metrics"].get("abstain_threshold")
        self.abstain_threshold: float | None = float(threshold) if threshold is not None else None
        m = metrics()
        labels = stored.info.labels  # written by signflow.packaging.save_to_store
        m.model_info.labels(
            model_tag=self.tag,
            arch=labels.get("arch", "unknown"),
            metric=labels.get("metric", "unknown"),
            metric_value=labels.get("metric_value", ""),
        ).set(1)
        # Every series the dashboards divide or take quantiles of exists from the start at 0, so the
        # first requests show up as a rise (rate() cannot see the increment that creates a series).
        for endpoint in ENDPOINTS:
            for stage in STAGES:
                m.stage_latency.labels(endpoint=endpoint, stage=stage)
        for gloss in self.glosses:
            m.predictions.labels(gloss=gloss)
            m.confidence_by_gloss.labels(gloss=gloss)
        m.model_ready.set(0)  # 1 once warmed up (see __is_ready__)
        self.warm = False
        self._warm_up_task: asyncio.Task | None = None
        log.info("serving %s (%s, %d glosses); model pinned by %s", self.tag, labels.get("arch"), len(self.glosses),
                 CONFIG.tag_source)

    # ------------------------------------------------------------------ readiness

    @bentoml.on_startup
    async def start_warm_up(self) -> None:
        """Warm up in the background; ``/readyz`` answers 503 until it is done."""
        if not guard_installed():  # never serve without the size limit and API key check
            raise RuntimeError("the request guard is not installed: BentoML request metrics are disabled "
                               "(api_server.metrics.enabled: false); signflow needs them on")
        self._warm_up_task = asyncio.get_running_loop().create_task(self._warm_up())

    async def __is_ready__(self) -> bool:
        return self.warm

    async def _warm_up(self) -> None:
        """Take the real path once (decode a generated clip, preprocess), then call the model until
        BentoML's batcher has calibrated, so the first clients meet a warm service and no 503s."""
        started = time.perf_counter()
        batch = await asyncio.to_thread(self._warm_up_batch)
        while True:  # the model service starts beside this one and may still be loading
            try:
                await self.model.to_async.logits(batch)
                break
            except Exception as error:  # noqa: BLE001 - any failure here means "not up yet"
                if time.perf_counter() - started > 600:
                    log.error("warm-up: the model service did not answer in 600 s (%s); staying not ready", error)
                    return
                await asyncio.sleep(0.5)
        for _ in range(WARM_UP_CALLS * SERVE.model_workers):
            await self.model.to_async.logits(batch)
        # Then full batches, the shapes a burst of clients makes.
        await asyncio.gather(*(self.model.to_async.logits(batch) for _ in range(SERVE.max_batch_size)))
        self.warm = True
        metrics().model_ready.set(1)
        log.info("warm-up done in %.1f s: ready", time.perf_counter() - started)

    def _warm_up_batch(self) -> np.ndarray:
        """A model input made by the serving path itself from a generated clip (no person in it)."""
        from signflow import video as video_io

        rng = np.random.default_rng(0)
        frames = rng.integers(0, 256, size=(16, 64, 64, 3), dtype=np.uint8)
        with tempfile.TemporaryDirectory(prefix="signflow-warm-up-") as folder:
            path = Path(folder) / "warm_up.mp4"
            video_io.write_video(path, frames, 25.0)
            if self.landmarks is None:
                stored, _ = self._decode_video(path)
                return self._as_batch(stored)
            if self.landmarks.reads_video:  # start the MediaPipe worker now, not on the first client
                try:
                    self._video_landmarks(path)
                except Rejected as refused:
                    log.info("warm-up: landmark extraction on the generated clip: %s", refused.reason)
        points = np.zeros((16, self.landmarks.layout.num_joints, 3), dtype=np.float32)
        return self._as_batch(self.landmarks.from_points(points))

    def _drift_monitor(self, folder: dict[str, Any]):  # noqa: ANN202 - DriftMonitor | None
        if folder["drift_reference"] is None:
            log.info("no drift reference in the model folder: signflow_prediction_drift_psi is not exported")
            return None
        from signflow.drift import DriftMonitor

        return DriftMonitor(folder["drift_reference"], window=CONFIG.params.monitoring.drift_window)

    # ------------------------------------------------------------------ endpoints

    @bentoml.api(route="/predict_video")
    async def predict_video(
        self,
        video: VideoUpload,
        top_k: int = Field(SERVE.top_k, description="how many glosses to return"),
        return_logits: bool = Field(False, description="also return the raw logits"),
    ) -> dict[str, Any]:
        """A video file (mp4/webm/avi/mov) -> top-k glosses with probabilities, input info, timings (ms)."""
        endpoint = "predict_video"
        m = metrics()
        started = time.perf_counter()
        try:
            self._check_top_k(top_k)
            t0 = time.perf_counter()
            if self.landmarks is not None:  # decode + MediaPipe in the landmark worker: one "decode" step
                stored, info = await asyncio.to_thread(self._video_landmarks, video)
            else:
                stored, info = await _cancellable(self._decode_video, video)
            decode_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            batch = self._as_batch(stored)
            preprocess_s = time.perf_counter() - t1
        except Rejected as rejected:
            return rejected.response()  # type: ignore[return-value]
        m.stage_latency.labels(endpoint=endpoint, stage="decode").observe(decode_s)
        m.stage_latency.labels(endpoint=endpoint, stage="preprocess").observe(preprocess_s)
        m.input_frames.observe(info["frames"])
        if info["duration_s"]:
            m.input_duration.observe(info["duration_s"])
        logits, model_s = await self._forward(batch, endpoint)
        result = self._result(logits[0], top_k, return_logits)
        result["input"] = info
        if self.extractor_warning:
            result["extractor_warning"] = self.extractor_warning
        result["timings_ms"] = _ms(decode=decode_s, preprocess=preprocess_s, model=model_s,
                                   total=time.perf_counter() - started)
        return result

    @bentoml.api(route="/predict_frames")
    async def predict_frames(
        self,
        frames: list[Any] | None = Field(None, description="RGB uint8 frames as JSON: (T, H, W, 3) or (N, T, H, W, 3)"),
        # `Path` (not `Path | None`): BentoML maps only a plain Path to a multipart file; absent means None.
        npy: Path = Field(None, description="the same array as a .npy file (multipart): no JSON parsing"),  # type: ignore[assignment]
        top_k: int = Field(SERVE.top_k, description="how many glosses to return"),
        fps: float = Field(25.0, gt=0, description="frame rate, for the duration metric"),
        return_logits: bool = Field(False, description="also return the raw logits"),
    ) -> dict[str, Any]:
        """Frames decoded by the client: one clip ``(T, H, W, 3)`` or a batch ``(N, T, H, W, 3)`` of RGB uint8.

        Send them as JSON (``{"frames": [...]}``), or, for anything bigger than a few frames,
        as a ``.npy`` file in a multipart field ``npy`` (``numpy.save``; 10-50x less to parse).
        One clip answers like ``/predict_video``; a batch answers ``{"predictions": [...]}`` in
        input order.
        """
        endpoint = "predict_frames"
        m = metrics()
        started = time.perf_counter()
        try:
            if self.landmarks is not None:
                raise Rejected("model_mismatch", "this model reads landmarks, not frames: use /predict_landmarks "
                               "or /predict_video")  # fmt: skip
            self._check_top_k(top_k)
            t0 = time.perf_counter()
            clips, single = self._check_frames(self._frames_input(frames, npy))
            decode_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            stored = await _cancellable(self._frames_to_stored, clips)
            preprocess_s = time.perf_counter() - t1
        except Rejected as rejected:
            return rejected.response()  # type: ignore[return-value]
        m.stage_latency.labels(endpoint=endpoint, stage="decode").observe(decode_s)
        m.stage_latency.labels(endpoint=endpoint, stage="preprocess").observe(preprocess_s)
        for _ in range(clips.shape[0]):
            m.input_frames.observe(clips.shape[1])
            m.input_duration.observe(clips.shape[1] / fps)
        logits, model_s = await self._forward(stored, endpoint)
        timings = _ms(decode=decode_s, preprocess=preprocess_s, model=model_s, total=time.perf_counter() - started)
        results = [self._result(row, top_k, return_logits) for row in logits]
        if single:
            return {**results[0], "timings_ms": timings}
        return {"model_tag": self.tag, "predictions": results, "timings_ms": timings}

    @bentoml.api(route="/predict_landmarks")
    async def predict_landmarks(
        self,
        points: list[Any] = Field(..., description="one clip of landmarks (T, J, 3): x, y as fractions of the frame, z"),
        mask: list[Any] | None = Field(None, description="(T, J) true = joint seen; default: all-zero joints are missing"),
        width: int | None = Field(None, gt=0, description="frame width in pixels (x/y aspect for the normalisation)"),
        height: int | None = Field(None, gt=0, description="frame height in pixels"),
        top_k: int = Field(SERVE.top_k, description="how many glosses to return"),
        return_logits: bool = Field(False, description="also return the raw logits"),
    ) -> dict[str, Any]:
        """Landmarks from the client's own tracker (MediaPipe layout the model was trained on) -> top-k glosses.

        Only for landmark models (``model.arch: landmark_*``); the sequence goes through the
        same gap filling, resampling and normalisation as the extract and evaluate stages.
        """
        endpoint = "predict_landmarks"
        started = time.perf_counter()
        try:
            if self.landmarks is None:
                raise Rejected("model_mismatch", "this model reads video frames, not landmarks: use /predict_video "
                               "or /predict_frames")  # fmt: skip
            self._check_top_k(top_k)
            if len(points) > SERVE.max_frames:
                raise Rejected("too_many_frames", f"{len(points)} frames, the limit is {SERVE.max_frames} (serve.max_frames)")
            t0 = time.perf_counter()
            stored = await asyncio.to_thread(self._points_to_input, points, mask, width, height)
            preprocess_s = time.perf_counter() - t0
        except Rejected as rejected:
            return rejected.response()  # type: ignore[return-value]
        metrics().stage_latency.labels(endpoint=endpoint, stage="preprocess").observe(preprocess_s)
        metrics().input_frames.observe(len(points))
        logits, model_s = await self._forward(stored[None], endpoint)
        result = self._result(logits[0], top_k, return_logits)
        result["timings_ms"] = _ms(preprocess=preprocess_s, model=model_s, total=time.perf_counter() - started)
        return result

    # ------------------------------------------------------------------ steps

    def _check_top_k(self, top_k: int) -> None:
        if not 1 <= top_k <= len(self.glosses):
            raise Rejected("bad_top_k", f"top_k must be between 1 and {len(self.glosses)}, got {top_k}")

    def _probe_video(self, path: Path) -> Any:
        """Probe and apply the limits: a 4K or hour-long file is refused unread."""
        from signflow import video as video_io

        try:
            info = video_io.probe(path)
        except video_io.VideoError as error:
            raise Rejected(error.reason, _client_detail(error.detail, path)) from None
        if info.width > SERVE.max_width or info.height > SERVE.max_height:
            raise Rejected(
                "resolution_too_large",
                f"{info.width}x{info.height} is larger than {SERVE.max_width}x{SERVE.max_height} (serve.max_width/height)",
            )
        if info.duration_s > SERVE.max_duration_s:
            raise Rejected("too_long", f"{info.duration_s:.1f} s is longer than {SERVE.max_duration_s:g} s (serve.max_duration_s)")
        if info.num_frames > SERVE.max_frames:
            raise Rejected("too_many_frames", f"{info.num_frames} frames, the limit is {SERVE.max_frames} (serve.max_frames)")
        return info

    def _decode_video(self, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        """Probe (limits first), then decode + preprocess with the extract stage's code."""
        from signflow import video as video_io
        from signflow.preprocess import decode_to_stored

        info = self._probe_video(path)
        try:
            # The probed count lets frames past the hold budget (preprocess.HOLD_BYTES per request) be
            # dropped unconverted: one decode pass, only the stored frames converted, memory bounded;
            # a wrong count never changes the answer.
            stored, count = decode_to_stored(path, config=self.preprocess, max_frames=SERVE.max_frames,
                                             num_frames=info.num_frames)
        except video_io.VideoError as error:
            reason = "too_many_frames" if error.reason == "too_large" else error.reason
            raise Rejected(reason, _client_detail(error.detail, path)) from None
        return stored, _input_info(info, count)

    def _video_landmarks(self, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        """Probe (limits first), then MediaPipe Holistic + the evaluate-time normalisation."""
        from signflow.landmarks import LandmarkEnvError, LandmarkError
        from signflow.landmarks.online import LandmarkInputError

        info = self._probe_video(path)
        try:
            stored, found = self.landmarks.from_video(path, max_frames=SERVE.max_frames)
        except LandmarkInputError as error:
            raise Rejected(error.reason, error.detail) from None
        except LandmarkError as error:
            raise Rejected(error.reason, _client_detail(error.detail, path)) from None
        except LandmarkEnvError as error:  # the server's set-up, not the client's input
            log.error("landmark extraction unavailable: %s", error)
            raise Rejected("landmarks_unavailable", "the landmark extractor is not installed on this server") from None
        return stored, {**_input_info(info, found["frames"]), "detected": found["detected"]}

    def _points_to_input(self, points: Any, mask: Any, width: int | None, height: int | None) -> np.ndarray:
        from signflow.landmarks.online import LandmarkInputError

        try:
            return self.landmarks.from_points(points, mask, width=width, height=height)
        except LandmarkInputError as error:
            raise Rejected(error.reason, error.detail) from None

    @staticmethod
    def _frames_input(frames: list[Any] | None, npy: Path | None) -> np.ndarray:
        if (frames is None) == (npy is None):
            raise Rejected("bad_shape", "send exactly one of 'frames' (JSON array) or 'npy' (a .npy file)")
        if frames is not None:
            try:
                array = np.asarray(frames)
            except ValueError as error:  # ragged nesting
                raise Rejected("bad_shape", f"frames are not a regular array ({error})") from None
            if array.dtype == object:
                raise Rejected("bad_dtype", "frames must be nested lists of integers 0..255")
            return array
        try:
            # allow_pickle=False: an uploaded .npy may hold plain arrays only, never objects (code).
            return np.load(npy, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise Rejected("bad_npy", f"not a readable .npy array ({error})") from None

    def _check_frames(self, frames: np.ndarray) -> tuple[np.ndarray, bool]:
        """``(T,H,W,3)`` or ``(N,T,H,W,3)`` integer RGB in 0..255 within the serve limits -> uint8 5-D."""
        array = np.asarray(frames)
        if array.size == 0:
            raise Rejected("empty_batch", f"no frames (shape {array.shape})")
        if array.ndim not in (4, 5) or array.shape[-1] != 3:
            raise Rejected("bad_shape", f"expected (T, H, W, 3) or (N, T, H, W, 3) RGB frames, got shape {array.shape}")
        if array.dtype != np.uint8:
            if not np.issubdtype(array.dtype, np.integer):
                raise Rejected("bad_dtype", f"frames must be integers 0..255 (uint8 RGB), got {array.dtype}")
            if array.min() < 0 or array.max() > 255:
                raise Rejected("bad_dtype", f"frame values must be in 0..255, got {array.min()}..{array.max()}")
            array = array.astype(np.uint8)
        single = array.ndim == 4
        clips = array[None] if single else array
        count, length, height, width = clips.shape[:4]
        if count > SERVE.max_batch_size:
            raise Rejected("batch_too_large", f"{count} clips in one request, the limit is {SERVE.max_batch_size}")
        if length > SERVE.max_frames:
            raise Rejected("too_many_frames", f"{length} frames per clip, the limit is {SERVE.max_frames}")
        if width > SERVE.max_width or height > SERVE.max_height:
            raise Rejected("resolution_too_large", f"{width}x{height} frames, the limit is {SERVE.max_width}x{SERVE.max_height}")
        return clips, single

    def _frames_to_stored(self, clips: np.ndarray) -> np.ndarray:
        from signflow import video as video_io
        from signflow.preprocess import frames_to_stored

        try:
            return np.stack([frames_to_stored(clip, None, self.preprocess)[0] for clip in clips])
        except video_io.VideoError as error:
            raise Rejected(error.reason, error.detail) from None

    def _as_batch(self, stored: np.ndarray) -> np.ndarray:
        if self.landmarks is not None:
            return stored[None]  # float32 (1, stored_frames, J, C) from stored_input
        expected = self.preprocess.stored_shape
        if stored.shape != expected or stored.dtype != np.uint8:
            raise RuntimeError(f"preprocess produced {stored.shape} {stored.dtype}, the model expects {expected} uint8")
        return stored[None]

    async def _forward(self, batch: np.ndarray, endpoint: str) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        logits = np.asarray(await self.model.to_async.logits(batch), dtype=np.float32)
        elapsed = time.perf_counter() - t0
        metrics().stage_latency.labels(endpoint=endpoint, stage="model").observe(elapsed)
        return logits, elapsed

    def _result(self, logits: np.ndarray, top_k: int, return_logits: bool) -> dict[str, Any]:
        m = metrics()
        probs = softmax(logits)
        order = top_classes(probs, top_k)
        top = [{"gloss": self.glosses[i], "label": int(i), "probability": float(probs[i])} for i in order]
        confidence = float(probs[order[0]])
        low = confidence < SERVE.low_confidence
        m.predictions.labels(gloss=top[0]["gloss"]).inc()
        m.confidence_by_gloss.labels(gloss=top[0]["gloss"]).inc(confidence)
        m.top1_confidence.observe(confidence)
        if low:
            m.low_confidence.inc()
        if self.drift is not None:
            score = self.drift.update(probs[None])
            if score is not None:
                drift_gauge().set(score)
        recognised = self.abstain_threshold is None or confidence >= self.abstain_threshold
        result: dict[str, Any] = {
            "model_tag": self.tag,
            # The answer: the top gloss, or null = "not recognised" (below the val-calibrated threshold).
            "gloss": top[0]["gloss"] if recognised else None,
            "recognised": recognised,
            "abstain_threshold": self.abstain_threshold,
            "top_k": top,
            "low_confidence": low,
        }
        if return_logits:
            result["logits"] = [float(x) for x in logits]
        return result


def _form_fields(endpoint: str) -> FormFields:
    """The multipart parts an endpoint takes, read off its BentoML input model (so they cannot drift)."""
    spec = Signflow.apis[endpoint].input_spec
    files = frozenset(spec.multipart_fields)
    return FormFields(files=files, values=frozenset(spec.model_fields) - files)


install_under_request_metrics(
    lambda app: GuardMiddleware(
        app,
        protected_prefixes=tuple(f"/{endpoint}" for endpoint in ENDPOINTS),
        max_body_bytes=int(SERVE.max_upload_mb * 1024**2),
        api_key=_api_key(),
        form_fields={endpoint: _form_fields(endpoint) for endpoint in ENDPOINTS},
    ),
    known_paths=frozenset(SERVICE_PATHS),
    unknown_label=UNKNOWN_PATH_LABEL,
)


async def _cancellable(work: Callable[..., Any], *args: Any) -> Any:
    """Run decode/preprocess ``work`` in a thread under the serve limits, stopped (within a frame)
    when the request ends early: BentoML's timeout cancels this coroutine, not the thread."""
    from signflow import video as video_io

    cancel = threading.Event()
    limits = video_io.DecodeLimits(cancel=cancel, max_frames=SERVE.max_frames, max_duration_s=SERVE.max_duration_s)
    ended = [0.0]

    def run() -> Any:
        try:
            return work(*args)
        finally:
            if cancel.is_set():
                log.info("decoding stopped %.2f s after its request ended", time.perf_counter() - ended[0])

    with video_io.decode_limits(limits):
        try:
            return await asyncio.to_thread(run)
        except asyncio.CancelledError:
            ended[0] = time.perf_counter()
            cancel.set()
            raise


def _input_info(info: Any, frames: int) -> dict[str, Any]:
    """The ``input`` part of a video answer: what was decoded (probe info + frames actually read)."""
    duration = frames / info.fps if info.fps else info.duration_s
    return {"frames": int(frames), "fps": round(info.fps, 3), "duration_s": round(duration, 3),
            "width": info.width, "height": info.height, "codec": info.codec}


def _client_detail(detail: str, path: Path) -> str:
    """An error message about an upload without the server's temporary file name or folder."""
    return detail.replace(str(path), "upload").replace(path.name, "upload")


def _ms(**seconds: float) -> dict[str, float]:
    return {name: round(value * 1000.0, 3) for name, value in seconds.items()}

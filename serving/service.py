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

This module is the two service classes; the jobs around them have modules of their own:
:mod:`serving.inputs` (what a client may send), :mod:`serving.clips` (decode and preprocess
under the limits), :mod:`serving.rejections` (refusals and their HTTP status),
:mod:`serving.guard` (body size, API key, malformed forms), :mod:`serving.metrics`,
:mod:`serving.webui` (the page at ``/``), :mod:`serving.logs`, :mod:`serving.config`.

The model is the pinned tag from :mod:`serving.config` (env ``SIGNFLOW_MODEL_TAG`` or the
package stage's ``reports/package.json``); its folder carries the label map, the exact
preprocessing config, the metrics and the params it was evaluated with.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from pydantic import Field

from serving.clips import ClipReader, cancellable
from serving.config import load_config
from serving.guard import FormFields, GuardMiddleware, guard_installed, install_under_request_metrics
from serving.inputs import VideoUpload, check_frames, frames_input
from serving.logs import enable_logging
from serving.metrics import drift_gauge, metrics, observe_prediction, start_process_sampler, start_series
from serving.rejections import Rejected
from serving.webui import web_app
from signflow.config import SERVICE_PATHS, SERVING_ENDPOINTS, UNKNOWN_PATH_LABEL
from signflow.scores import softmax, top_classes

log = logging.getLogger("signflow.serving")

# Read at import because the decorators below need the values; this is one small YAML file.
CONFIG = load_config()
SERVE = CONFIG.serve

ENDPOINTS = SERVING_ENDPOINTS
# Sequential model calls before /readyz says ready: BentoML's adaptive batcher spends its first
# ~11 calls per model worker calibrating one clip at a time and sheds (503) whatever queues past
# max_latency_ms meanwhile. Measured: 37 x 503 in the first 7 s of a cold 16-client load without it.
WARM_UP_CALLS = 12


def read_model_folder(path: Path) -> dict[str, Any]:
    """Label map, params, metrics and drift reference the package stage put in the model folder (the feature
    spec beside them is read with :func:`signflow.feature_spec.load_spec`)."""

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

        enable_logging(CONFIG)
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


@bentoml.asgi_app(web_app(CONFIG), path="/")
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

        enable_logging(CONFIG)
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
        self.reader = ClipReader(SERVE, self.preprocess, self.landmarks)
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
        start_series(ENDPOINTS, self.glosses)
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
                stored, _ = self.reader.video(path)
                return self.reader.batch(stored)
            if self.landmarks.reads_video:  # start the MediaPipe worker now, not on the first client
                try:
                    self.reader.video_landmarks(path)
                except Rejected as refused:
                    log.info("warm-up: landmark extraction on the generated clip: %s", refused.reason)
        points = np.zeros((16, self.landmarks.layout.num_joints, 3), dtype=np.float32)
        return self.reader.batch(self.landmarks.from_points(points))

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
                stored, info = await asyncio.to_thread(self.reader.video_landmarks, video)
            else:
                stored, info = await cancellable(self.reader.video, video, serve=SERVE)
            decode_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            batch = self.reader.batch(stored)
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
            clips, single = check_frames(frames_input(frames, npy), SERVE)
            decode_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            stored = await cancellable(self.reader.frames, clips, serve=SERVE)
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
            stored = await asyncio.to_thread(self.reader.points, points, mask, width, height)
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

    async def _forward(self, batch: np.ndarray, endpoint: str) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        logits = np.asarray(await self.model.to_async.logits(batch), dtype=np.float32)
        elapsed = time.perf_counter() - t0
        metrics().stage_latency.labels(endpoint=endpoint, stage="model").observe(elapsed)
        return logits, elapsed

    def _result(self, logits: np.ndarray, top_k: int, return_logits: bool) -> dict[str, Any]:
        probs = softmax(logits)
        order = top_classes(probs, top_k)
        top = [{"gloss": self.glosses[i], "label": int(i), "probability": float(probs[i])} for i in order]
        confidence = float(probs[order[0]])
        low = confidence < SERVE.low_confidence
        observe_prediction(top[0]["gloss"], confidence, low)
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
        api_key=CONFIG.api_key(),
        form_fields={endpoint: _form_fields(endpoint) for endpoint in ENDPOINTS},
    ),
    known_paths=frozenset(SERVICE_PATHS),
    unknown_label=UNKNOWN_PATH_LABEL,
)


def _ms(**seconds: float) -> dict[str, float]:
    return {name: round(value * 1000.0, 3) for name, value in seconds.items()}

"""Landmark pathway: MediaPipe Holistic keypoints as an alternative EXTRACT representation.

Chosen by ``extract.representation: landmarks``; the ``landmarks`` params section
configures it. MediaPipe runs only in the isolated ``.venv-landmarks`` (see
``requirements-landmarks.txt``; ``make venv-landmarks``): this module starts
``signflow.landmarks.worker`` processes there and never imports mediapipe itself,
so it is safe to import from the main environment (numpy only, no torch).

API for the extract stage (``stages/extract.py``)::

    summary = extract_all(plans_path, raw_dir, out_dir, params)   # params: signflow.config.Params

reads ``data/crop/plans.jsonl`` (``video_id, label, gloss, split, file, start,
stop, box``) and replaces ``out_dir`` atomically with:

- ``<out_dir>/<split>/`` for train/val/test: a :class:`signflow.shards.ShardWriter`
  folder, metadata the feature spec (:func:`landmark_spec`: ``kind: landmarks``, ``layout``:
  ``holistic`` | ``holistic_face``, ``num_joints``, ``stored_frames``, ``seq_len``, ``max_gap``,
  ``extractor``...), fields
  ``points`` float16 ``(stored_frames, J, 3)`` (raw MediaPipe x, y in fractions of
  the processed frame, z), ``mask`` bool ``(stored_frames, J)`` (False = not
  detected: a missing hand is *not* a zero point), ``score`` float16 ``(stored_frames, J)``
  (pose visibility; 1 for seen hand/face points); items carry ``video_id, label,
  gloss, source_frames, width, height, detected`` (frames in which each part was seen);
- ``<out_dir>/skipped.csv``: ``video_id,reason,detail`` (the crop stage's skips carried over, plus
  decode failures, ``no_person`` and ``worker_crashed``);
- ``<out_dir>/preprocess.json``: the :class:`signflow.feature_spec.LandmarkFeatureSpec`
  (what training and serving must reproduce, with the MediaPipe version that ran);

and returns a summary dict for ``reports/extract.json``. :func:`extract_split`
does one split from a list of plan dicts. The stored points stay raw: normalisation
happens at load time (:mod:`signflow.landmarks.normalize`, with the ``max_gap``
recorded in the metadata), and train-time augmentation (``train.augment.landmarks``) is a
train knob: changing either needs no re-extraction.

API for serving and scripts: :func:`extract_video` (one file -> ``(points, mask)``
at the video's full frame rate) and :class:`WorkerPool` (keep workers warm and
call :meth:`WorkerPool.extract` per request); then
:func:`signflow.landmarks.normalize.stored_input` turns a clip into exactly the
``(stored_frames, J, 4)`` array evaluation scores a model on.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import selectors
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from signflow import atomic
from signflow.feature_spec import (
    SPEC_VERSION,
    HandKeypointFiles,
    HolisticExtractor,
    LandmarkFeatureSpec,
    write_spec,
)
from signflow.index import SPLITS
from signflow.landmarks.cache import LandmarkCache
from signflow.landmarks.layout import get_layout
from signflow.sampling import uniform_indices
from signflow.shards import ShardWriter

if TYPE_CHECKING:
    from signflow.config import ExtractParams, LandmarksParams, Params

log = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the ``signflow`` package
DEFAULT_VENV = PACKAGE_ROOT / ".venv-landmarks"
PYTHON_ENV = "SIGNFLOW_LANDMARKS_PYTHON"  # overrides the interpreter (e.g. in a container image)
KIND = "landmarks"
_READY_TIMEOUT_S = 120.0


class LandmarkEnvError(RuntimeError):
    """The isolated MediaPipe environment is missing or its workers cannot start."""


class LandmarkError(RuntimeError):
    """One video could not be turned into landmarks; ``reason`` as in skipped lists."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class LandmarkClip:
    """Full-frame-rate landmarks of one video, as the worker returned them."""

    points: np.ndarray  # float32 (T, J, 3)
    mask: np.ndarray  # bool (T, J)
    score: np.ndarray  # float16 (T, J)
    layout: str
    width: int
    height: int
    detected: dict[str, int] = field(default_factory=dict)


def landmarks_python(python: str | os.PathLike[str] | None = None) -> Path:
    """The interpreter of the isolated env: argument, ``$SIGNFLOW_LANDMARKS_PYTHON``, or ``.venv-landmarks``."""
    candidate = Path(python or os.environ.get(PYTHON_ENV) or DEFAULT_VENV / "bin" / "python")
    if not candidate.exists():
        raise LandmarkEnvError(
            f"landmark environment not found: {candidate} does not exist; create it with "
            f"`make venv-landmarks` (or set {PYTHON_ENV} to a python that has requirements-landmarks.txt)"
        )
    return candidate


def worker_config(params: LandmarksParams) -> dict[str, Any]:
    return {
        "model_complexity": params.model_complexity,
        "min_detection_confidence": params.min_detection_confidence,
        "min_tracking_confidence": params.min_tracking_confidence,
        "face": params.face,
    }


def layout_name(params: LandmarksParams) -> str:
    return "holistic_face" if params.face else "holistic"


def landmark_spec(
    landmarks: LandmarksParams, extract: ExtractParams, extractor: HolisticExtractor | HandKeypointFiles
) -> LandmarkFeatureSpec:
    """The feature spec of landmark features made by ``extractor`` with these params.

    ``seq_len``/``stored_frames`` are the ``extract`` section's, the same pair as for RGB;
    MediaPipe Hands keypoint files have the ``hands`` layout, Holistic the one ``landmarks.face`` picks.
    """
    layout = get_layout("hands" if isinstance(extractor, HandKeypointFiles) else layout_name(landmarks))
    return LandmarkFeatureSpec(
        version=SPEC_VERSION,
        seq_len=extract.seq_len,
        stored_frames=extract.stored_frames,
        layout=layout.name,
        num_joints=layout.num_joints,
        max_gap=landmarks.max_gap,
        extractor=extractor,
    )


_VERSION_QUERY = (
    "import importlib.metadata as m\n"
    "try:\n    print(m.version('mediapipe'))\n"
    "except m.PackageNotFoundError:\n    print('')"
)


def installed_mediapipe_version(python: str | os.PathLike[str] | None = None) -> str | None:
    """The mediapipe version in the landmark environment (None: not installed there).

    Read from the package metadata by the environment's own interpreter, so MediaPipe itself
    is never started just to ask. Raises :class:`LandmarkEnvError` when the environment is missing.
    """
    interpreter = landmarks_python(python)
    try:
        answer = subprocess.run(
            [str(interpreter), "-c", _VERSION_QUERY], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise LandmarkEnvError(f"{interpreter}: cannot ask it for its mediapipe version ({error})") from None
    return answer.stdout.strip() or None


class _Worker:
    def __init__(self, python: Path, config: dict[str, Any], log_dir: Path, number: int):
        env = dict(os.environ)
        # The isolated venv does not have signflow installed: make this checkout importable. Only a
        # source checkout: were signflow imported from site-packages, that folder on PYTHONPATH would
        # shadow the isolated venv's numpy/protobuf (the image installs signflow in both venvs instead).
        if (PACKAGE_ROOT / "pyproject.toml").is_file():
            env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ INFO/WARNING chatter
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # One worker a core: MediaPipe/XNNPACK threads would only fight the other workers.
        env.setdefault("OMP_NUM_THREADS", "1")
        self.stderr_path = log_dir / f"worker-{number}.log"
        self._stderr = open(self.stderr_path, "wb")
        self.process = subprocess.Popen(
            [str(python), "-m", "signflow.landmarks.worker", "--config", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            text=True,
            bufsize=1,
        )
        self.task: dict[str, Any] | None = None

    def wait_ready(self, timeout_s: float) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        try:
            if not selector.select(timeout_s):
                self.stop()
                raise LandmarkEnvError(f"landmark worker did not start within {timeout_s:.0f}s: {self.stderr_tail()}")
        finally:
            selector.close()
        line = self.process.stdout.readline()
        if not line.startswith("{"):
            self.stop()
            raise LandmarkEnvError(f"landmark worker failed to start: {self.stderr_tail()}")

    def send(self, task: dict[str, Any]) -> None:
        self.task = task
        self.process.stdin.write(json.dumps(task) + "\n")
        self.process.stdin.flush()

    def stderr_tail(self, lines: int = 5) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        text = self.stderr_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        useful = [line for line in text if "inference_feedback_manager" not in line]
        return " | ".join(useful[-lines:]) or f"exit code {self.process.poll()}"

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self._stderr.close()


class WorkerPool:
    """``num_workers`` MediaPipe processes in the isolated env, fed one task at a time each.

    Tasks go to whichever worker is free (clips differ tenfold in length), and a
    worker that dies (native crash, OOM kill) fails only its current clip, with
    reason ``worker_crashed``, and is replaced.
    """

    def __init__(self, params: LandmarksParams, num_workers: int | None = None, *, python: str | None = None):
        self.python = landmarks_python(python)
        self.config = worker_config(params)
        self.layout = get_layout(layout_name(params))
        self.num_workers = max(1, num_workers or params.num_workers)
        self._log_dir = Path(tempfile.mkdtemp(prefix="signflow-landmarks-"))
        self._workers: list[_Worker] = []
        self._started = 0
        self._lock = threading.Lock()  # serving may call extract() from several threads

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> _Worker:
        """A new worker process, not yet waited for (its model loads in the background)."""
        self._started += 1
        return _Worker(self.python, self.config, self._log_dir, self._started)

    def _spawn(self) -> _Worker:
        worker = self._start()
        worker.wait_ready(_READY_TIMEOUT_S)
        return worker

    def _ensure(self, count: int) -> None:
        # Start all first, then wait: the model loads overlap instead of queueing.
        fresh = [self._start() for _ in range(count - len(self._workers))]
        for worker in fresh:
            worker.wait_ready(_READY_TIMEOUT_S)
            self._workers.append(worker)

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []
        shutil.rmtree(self._log_dir, ignore_errors=True)

    def _send(self, index: int, task: dict[str, Any]) -> _Worker:
        """Send ``task`` to worker ``index``; one found dead while idle is replaced first."""
        worker = self._workers[index]
        try:
            worker.send(task)
        except (BrokenPipeError, OSError):
            log.warning("landmark worker died while idle (%s); starting a new one", worker.stderr_tail())
            worker.stop()
            worker = self._workers[index] = self._spawn()
            worker.send(task)
        return worker

    def run(self, tasks: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield one result dict per task (see :mod:`signflow.landmarks.worker`), as they finish."""
        pending = iter(tasks)
        first = [task for _, task in zip(range(self.num_workers), pending)]
        if not first:
            return
        self._ensure(len(first))
        selector = selectors.DefaultSelector()
        busy = 0
        try:
            for index, task in enumerate(first):
                worker = self._send(index, task)
                selector.register(worker.process.stdout, selectors.EVENT_READ, worker)
                busy += 1
            while busy:
                for key, _ in selector.select():
                    worker: _Worker = key.data
                    line = worker.process.stdout.readline()
                    selector.unregister(worker.process.stdout)
                    busy -= 1
                    task = worker.task
                    if line:
                        result = json.loads(line)
                    else:  # EOF: the worker died mid-clip; record why, replace it, go on
                        worker.process.wait()
                        result = {
                            "key": task["key"] if task else None,
                            "ok": False,
                            "reason": "worker_crashed",
                            "detail": worker.stderr_tail(),
                        }
                        worker.stop()
                        index = self._workers.index(worker)
                        worker = self._workers[index] = self._spawn()
                    worker.task = None
                    yield result
                    next_task = next(pending, None)
                    if next_task is not None:
                        worker = self._send(self._workers.index(worker), next_task)
                        selector.register(worker.process.stdout, selectors.EVENT_READ, worker)
                        busy += 1
        finally:
            selector.close()
            if busy:  # the consumer stopped early: in-flight answers would desync the protocol
                self.close()

    def extract(
        self,
        path: str | os.PathLike[str],
        *,
        start: int = 0,
        stop: int | None = None,
        box: Sequence[int] | None = None,
        max_frames: int | None = None,
    ) -> LandmarkClip:
        """Landmarks of one video; raises :class:`LandmarkError` with the reason on failure."""
        with self._lock, tempfile.TemporaryDirectory(prefix="signflow-landmark-") as tmp:
            out = Path(tmp) / "clip.npz"
            task = {
                "key": "clip",
                "path": str(Path(path).resolve()),
                "start": int(start),
                "stop": None if stop is None else int(stop),
                "box": None if box is None else [int(v) for v in box],
                "out": str(out),
                "max_frames": max_frames,
            }
            (result,) = list(self.run([task]))
            if not result["ok"]:
                raise LandmarkError(result["reason"], result["detail"])
            return _load_clip(out, result, self.layout.name)


def _load_clip(path: Path, result: dict[str, Any], layout: str) -> LandmarkClip:
    with np.load(path) as data:
        return LandmarkClip(
            points=data["points"].astype(np.float32),
            mask=data["mask"].astype(bool),
            score=data["score"],
            layout=layout,
            width=int(result["width"]),
            height=int(result["height"]),
            detected=dict(result.get("detected", {})),
        )


def extract_video(
    path: str | os.PathLike[str],
    params: LandmarksParams | None = None,
    *,
    start: int = 0,
    stop: int | None = None,
    box: Sequence[int] | None = None,
    max_frames: int | None = None,
    python: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(points float32 (T, J, 3), mask bool (T, J))`` of one video, every frame of ``[start, stop)``.

    Starts (and stops) one worker: for many videos use :class:`WorkerPool`.
    """
    if params is None:
        from signflow.config import LandmarksParams

        params = LandmarksParams()
    with WorkerPool(params, 1, python=python) as pool:
        clip = pool.extract(path, start=start, stop=stop, box=box, max_frames=max_frames)
    return clip.points, clip.mask


@dataclass
class SplitResult:
    """What :func:`extract_split` did: counts for the report, skipped rows for skipped.csv."""

    written: int = 0
    frames: int = 0
    seconds: float = 0.0
    detected: Counter = field(default_factory=Counter)  # part -> frames seen (over written clips)
    skipped: list[dict[str, str]] = field(default_factory=list)


def _plan_task(plan: dict[str, Any], raw_dir: Path, tmp: Path, number: int) -> dict[str, Any]:
    path = Path(plan["file"])
    return {
        "key": str(number),
        "path": str(path if path.is_absolute() else (raw_dir / path).resolve()),
        "start": int(plan.get("start") or 0),
        "stop": plan.get("stop"),
        "box": plan.get("box"),
        "out": str(tmp / f"{number}.npz"),
        "max_frames": None,
    }


def extract_split(
    plans: Sequence[dict[str, Any]],
    raw_dir: str | os.PathLike[str],
    split_dir: str | os.PathLike[str],
    params: LandmarksParams,
    *,
    spec: LandmarkFeatureSpec,
    shard_mb: int = 512,
    pool: WorkerPool | None = None,
    python: str | None = None,
    progress: bool = True,
    description: str = "landmarks",
    cache: LandmarkCache | None = None,
) -> SplitResult:
    """Extract every plan's clip into the shard folder ``split_dir`` (written atomically).

    ``plans``: crop-plan dicts (``video_id, label, gloss, file`` relative to
    ``raw_dir``, ``start``, ``stop``, ``box``); ``params`` start the workers, ``spec``
    (:func:`landmark_spec`) says what is stored and goes into the metadata. A clip that fails, or in which
    nothing (no pose, no hand) was ever detected, goes to ``result.skipped``.
    ``cache``: reuse MediaPipe results of identical inputs (:mod:`signflow.landmarks.cache`).
    """
    from tqdm import tqdm  # main env only; the worker venv never imports this function's callers

    raw_dir, split_dir = Path(raw_dir), Path(split_dir)
    layout = get_layout(spec.layout)
    result = SplitResult()
    own_pool = pool is None
    started = time.perf_counter()
    split_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tmp-landmarks-", dir=split_dir.parent) as tmp_name:
        tmp = Path(tmp_name)
        tasks = [_plan_task(plan, raw_dir, tmp, number) for number, plan in enumerate(plans)]
        answers: dict[str, dict[str, Any]] = {}
        cache_keys: dict[str, str] = {}
        to_run = tasks
        if cache is not None:
            to_run = []
            for task in tasks:
                try:
                    key = cache_keys[task["key"]] = cache.key(task)
                except OSError:  # unreadable file: the worker reports it with a reason
                    to_run.append(task)
                    continue
                hit = cache.get(key)
                if hit is None:
                    to_run.append(task)
                else:
                    task["out"] = str(hit[0])
                    answers[task["key"]] = {**hit[1], "key": task["key"]}
        if to_run:
            pool = pool or WorkerPool(params, min(params.num_workers, len(to_run)), python=python)
            try:
                with tqdm(total=len(to_run), desc=description, unit="clip", disable=not progress) as bar:
                    for answer in pool.run(to_run):
                        answers[answer["key"]] = answer
                        if cache is not None and answer["key"] in cache_keys:
                            cache.put(cache_keys[answer["key"]], tmp / f"{answer['key']}.npz", answer)
                        bar.update(1)
            finally:
                if own_pool and pool is not None:
                    pool.close()
        metadata = {**spec.to_json(), "coords": "mediapipe"}
        fields = {
            "points": ((spec.stored_frames, layout.num_joints, 3), "float16"),
            "mask": ((spec.stored_frames, layout.num_joints), "bool"),
            "score": ((spec.stored_frames, layout.num_joints), "float16"),
        }
        # Written in plan order (not completion order) so the output is deterministic.
        with ShardWriter(split_dir, fields, shard_bytes=shard_mb * 1024**2, metadata=metadata) as writer:
            for task, plan in zip(tasks, plans):
                video_id = str(plan.get("video_id", task["key"]))
                answer = answers.get(task["key"], {"ok": False, "reason": "worker_crashed", "detail": "no answer"})
                if not answer["ok"]:
                    result.skipped.append(
                        {"video_id": video_id, "reason": answer["reason"], "detail": answer["detail"]}
                    )
                    continue
                clip = _load_clip(Path(task["out"]), answer, layout.name)
                if not clip.mask.any():
                    result.skipped.append(
                        {"video_id": video_id, "reason": "no_person", "detail": "no pose or hand detected in any frame"}
                    )
                    continue
                keep = uniform_indices(len(clip.points), spec.stored_frames)
                writer.add(
                    {"points": clip.points[keep], "mask": clip.mask[keep], "score": clip.score[keep]},
                    video_id=video_id,
                    label=int(plan["label"]),
                    gloss=plan.get("gloss"),
                    source_frames=len(clip.points),
                    width=clip.width,
                    height=clip.height,
                    detected=clip.detected,
                )
                result.written += 1
                result.frames += len(clip.points)
                result.detected.update(clip.detected)
    result.seconds = time.perf_counter() - started
    return result


def read_plans(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """``plans.jsonl`` -> list of dicts; a malformed line is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: crop plans not found (run the crop stage first)")
    plans = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            plan = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not valid JSON ({error})") from None
        missing = {"video_id", "label", "split", "file"} - set(plan)
        if missing:
            raise ValueError(f"{path}:{number}: plan lacks {', '.join(sorted(missing))}")
        plans.append(plan)
    return plans


def write_skipped(path: str | os.PathLike[str], rows: Iterable[dict[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["video_id", "reason", "detail"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, buffer.getvalue())


def read_carried_skips(plans_path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The crop stage's ``skipped.csv`` beside ``plans.jsonl`` (videos it could not even probe)."""
    path = Path(plans_path).with_name("skipped.csv")
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [{key: row.get(key, "") for key in ("video_id", "reason", "detail")} for row in csv.DictReader(handle)]


def extract_all(
    plans_path: str | os.PathLike[str],
    raw_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    params: Params,
    *,
    python: str | None = None,
    progress: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The EXTRACT stage for ``extract.representation: landmarks`` (see the module docstring).

    Reads ``params.landmarks`` and ``params.extract`` (seq_len, stored_frames, shard_mb); replaces ``out_dir``
    as a whole (atomically, like the RGB extract) and returns the summary for
    ``reports/extract.json`` (the same keys as the RGB extract's, plus ``layout``,
    ``frames_per_s`` and ``detection_rate``). Raises :class:`LandmarkEnvError`
    before any work when ``.venv-landmarks`` is missing. ``cache_dir``: a
    :class:`~signflow.landmarks.cache.LandmarkCache` folder kept across runs.
    """
    landmark_params = params.landmarks
    cache = LandmarkCache(cache_dir, worker_config(landmark_params)) if cache_dir is not None else None
    plans = read_plans(plans_path)
    unknown = sorted({str(plan["split"]) for plan in plans} - set(SPLITS))
    if unknown:
        raise ValueError(f"{plans_path}: unknown split(s) {unknown}; expected {list(SPLITS)}")
    skipped: list[dict[str, str]] = read_carried_skips(plans_path)
    carried = len(skipped)
    detected: Counter = Counter()
    per_split: dict[str, int] = {}
    frames = 0
    started = time.perf_counter()
    version = installed_mediapipe_version(python)  # fails fast when the venv is missing
    if version is None:
        raise LandmarkEnvError(f"{landmarks_python(python)}: mediapipe is not installed there (make venv-landmarks)")
    spec = landmark_spec(landmark_params, params.extract, HolisticExtractor.from_params(landmark_params, version))
    busy = max(1, min(landmark_params.num_workers, len(plans)))
    pool = WorkerPool(landmark_params, busy, python=python)
    try:
        with atomic.atomic_path(out_dir, is_dir=True) as tmp:
            for split in SPLITS:
                result = extract_split(
                    [plan for plan in plans if plan["split"] == split],
                    raw_dir,
                    tmp / split,
                    landmark_params,
                    spec=spec,
                    shard_mb=params.extract.shard_mb,
                    pool=pool,
                    progress=progress,
                    description=f"landmarks {split}",
                    cache=cache,
                )
                per_split[split] = result.written
                frames += result.frames
                detected.update(result.detected)
                skipped.extend(result.skipped)
            write_skipped(tmp / "skipped.csv", skipped)
            write_spec(tmp, spec)
    finally:
        pool.close()
    seconds = time.perf_counter() - started
    extracted = sum(per_split.values())
    summary = {
        "representation": KIND,
        "layout": layout_name(landmark_params),
        "videos": len(plans) + carried,
        "extracted": extracted,
        "skipped": len(skipped),
        "skipped_by_reason": dict(Counter(row["reason"] for row in skipped)),
        "per_split": per_split,
        "source_frames": frames,
        "stored_frames": extracted * spec.stored_frames,
        "seconds": round(seconds, 3),
        "frames_per_s": round(frames / seconds, 2) if seconds > 0 else None,
        # Fraction of processed frames in which each part was seen (pose, hands, any_hand, face).
        "detection_rate": {part: round(count / max(frames, 1), 4) for part, count in sorted(detected.items())},
    }
    if cache is not None:  # seconds/frames_per_s then cover only the clips MediaPipe actually ran on
        summary["cache"] = {"reused": cache.hits, "extracted": cache.misses}
        log.info("landmark cache %s: %d reused, %d extracted", cache.folder, cache.hits, cache.misses)
    log.info("landmarks: %s", summary)
    return summary


__all__ = [
    "KIND",
    "LandmarkClip",
    "LandmarkEnvError",
    "LandmarkError",
    "SplitResult",
    "WorkerPool",
    "extract_all",
    "extract_split",
    "extract_video",
    "installed_mediapipe_version",
    "landmark_spec",
    "landmarks_python",
    "read_carried_skips",
    "read_plans",
    "write_skipped",
]

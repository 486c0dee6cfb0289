"""The MediaPipe worker pool: Holistic processes in the isolated ``.venv-landmarks``, fed JSON lines.

MediaPipe needs numpy < 2 and protobuf < 5, which the main environment's kfp cannot share, so
it runs only in ``.venv-landmarks`` (``make venv-landmarks``), as :mod:`signflow.landmarks.worker`
processes this module starts and talks to; nothing here imports mediapipe, so the main
environment imports it freely (numpy only, no torch).

Used by the extract stage (:func:`signflow.extract.landmarks.extract_all`, many clips through
:meth:`WorkerPool.run`), by serving (:class:`signflow.landmarks.online.LandmarkPreprocessor`, one
warm pool, :meth:`WorkerPool.extract` per request) and by scripts (:func:`extract_video`: one file
-> ``(points, mask)`` at the video's full frame rate). :func:`installed_mediapipe_version` asks
the environment which MediaPipe it has without starting it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from signflow.landmarks.layout import get_layout, holistic_layout_name

if TYPE_CHECKING:
    from signflow.config import LandmarksParams

log = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the ``signflow`` package
DEFAULT_VENV = PACKAGE_ROOT / ".venv-landmarks"
PYTHON_ENV = "SIGNFLOW_LANDMARKS_PYTHON"  # overrides the interpreter (e.g. in a container image)
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
    """The worker's settings: everything of ``landmarks`` that changes what MediaPipe returns."""
    return {
        "model_complexity": params.model_complexity,
        "min_detection_confidence": params.min_detection_confidence,
        "min_tracking_confidence": params.min_tracking_confidence,
        "face": params.face,
    }


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
    """One worker process: its pipes, its stderr log (for error messages) and the task it is on."""

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
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 (open while the process runs; closed in stop())
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
        self.layout = get_layout(holistic_layout_name(params.face))
        self.num_workers = max(1, num_workers or params.num_workers)
        self._log_dir = Path(tempfile.mkdtemp(prefix="signflow-landmarks-"))
        self._workers: list[_Worker] = []
        self._started = 0
        self._lock = threading.Lock()  # serving may call extract() from several threads

    def __enter__(self) -> Self:
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
            return load_clip(out, result, self.layout.name)


def load_clip(path: str | os.PathLike[str], result: dict[str, Any], layout: str) -> LandmarkClip:
    """The ``.npz`` a worker wrote for ``result`` (its answer line) as a :class:`LandmarkClip`."""
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

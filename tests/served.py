"""A real ``bentoml serve`` of a tiny packaged model on 127.0.0.1, for the serving and browser tests.

Not a test module. Everything lives under a tmp folder: ``BENTOML_HOME`` (the model store),
the params file (test limits), the package record the service reads its pinned tag from.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests
import yaml

from tiny_model import make_run

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Served:
    url: str
    tag: str
    store_model_dir: Path
    env: dict[str, str]
    log: Path
    params: dict[str, Any]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_params(folder: Path, serve: dict[str, Any], monitoring: dict[str, Any] | None = None) -> Path:
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["serve"].update(serve)
    raw["monitoring"].update(monitoring or {})
    raw["package"].update({"experiments": False})
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def package_tiny_model(
    folder: Path, params: Path, env: dict[str, str], drift_reference: Path | None = None,
    make_model: Callable[[Path], Path] | None = None,
) -> str:
    """Train-stage-shaped tiny model (``make_model(folder)``; default an RGB CNN-LSTM) -> the package
    stage (real CLI) -> its model tag."""
    run = make_run(folder / "run", {"val_top1": 0.5, "test_top1": 0.25}, make_model=make_model)
    out = folder / "package.json"
    args = [
        sys.executable, "-m", "stages.package", "--params", str(params), "--models", str(run / "models"),
        "--metrics", str(run / "reports/evaluate/metrics.json"), "--out", str(out),
    ]
    if drift_reference is not None:
        args += ["--drift-reference", str(drift_reference)]
    result = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())["model_tag"]


def tiny_drift_reference(folder: Path, num_classes: int) -> Path:
    from signflow.drift import build_reference

    rng = np.random.default_rng(0)
    reference = build_reference(rng.integers(0, num_classes, 200), rng.uniform(0.2, 0.9, 200), num_classes)
    path = folder / "prediction_reference.json"
    path.write_text(json.dumps(reference))
    return path


@contextlib.contextmanager
def bentoml_serve(
    folder: Path, serve: dict[str, Any], *, monitoring: dict[str, Any] | None = None, extra_env: dict[str, str] | None = None,
    drift: bool = False, make_model: Callable[[Path], Path] | None = None,
) -> Iterator[Served]:
    """Package a tiny model and run ``python -m serving`` (``bentoml serve``) until the block exits."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "BENTOML_HOME": str(folder / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "DO_NOT_TRACK": "1",
        **(extra_env or {}),
    }
    params = write_params(folder, serve, monitoring)
    reference = tiny_drift_reference(folder, 4) if drift else None
    package_tiny_model(folder, params, env, reference, make_model)
    with serve_packaged(folder, env, params, folder / "package.json") as running:
        yield running


@contextlib.contextmanager
def serve_packaged(folder: Path, env: dict[str, str], params: Path, record: Path) -> Iterator[Served]:
    """``bentoml serve`` the model a package stage recorded in ``record`` (store: ``env['BENTOML_HOME']``)."""
    tag = json.loads(record.read_text())["model_tag"]
    env = {**env, "SIGNFLOW_PARAMS": str(params), "SIGNFLOW_PACKAGE_RECORD": str(record)}
    port = free_port()
    log = folder / "serve.log"
    url = f"http://127.0.0.1:{port}"
    # `python -m serving` = `bentoml serve serving.service:Signflow` with the server's own metrics folder.
    cmd = [sys.executable, "-m", "serving", "--host", "127.0.0.1", "--port", str(port)]
    with process_group(cmd, cwd=REPO_ROOT, env=env, log=log) as process:
        wait_until(lambda: requests.get(f"{url}/readyz", timeout=2).status_code == 200, 180, "bentoml serve ready",
                   process=process, log=log)  # fmt: skip
        name, version = tag.split(":")
        yield Served(url, tag, Path(env["BENTOML_HOME"]) / "models" / name / version, env, log,
                     yaml.safe_load(params.read_text()))


@contextlib.contextmanager
def process_group(cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` in its own process group, output to ``log``; on exit the whole group is stopped
    (SIGTERM, then SIGKILL), so servers' worker processes never outlive the test."""
    with open(log, "w") as log_file:
        process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, *, process: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    """Poll ``condition`` (connection errors count as not yet) until true; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text()[-3000:] if log else ""
            raise RuntimeError(f"{what}: process exited {process.returncode}:\n{tail}")
        with contextlib.suppress(requests.RequestException):
            if condition():
                return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not reached after {timeout_s} s" + (f":\n{log.read_text()[-3000:]}" if log else ""))

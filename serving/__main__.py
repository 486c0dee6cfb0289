"""``python -m serving [bentoml serve options]``: ``bentoml serve serving.service:Signflow`` with its own metrics folder.

BentoML keeps prometheus_client's multi-process files in ``$BENTOML_HOME/prometheus_multiproc_dir``
and wipes that folder whenever *any* server starts. A second server sharing ``BENTOML_HOME`` (a
canary, a benchmark, a test run) silently empties the first one's ``/metrics``: 200 with 0 bytes,
``up`` still 1. This launcher gives the server its own folder: ``$SIGNFLOW_METRICS_DIR`` when set
(its contents are the server's to wipe), else a fresh temporary folder removed on exit. Options are
``bentoml serve``'s (``--host``, ``--port``, ...); the service defaults to ``serving.service:Signflow``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

METRICS_DIR_ENV = "SIGNFLOW_METRICS_DIR"
SERVICE = "serving.service:Signflow"


def metrics_dir() -> str:
    """This server's own multi-process metrics folder."""
    configured = os.environ.get(METRICS_DIR_ENV, "").strip()
    if configured:
        Path(configured).mkdir(parents=True, exist_ok=True)
        return str(Path(configured).resolve())
    folder = tempfile.mkdtemp(prefix="signflow-metrics-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        args = [SERVICE, *args]
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml_cli.cli import cli

    BentoMLContainer.prometheus_multiproc_dir.set(metrics_dir())
    cli.main(args=["serve", *args], prog_name="python -m serving", standalone_mode=True)


if __name__ == "__main__":
    main()

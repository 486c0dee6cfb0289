"""Where the service gets its settings: the ``serve`` params and the pinned model tag.

Read when ``serving.service`` is imported, because BentoML's decorators (batch size,
timeouts, workers) need the values at class-definition time. This reads one small YAML
file and one JSON record; nothing is loaded from the model store here.

* Params: ``$SIGNFLOW_PARAMS``, else ``params.yaml`` in the working directory, else the
  one beside the ``serving`` package (the repo root, or a Bento's ``src/``); else defaults.
* Model tag, in order: ``$SIGNFLOW_MODEL_TAG``; the tag the package stage recorded in
  ``$SIGNFLOW_PACKAGE_RECORD`` (default ``reports/package.json``); only when nothing is
  pinned, ``<package.model_name>:latest`` with a warning (a silently moving target
  would make two replicas serve different models).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from signflow.config import Params, load_params

log = logging.getLogger("signflow.serving")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TAG_ENV = "SIGNFLOW_MODEL_TAG"
PARAMS_ENV = "SIGNFLOW_PARAMS"
RECORD_ENV = "SIGNFLOW_PACKAGE_RECORD"
DEFAULT_RECORD = Path("reports") / "package.json"


@dataclass(frozen=True)
class ServingConfig:
    params: Params
    params_source: str
    model_tag: str
    tag_source: str  # "env", "record:<path>" or "latest (unpinned)"

    @property
    def serve(self):  # noqa: ANN201 - ServeParams, kept short for the decorators
        return self.params.serve

    def api_key(self) -> str | None:
        """The key clients must send, from the env variable ``serve.api_key_env`` names; None = no key."""
        name = self.params.serve.api_key_env
        if not name:
            return None
        return os.environ.get(name) or None


def _find(relative: Path, env: str) -> Path | None:
    if os.environ.get(env):
        return Path(os.environ[env])
    for base in (Path.cwd(), PROJECT_ROOT):
        if (base / relative).is_file():
            return base / relative
    return None


def load_config() -> ServingConfig:
    """Params + pinned tag, resolved once per process (see the module docstring)."""
    params_path = _find(Path("params.yaml"), PARAMS_ENV)
    if params_path is not None:
        params, params_source = load_params(params_path), str(params_path)
    else:
        params, params_source = Params(), "defaults"
    tag = os.environ.get(TAG_ENV, "").strip()
    if tag:
        return ServingConfig(params, params_source, tag, "env")
    record = _find(DEFAULT_RECORD, RECORD_ENV)
    if record is not None and record.is_file():
        try:
            tag = str(json.loads(record.read_text(encoding="utf-8")).get("model_tag") or "")
        except (json.JSONDecodeError, AttributeError) as error:
            log.warning("%s is not a package record (%s); ignoring it", record, error)
            tag = ""
        if tag:
            return ServingConfig(params, params_source, tag, f"record:{record}")
    tag = f"{params.package.model_name}:latest"
    log.warning(
        "no model pinned (%s unset, no %s): serving %s; pin a tag for deployments", TAG_ENV, DEFAULT_RECORD, tag
    )
    return ServingConfig(params, params_source, tag, "latest (unpinned)")

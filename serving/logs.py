"""The service's logging inside BentoML's workers: signflow's INFO lines, one line per refused input."""

from __future__ import annotations

import logging

from serving.config import ServingConfig

log = logging.getLogger("signflow.serving")


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


def enable_logging(config: ServingConfig) -> None:
    """Let signflow's INFO lines through BentoML's server logging (root at WARNING, loggers set up after import)."""
    for name in ("signflow", "signflow.serving"):
        logger = logging.getLogger(name)
        logger.disabled = False
        logger.setLevel(logging.INFO)
    bentoml_http = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, ClientErrorLogFilter) for f in bentoml_http.filters):
        bentoml_http.addFilter(ClientErrorLogFilter())
    if config.tag_source.startswith("latest"):
        log.warning("no model pinned: serving %s (set SIGNFLOW_MODEL_TAG or run the package stage)", config.model_tag)

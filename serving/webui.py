"""The web page at ``/`` (upload or record a clip, see the top glosses) and ``/ui/config.json``, its limits."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from serving.config import ServingConfig

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

STATIC = Path(__file__).parent / "static"


def web_app(config: ServingConfig) -> Starlette:
    """The page at ``/`` and its files; ``/ui/config.json`` tells it the limits."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    serve = config.serve

    async def index(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def ui_config(_request: Request) -> Response:
        return JSONResponse(
            {
                "model_tag": config.model_tag,
                "top_k": serve.top_k,
                "max_upload_mb": serve.max_upload_mb,
                "max_duration_s": serve.max_duration_s,
                "api_key_required": config.api_key() is not None,
            }
        )

    return Starlette(
        routes=[
            Route("/", index),
            Route("/ui/config.json", ui_config),
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        ]
    )

"""Loopback HTTP stand-ins for the remote APIs the tests talk to (KFP, Kubernetes, an OCI registry)."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any


class QuietJsonHandler(BaseHTTPRequestHandler):
    """A request handler that keeps pytest's output clean and answers JSON with ``_reply``."""

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

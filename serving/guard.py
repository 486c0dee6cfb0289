"""ASGI middleware in front of the prediction endpoints: size limit, API key, rejection counting.

Size and auth are checked from the headers, before BentoML reads (and spools) a body, so a
2 GB upload or an unauthenticated flood costs nothing. Every refused request, whoever
refuses it (this middleware, a handler, BentoML's own input validation, the timeout or
concurrency limiter), is counted once in ``signflow_rejected_requests_total`` by reading the
response status here; handlers name their reason in the ``x-signflow-reason`` header.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serving.metrics import metrics

log = logging.getLogger("signflow.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REASON_HEADER = b"x-signflow-reason"
API_KEY_HEADER = b"x-api-key"
# Reasons for statuses nobody named (BentoML's validation, limiter, timeout).
DEFAULT_REASONS = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
                   415: "unsupported_media_type", 422: "invalid_request", 429: "overloaded", 503: "overloaded",
                   504: "timeout"}


def json_error(status: int, reason: str, detail: str) -> tuple[dict[str, Any], list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"error": reason, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (REASON_HEADER, reason.encode())]
    return {"type": "http.response.start", "status": status, "headers": headers}, headers, body


class GuardMiddleware:
    """Guard ``protected_prefixes`` (the prediction routes); count rejections on them."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        protected_prefixes: tuple[str, ...],
        max_body_bytes: int,
        api_key: str | None,
    ) -> None:
        self.app = app
        self.protected = protected_prefixes
        self.max_body_bytes = max_body_bytes
        self.api_key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.protected):
            await self.app(scope, receive, send)
            return
        endpoint = path.rstrip("/").rsplit("/", 1)[-1] or path
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None:
            given = headers.get(API_KEY_HEADER, b"")
            if not hmac.compare_digest(given, self.api_key):
                await self._refuse(send, endpoint, 401, "unauthorized", "missing or wrong x-api-key header")
                return
        if scope.get("method") == "POST":
            length = headers.get(b"content-length")
            if length is None:
                await self._refuse(send, endpoint, 411, "length_required", "send a Content-Length header")
                return
            try:
                size = int(length)
            except ValueError:
                await self._refuse(send, endpoint, 400, "invalid_request", "Content-Length is not a number")
                return
            if size > self.max_body_bytes:
                limit_mb = self.max_body_bytes / 1024**2
                await self._refuse(
                    send, endpoint, 413, "upload_too_large",
                    f"request body is {size / 1024**2:.1f} MB, the limit is {limit_mb:.1f} MB (serve.max_upload_mb)",
                )
                return
            receive = self._bounded(receive, self.max_body_bytes)

        held: list[Message] = []  # a 400 from BentoML's validation, held until its body names the reason

        async def counting_send(message: Message) -> None:
            if held:
                held.append(message)
                if not message.get("more_body", False):
                    await self._release_validation_error(send, endpoint, held)
                return
            if message["type"] == "http.response.start" and message["status"] >= 400 and message["status"] != 500:
                named = dict(message.get("headers") or []).get(REASON_HEADER)
                if named is None and message["status"] == 400:
                    held.append(message)
                    return
                reason = named.decode() if named else DEFAULT_REASONS.get(message["status"], f"http_{message['status']}")
                metrics().rejected.labels(endpoint=endpoint, reason=reason).inc()
            await send(message)

        await self.app(scope, receive, counting_send)

    @staticmethod
    async def _release_validation_error(send: Send, endpoint: str, held: list[Message]) -> None:
        """Rewrite BentoML's input-validation 400 into this service's error shape, naming a reason.

        BentoML answers ``{"error": "N validation error(s) for Input", "detail": [{"type", "loc", "msg"}]}``;
        clients get ``{"error": reason, "detail": "field: message; ..."}`` like every other refusal,
        and a refused upload type (pydantic error type ``unsupported_media_type``) becomes a 415.
        """
        body = b"".join(chunk.get("body", b"") for chunk in held[1:])
        reason, status, detail = "invalid_request", 400, body.decode("utf-8", "replace")[:500]
        try:
            errors = json.loads(body).get("detail")
            if isinstance(errors, list) and errors:
                first = errors[0]
                kind = str(first.get("type") or "")
                field = str((first.get("loc") or ["request"])[-1])
                if kind == "unsupported_media_type":
                    reason, status = kind, 415
                elif kind == "missing":
                    reason = "missing_field"
                else:
                    reason = f"invalid_{field}"
                detail = "; ".join(
                    f"{'.'.join(str(part) for part in e.get('loc') or [])}: {e.get('msg', '')}".removeprefix(": ")
                    for e in errors
                )
        except (ValueError, AttributeError, TypeError):
            pass
        metrics().rejected.labels(endpoint=endpoint, reason=reason).inc()
        start, headers, payload = json_error(status, reason, detail)
        await send(start)
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    def _bounded(receive: Receive, limit: int) -> Receive:
        """A receive that stops a client sending more than its Content-Length promised."""
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise ValueError(f"request body exceeds {limit} bytes")
            return message

        return bounded

    async def _refuse(self, send: Send, endpoint: str, status: int, reason: str, detail: str) -> None:
        metrics().rejected.labels(endpoint=endpoint, reason=reason).inc()
        start, _, body = json_error(status, reason, detail)
        await send(start)
        await send({"type": "http.response.body", "body": body})

"""ASGI middleware in front of the prediction endpoints: size limit, API key, form check, error shape, counting.

Size and auth are checked from the headers, before BentoML reads (and spools) a body, so a
2 GB upload or an unauthenticated flood costs nothing. A multipart body is read (within the
size limit) and its parts checked against the endpoint's fields before BentoML parses it:
BentoML answers 500 to a binary part it does not expect (it ``json.loads`` it) and would try
to *download* a file field sent as a plain value (a URL). Every refused request, whoever
refuses it (this middleware, a handler, BentoML's own input validation, the timeout or
concurrency limiter), is counted once in ``signflow_rejected_requests_total`` and answered
with the same ``{"error": reason, "detail": ...}`` body; handlers name their reason in the
``x-signflow-reason`` header. The ``endpoint`` label only takes the known endpoint names
(anything else is ``other``), so junk paths cannot create series.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from serving.metrics import metrics
from signflow.config import UNKNOWN_PATH_LABEL

log = logging.getLogger("signflow.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REASON_HEADER = b"x-signflow-reason"
API_KEY_HEADER = b"x-api-key"
# The label value for a path under a protected prefix that is no endpoint (e.g. /predict_video/x).
OTHER_ENDPOINT = UNKNOWN_PATH_LABEL
# Reasons for statuses nobody named (BentoML's validation, limiter, timeout, errors).
DEFAULT_REASONS = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
                   415: "unsupported_media_type", 422: "invalid_request", 429: "overloaded", 500: "internal_error",
                   503: "overloaded", 504: "timeout"}
# Bodies BentoML parses as a form (a file field in a urlencoded form would be fetched as a URL).
FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded")
DEFAULT_DETAILS = {
    429: "too many requests in flight (serve.max_concurrency); retry with backoff",
    500: "an unexpected server error; the server log has the trace",
    503: "the server is overloaded or not ready; retry with backoff",
    504: "the request took longer than serve.request_timeout_s",
}


@dataclass(frozen=True)
class FormFields:
    """The multipart parts an endpoint takes: file uploads and plain (JSON) values."""

    files: frozenset[str]
    values: frozenset[str]

    def describe(self) -> str:
        return ", ".join([*(f"{name} (file)" for name in sorted(self.files)), *sorted(self.values)])


class FormRejected(Exception):
    def __init__(self, status: int, reason: str, detail: str):
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


def json_error(status: int, reason: str, detail: str) -> tuple[dict[str, Any], list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"error": reason, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (REASON_HEADER, reason.encode())]
    return {"type": "http.response.start", "status": status, "headers": headers}, headers, body


def check_form(content_type: bytes, body: bytes, fields: FormFields, endpoint: str) -> None:
    """Refuse a form body whose parts are not the endpoint's fields, each sent as file or value as it
    should be (raises :class:`FormRejected`)."""
    from python_multipart.multipart import parse_options_header

    kind, options = parse_options_header(content_type)
    if kind == b"application/x-www-form-urlencoded":
        names = [name for name, _ in urllib.parse.parse_qsl(body.decode("latin-1"), keep_blank_values=True)]
        _check_parts([(name, False) for name in names], fields, endpoint)
        return
    _check_parts(_multipart_parts(body, options.get(b"boundary")), fields, endpoint)


def _multipart_parts(body: bytes, boundary: bytes | None) -> list[tuple[str, bool]]:
    """``(name, is_file)`` of every part of a multipart body, from its headers only."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    if not boundary:
        raise FormRejected(400, "bad_multipart", "multipart/form-data without a boundary")
    parts: list[dict[bytes, bytes]] = []
    header: dict[str, bytes] = {"field": b"", "value": b""}

    def on_part_begin() -> None:
        parts.append({})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        parts[-1][header["field"].strip().lower()] = header["value"].strip()
        header["field"] = header["value"] = b""

    parser = MultipartParser(boundary, {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                                        "on_header_value": on_header_value, "on_header_end": on_header_end})  # fmt: skip
    try:
        parser.write(body)
        parser.finalize()
    except Exception as error:  # python_multipart raises its own errors and ValueErrors on malformed input
        raise FormRejected(400, "bad_multipart", f"malformed multipart body ({error})") from None
    named = []
    for part in parts:
        _, disposition = parse_options_header(part.get(b"content-disposition", b""))
        named.append((disposition.get(b"name", b"").decode("utf-8", "replace"), b"filename" in disposition))
    return named


def _check_parts(parts: list[tuple[str, bool]], fields: FormFields, endpoint: str) -> None:
    seen: set[str] = set()
    for name, is_file in parts:
        if name not in fields.files | fields.values:
            raise FormRejected(400, "unknown_field",
                               f"part {name!r} is not a field of /{endpoint} (fields: {fields.describe()})")  # fmt: skip
        if name in fields.files and not is_file:
            raise FormRejected(400, "invalid_request", f"{name!r} must be a file upload (a multipart part with a filename)")
        if name in fields.values and is_file:
            raise FormRejected(400, "invalid_request", f"{name!r} must be a form value, not a file")
        if name in seen:
            raise FormRejected(400, "invalid_request", f"part {name!r} is sent more than once")
        seen.add(name)


class GuardMiddleware:
    """Guard ``protected_prefixes`` (the prediction routes); count and shape refusals on them."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        protected_prefixes: tuple[str, ...],
        max_body_bytes: int,
        api_key: str | None,
        form_fields: Mapping[str, FormFields] | None = None,
    ) -> None:
        self.app = app
        self.protected = protected_prefixes
        self.endpoints = {prefix.strip("/") for prefix in protected_prefixes}
        self.max_body_bytes = max_body_bytes
        self.api_key = api_key.encode() if api_key else None
        self.form_fields = dict(form_fields or {})

    def endpoint_label(self, path: str) -> str:
        name = path.strip("/")
        return name if name in self.endpoints else OTHER_ENDPOINT

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.protected):
            await self.app(scope, receive, send)
            return
        endpoint = self.endpoint_label(path)
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None:
            given = headers.get(API_KEY_HEADER, b"")
            if not hmac.compare_digest(given, self.api_key):
                await self._refuse(send, endpoint, 401, "unauthorized", "missing or wrong x-api-key header")
                return
        if scope.get("method") == "POST" and endpoint != OTHER_ENDPOINT:
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
            content_type = headers.get(b"content-type", b"")
            fields = self.form_fields.get(endpoint)
            if fields is not None and content_type.lower().startswith(FORM_TYPES):
                try:
                    body, receive = await self._buffered(receive)
                    check_form(content_type, body, fields, endpoint)
                except ValueError as error:  # more bytes than Content-Length said
                    await self._refuse(send, endpoint, 413, "upload_too_large", str(error))
                    return
                except FormRejected as refused:
                    await self._refuse(send, endpoint, refused.status, refused.reason, refused.detail)
                    return

        held: list[Message] = []  # a refusal nobody named, held until its body is complete

        async def shaping_send(message: Message) -> None:
            if held:
                held.append(message)
                if not message.get("more_body", False):
                    await self._release_unnamed(send, endpoint, held)
                return
            if message["type"] == "http.response.start" and message["status"] >= 400:
                named = dict(message.get("headers") or []).get(REASON_HEADER)
                if named is None:
                    held.append(message)
                    return
                metrics().rejected.labels(endpoint=endpoint, reason=named.decode()).inc()
            await send(message)

        await self.app(scope, receive, shaping_send)

    @staticmethod
    async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
        """Read the whole request body (already bounded by the size limit); a receive that replays it."""
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b"", _replay([message], receive)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        return body, _replay([{"type": "http.request", "body": body, "more_body": False}], receive)

    async def _release_unnamed(self, send: Send, endpoint: str, held: list[Message]) -> None:
        """Rewrite a refusal from BentoML (validation 400, 429/503 limiter, 504 timeout, 500) into this
        service's error shape, naming a reason.

        BentoML answers validation errors with ``{"error": "N validation error(s) for Input",
        "detail": [{"type", "loc", "msg"}]}`` and everything else with its own text or JSON; clients
        get ``{"error": reason, "detail": "..."}`` like every other refusal. A refused upload type
        (pydantic error type ``unsupported_media_type``) becomes a 415.
        """
        status = int(held[0]["status"])
        body = b"".join(chunk.get("body", b"") for chunk in held[1:])
        reason = DEFAULT_REASONS.get(status, f"http_{status}")
        detail = DEFAULT_DETAILS.get(status) or body.decode("utf-8", "replace")[:500]
        if status == 400:
            fields = self.form_fields.get(endpoint)
            known = fields.files | fields.values if fields else frozenset()
            reason, status, detail = _validation_error(body, detail, known)
        if status != 500:  # a server error is not a refused input; the 5xx alerts count it
            metrics().rejected.labels(endpoint=endpoint, reason=reason).inc()
        start, headers, payload = json_error(status, reason, detail)
        extra = [(key, value) for key, value in held[0].get("headers") or [] if key.lower().startswith(b"x-bentoml")]
        start["headers"] = headers + extra
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


def _validation_error(body: bytes, fallback: str, known: frozenset[str]) -> tuple[str, int, str]:
    """(reason, status, detail) of BentoML's pydantic validation answer; reasons name known fields only."""
    reason, status, detail = "invalid_request", 400, fallback
    try:
        errors = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return reason, status, detail
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        kind = str(first.get("type") or "")
        field = str((first.get("loc") or ["request"])[-1])
        if kind == "unsupported_media_type":
            reason, status = kind, 415
        elif kind == "missing":
            reason = "missing_field"
        elif field in known:
            reason = f"invalid_{field}"
        detail = "; ".join(
            f"{'.'.join(str(part) for part in e.get('loc') or [])}: {e.get('msg', '')}".removeprefix(": ")
            for e in errors
            if isinstance(e, dict)
        )
    return reason, status, detail


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that returns ``messages`` first, then defers to ``receive`` (for the disconnect)."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


_RAW_PATH = "signflow.raw_path"


def install_under_request_metrics(
    wrap: Callable[[ASGIApp], ASGIApp], *, known_paths: frozenset[str], unknown_label: str
) -> None:
    """Put ``wrap`` (the guard) right under BentoML's request metrics, and bound their path label.

    BentoML builds every server's middleware stack as: request metrics (outermost), tracing,
    access log, timeout (504), concurrency limit (503), then the service's own middlewares. A
    service middleware never sees the 503/504 answers, so it cannot give them the documented
    error body or count them. Installed here, the guard sees every answer, and BentoML's metrics
    still count the guard's own refusals. The same hook bounds the metrics' ``endpoint`` label:
    BentoML labels it with the raw path, so every scanner 404 made new series (4 junk requests,
    83 series); any path not in ``known_paths`` is shown to the metrics as ``unknown_label`` and
    restored for routing, so no response changes.

    Done by swapping BentoML's request-metrics middleware class for a subclass (BentoML is pinned
    in requirements.txt; a test fails if the class moves). Call at service import, before
    BentoML builds its app; :func:`guard_installed` tells whether the app took it.
    """
    from bentoml._internal.server.http import instruments

    base = instruments.RunnerTrafficMetricsMiddleware
    if getattr(base, "bounded_paths", None) is not None:
        return

    class GuardedRequestMetrics(base):  # type: ignore[misc, valid-type]
        bounded_paths = known_paths

        def __init__(self, app: ASGIApp, **options: Any) -> None:
            super().__init__(_restoring_path(wrap(app)), **options)
            _INSTALLED.set()

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope.get("path") not in known_paths:
                scope = {**scope, "path": unknown_label, _RAW_PATH: scope.get("path", "")}
            await super().__call__(scope, receive, send)

    instruments.RunnerTrafficMetricsMiddleware = GuardedRequestMetrics


_INSTALLED = threading.Event()


def guard_installed() -> bool:
    """Whether a server app was built with the guard (BentoML builds it with metrics enabled)."""
    return _INSTALLED.is_set()


def _restoring_path(app: ASGIApp) -> ASGIApp:
    async def restored(scope: Scope, receive: Receive, send: Send) -> None:
        if _RAW_PATH in scope:
            scope = {**scope, "path": scope[_RAW_PATH]}
            del scope[_RAW_PATH]
        await app(scope, receive, send)

    return restored

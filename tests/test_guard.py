"""The serving guard's form check and error shaping, on real multipart bodies (fast, no server)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
import yaml
from urllib3 import encode_multipart_formdata

from serving.guard import FormFields, FormRejected, GuardMiddleware, check_form
from signflow.config import SERVING_ENDPOINTS
from signflow.config import SERVICE_PATHS, SERVING_STATIC_FILES
from signflow.monitoring.rules import KNOWN_ENDPOINT_LABELS

REPO_ROOT = Path(__file__).resolve().parents[1]
VIDEO_FIELDS = FormFields(files=frozenset({"video"}), values=frozenset({"top_k", "return_logits"}))
MP4 = ("clip.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4")


def multipart(fields) -> tuple[bytes, bytes]:
    body, content_type = encode_multipart_formdata(fields)
    return content_type.encode(), body


def test_the_endpoint_fields_as_sent_by_clients_pass() -> None:
    check_form(*multipart({"video": MP4, "top_k": "3"}), VIDEO_FIELDS, "predict_video")
    check_form(*multipart({"video": MP4}), VIDEO_FIELDS, "predict_video")
    check_form(b"application/x-www-form-urlencoded", b"top_k=3&return_logits=true", VIDEO_FIELDS, "predict_video")


@pytest.mark.parametrize(
    "fields, reason, words",
    [
        ({"file": MP4}, "unknown_field", "'file' is not a field of /predict_video"),
        ({"video": MP4, "thumbnail": MP4}, "unknown_field", "'thumbnail'"),
        ({"video": "https://example.com/clip.mp4"}, "invalid_request", "must be a file upload"),
        ({"video": MP4, "top_k": ("k.json", b"3", "application/json")}, "invalid_request", "must be a form value"),
        ([("video", MP4), ("video", MP4)], "invalid_request", "more than once"),
    ],
)
def test_a_part_the_endpoint_does_not_take_is_a_400_with_a_reason(fields, reason, words) -> None:
    with pytest.raises(FormRejected) as caught:
        check_form(*multipart(fields), VIDEO_FIELDS, "predict_video")
    assert (caught.value.status, caught.value.reason) == (400, reason) and words in caught.value.detail


def test_a_file_field_sent_as_a_urlencoded_value_is_refused_not_fetched() -> None:
    with pytest.raises(FormRejected) as caught:
        check_form(b"application/x-www-form-urlencoded", b"video=http%3A%2F%2F10.0.0.1%2Fx.mp4", VIDEO_FIELDS,
                   "predict_video")  # fmt: skip
    assert caught.value.reason == "invalid_request"


@pytest.mark.parametrize("content_type, body", [
    (b"multipart/form-data", b"--x\r\n"),  # no boundary
    (b"multipart/form-data; boundary=abc", b"--abc\r\ngarbage without headers end"),
])  # fmt: skip
def test_malformed_multipart_is_bad_multipart(content_type, body) -> None:
    with pytest.raises(FormRejected) as caught:
        check_form(content_type, body, VIDEO_FIELDS, "predict_video")
    assert caught.value.reason == "bad_multipart"


def _run(middleware: GuardMiddleware, path: str, body: bytes, content_type: bytes) -> tuple[int, dict, list]:
    """One HTTP request through ``middleware``; (status, JSON body, headers)."""
    sent: list[dict] = []
    incoming = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path,
             "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]}  # fmt: skip
    asyncio.run(middleware(scope, receive, send))
    start = sent[0]
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], json.loads(payload), start["headers"]


def _app_answering(status: int, body: bytes, seen: list[bytes] | None = None):
    """A downstream ASGI app (BentoML's place) that reads the body and answers ``status``/``body``."""

    async def app(scope, receive, send):
        message = await receive()
        if seen is not None:
            seen.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    return app


def _guard(app) -> GuardMiddleware:
    return GuardMiddleware(app, protected_prefixes=("/predict_video",), max_body_bytes=10_000, api_key=None,
                           form_fields={"predict_video": VIDEO_FIELDS})  # fmt: skip


def test_the_checked_body_reaches_the_service_unchanged() -> None:
    seen: list[bytes] = []
    content_type, body = multipart({"video": MP4, "top_k": "2"})
    status, _, _ = _run(_guard(_app_answering(200, b"{}", seen)), "/predict_video", body, content_type)
    assert status == 200 and seen == [body]


def test_a_wrong_part_never_reaches_bentoml() -> None:
    seen: list[bytes] = []
    content_type, body = multipart({"upload": MP4})
    status, payload, _ = _run(_guard(_app_answering(200, b"{}", seen)), "/predict_video", body, content_type)
    assert status == 400 and payload["error"] == "unknown_field" and seen == []


@pytest.mark.parametrize("status, text, reason", [
    (503, b"Service Unavailable: process is overloaded", "overloaded"),
    (504, b"Timeout", "timeout"),
    (429, b"Too many requests", "overloaded"),
    (500, b"Traceback (most recent call last): ...", "internal_error"),
])  # fmt: skip
def test_bentoml_refusals_get_the_documented_error_body(status, text, reason) -> None:
    content_type, body = multipart({"video": MP4})
    got, payload, headers = _run(_guard(_app_answering(status, text)), "/predict_video", body, content_type)
    assert got == status and set(payload) == {"error", "detail"} and payload["error"] == reason
    assert "Traceback" not in payload["detail"] and (b"x-signflow-reason", reason.encode()) in headers


def test_a_validation_400_names_only_known_fields() -> None:
    validation = json.dumps({"error": "1 validation error for Input", "detail": [
        {"type": "int_parsing", "loc": ["top_k"], "msg": "Input should be a valid integer"}]}).encode()  # fmt: skip
    content_type, body = multipart({"video": MP4, "top_k": "x"})
    status, payload, _ = _run(_guard(_app_answering(400, validation)), "/predict_video", body, content_type)
    assert (status, payload["error"]) == (400, "invalid_top_k") and "valid integer" in payload["detail"]


def test_endpoint_labels_are_bounded() -> None:
    guard = _guard(_app_answering(200, b""))
    assert guard.endpoint_label("/predict_video") == "predict_video"
    assert guard.endpoint_label("/predict_video/evil_5393") == "other"


def test_scrape_configs_keep_exactly_the_known_endpoint_labels() -> None:
    """prometheus.yml and the ServiceMonitor drop series of junk paths with the rules' own regex."""
    scrape = yaml.safe_load((REPO_ROOT / "monitoring/prometheus.yml").read_text())
    job = next(j for j in scrape["scrape_configs"] if j["job_name"] == "signflow")
    regexes = [r["regex"] for r in job["metric_relabel_configs"] if r.get("source_labels") == ["endpoint"]]
    monitor = next(d for d in yaml.safe_load_all((REPO_ROOT / "monitoring/k8s/signflow.yaml").read_text())
                   if d and d.get("kind") == "ServiceMonitor")  # fmt: skip
    regexes += [r["regex"] for e in monitor["spec"]["endpoints"] for r in e.get("metricRelabelings", [])]
    assert regexes == [KNOWN_ENDPOINT_LABELS] * 2

    known = re.compile(f"^(?:{KNOWN_ENDPOINT_LABELS})$")  # Prometheus anchors relabel regexes
    legit = ["", "/", "other", "/metrics", "/readyz", "/livez", "/logits", *(f"/{e}" for e in SERVING_ENDPOINTS),
             *SERVING_ENDPOINTS, *(f"/static/{name}" for name in SERVING_STATIC_FILES)]  # fmt: skip
    assert all(known.match(label) for label in legit)
    for junk in ["/predict_video/evil_5393", "/favicon.ico", "/wp-login.php", "evil_5393", "/static/../x"]:
        assert not known.match(junk), junk


def test_the_page_files_are_the_known_static_paths() -> None:
    assert sorted(SERVING_STATIC_FILES) == sorted(p.name for p in (REPO_ROOT / "serving/static").iterdir())
    assert all(f"/static/{name}" in SERVICE_PATHS for name in SERVING_STATIC_FILES)


def test_the_guard_goes_under_bentoml_request_metrics_with_bounded_paths() -> None:
    """The hook swaps BentoML's request-metrics middleware class (pinned BentoML; a release that moves
    it fails here). Built like BentoML builds it, the guard gets the real path and the metrics see
    junk paths as ``other``. test_service.py shows it on the real server."""
    from bentoml._internal.server.http import instruments

    from serving.guard import install_under_request_metrics

    original = instruments.RunnerTrafficMetricsMiddleware
    routed: list[str] = []
    labelled: list[str] = []

    async def app(scope, receive, send):
        routed.append(scope["path"])

    def guard(inner):
        async def guarded(scope, receive, send):
            await inner(scope, receive, send)

        return guarded

    try:
        install_under_request_metrics(guard, known_paths=frozenset({"/predict_video"}), unknown_label="other")
        bounded = instruments.RunnerTrafficMetricsMiddleware
        assert issubclass(bounded, original) and bounded.bounded_paths == {"/predict_video"}
        install_under_request_metrics(guard, known_paths=frozenset({"/x"}), unknown_label="other")  # no re-wrap
        assert instruments.RunnerTrafficMetricsMiddleware is bounded

        async def label_only(self, scope, receive, send):  # stands in for the metric updates
            labelled.append(scope["path"])
            await self.app(scope, receive, send)

        middleware = bounded(app, namespace="bentoml_service", skip_paths=[])
        for path in ("/predict_video", "/favicon.ico", "/predict_video/evil_5393"):
            scope = {"type": "http", "path": path, "method": "GET", "headers": []}
            original_call = original.__call__
            try:
                original.__call__ = label_only
                asyncio.run(middleware(scope, None, None))
            finally:
                original.__call__ = original_call
        assert labelled == ["/predict_video", "other", "other"]
        assert routed == ["/predict_video", "/favicon.ico", "/predict_video/evil_5393"]
    finally:
        instruments.RunnerTrafficMetricsMiddleware = original

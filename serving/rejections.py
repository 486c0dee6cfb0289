"""Refused inputs: one exception, one table from its reason to the HTTP status.

A refusal answers ``{"error": reason, "detail": ...}`` with the reason also in a header, which
the request guard counts in ``signflow_rejected_requests_total`` by reason.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from serving.guard import REASON_HEADER

# Reason -> HTTP status for refused inputs (the body says which limit and by how much).
STATUS = {
    "empty": 400, "not_video": 400, "corrupt": 400, "no_frames": 400, "too_short": 400,
    "unsupported_codec": 415, "unsupported_media_type": 415,
    "too_large": 413, "too_many_frames": 413, "too_long": 413, "resolution_too_large": 413,
    "batch_too_large": 413, "bad_shape": 400, "bad_npy": 400, "bad_dtype": 400, "empty_batch": 400, "bad_top_k": 400,
    "model_mismatch": 400, "landmarks_unavailable": 503, "cancelled": 504,
}


class Rejected(Exception):
    """An input the service refuses; becomes a 4xx JSON body ``{"error": reason, "detail": ...}``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.reason, "detail": self.detail},
            status_code=STATUS.get(self.reason, 400),
            headers={REASON_HEADER.decode(): self.reason},
        )

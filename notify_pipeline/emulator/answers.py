"""HTTP answers in Graph's shapes: Meta's error body, JSON success bodies, non-JSON failures.

Titles and HTTP statuses come from notify_pipeline.whatsapp.errors (the product's one table), so
the emulator and the client can never disagree about what a code means.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

from notify_pipeline.whatsapp import errors

JSON_TYPE = b"application/json; charset=UTF-8"
OAUTH = "OAuthException"
GRAPH_METHOD = "GraphMethodException"


class MetaAPIError(Exception):
    """An error the emulator answers with, as Meta would: code, details, HTTP status.

    `http_status`, `title` and `message` override what errors.py gives; codes errors.py does not
    know need both `title` and `http_status` (fault rules may simulate codes Meta adds later).
    """

    def __init__(
        self,
        code: int,
        details: str,
        *,
        http_status: int | None = None,
        subcode: int | None = None,
        error_type: str = OAUTH,
        title: str | None = None,
        message: str | None = None,
        with_error_data: bool = True,
    ) -> None:
        entry = errors.lookup(code)
        if entry is None and (title is None or http_status is None):
            raise ValueError(
                f"code {code} is not in notify_pipeline/whatsapp/errors.py; give title and http_status"
            )
        self.code = code
        self.details = details
        self.title = title or entry.title  # type: ignore[union-attr]
        self.http_status = http_status or entry.http_status  # type: ignore[union-attr]
        self.subcode = subcode
        self.error_type = error_type
        self.message = message or f"(#{code}) {self.title}"
        self.with_error_data = with_error_data
        super().__init__(self.message)

    def body(self, trace_id: str) -> dict:
        error: dict = {"message": self.message, "type": self.error_type, "code": self.code}
        if self.with_error_data:
            error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["fbtrace_id"] = trace_id
        return {"error": error}


def unknown_object(method: str, object_id: str) -> MetaAPIError:
    """Graph's answer for a path or object it cannot serve (wording as Graph words it)."""
    message = (
        f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation."
    )
    return MetaAPIError(
        100, message, subcode=33, error_type=GRAPH_METHOD, message=message, with_error_data=False
    )


@dataclass(slots=True)
class Answer:
    """What the ASGI layer writes: status, body bytes, content type, extra headers."""

    status: int
    body: bytes
    content_type: bytes | None = JSON_TYPE
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def dumps(obj: object) -> bytes:
    # ASCII with \u escapes, as Graph answers; it also survives lone surrogates from a request.
    return json.dumps(obj, separators=(",", ":")).encode()


def json_answer(obj: object, status: int = 200) -> Answer:
    return Answer(status, dumps(obj))


def new_trace_id() -> str:
    return secrets.token_urlsafe(17)


def error_answer(error: MetaAPIError) -> Answer:
    trace_id = new_trace_id()
    headers = [(b"x-fb-trace-id", trace_id.encode())]
    if error.http_status == 401:
        # Graph names the failed scheme, as OAuth servers do; no token material goes in it.
        headers.append(
            (b"www-authenticate", b'OAuth "Facebook Platform" "invalid_token" "Invalid OAuth access token"')
        )
    return Answer(error.http_status, dumps(error.body(trace_id)), JSON_TYPE, headers)


_STATUS_TEXT = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def non_json_answer(status: int, body: str | None, content_type: str | None) -> Answer:
    """A failure without Graph's JSON, as load balancers in front of Graph sometimes answer.

    The default body is an HTML error page for 5xx and nothing otherwise (a bare 429).
    """
    if body is None:
        text = _STATUS_TEXT.get(status, "Error")
        body = (
            f"<html><head><title>{status} {text}</title></head><body><h1>{text}</h1></body></html>"
            if status >= 500
            else ""
        )
    kind = content_type or ("text/html; charset=utf-8" if body else None)
    return Answer(status, body.encode(), kind.encode() if kind else None)

"""Reading control API request bodies: JSON objects, with 400 {"error": ...} for mistakes."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request


class BadRequest(Exception):
    """A mistake in a control request; answered 400 with the message."""


class NotFound(Exception):
    """The request names something the emulator does not have; answered 404."""


async def json_body(request: Request, default: Any = None) -> Any:
    raw = await request.body()
    if not raw.strip():
        if default is None:
            raise BadRequest("a JSON body is required")
        return default
    try:
        return json.loads(raw)
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None


def json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


def text_field(
    body: dict[str, Any], key: str, default: str | None = None, *, choices: tuple[str, ...] = ()
) -> str:
    """A string field of a request, its default when absent; BadRequest when of another type or value."""
    value = body.get(key, default)
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string" if key in body else f"{key} is required")
    if choices and value not in choices:
        raise BadRequest(f"{key} must be one of {list(choices)}, not {value!r}")
    return value


def digits(value: Any, key: str) -> str:
    """A phone number as Meta writes wa_ids: digits only."""
    number = "".join(ch for ch in str(value or "") if ch.isdigit())
    if not number:
        raise BadRequest(f"{key} (the user's phone number) is required")
    return number

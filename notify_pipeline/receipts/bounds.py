"""What a webhook update may carry: values PostgreSQL can store, sizes Meta never exceeds, and
timestamps in the window Meta delivers in. The one place these bounds are set.

A body is read with NaN and Infinity refused (Python's json accepts them, PostgreSQL's jsonb does
not), every string cleaned of NUL characters (PostgreSQL stores none, in text or jsonb: a user's
text containing one is kept with U+FFFD in its place) and checked for lone surrogates (no valid
UTF-8 holds one: the body is refused). An update whose timestamp lies outside the window is kept
in webhook_events for the record but not applied: Meta delivers an update for at most 7 days, so
a status from year 5138 is not news, it is a forgery or a bug.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from typing import Any

# Meta retries an undelivered webhook for up to 7 days; a day more for our own outages.
MAX_AGE = timedelta(days=8)
# Meta's clock and ours disagree by seconds; minutes ahead is not a clock, it is a bad timestamp.
MAX_AHEAD = timedelta(minutes=10)
# webhook_events rows are what make a replay a no-op: kept at least this long, a replayed update
# is either found there or refused by the window above, never applied twice.
MIN_KEEP_DAYS = math.ceil((MAX_AGE + MAX_AHEAD) / timedelta(days=1))

# Sizes, in characters. Meta's message ids are about 60, wa_ids at most 15 digits (longer user
# ids are allowed for), error codes at most 7 digits, template names at most 512, a text
# message at most 4,096. Whatever is longer is not Meta: the body is refused (400).
MAX_ID_CHARS = 256
MAX_CALLBACK_CHARS = 512  # biz_opaque_callback_data: Meta refuses a send with more
MAX_CODE_CHARS = 16
MAX_NAME_CHARS = 512
MAX_TITLE_CHARS = 2_000
MAX_TEXT_CHARS = 10_000

NUL, REPLACEMENT = "\x00", "\ufffd"
# Cleaning walks the body only when it may need it: a \u escape (NUL or a surrogate) or the
# UTF-8-looking bytes of a surrogate, which json.loads decodes from bytes with 'surrogatepass'.
_MAY_NEED_CLEANING = re.compile(rb"\\u|\xed[\xa0-\xbf]")


class UnstorableValue(ValueError):
    """A value in the body that PostgreSQL cannot store and that cannot be cleaned."""


def _no_constant(name: str) -> float:
    raise UnstorableValue(f"the body holds {name}, which JSON does not allow and PostgreSQL cannot store")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise UnstorableValue(f"the number {text[:40]} is too large to store")
    return value


def load_json(raw: bytes) -> Any:
    """The body decoded, NaN and Infinity refused, strings cleaned (see clean)."""
    body = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    return clean(body) if _MAY_NEED_CLEANING.search(raw) else body


def _clean_text(value: str) -> str:
    if NUL in value:
        value = value.replace(NUL, REPLACEMENT)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnstorableValue(
            "the body holds a lone UTF-16 surrogate (a \\ud800-\\udfff escape without its pair)"
        ) from exc
    return value


def clean(body: Any) -> Any:
    """`body` with NUL replaced by U+FFFD in every string and key; UnstorableValue for a lone
    surrogate. Iterative: json.loads accepts nesting deeper than Python's recursion limit."""
    if isinstance(body, str):
        return _clean_text(body)
    if not isinstance(body, dict | list):
        return body
    root = body
    stack: list[dict | list] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in list(node):
                value = node[key]
                clean_key = _clean_text(key)
                if clean_key != key:
                    del node[key]
                if isinstance(value, str):
                    value = _clean_text(value)
                elif isinstance(value, dict | list):
                    stack.append(value)
                node[clean_key] = value
        else:
            for index, value in enumerate(node):
                if isinstance(value, str):
                    node[index] = _clean_text(value)
                elif isinstance(value, dict | list):
                    stack.append(value)
    return root


def out_of_window(at: datetime, now: datetime) -> str | None:
    """Why an update dated `at` is not applied, or None when Meta could have sent it by `now`."""
    if at < now - MAX_AGE:
        return f"refused: dated {at:%Y-%m-%d %H:%M:%S}Z, more than {MAX_AGE.days} days ago"
    if at > now + MAX_AHEAD:
        minutes = int(MAX_AHEAD.total_seconds() // 60)
        return f"refused: dated {at:%Y-%m-%d %H:%M:%S}Z, more than {minutes} minutes ahead"
    return None

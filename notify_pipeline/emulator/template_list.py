"""`GET /{version}/{waba_id}/message_templates`: the template list with Graph's cursor paging.

Cursors are opaque to clients (base64 of a position in the filtered list), as Graph's are; the
`next` link is absolute and repeats the query's filters, so a client can follow it as is.

Every field of Graph's template node can be asked for (pywa 4.5's `get_templates` asks for all of
them, `degrees_of_freedom_spec` included). A field a template has no value for is left out, as
Graph leaves it out; a client must not meet a null where it expects an object.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

from notify_pipeline.emulator.answers import Answer, MetaAPIError, json_answer
from notify_pipeline.emulator.state import Emulator
from notify_pipeline.emulator.templates import STATUSES

DEFAULT_LIMIT = 25
# Fields Graph knows on a message template; asking for another is an error, as at Graph.
KNOWN_FIELDS = frozenset(
    (
        "id", "name", "language", "status", "category", "sub_category", "components", "parameter_format",
        "quality_score", "rejected_reason", "previous_category", "correct_category",
        "message_send_ttl_seconds", "library_template_name", "cta_url_link_tracking_opted_out",
        "degrees_of_freedom_spec",
    )
)  # fmt: skip
# Values Graph gives every template that has no other: served when asked for and not defined.
_STARTED = int(time.time())
_DEFAULTS = {"rejected_reason": "NONE", "quality_score": {"score": "UNKNOWN", "date": _STARTED}}
# Graph's `summary` fields on the list (pywa asks for all four); unknown ones are left out.
MESSAGE_TEMPLATE_LIMIT = 250
_CARRIED = ("fields", "status", "name", "limit", "summary", "category", "language", "quality_score")
_CARRIED += ("content", "name_or_content")


def list_templates(emu: Emulator, query_string: bytes, base_url: str, path: str) -> Answer:
    """One page of templates; MetaAPIError (100) for a bad limit, cursor, field or status."""
    query = {k: v[-1] for k, v in parse_qs(query_string.decode("latin-1"), keep_blank_values=True).items()}
    limit = _limit(query.get("limit"))
    fields = _fields(query.get("fields"))
    statuses = _statuses(query.get("status"))
    everything = emu.templates.all()
    rows = [t.graph_view() for t in everything if _matches(t.graph_view(), query, statuses)]
    summary = _summary(query.get("summary"), len(everything))
    if "before" in query and "after" not in query:
        end = min(_decode(query["before"]), len(rows))
        start = max(0, end - limit)
    else:
        start = _decode(query["after"]) + 1 if "after" in query else 0
        end = min(start + limit, len(rows))
    page = rows[start:end]
    if not page:
        return json_answer({"data": [], **summary})
    data = [_select(row, fields) for row in page] if fields else page
    paging: dict = {"cursors": {"before": _encode(start), "after": _encode(end - 1)}}
    carried = {k: query[k] for k in _CARRIED if k in query}
    if start > 0:
        paging["previous"] = f"{base_url}{path}?{urlencode({**carried, 'before': _encode(start)})}"
    if end < len(rows):
        paging["next"] = f"{base_url}{path}?{urlencode({**carried, 'after': _encode(end - 1)})}"
    return json_answer({"data": data, "paging": paging, **summary})


def _select(row: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    selected = {k: v for k, v in row.items() if k in fields or k == "id"}
    for name in sorted(fields & _DEFAULTS.keys() - selected.keys()):
        selected[name] = _DEFAULTS[name]
    return selected


def _matches(row: dict[str, Any], query: dict[str, str], statuses: set[str] | None) -> bool:
    """Graph's list filters: status, category, language, quality_score (comma lists), name and
    content (substrings, ignoring case), name_or_content (either)."""
    if statuses is not None and row["status"] not in statuses:
        return False
    for key, value in (("category", row.get("category")), ("language", row.get("language"))):
        if key in query and value not in _csv(query[key]):
            return False
    score = (row.get("quality_score") or _DEFAULTS["quality_score"])["score"]
    if "quality_score" in query and score not in _csv(query["quality_score"]):
        return False
    name = row["name"].lower()
    text = " ".join(str(c.get("text", "")) for c in row.get("components", ())).lower()
    if (query.get("name") or "").lower() not in name or (query.get("content") or "").lower() not in text:
        return False
    either = (query.get("name_or_content") or "").lower()
    return either in name or either in text


def _csv(raw: str) -> set[str]:
    return {item.strip() for item in raw.split(",") if item.strip()}


def _summary(raw: str | None, total: int) -> dict[str, Any]:
    known = {
        "total_count": total,
        "message_template_count": total,
        "message_template_limit": MESSAGE_TEMPLATE_LIMIT,
        "are_translations_complete": True,
    }
    asked = _csv(raw or "")
    return {"summary": {k: v for k, v in known.items() if k in asked}} if asked else {}


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or int(raw) < 1:
        raise MetaAPIError(100, f"Param limit must be a positive integer, got {raw!r}.")
    return int(raw)


def _fields(raw: str | None) -> set[str] | None:
    if raw is None or not raw.strip():
        return None
    fields = {f.strip() for f in raw.split(",") if f.strip()}
    unknown = sorted(fields - KNOWN_FIELDS)
    if unknown:
        raise MetaAPIError(
            100, f"Tried accessing nonexisting field ({unknown[0]}) on node type (WhatsAppBusinessHSM)"
        )
    return fields


def _statuses(raw: str | None) -> set[str] | None:
    if raw is None or not raw.strip():
        return None
    statuses = {s.strip().upper() for s in raw.split(",") if s.strip()}
    unknown = sorted(statuses - set(STATUSES))
    if unknown:
        raise MetaAPIError(
            100, f'Param status must be one of {{{", ".join(STATUSES)}}} - got "{unknown[0]}".'
        )
    return statuses


def _encode(position: int) -> str:
    return base64.urlsafe_b64encode(f"position:{position}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "position" or not number.isdigit():
            raise ValueError(cursor)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise MetaAPIError(100, f"Invalid cursor {cursor!r}.") from None

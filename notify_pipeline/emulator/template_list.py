"""`GET /{version}/{waba_id}/message_templates`: the template list with Graph's cursor paging.

Cursors are opaque to clients (base64 of a position in the filtered list), as Graph's are; the
`next` link is absolute and repeats the query's filters, so a client can follow it as is.
"""

from __future__ import annotations

import base64
import binascii
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
    )
)  # fmt: skip
_CARRIED = ("fields", "status", "name", "limit")


def list_templates(emu: Emulator, query_string: bytes, base_url: str, path: str) -> Answer:
    """One page of templates; MetaAPIError (100) for a bad limit, cursor, field or status."""
    query = {k: v[-1] for k, v in parse_qs(query_string.decode("latin-1"), keep_blank_values=True).items()}
    limit = _limit(query.get("limit"))
    fields = _fields(query.get("fields"))
    statuses = _statuses(query.get("status"))
    name = (query.get("name") or "").lower()
    rows = [
        t.graph_view()
        for t in emu.templates.all()
        if (statuses is None or t.status in statuses) and name in t.name.lower()
    ]
    if "before" in query and "after" not in query:
        end = min(_decode(query["before"]), len(rows))
        start = max(0, end - limit)
    else:
        start = _decode(query["after"]) + 1 if "after" in query else 0
        end = min(start + limit, len(rows))
    page = rows[start:end]
    if not page:
        return json_answer({"data": []})
    data = [{k: v for k, v in row.items() if k in fields or k == "id"} if fields else row for row in page]
    paging: dict = {"cursors": {"before": _encode(start), "after": _encode(end - 1)}}
    carried = {k: query[k] for k in _CARRIED if k in query}
    if start > 0:
        paging["previous"] = f"{base_url}{path}?{urlencode({**carried, 'before': _encode(start)})}"
    if end < len(rows):
        paging["next"] = f"{base_url}{path}?{urlencode({**carried, 'after': _encode(end - 1)})}"
    return json_answer({"data": data, "paging": paging})


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

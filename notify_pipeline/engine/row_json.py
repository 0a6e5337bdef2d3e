"""The drain's jsonb columns, read as text and decoded one row at a time.

psycopg decodes jsonb inside fetchall. A value Python's json cannot read (nested deeper than about
1,000 levels, or an integer of more than 4,300 digits: PostgreSQL takes 10,000 levels and any
number) raised there for the whole batch, after the claim had committed, and every later claim
took the same row and failed again. Decoded here instead, such a value marks only its own row (or
template) unreadable, with the cause in one line. queueNotification refuses these shapes at enqueue
(migration 0011); this is for rows queued before it, or written by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row

from notify_pipeline.engine import queries
from notify_pipeline.redact import scrub

# Key set on a row or a template whose JSON could not be read: why, in one line.
UNREADABLE = "unreadable"
# Deepest nesting of a payload the drain takes. queueNotification lets 18 levels through; Python
# decodes about 1,000 but the payload is encoded again to be POSTed, deeper in the stack, so the
# claim flags anything deeper than this before Python parses it (queries.sql, claim_batch).
MAX_DEPTH = 32
_JSON_NAMES = {dict: "an object", list: "an array"}


class UnreadableJson(ValueError):
    """A jsonb value Python cannot read, or not of the JSON type its column holds."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # json.dumps would write it back as Infinity, which is not JSON
        raise ValueError(f"the number {text[:12]}... is too large for a float")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def decode(text: str | None, column: str, expected: type) -> Any:
    """The value of a jsonb column read as text (NULL stays None); UnreadableJson saying why when
    Python cannot read it or it is not of the `expected` type (dict or list)."""
    if text is None:
        return None
    try:
        value = json.loads(text, parse_float=_finite_float, parse_constant=_refuse_constant)
    except RecursionError:
        raise UnreadableJson(f"{column} is nested deeper than Python's JSON decoder allows") from None
    except ValueError as exc:
        raise UnreadableJson(f"{column} cannot be read as JSON: {scrub(exc)[:160]}") from None
    if not isinstance(value, expected):
        raise UnreadableJson(
            f"{column} is JSON {type(value).__name__}, not {_JSON_NAMES.get(expected, expected.__name__)}"
        )
    return value


def read_rows(rows: Iterable[dict[str, Any]], columns: Mapping[str, type]) -> list[dict[str, Any]]:
    """Decode `columns` (name: expected type) of each row in place. A value that cannot be read
    becomes None and the row gets UNREADABLE (the first cause); a `<column>_too_deep` flag from the
    query marks its column unreadable without decoding it."""
    decoded = []
    for row in rows:
        for column, expected in columns.items():
            try:
                if row.pop(f"{column}_too_deep", False):
                    raise UnreadableJson(f"{column} is nested deeper than {MAX_DEPTH} levels")
                row[column] = decode(row[column], column, expected)
            except UnreadableJson as exc:
                row[column] = None
                row.setdefault(UNREADABLE, str(exc))
        decoded.append(row)
    return decoded


TEMPLATES = queries.template_registry
TEMPLATE_JSON = {"variables": list, "components": list, "retry_policy": dict}


async def templates(conn: psycopg.AsyncConnection) -> dict[tuple[str, str], dict[str, Any]]:
    """The template registry by (name, language), as the send policy reads it. A template whose
    JSON cannot be read is kept, marked UNREADABLE: like any definition the engine cannot read,
    Meta judges its sends (policy.py), and its retry policy is the default."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(TEMPLATES)
        rows = read_rows(await cur.fetchall(), TEMPLATE_JSON)
    return {(row["template_name"], row["language"]): row for row in rows}

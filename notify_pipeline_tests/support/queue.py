"""queueNotification called as an application calls it: a template message, and the call itself
with meta passed through as given (None is SQL NULL, unlike support.engine.enqueue's empty object)."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

TEMPLATE_MESSAGE = {
    "to": "+250788999001",
    "template": {
        "name": "welcome_message",
        "language": "en",
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Test User"}]}],
    },
}


def enqueue(db: psycopg.Connection, message, meta=None) -> int:
    return db.execute(
        "SELECT queueNotification(%s, %s)", (Jsonb(message), Jsonb(meta) if meta is not None else None)
    ).fetchone()[0]

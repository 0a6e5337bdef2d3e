"""Enqueueing from Python: the same SQL function applications call, queueNotification()."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from notify_pipeline.engine import queries
from notify_pipeline.whatsapp.messages import template_message


def enqueue(
    conn: psycopg.Connection, message: Mapping[str, Any], meta: Mapping[str, Any] | None = None
) -> int:
    """Validate and queue one message; psycopg.errors.InvalidParameterValue says what is wrong."""
    return conn.execute(
        queries.queue_notification, (Jsonb(dict(message)), Jsonb(dict(meta or {})))
    ).fetchone()[0]


def build_message(
    to: str,
    *,
    template: str | None = None,
    language: str = "en",
    params: Sequence[str] = (),
    named: Mapping[str, str] | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """A message for queueNotification from simple arguments (CLI and the test-notification job)."""
    if (template is None) == (text is None):
        raise ValueError("give either a template or a text")
    if text is not None:
        return {"to": to, "text": text}
    body = dict(named) if named else list(params)
    built = template_message(to, template, language, body=body)
    return {"to": to, "template": built["template"]}

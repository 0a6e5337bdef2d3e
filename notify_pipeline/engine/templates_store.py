"""Writing template definitions (Meta's message_templates shape) into whatsapp_templates.

Used by seed-demo now and by template sync from the Graph API: one mapping from Meta's fields to
our columns. A template a sync switched off because Meta no longer listed it (inactive_reason
'not_at_meta') is switched on again when Meta lists it APPROVED; one an operator switched off
(no reason recorded) stays off.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from notify_pipeline.engine import queries
from notify_pipeline.whatsapp.templates import parse_spec

UPSERT = queries.upsert_template

# Why a template sync switched a template off; the only switch-off that is undone by itself.
NOT_AT_META = "not_at_meta"


def body_variables(definition: Mapping[str, Any]) -> list[str]:
    """The body's variables in order: what whatsapp_templates.variables shows operators."""
    body = parse_spec(definition).body
    return list(body.keys) if body else []


def upsert_templates(conn: psycopg.Connection, definitions: Iterable[Mapping[str, Any]]) -> int:
    """Insert or update templates by (name, language); keeps our own key, domain and settings."""
    count = 0
    with conn.transaction():
        for definition in definitions:
            conn.execute(
                UPSERT,
                {
                    "key": f"tmpl_{definition['name']}",
                    "name": definition["name"],
                    "language": definition["language"],
                    "category": definition.get("category", "UTILITY"),
                    "domain": definition.get("domain", "core"),
                    "status": definition.get("status", "PENDING"),
                    "format": definition.get("parameter_format", "POSITIONAL"),
                    "variables": Jsonb(body_variables(definition)),
                    "components": Jsonb(definition.get("components") or []),
                    "meta_id": definition.get("id"),
                },
            )
            count += 1
    return count

"""Helpers for delivery-engine tests: a database with the demo templates, enqueueing, draining."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from notify_pipeline.demo import load_template_catalog
from notify_pipeline.engine.drain import run_drain as drain_sync
from notify_pipeline.engine.drain_config import DrainConfig, DrainReport
from notify_pipeline.engine.policy import PolicyConfig
from notify_pipeline.engine.templates_store import upsert_templates
from notify_pipeline.whatsapp.client import ClientSettings
from notify_pipeline.whatsapp.messages import template_message

NO_QUIET_HOURS = PolicyConfig(default_quiet_hours=None)


def load_demo_templates(conn: psycopg.Connection) -> None:
    upsert_templates(conn, load_template_catalog())


def enqueue(conn: psycopg.Connection, message: dict[str, Any], meta: dict[str, Any] | None = None) -> int:
    return conn.execute("SELECT queueNotification(%s, %s)", (Jsonb(message), Jsonb(meta or {}))).fetchone()[0]


def welcome(to: str = "+250788000001", name: str = "Aline") -> dict[str, Any]:
    message = template_message(to, "welcome_message", "en", body=[name])
    return {"to": message["to"], "template": message["template"]}


def enqueue_many(
    conn: psycopg.Connection, count: int, *, recipients: int | None = None, meta=None
) -> list[int]:
    """`count` welcome messages spread over `recipients` numbers (default: one number each)."""
    spread = recipients or count
    return [enqueue(conn, welcome(f"+2507{i % spread:08d}"), meta) for i in range(count)]


def client_settings(emulator, **overrides) -> ClientSettings:
    values = {
        "base_url": emulator.base_url,
        "phone_number_id": emulator.phone_number_id,
        "access_token": emulator.token,
        **overrides,
    }
    return ClientSettings(**values)


def run_drain(db_url: str, emulator, settings: ClientSettings | None = None, **config: Any) -> DrainReport:
    config.setdefault("policy", NO_QUIET_HOURS)
    config.setdefault("max_seconds", 30)
    return drain_sync(db_url, settings or client_settings(emulator), DrainConfig(**config))


def statuses(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM notifications GROUP BY status").fetchall())


def row(conn: psycopg.Connection, notification_id: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM notifications WHERE id = %s", (notification_id,))
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def dagster_resources(db_url: str, emulator, token: str | None = None, waba_id: str = "") -> dict:
    """The queue_db and whatsapp resources of the code location, pointed at the test database and emulator."""
    from notify_pipeline.defs.resources import QueueDatabase, WhatsAppCloudApi

    return {
        "queue_db": QueueDatabase(url=db_url),
        "whatsapp": WhatsAppCloudApi(
            base_url=emulator.base_url,
            api_version="v23.0",
            phone_number_id=emulator.phone_number_id,
            access_token=token or emulator.token,
            waba_id=waba_id,
        ),
    }


# The demo welcome template as the policy reads it from whatsapp_templates (pure policy tests).
WELCOME_TEMPLATE = {
    "template_name": "welcome_message",
    "language": "en",
    "category": "UTILITY",
    "approval_status": "APPROVED",
    "is_active": True,
    "parameter_format": "POSITIONAL",
    "variables": ["name"],
    "components": None,
    "retry_policy": {"max_retries": 3},
    "quiet_hours_exempt": None,
}

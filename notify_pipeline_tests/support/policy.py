"""The send-time policy's inputs without a database: a template row, a queue row, a registry of
templates, a contact in Kigali with quiet hours 22:00-07:00, and instants by day and by night there."""

from __future__ import annotations

from datetime import UTC, datetime, time

from notify_pipeline.engine.policy import PolicyConfig
from notify_pipeline.engine.quiet_hours import DEFAULT_QUIET_HOURS
from notify_pipeline.engine.store import Contact
from notify_pipeline.whatsapp.messages import template_message

NIGHT_IN_KIGALI = datetime(2026, 3, 1, 21, 30, tzinfo=UTC)  # 23:30 in Kigali
DAY_IN_KIGALI = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
# The product's default window stated, not read from the environment (the suite sets it off).
CONFIG = PolicyConfig(default_quiet_hours=DEFAULT_QUIET_HOURS)


def template(name="welcome_message", status="APPROVED", category="UTILITY", variables=("name",), **extra):
    return {
        "template_name": name,
        "language": "en",
        "category": category,
        "approval_status": status,
        "is_active": True,
        "parameter_format": "POSITIONAL",
        "variables": list(variables),
        "components": None,
        "retry_policy": {"max_retries": 3},
        "quiet_hours_exempt": None,
        **extra,
    }


def row(payload=None, **extra):
    payload = payload or template_message("+250788000001", "welcome_message", "en", body=["Aline"])
    return {
        "id": 7,
        "to_wa_id": "+250788000001",
        "template_name": payload.get("template", {}).get("name"),
        "language": "en",
        "payload": payload,
        "retry_count": 0,
        "deferral_count": 0,
        "quiet_hours_override": False,
        **extra,
    }


def registry(*templates):
    return {(t["template_name"], t["language"]): t for t in templates}


KIGALI = Contact(
    opted_out=False, quiet_hours_start=time(22), quiet_hours_end=time(7), timezone="Africa/Kigali"
)

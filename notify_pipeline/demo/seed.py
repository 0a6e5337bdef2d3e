"""`notify-pipeline seed-demo`: templates, contacts around the world, and a stream of notifications.

The contacts are chosen so the demo shows every rule: some are opted out, some sit in their quiet
hours right now (their zone is picked by the clock), some use paused or unapproved templates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import psycopg

from notify_pipeline.demo import load_template_catalog
from notify_pipeline.engine.enqueue import enqueue
from notify_pipeline.engine.templates_store import upsert_templates
from notify_pipeline.whatsapp.messages import Button, template_message
from notify_pipeline.whatsapp.templates import parse_spec

ZONES = [
    "Africa/Kigali",
    "Africa/Lagos",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Sydney",
]


@dataclass(frozen=True)
class SeedReport:
    templates: int
    contacts: int
    opted_out: int
    in_quiet_hours: int
    notifications: int


def _contacts(count: int, rng: random.Random, now: datetime) -> list[tuple[str, str, bool]]:
    contacts = []
    for i in range(count):
        zone = ZONES[i % len(ZONES)]
        contacts.append((f"+25078{8000000 + i:07d}", zone, rng.random() < 0.08))
    return contacts


def _message(to: str, definition: dict, rng: random.Random) -> dict:
    spec = parse_spec(definition)
    keys = spec.body.keys if spec.body else ()
    values = [f"{key}-{rng.randint(100, 999)}" for key in keys]
    body = dict(zip(keys, values, strict=True)) if spec.named else values
    buttons = [
        Button(index, "url", f"ref{rng.randint(1000, 9999)}") for index, b in spec.buttons.items() if b.params
    ]
    built = template_message(to, definition["name"], definition["language"], body=body, buttons=buttons)
    return {"to": to, "template": built["template"]}


def seed_demo(
    conn: psycopg.Connection, *, notifications: int = 200, contacts: int = 40, seed: int = 7
) -> SeedReport:
    rng = random.Random(seed)
    catalog = load_template_catalog()
    templates = upsert_templates(conn, catalog)
    now = datetime.now(UTC)
    people = _contacts(contacts, rng, now)
    quiet = 0
    with conn.transaction():
        for wa_id, zone, opted_out in people:
            conn.execute(
                "INSERT INTO contact_preferences (wa_id, timezone, quiet_hours_start, quiet_hours_end, opted_out, "
                "opt_out_at, opt_out_reason) VALUES (%s, %s, '22:00', '07:00', %s, "
                "CASE WHEN %s THEN now() END, CASE WHEN %s THEN 'demo' END) ON CONFLICT (wa_id) DO NOTHING",
                (wa_id, zone, opted_out, opted_out, opted_out),
            )
            local = now.astimezone(ZoneInfo(zone)).hour
            quiet += local >= 22 or local < 7
    approved = [t for t in catalog if t["status"] == "APPROVED"]
    unusable = [t for t in catalog if t["status"] != "APPROVED"]  # held or failed, for the demo
    with conn.transaction():
        for i in range(notifications):
            wa_id = people[rng.randrange(len(people))][0]
            pool = unusable if rng.random() < 0.1 else approved
            definition = pool[rng.randrange(len(pool))]
            meta = {"domain": definition.get("domain", "core"), "correlation_id": f"demo-{seed}-{i}"}
            if rng.random() < 0.5:  # a stream: half of them fall due over the next ten minutes
                meta["delay_seconds"] = rng.randint(5, 600)
            enqueue(conn, _message(wa_id, definition, rng), meta)
    return SeedReport(templates, len(people), sum(p[2] for p in people), quiet, notifications)

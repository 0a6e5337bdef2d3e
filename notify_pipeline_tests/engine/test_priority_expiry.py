"""Priority and expiry: the claim takes the most urgent due rows first and never a live worker's own
stale rows; meta.expires_in_seconds (or the template category's default) becomes expires_at, and a
row past it fails as 'expired' without a request. Real PostgreSQL, the emulator over real HTTP."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from notify_pipeline.db.connect import connect_async
from notify_pipeline.engine.claim import claim
from notify_pipeline.engine.policy import PolicyConfig, decide
from notify_pipeline.engine.reasons import meaning
from notify_pipeline.engine.store import Contact
from notify_pipeline.whatsapp.messages import Button, callback_data, template_message
from notify_pipeline_tests.support.engine import (
    WELCOME_TEMPLATE,
    enqueue,
    load_demo_templates,
    row,
    run_drain,
    statuses,
    welcome,
)

LEASE_S = 900.0


def take(db_url: str, worker: str, limit: int, lease_s: float = LEASE_S) -> list[dict[str, Any]]:
    """One claim through the engine's own function and connection settings."""

    async def run() -> list[dict[str, Any]]:
        conn = await connect_async(db_url, actor=f"test:{worker}")
        try:
            return await claim(conn, worker=worker, limit=limit, lease_s=lease_s)
        finally:
            await conn.close()

    return asyncio.run(run())


def otp(to: str = "+250788222222") -> dict[str, Any]:
    """A one-time code: the demo's AUTHENTICATION template."""
    message = template_message(to, "otp_code", "en", body=["123456"], buttons=[Button(0, "url", "123456")])
    return {"to": to, "template": message["template"]}


def seconds_until(db: psycopg.Connection, at: datetime, since: datetime | None = None) -> float:
    start = since or db.execute("SELECT now()").fetchone()[0]
    return (at - start).total_seconds()


# -- the claim ---------------------------------------------------------------------------------


def test_claim_takes_higher_priority_first_then_due_time(db: psycopg.Connection, db_url: str) -> None:
    ids = {
        name: enqueue(db, welcome(f"+25078800000{n}"), {"priority": priority})
        for n, (name, priority) in enumerate(
            [("low", -5), ("normal_first", 0), ("urgent", 100), ("normal_second", 0), ("high", 10)]
        )
    }
    # Most urgent of all, but not due yet: a priority never makes a row due early.
    enqueue(db, welcome("+250788000009"), {"priority": 100, "delay_seconds": 3600})
    first = take(db_url, "worker-a", limit=3)
    assert [r["id"] for r in first] == [ids["urgent"], ids["high"], ids["normal_first"]]
    assert [r["priority"] for r in first] == [100, 10, 0]
    assert all("expires_at" in r for r in first)
    rest = take(db_url, "worker-a", limit=10)
    assert [r["id"] for r in rest] == [ids["normal_second"], ids["low"]]


def test_a_claim_never_returns_more_than_its_limit(db: psycopg.Connection, db_url: str) -> None:
    ids = {enqueue(db, welcome(f"+2507881{i:05d}"), {"priority": i % 3}) for i in range(60)}
    claims: list[list[dict[str, Any]]] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        for _ in range(3):
            rows = take(db_url, name, limit=7)
            with lock:
                claims.append(rows)

    threads = [threading.Thread(target=worker, args=(f"worker-{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(claims) == 9
    assert all(len(rows) <= 7 for rows in claims)
    assert max(len(rows) for rows in claims) == 7, "a claim took its full limit: the bound was reached"
    claimed = [r["id"] for rows in claims for r in rows]
    assert len(claimed) == len(set(claimed)), "no row went to two claims"
    locked = db.execute("SELECT count(*) FROM notifications WHERE locked_at IS NOT NULL").fetchone()[0]
    assert locked == len(claimed), "a claim locked exactly the rows it returned"
    # What the nine claims left is still there for another worker: every row claimed exactly once.
    rest = [r["id"] for r in take(db_url, "worker-z", limit=100)]
    assert sorted(claimed + rest) == sorted(ids)


def test_a_worker_never_reclaims_its_own_stale_rows_another_worker_may(
    db: psycopg.Connection, db_url: str
) -> None:
    for i in range(3):
        enqueue(db, welcome(f"+25078830000{i}"))
    mine = {r["id"] for r in take(db_url, "worker-a", limit=10)}
    assert len(mine) == 3
    db.execute("UPDATE notifications SET locked_at = now() - interval '1 hour'")  # the lease ran out
    assert take(db_url, "worker-a", limit=10) == [], "worker-a is alive: its rows are still being sent"
    taken = take(db_url, "worker-b", limit=10)
    assert {r["id"] for r in taken} == mine
    holders = db.execute("SELECT DISTINCT locked_by FROM notifications").fetchall()
    assert holders == [("worker-b",)]


# -- expiry at enqueue -------------------------------------------------------------------------


def test_expires_in_seconds_is_stored_from_when_the_message_is_due(db: psycopg.Connection) -> None:
    now_row = row(db, enqueue(db, welcome(), {"expires_in_seconds": 120}))
    assert seconds_until(db, now_row["expires_at"]) == pytest.approx(120, abs=5)
    later = row(db, enqueue(db, welcome("+250788000002"), {"expires_in_seconds": 120, "delay_seconds": 3600}))
    assert seconds_until(db, later["expires_at"], later["next_attempt_at"]) == pytest.approx(120, abs=0.01)
    plain = row(db, enqueue(db, welcome("+250788000003")))
    assert plain["expires_at"] is None, "no expiry given, no category default: it never expires"


@pytest.mark.parametrize(
    "value", [0, -5, 1.5, 600.0, "600", None, True, 2_592_001, 10**12, {"seconds": 60}], ids=repr
)
def test_bad_expires_in_seconds_is_refused_and_nothing_written(db: psycopg.Connection, value) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        enqueue(db, welcome(), {"expires_in_seconds": value})
    assert "meta.expires_in_seconds must be a whole number of seconds from 1 to 2592000" in str(caught.value)
    assert db.execute("SELECT count(*) FROM notifications").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM notification_audit_log").fetchone()[0] == 0


def test_authentication_templates_get_their_category_default(db: psycopg.Connection) -> None:
    load_demo_templates(db)
    code = row(db, enqueue(db, otp()))
    assert seconds_until(db, code["expires_at"]) == pytest.approx(600, abs=5)
    given = row(db, enqueue(db, otp("+250788222223"), {"expires_in_seconds": 60}))
    assert seconds_until(db, given["expires_at"]) == pytest.approx(60, abs=5), "meta wins over the default"
    utility = row(db, enqueue(db, welcome()))
    assert utility["expires_at"] is None, "UTILITY has no default"
    db.execute(
        "UPDATE template_category_defaults SET expires_in_seconds = 300 WHERE category = 'AUTHENTICATION'"
    )
    changed = row(db, enqueue(db, otp("+250788222224")))
    assert seconds_until(db, changed["expires_at"]) == pytest.approx(300, abs=5)


# -- expiry at send time -----------------------------------------------------------------------


def test_an_expired_row_fails_as_expired_and_is_never_sent(
    db: psycopg.Connection, db_url: str, emulator
) -> None:
    load_demo_templates(db)
    stale = enqueue(db, welcome("+250788400001"), {"expires_in_seconds": 60, "priority": 50})
    fresh = enqueue(db, welcome("+250788400002"), {"expires_in_seconds": 3600})
    db.execute("UPDATE notifications SET expires_at = now() - interval '1 second' WHERE id = %s", (stale,))
    report = run_drain(db_url, emulator)
    assert report.stopped_by == "drained"
    assert statuses(db) == {"failed": 1, "sent": 1}
    expired = row(db, stale)
    assert (expired["status"], expired["last_error_code"]) == ("failed", "expired")
    assert "before it could be sent" in expired["error_message"]
    assert expired["wa_message_id"] is None and expired["locked_at"] is None
    assert row(db, fresh)["status"] == "sent"
    stats = emulator.stats()
    assert stats["total"] == 1 and stats["rejected"] == 0, "only the fresh row reached the API"
    assert [m["biz_opaque_callback_data"] for m in emulator.messages()] == [callback_data(fresh)]
    trail = [
        e
        for (e,) in db.execute(
            "SELECT event_type FROM notification_audit_log WHERE notification_id = %s ORDER BY id", (stale,)
        )
    ]
    assert trail == ["queued", "claimed", "failed"]


# -- the policy (pure) -------------------------------------------------------------------------

NOW = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
TEMPLATES = {("welcome_message", "en"): WELCOME_TEMPLATE}


def policy_row(**extra: Any) -> dict[str, Any]:
    return {
        "id": 7,
        "to_wa_id": "+250788000001",
        "template_name": "welcome_message",
        "language": "en",
        "payload": template_message("+250788000001", "welcome_message", "en", body=["Aline"]),
        "retry_count": 0,
        "deferral_count": 0,
        "quiet_hours_override": False,
        **extra,
    }


def test_policy_fails_an_expired_row_before_anything_else() -> None:
    opted_out = Contact(opted_out=True, quiet_hours_start=None, quiet_hours_end=None, timezone="UTC")
    expired = policy_row(expires_at=NOW - timedelta(seconds=1), payload={"not": "a message"})
    verdict = decide(expired, opted_out, {}, NOW, PolicyConfig())
    assert (verdict.action, verdict.reason) == ("fail", "expired")
    assert verdict.message == "Expired at 2026-03-01 09:59:59 UTC before it could be sent: not sent"
    assert verdict.request is None
    at_the_second = decide(policy_row(expires_at=NOW), None, TEMPLATES, NOW, PolicyConfig())
    assert at_the_second.reason == "expired", "expires_at itself is already too late"
    assert meaning("expired").startswith("Past its expires_at")


@pytest.mark.parametrize("expires_at", [None, NOW + timedelta(seconds=1)], ids=["never", "not_yet"])
def test_policy_sends_a_row_before_its_expiry(expires_at) -> None:
    config = PolicyConfig(default_quiet_hours=None)
    verdict = decide(policy_row(expires_at=expires_at), None, TEMPLATES, NOW, config)
    assert verdict.action == "send" and verdict.request is not None
    assert decide(policy_row(), None, TEMPLATES, NOW, config).action == "send", "rows without the key"

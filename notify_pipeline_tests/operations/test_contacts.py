"""Contact preferences: init_contact_preferences, mark_opted_out, mark_opted_in, and the checks
on numbers and time zones. Real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest

from notify_pipeline_tests.support.queue import TEMPLATE_MESSAGE, enqueue


def prefs(db: psycopg.Connection, wa_id: str) -> dict:
    cur = db.execute("SELECT * FROM contact_preferences WHERE wa_id = %s", (wa_id,))
    names = [column.name for column in cur.description]
    found = cur.fetchone()
    return dict(zip(names, found, strict=True)) if found else {}


def test_init_creates_defaults(db: psycopg.Connection) -> None:
    pref_id = db.execute("SELECT init_contact_preferences('250 788 123 456', NULL, 'fr')").fetchone()[0]
    contact = prefs(db, "+250788123456")
    assert contact["id"] == pref_id
    assert str(contact["quiet_hours_start"]) == "22:00:00"
    assert str(contact["quiet_hours_end"]) == "07:00:00"
    assert contact["timezone"] == "Africa/Kigali"
    assert contact["locale"] == "fr"
    assert contact["opted_out"] is False


def test_init_never_overwrites_what_a_contact_set(db: psycopg.Connection) -> None:
    db.execute("SELECT init_contact_preferences('+250788123456', NULL, 'fr')")
    db.execute(
        "UPDATE contact_preferences SET quiet_hours_start = '23:30', timezone = 'Europe/Paris' "
        "WHERE wa_id = '+250788123456'"
    )
    again = db.execute("SELECT init_contact_preferences('+250788123456', 'profile-7', 'en')").fetchone()[0]
    contact = prefs(db, "+250788123456")
    assert again == contact["id"]
    assert contact["locale"] == "fr", "the locale the contact had is kept"
    assert str(contact["quiet_hours_start"]) == "23:30:00"
    assert contact["timezone"] == "Europe/Paris"
    assert contact["profile_id"] == "profile-7", "a missing profile id is filled in"
    db.execute("SELECT init_contact_preferences('+250788123456', 'profile-8')")
    assert prefs(db, "+250788123456")["profile_id"] == "profile-7", "an existing profile id is kept"


def test_init_rejects_malformed_number(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="is not a WhatsApp number"):
        db.execute("SELECT init_contact_preferences('call me maybe')")
    assert db.execute("SELECT count(*) FROM contact_preferences").fetchone()[0] == 0


@pytest.mark.parametrize("zone", ["Africa/Kigali", "America/Argentina/Buenos_Aires", "UTC", "Etc/UTC"])
def test_valid_iana_time_zones_are_accepted(db: psycopg.Connection, zone: str) -> None:
    db.execute("INSERT INTO contact_preferences (wa_id, timezone) VALUES ('+250788123456', %s)", (zone,))
    assert prefs(db, "+250788123456")["timezone"] == zone, "stored as given"
    # Usable: PostgreSQL and Python (which works out quiet hours) read the stored zone alike.
    moment = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    local = db.execute(
        "SELECT %s AT TIME ZONE timezone FROM contact_preferences WHERE wa_id = '+250788123456'", (moment,)
    ).fetchone()[0]
    assert local == moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


@pytest.mark.parametrize("zone", ["Etc/GMT+3", "Etc/GMT-14", "Etc/GMT+0"])
def test_etc_gmt_offsets_are_refused_with_a_hint(db: psycopg.Connection, zone: str) -> None:
    """Their sign is inverted (Etc/GMT+3 is UTC-3): refused since migration 0010."""
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="inverted sign") as caught:
        db.execute("INSERT INTO contact_preferences (wa_id, timezone) VALUES ('+250788123456', %s)", (zone,))
    assert "Area/Location" in (caught.value.diag.message_hint or "")


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "CEST", "UTC+3", "Kigali", "", "Africa/"])
def test_invalid_time_zones_are_refused(db: psycopg.Connection, zone: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="contact_preferences_timezone_iana"):
        db.execute("INSERT INTO contact_preferences (wa_id, timezone) VALUES ('+250788123456', %s)", (zone,))


def test_quiet_hours_need_both_ends(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="quiet_hours_pair"):
        db.execute(
            "INSERT INTO contact_preferences (wa_id, quiet_hours_start) VALUES ('+250788123456', '22:00')"
        )


def test_opt_out_cancels_waiting_and_held_rows_but_not_others(db: psycopg.Connection) -> None:
    waiting = enqueue(db, TEMPLATE_MESSAGE)
    later = enqueue(db, TEMPLATE_MESSAGE, {"delay_seconds": 3600})
    in_flight = enqueue(db, TEMPLATE_MESSAGE)
    db.execute(
        "UPDATE notifications SET locked_at = now(), locked_by = 'worker-1' WHERE id = %s", (in_flight,)
    )
    other = enqueue(db, {**TEMPLATE_MESSAGE, "to": "+250788999002"})

    cancelled = db.execute("SELECT mark_opted_out('+250788999001', 'user_request')").fetchone()[0]

    # A row a drain holds is cancelled too: the drain re-checks what it holds before each POST.
    assert cancelled == 3
    statuses = dict(db.execute("SELECT id, status FROM notifications").fetchall())
    assert statuses == {waiting: "failed", later: "failed", in_flight: "failed", other: "queued"}
    code, message = db.execute(
        "SELECT last_error_code, error_message FROM notifications WHERE id = %s", (waiting,)
    ).fetchone()
    assert code == "opted_out"
    assert "opted out" in message
    audit = db.execute(
        "SELECT notification_id, details->>'actor' FROM notification_audit_log WHERE event_type = 'cancelled'"
    ).fetchall()
    assert sorted(audit) == sorted([(waiting, "test"), (later, "test"), (in_flight, "test")])
    contact = prefs(db, "+250788999001")
    assert contact["opted_out"] is True
    assert contact["opt_out_reason"] == "user_request"
    event = db.execute(
        "SELECT details FROM observability_events WHERE event_type = 'CONTACT_OPTED_OUT'"
    ).fetchone()[0]
    assert event["cancelled"] == 3
    assert "999001" not in event["wa_id"], "phone numbers are masked in events"


def test_second_opt_out_keeps_the_first_time(db: psycopg.Connection) -> None:
    db.execute("SELECT mark_opted_out('+250788999001', 'user_request')")
    first = prefs(db, "+250788999001")["opt_out_at"]
    db.execute("SELECT mark_opted_out('+250788999001', 'complaint')")
    contact = prefs(db, "+250788999001")
    assert contact["opt_out_at"] == first
    assert contact["opt_out_reason"] == "complaint"


def test_opt_back_in(db: psycopg.Connection) -> None:
    cancelled = enqueue(db, TEMPLATE_MESSAGE)
    db.execute("SELECT mark_opted_out('+250788999001')")
    assert db.execute("SELECT mark_opted_in('+250788999001')").fetchone()[0] is True
    contact = prefs(db, "+250788999001")
    assert contact["opted_out"] is False
    assert contact["opt_out_at"] is None
    assert contact["opted_in_at"] is not None
    status = db.execute("SELECT status FROM notifications WHERE id = %s", (cancelled,)).fetchone()[0]
    assert status == "failed", "what the opt-out cancelled stays cancelled"
    assert db.execute("SELECT mark_opted_in('+250788999001')").fetchone()[0] is False


def test_opt_in_of_unknown_contact_creates_preferences(db: psycopg.Connection) -> None:
    assert db.execute("SELECT mark_opted_in('+250788777666')").fetchone()[0] is False
    assert prefs(db, "+250788777666")["opted_out"] is False

"""Diagnostics reports on a real PostgreSQL, without Dagster: failures, template failures, deferred
rows, quiet-hours violations, top recipients, hours of day, error messages, correlation trails."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from notify_pipeline.engine.quiet_hours import in_window
from notify_pipeline.operations import diagnostics_activity as activity
from notify_pipeline.operations.diagnostics import (
    REPORTS,
    DiagnosticsError,
    deferred,
    errors,
    failures,
    fix_for,
    render,
    render_markdown,
    run_report,
    template_failures,
    to_json,
)
from notify_pipeline.redact import mask_number, mask_text
from notify_pipeline.whatsapp.errors import lookup
from notify_pipeline_tests.support.diagnostics import contact, insert, last_local, template

NOW = datetime.now(UTC)


def by(rows: list[dict], key: str) -> dict:
    return {r[key]: r for r in rows}


def test_failures_by_code_have_the_real_meaning_and_fix(db) -> None:
    for _ in range(2):
        insert(db, "+250788000001", status="failed", code="131026", message="undeliverable to +250788000001")
    insert(db, "+250788000002", status="failed", code="opted_out", message="Contact opted out")
    insert(db, "+250788000003", status="failed", code="template_missing", message="no template")
    insert(db, "+250788000004", status="failed", code="timeout_ambiguous", message="read timeout")
    insert(db, "+250788000005", status="failed", code=None, message="???")
    insert(db, "+250788000006", status="failed", code="131026", created_at=NOW - timedelta(hours=3))
    insert(db, "+250788000007")  # sent

    report = failures(db, hours=1)
    rows = by(report.rows, "code")
    assert rows["131026"]["failed"] == 2, "the row created 3 h ago is outside the window"
    assert rows["131026"]["meaning"] == lookup(131026).title == "Message undeliverable"
    assert rows["131026"]["fix"] == lookup(131026).fix
    assert "+250788000001" not in rows["131026"]["example"] and "+250*******01" in rows["131026"]["example"]
    assert "Sync" in rows["template_missing"]["fix"]
    assert "status page" in rows["timeout_ambiguous"]["fix"]
    assert rows["none"]["meaning"] == "no error code"
    # An opt-out is not a failure (README "Figures"): it is listed apart, out of the failure rate,
    # which used to be 6 failed of 7 here while the alert said 5 of 6.
    assert "opted_out" not in rows
    apart = by(report.tables[1].rows, "code")
    assert apart["opted_out"]["outcome"] == "filtered" and apart["opted_out"]["rows"] == 1
    assert "only at their own request" in apart["opted_out"]["fix"]
    assert "1 sent, 5 failed (failure rate 83.3 %" in report.notes[0]
    assert "1 filtered" in report.notes[1]
    assert report.figures["failed"] == 5 and report.figures["failure_rate"] == 5 / 6
    text = render(report)
    assert "Message undeliverable" in text and "Template not found" not in text


def test_json_has_the_same_masked_cells_and_the_figures(db) -> None:
    insert(db, "+250788000011", status="failed", code="131026", message="undeliverable to +250788000011")
    insert(db, "+250788000012")  # sent
    shown = json.loads(to_json(failures(db, hours=1)))
    assert shown["report"] == "failures" and shown["figures"]["failure_rate"] == 0.5
    (row,) = shown["tables"][0]["rows"]
    assert row["example"] == "undeliverable to +250*******11" and row["last_seen"].endswith("+00:00")
    assert "+250788000011" not in json.dumps(shown)


def test_fixes_for_our_own_reasons() -> None:
    assert fix_for("quiet_hours").startswith("Not a failure")
    assert fix_for("pair_limit").startswith("Not a failure")
    assert "status page" in fix_for("http_503") and "status page" in fix_for("connection")
    assert "template" in fix_for("template_not_approved").lower()
    assert fix_for("131047") == lookup(131047).fix
    assert "Undocumented" in fix_for("999999")


def test_template_failures_show_only_that_template_and_its_state(db) -> None:
    template(db, "welcome_message")
    mine = [
        insert(db, f"+25078800010{i}", status="failed", code="132000", template="welcome_message")
        for i in range(3)
    ]
    insert(db, "+250788000200", status="failed", code="132001", template="order_update")
    insert(db, "+250788000201", template="welcome_message")  # sent

    report = template_failures(db, "welcome_message", limit=2)
    assert [r["id"] for r in report.rows] == [mine[2], mine[1]], "latest first, at most --limit"
    assert {r["code"] for r in report.rows} == {"132000"}
    assert report.rows[0]["meaning"] == lookup(132000).title
    assert report.rows[0]["recipient"].startswith("+250") and "*" in report.rows[0]["recipient"]
    assert "welcome_message (en): APPROVED, active, UTILITY" in report.notes
    assert any(note.startswith("132000: Send exactly the variables") for note in report.notes)

    unsynced = template_failures(db, "order_update")
    assert "not in whatsapp_templates" in unsynced.notes[0]
    with pytest.raises(DiagnosticsError, match="unknown template 'no_such_template'"):
        template_failures(db, "no_such_template")


def test_deferred_rows_grouped_by_reason_with_a_sample(db) -> None:
    # Due times relative to this test's start, not the module's import: the suite runs for minutes.
    now = datetime.now(UTC) + timedelta(minutes=5)
    later = now + timedelta(hours=2)
    for minutes in (10, 20, 30, 40):
        insert(
            db,
            "+250788000301",
            status="queued",
            code="quiet_hours",
            next_attempt_at=later + timedelta(minutes=minutes),
        )
    insert(
        db, "+250788000302", status="queued", code="pair_limit", next_attempt_at=now + timedelta(seconds=30)
    )
    insert(db, "+250788000303", status="queued", code="131056", next_attempt_at=now + timedelta(seconds=16))
    insert(db, "+250788000304", status="queued", code="131000", next_attempt_at=now + timedelta(minutes=1))
    insert(db, "+250788000305", status="queued", next_attempt_at=now + timedelta(days=1))  # scheduled
    insert(
        db,
        "+250788000306",
        status="queued",
        code="quiet_hours",
        next_attempt_at=datetime.now(UTC) - timedelta(minutes=1),
    )
    insert(db, "+250788000307")  # sent

    report = deferred(db, limit=20)
    rows = by(report.rows, "reason")
    assert set(rows) == {"quiet_hours", "pair_limit", "131056", "131000", "scheduled"}
    assert rows["quiet_hours"]["waiting"] == 4, "the row already due is not deferred"
    assert rows["quiet_hours"]["earliest_due"] == later + timedelta(minutes=10)
    assert rows["quiet_hours"]["latest_due"] == later + timedelta(minutes=40)
    assert rows["quiet_hours"]["kind"] == "deferred by the engine"
    assert rows["131056"]["kind"] == "throttled by Meta"
    assert rows["131056"]["meaning"] == lookup(131056).title
    assert rows["131000"]["kind"] == "retry backoff"
    assert rows["scheduled"]["kind"] == "scheduled"
    sample = report.tables[1].rows
    assert sum(r["reason"] == "quiet_hours" for r in sample) == 3
    assert len(sample) == 7 and all("*" in r["recipient"] for r in sample)
    assert report.notes == ("8 waiting",)


def test_quiet_hours_violations_in_each_contacts_own_zone_and_window(db, monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_DEFAULT_QUIET_HOURS")  # the product's default window, 22:00-07:00
    contact(db, "+12125550101", "America/New_York", ("22:00", "07:00"))
    contact(db, "+250788000401", "Africa/Kigali", ("22:00", "07:00"))
    contact(db, "+13105550102", "America/Los_Angeles", ("22:00", "07:00"))
    contact(db, "+250788000402", "Africa/Kigali", ("13:00", "15:00"))
    contact(db, "+250788000403", "Africa/Kigali", None)  # preferences without quiet hours
    template(db, "login_code", category="AUTHENTICATION")
    template(db, "welcome_message")
    cases = {
        # New York 23:30 local, in its own 22:00-07:00 window.
        "ny_night": (insert(db, "+12125550101", sent_at=last_local("America/New_York", 23, 30)), True),
        # 23:30 UTC is 01:30 in Kigali: quiet there.
        "kigali_0130": (insert(db, "+250788000401", sent_at=last_local("UTC", 23, 30)), True),
        # 05:30 UTC is 07:30 in Kigali: the window has ended (a UTC check would flag it).
        "kigali_0730": (insert(db, "+250788000401", sent_at=last_local("UTC", 5, 30)), False),
        # 23:30 in Kigali is the afternoon in Los Angeles (a Kigali check would flag it).
        "la_afternoon": (insert(db, "+13105550102", sent_at=last_local("Africa/Kigali", 23, 30)), False),
        # A window that does not cross midnight.
        "kigali_1400": (insert(db, "+250788000402", sent_at=last_local("Africa/Kigali", 14, 0)), True),
        "kigali_1530": (insert(db, "+250788000402", sent_at=last_local("Africa/Kigali", 15, 30)), False),
        "no_window": (insert(db, "+250788000403", sent_at=last_local("Africa/Kigali", 23, 30)), False),
        # No preferences: the policy's default, 22:00-07:00 in Africa/Kigali.
        "default": (insert(db, "+250788000404", sent_at=last_local("Africa/Kigali", 2, 0)), True),
        "override": (
            insert(db, "+12125550101", sent_at=last_local("America/New_York", 3, 0), override=True),
            True,
        ),
        "exempt": (
            insert(db, "+12125550101", sent_at=last_local("America/New_York", 4, 0), template="login_code"),
            True,
        ),
    }
    insert(db, "+12125550101", status="queued", created_at=last_local("America/New_York", 23, 0))
    insert(db, "+12125550101", sent_at=last_local("America/New_York", 23, 0) - timedelta(days=3))

    report = activity.quiet_hours_violations(db, hours=48)
    flagged = by(report.rows, "id")
    assert set(flagged) == {row_id for row_id, quiet in cases.values() if quiet}
    ny = flagged[cases["ny_night"][0]]
    assert (ny["local_time"], ny["zone"], ny["quiet_hours"], ny["preferences"]) == (
        "23:30",
        "America/New_York",
        "22:00-07:00",
        "own",
    )
    assert ny["allowed"] == "NO" and ny["recipient"] == "+121******01"
    assert flagged[cases["kigali_0130"][0]]["local_time"] == "01:30"
    assert flagged[cases["default"][0]]["preferences"] == "default"
    assert flagged[cases["override"][0]]["allowed"] == "yes: quiet_hours_override"
    assert flagged[cases["exempt"][0]]["allowed"] == "yes: exempt template (AUTHENTICATION)"
    assert report.notes[0].startswith("6 sent in the last 48 h")

    # Agrees with the engine's own window logic, row by row.
    for row_id, quiet in cases.values():
        zone, start, end, sent_at = db.execute(
            "SELECT coalesce(cp.timezone, 'Africa/Kigali'), coalesce(cp.quiet_hours_start, '22:00'), "
            "coalesce(cp.quiet_hours_end, '07:00'), n.sent_at FROM notifications n "
            "LEFT JOIN contact_preferences cp ON cp.wa_id = n.to_wa_id WHERE n.id = %s",
            (row_id,),
        ).fetchone()
        if row_id != cases["no_window"][0]:
            assert in_window(sent_at.astimezone(ZoneInfo(zone)).time(), start, end) is quiet

    # The runbook's query (one zone, BETWEEN 22 AND 6) finds none of them.
    runbook = db.execute(
        "SELECT id FROM notifications WHERE status = 'sent' AND sent_at > NOW() - INTERVAL '48 hours' "
        "AND EXTRACT(HOUR FROM sent_at AT TIME ZONE 'Africa/Kigali') BETWEEN 22 AND 6"
    ).fetchall()
    assert runbook == []


def test_top_recipients_are_masked_with_counts(db) -> None:
    for _ in range(3):
        insert(db, "+250788000501")
    insert(db, "+250788000501", status="failed", code="131026")
    insert(db, "+250788000502")
    insert(db, "+250788000503", created_at=NOW - timedelta(hours=30))
    db.execute("SELECT mark_opted_out('+250788000502', 'test')")

    report = activity.top_recipients(db, hours=24, limit=5)
    assert report.rows[0] == {
        **report.rows[0],
        "recipient": "+250*******01",
        "total": 4,
        "sent": 3,
        "failed": 1,
    }
    assert [r["recipient"] for r in report.rows] == ["+250*******01", "+250*******02"]
    assert report.rows[1]["opted_out"] is True
    assert "+250788000501" not in render(report) + render_markdown(report)


def test_by_hour_uses_the_report_time_zone_and_success_rate(db, monkeypatch) -> None:
    ten = last_local("Africa/Kigali", 10, 15)
    insert(db, "+250788000601", sent_at=ten + timedelta(minutes=1), created_at=ten)
    insert(db, "+250788000602", sent_at=ten + timedelta(minutes=1), created_at=ten)
    insert(db, "+250788000603", status="failed", code="131026", created_at=ten)
    insert(db, "+250788000604", status="queued", created_at=ten, next_attempt_at=NOW + timedelta(hours=1))

    rows = by(activity.by_hour(db, hours=48, timezone="Africa/Kigali").rows, "hour")
    assert rows[10] == {"hour": 10, "total": 4, "sent": 2, "failed": 1, "queued": 1, "success_pct": 66.7}
    monkeypatch.setenv("NOTIFY_REPORT_TIMEZONE", "Asia/Tokyo")
    report = activity.by_hour(db, hours=48)
    assert set(by(report.rows, "hour")) == {17} and "Asia/Tokyo" in report.notes[0]
    with pytest.raises(DiagnosticsError, match="not an IANA zone"):
        activity.by_hour(db, timezone="CEST")


def test_common_error_messages_group_numbers_away(db) -> None:
    for n in range(3):
        insert(
            db,
            f"+25078800070{n}",
            status="failed",
            code="131026",
            message=f"Undeliverable to +25078800070{n}",
        )
    insert(db, "+250788000710", status="failed", code="opted_out", message="Contact opted out (test)")

    report = errors(db, hours=24, limit=10)
    top = report.rows[0]
    assert (top["occurrences"], top["code"], top["message"]) == (3, "131026", "Undeliverable to <number>")
    assert top["meaning"] == "Message undeliverable"
    assert report.rows[1]["code"] == "opted_out" and report.rows[1]["meaning"].startswith("Contact opted out")
    assert len(errors(db, limit=1).rows) == 1


def test_trail_shows_each_notification_and_its_events_in_order(db) -> None:
    first = db.execute(
        "SELECT queueNotification(jsonb_build_object('to', '+250788000801', 'text', 'hi'), "
        "jsonb_build_object('correlation_id', 'order-42'))"
    ).fetchone()[0]
    second = db.execute(
        "SELECT queueNotification(jsonb_build_object('to', '+250788000802', 'text', 'hi'), "
        "jsonb_build_object('correlation_id', 'order-42'))"
    ).fetchone()[0]
    db.execute("UPDATE notifications SET locked_at = now(), locked_by = 'w1' WHERE id = %s", (first,))
    db.execute(
        "UPDATE notifications SET locked_at = NULL, locked_by = NULL, retry_count = 1, "
        "next_attempt_at = now() + interval '30 seconds', last_error_code = '131000', "
        "error_message = 'Something went wrong for +250788000801' WHERE id = %s",
        (first,),
    )
    db.execute("UPDATE notifications SET locked_at = now(), locked_by = 'w2' WHERE id = %s", (first,))
    db.execute(
        "UPDATE notifications SET status = 'sent', sent_at = now(), wa_message_id = 'wamid.1', "
        "last_error_code = NULL, error_message = NULL WHERE id = %s",
        (first,),
    )

    report = activity.trail(db, "order-42")
    assert [n["id"] for n in report.rows] == [first, second]
    assert [n["status"] for n in report.rows] == ["sent", "queued"]
    events = [e for e in report.tables[1].rows if e["notification"] == first]
    assert [e["event"] for e in events] == ["queued", "claimed", "retried", "claimed", "sent"]
    assert [e["at"] for e in report.tables[1].rows] == sorted(e["at"] for e in report.tables[1].rows)
    retried = events[2]
    assert (retried["actor"], retried["worker"], retried["error_code"]) == ("test", "w1", "131000")
    assert retried["meaning"] == lookup(131000).title
    assert retried["message"] == "Something went wrong for +250*******01"
    assert events[4]["change"] == "queued→sent" and "wa_message_id=wamid.1" in events[4]["details"]
    text = render(report)
    assert "+250788000801" not in text and "+250788000802" not in text
    with pytest.raises(DiagnosticsError, match="unknown correlation id 'nope'"):
        activity.trail(db, "nope")


def test_bad_input_is_refused_with_a_clear_reason(db) -> None:
    with pytest.raises(DiagnosticsError, match="give more than 0"):
        failures(db, hours=-1)
    with pytest.raises(DiagnosticsError, match="give more than 0"):
        run_report(db, "errors", hours=0)
    with pytest.raises(DiagnosticsError, match="limit 0"):
        run_report(db, "top-recipients", limit=0)
    with pytest.raises(DiagnosticsError, match="unknown report 'nonsense'"):
        run_report(db, "nonsense")
    with pytest.raises(DiagnosticsError, match="needs a template"):
        run_report(db, "template_failures")
    with pytest.raises(DiagnosticsError, match="needs a correlation id"):
        run_report(db, "trail")


def test_every_report_runs_by_name_and_masks_numbers(db) -> None:
    template(db, "welcome_message")
    insert(
        db, "+250788000901", status="failed", code="131026", message="to +250788000901", correlation_id="c-1"
    )
    insert(db, "+250788000902", status="queued", code="quiet_hours", next_attempt_at=NOW + timedelta(hours=1))
    insert(db, "+250788000903", sent_at=last_local("Africa/Kigali", 23, 30))
    for name in REPORTS:
        report = run_report(db, name, hours=48, template="welcome_message", correlation_id="c-1")
        output = render(report) + render_markdown(report)
        assert report.name == name
        for number in ("+250788000901", "+250788000902", "+250788000903", "250788000901"):
            assert number not in output, (name, output)


def test_masks_match_the_database_function(db) -> None:
    for number in ("+250788123456", "+1212555010", "+4412"):
        assert mask_number(number) == db.execute("SELECT notify_mask_wa_id(%s)", (number,)).fetchone()[0]
    assert mask_text("code 2494100 for 250788123456") == "code 2494100 for 2507******56"

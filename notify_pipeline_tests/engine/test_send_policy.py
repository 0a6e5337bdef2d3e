"""Send policy (issue 14): waits by their own cause, bounded throttling deferrals, a late 131049
queued again once, `retry-failed` leaving permanent outcomes alone, and the 24-hour window.

Pure rules over rows and results, then the database's part on a real PostgreSQL: deferrals counted
by cause as the drain writes them back, and the late 131049 through `notify-pipeline serve`."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, time, timedelta

import psycopg
import pytest

from notify_pipeline.db.connect import connect_async
from notify_pipeline.engine import outcomes, store
from notify_pipeline.engine.operations import RetryFilter, retry_failed
from notify_pipeline.engine.policy import PolicyConfig, decide, max_deferrals
from notify_pipeline.engine.store import Contact
from notify_pipeline.whatsapp.errors import CODES, ErrorClass, classify, never_retry_codes
from notify_pipeline.whatsapp.messages import template_message, text_message
from notify_pipeline.whatsapp.results import ApiError, SendResult
from notify_pipeline_tests.support.engine import WELCOME_TEMPLATE, enqueue, load_demo_templates, row, welcome
from notify_pipeline_tests.support.paths import REPO_ROOT
from notify_pipeline_tests.support.service import running_service

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MIGRATION = REPO_ROOT / "notify_pipeline/db/migrations/versions/0009_send_policy.sql"


def claimed(deferral_count: int = 0, deferrals: dict | None = None, **extra) -> dict:
    """A claimed row as the drain holds it: counts in total and by cause."""
    return {
        "id": 7,
        "retry_count": 0,
        "deferral_count": deferral_count,
        "deferrals": deferrals if deferrals is not None else {},
        **extra,
    }


def meta(code: int) -> SendResult:
    error = ApiError(classify(code, 400), f"({code})", code=code, http_status=400)
    return SendResult(latency_s=0.01, http_status=400, error=error)


def wait_s(outcome) -> float:
    return (outcome.next_attempt_at - NOW).total_seconds()


# -- 1. waits by their own cause --------------------------------------------------------------


def test_the_first_pair_limit_hit_waits_one_second_after_six_unrelated_deferrals() -> None:
    # The case: quiet hours and a template hold deferred the row six times; the first 131056
    # waited 4^6 s (capped at an hour) because every deferral was counted.
    row_ = claimed(6, {"quiet_hours": 5, "template_paused": 1})
    outcome = outcomes.after_send(row_, None, meta(131056), NOW)
    assert outcome.kind == "deferred" and wait_s(outcome) == 1.0
    assert (outcome.error_code, outcome.deferral_count) == ("131056", 7)


@pytest.mark.parametrize(("hits", "expected"), [(0, 1), (1, 4), (2, 16), (3, 64), (5, 1024), (6, 3600)])
def test_pair_limit_waits_grow_with_the_rows_own_hits(hits: int, expected: float) -> None:
    row_ = claimed(hits + 4, {"131056": hits, "quiet_hours": 4})
    assert wait_s(outcomes.after_send(row_, None, meta(131056), NOW)) == expected


def test_spam_rate_limit_is_deferred_a_bounded_number_of_times_then_fails() -> None:
    bound = CODES[131048].max_deferrals
    assert bound is not None and bound > 0
    for hits in range(bound):
        outcome = outcomes.after_send(claimed(hits, {"131048": hits}), None, meta(131048), NOW)
        assert outcome.kind == "deferred", hits
    final = outcomes.after_send(
        claimed(bound + 9, {"131048": bound, "quiet_hours": 9}), None, meta(131048), NOW
    )
    assert (final.kind, final.status, final.error_code) == ("failed", "failed", "131048")
    assert f"Gave up after {bound} deferral(s) for 131048" in final.error_message
    assert "max_deferrals" in final.error_message


def test_other_causes_do_not_use_up_a_codes_bound() -> None:
    bound = CODES[131048].max_deferrals
    outcome = outcomes.after_send(claimed(50, {"quiet_hours": 50}), None, meta(131048), NOW)
    assert outcome.kind == "deferred" and bound < 50


@pytest.mark.parametrize("code", sorted(c for c, e in CODES.items() if e.error_class is ErrorClass.THROTTLED))
def test_every_throttling_code_has_a_bound_in_the_code_table(code: int) -> None:
    bound = CODES[code].max_deferrals
    assert isinstance(bound, int) and bound >= 1
    done = outcomes.after_send(claimed(bound, {str(code): bound}), None, meta(code), NOW)
    assert done.kind == "failed" and done.error_code == str(code)


def test_the_bound_is_configurable(monkeypatch) -> None:
    row_ = claimed(3, {"131048": 3})
    assert outcomes.after_send(row_, None, meta(131048), NOW, deferral_limits={131048: 5}).kind == "deferred"
    monkeypatch.setenv("NOTIFY_MAX_DEFERRALS", "131048=1, 130429=7")
    assert max_deferrals(131048) == 1 and max_deferrals(130429) == 7
    assert max_deferrals(131056) == CODES[131056].max_deferrals
    assert outcomes.after_send(claimed(1, {"131048": 1}), None, meta(131048), NOW).kind == "failed"
    monkeypatch.setenv("NOTIFY_MAX_DEFERRALS", "131000=3")
    with pytest.raises(ValueError, match="throttling code"):
        max_deferrals(131048)


async def _write_back(db_url: str, ids: list[int], reasons: list[str]) -> None:
    async with await connect_async(db_url, actor="send:test", autocommit=True) as conn:
        for notification_id, reason in zip(ids, reasons, strict=True):
            await conn.execute(
                "UPDATE notifications SET locked_at = now(), locked_by = 'w' WHERE id = %s",
                (notification_id,),
            )
            cur = await conn.execute(
                "SELECT id, retry_count, deferral_count FROM notifications WHERE id = %s", (notification_id,)
            )
            (id_, retries, deferrals) = await cur.fetchone()
            row_ = {"id": id_, "retry_count": retries, "deferral_count": deferrals}
            outcome = outcomes.deferred(row_, NOW + timedelta(hours=1), reason, "deferred")
            assert await store.write_outcomes(conn, [outcome], worker="w") == 1


def test_the_database_counts_deferrals_by_cause_as_they_are_written_back(db, db_url) -> None:
    load_demo_templates(db)
    notification_id = enqueue(db, welcome())
    reasons = ["quiet_hours", "quiet_hours", "template_paused", "131056", "131056", "131056"]
    asyncio.run(_write_back(db_url, [notification_id] * len(reasons), reasons))
    stored = row(db, notification_id)
    assert stored["deferral_count"] == 6
    assert stored["deferrals"] == {"quiet_hours": 2, "template_paused": 1, "131056": 3}
    # The row as a drain holds it (with its counts by cause) waits 4^3 s on the next pair-limit hit.
    outcome = outcomes.after_send(stored, None, meta(131056), NOW)
    assert wait_s(outcome) == 64


def test_a_drain_waits_one_second_on_the_first_pair_limit_hit_after_other_deferrals(
    db, db_url, emulator
) -> None:
    from notify_pipeline_tests.support.engine import run_drain

    load_demo_templates(db)
    notification_id = enqueue(db, welcome())
    db.execute(
        'UPDATE notifications SET deferral_count = 6, deferrals = \'{"quiet_hours": 5, "template_paused": 1}\' '
        "WHERE id = %s",
        (notification_id,),
    )
    emulator.add_fault(code=131056, max_count=1)
    before = datetime.now(UTC)
    run_drain(db_url, emulator)
    stored = row(db, notification_id)
    assert stored["deferrals"] == {"quiet_hours": 5, "template_paused": 1, "131056": 1}
    assert stored["next_attempt_at"] - before < timedelta(seconds=10)


# -- 1. a late 131049 --------------------------------------------------------------------------

LATE_131049 = """{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{
"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
"statuses":[{"id":"%(wamid)s","status":"failed","timestamp":"%(ts)s","recipient_id":"250788000001",
"errors":[{"code":131049,"title":"This message was not delivered to maintain healthy ecosystem engagement.",
"message":"This message was not delivered to maintain healthy ecosystem engagement.",
"error_data":{"details":"In order to maintain a healthy ecosystem engagement, the message failed to be delivered."},
"href":"/documentation/business-messaging/whatsapp/support/error-codes"}]}]},"field":"messages"}]}]}"""


def _sent(db, template: str, wamid: str, body: list[str]) -> int:
    message = template_message("+250788000001", template, "en", body=body)
    notification_id = enqueue(db, {"to": message["to"], "template": message["template"]})
    db.execute(
        "UPDATE notifications SET status = 'sent', sent_at = now(), wa_message_id = %s WHERE id = %s",
        (wamid, notification_id),
    )
    return notification_id


def _late_failure(service, wamid: str, ts: int) -> None:
    body = LATE_131049.replace("%(wamid)s", wamid).replace("%(ts)s", str(ts)).encode()
    assert service.post(body).status_code == 200


def test_a_late_131049_requeues_a_marketing_row_once_after_24_hours_then_fails(db, db_url) -> None:
    load_demo_templates(db)
    promo = _sent(db, "weekly_promo", "wamid.PROMO1", ["2 for 1"])
    utility = _sent(db, "welcome_message", "wamid.UTIL1", ["Aline"])
    failed_at = int(datetime.now(UTC).timestamp())
    with running_service(db_url) as service:
        _late_failure(service, "wamid.PROMO1", failed_at)
        _late_failure(service, "wamid.UTIL1", failed_at)
        again = row(db, promo)
        assert again["status"] == "queued" and again["last_error_code"] == "131049"
        due_in = (again["next_attempt_at"] - datetime.fromtimestamp(failed_at, UTC)).total_seconds()
        assert 24 * 3600 <= due_in <= 24 * 3600 + 60
        assert again["deferrals"] == {"131049": 1} and again["wa_message_id"] is None
        assert again["delivery_status"] is None and "queued again" in again["error_message"]
        assert row(db, utility)["status"] == "failed", "not MARKETING: fails as before"

        # Sent again a day later, and refused again: it fails for good, saying so.
        db.execute(
            "UPDATE notifications SET status = 'sent', sent_at = now(), wa_message_id = 'wamid.PROMO2' "
            "WHERE id = %s",
            (promo,),
        )
        # Dated a minute on, not a day: the service refuses timestamps more than minutes ahead.
        _late_failure(service, "wamid.PROMO2", failed_at + 60)
    final = row(db, promo)
    assert (final["status"], final["last_error_code"]) == ("failed", "131049")
    assert "not delivered again" in final["error_message"]
    assert final["deferrals"] == {"131049": 1}


def test_the_late_131049_trigger_bound_is_the_code_tables() -> None:
    bound = CODES[131049].max_deferrals
    sql = MIGRATION.read_text()
    assert re.search(r"EXECUTE FUNCTION notifications_late_marketing_cap\('(\d+)'\)", sql).group(1) == str(
        bound
    )


# -- 4. retry-failed leaves permanent outcomes alone ---------------------------------------------


def test_retry_failed_leaves_what_an_opt_out_cancelled_expired_rows_and_never_retry_codes(db) -> None:
    load_demo_templates(db)
    ids = {name: enqueue(db, welcome(f"+25078866{i:04d}")) for i, name in enumerate(
        ["opted_out", "marketing_opted_out", "expired", "131050", "130403", "131000", "131026"]
    )}  # fmt: skip
    # An opt-out cancels a waiting row; the contact then opts back in.
    db.execute("SELECT mark_opted_out(%s)", ("+250788660000",))
    db.execute("SELECT mark_opted_in(%s)", ("+250788660000",))
    for code, notification_id in ids.items():
        if code != "opted_out":
            db.execute(
                "UPDATE notifications SET status = 'failed', last_error_code = %s WHERE id = %s",
                (code, notification_id),
            )
    selection = RetryFilter(since=timedelta(hours=1))
    dry = retry_failed(db, selection, dry_run=True)
    assert dry.count == 2  # 131000 and 131026
    assert dry.left == {"opted_out": 1, "marketing_opted_out": 1, "expired": 1, "131050": 1, "130403": 1}
    assert "left alone: 130403 1, 131050 1, expired 1, marketing_opted_out 1, opted_out 1" in dry.describe()
    assert "--include-permanent" in dry.describe()

    done = retry_failed(db, selection, dry_run=False)
    assert done.count == 2
    assert row(db, ids["opted_out"])["status"] == "failed"
    assert row(db, ids["131050"])["status"] == "failed"
    assert row(db, ids["131000"])["status"] == "queued"

    everything = retry_failed(
        db, RetryFilter(since=timedelta(hours=1), include_permanent=True), dry_run=False
    )
    assert (everything.count, everything.left) == (5, {})
    assert row(db, ids["opted_out"])["status"] == "queued"


def test_never_retry_codes_come_from_the_code_table() -> None:
    assert {"131050", "130403"} <= set(never_retry_codes())
    assert all(CODES[int(code)].never_retry for code in never_retry_codes())
    assert "131000" not in never_retry_codes()


# -- 5. the 24-hour customer-service window -------------------------------------------------------


def contact(last_inbound_at: datetime | None) -> Contact:
    return Contact(
        opted_out=False,
        quiet_hours_start=None,
        quiet_hours_end=None,
        timezone="UTC",
        last_inbound_at=last_inbound_at,
    )


def text_row() -> dict:
    payload = text_message("+250788000001", "Your driver is outside")
    return {
        "id": 9,
        "to_wa_id": "+250788000001",
        "template_name": None,
        "language": None,
        "payload": payload,
        "retry_count": 0,
        "deferral_count": 0,
        "quiet_hours_override": False,
    }


def test_free_form_text_after_24_hours_of_silence_fails_before_sending_with_131047s_meaning() -> None:
    verdict = decide(text_row(), contact(NOW - timedelta(hours=30)), {}, NOW, PolicyConfig())
    assert (verdict.action, verdict.reason) == ("fail", "131047")
    assert (
        "30 h ago" in verdict.message and "within 24 h" in verdict.message and "template" in verdict.message
    )


@pytest.mark.parametrize(
    "last", [NOW - timedelta(hours=23, minutes=59), None], ids=["inside-the-window", "unknown-inbound"]
)
def test_text_inside_the_window_or_with_no_known_inbound_is_sent(last) -> None:
    verdict = decide(text_row(), contact(last), {}, NOW, PolicyConfig(default_quiet_hours=None))
    assert verdict.action == "send"
    assert decide(text_row(), None, {}, NOW, PolicyConfig(default_quiet_hours=None)).action == "send"


def test_templates_are_not_bound_by_the_window() -> None:
    template = {**WELCOME_TEMPLATE, "retry_policy": {}}
    payload = template_message("+250788000001", "welcome_message", "en", body=["Aline"])
    row_ = {**text_row(), "payload": payload, "template_name": "welcome_message", "language": "en"}
    verdict = decide(
        row_, contact(NOW - timedelta(days=5)), {("welcome_message", "en"): template}, NOW, PolicyConfig()
    )
    assert verdict.action == "send"


def test_a_text_that_waited_out_quiet_hours_past_the_window_fails() -> None:
    night = Contact(False, time(22), time(7), "UTC", last_inbound_at=NOW - timedelta(hours=25))
    assert decide(text_row(), night, {}, NOW, PolicyConfig()).reason == "131047"


def test_write_back_is_refused_nowhere(db) -> None:
    # The migration keeps the write-back statement's columns: deferrals is not in it, and a
    # writer that sets deferrals itself is left alone by the counting trigger.
    load_demo_templates(db)
    notification_id = enqueue(db, welcome())
    db.execute(
        "UPDATE notifications SET deferral_count = 2, deferrals = '{\"manual\": 2}' WHERE id = %s",
        (notification_id,),
    )
    assert row(db, notification_id)["deferrals"] == {"manual": 2}
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE notifications SET deferrals = '[]' WHERE id = %s", (notification_id,))

"""Each alert condition against a real PostgreSQL: seeded state makes it hold, with the numbers and
the first thing to check in words; the states it must ignore (deferred rows, a paused worker, our
own pair-limit deferrals, opt-outs in the failure rate) do not make it hold."""

from __future__ import annotations

from dataclasses import replace

from notify_pipeline.engine import operations
from notify_pipeline.engine.holds import lift_hold
from notify_pipeline.reporting.alerts import catalog
from notify_pipeline.reporting.alerts.catalog import BY_NAME
from notify_pipeline.reporting.alerts.codes import meaning
from notify_pipeline.reporting.alerts.verdict import Verdict, duration
from notify_pipeline.settings import sender_key
from notify_pipeline.thresholds import DEFAULTS
from notify_pipeline_tests.support.alerts import add_rows, age_events, worker_start, worker_verdict

SMALL = replace(
    DEFAULTS,
    queue_depth=5,
    failure_rate_min_volume=10,
    opt_outs_per_hour=3,
    throttled_per_minute=4,
)


def check(db, name: str, thresholds=SMALL) -> Verdict:
    return BY_NAME[name].check(db, thresholds)


def test_the_catalog_has_the_seven_alerts_and_only_queue_depth_waits() -> None:
    assert [spec.name for spec in catalog.ALERTS] == [
        "queue_depth",
        "oldest_queued",
        "failure_rate",
        "worker_health",
        "opt_out_spike",
        "throttling",
        "no_receipts",
    ]
    assert BY_NAME["queue_depth"].hold_s(DEFAULTS) == DEFAULTS.queue_depth_for_s
    assert all(spec.hold_s(DEFAULTS) == 0 for spec in catalog.ALERTS if spec.name != "queue_depth")


def test_queue_depth_counts_due_rows_not_deferred_ones(db) -> None:
    add_rows(db, 5)
    add_rows(db, 50, due="now() + interval '8 hours'", first=100)  # quiet hours: waiting, not a backlog
    # Rows a live drain holds are being sent: not due (README "Figures"; this alert used to count
    # them, while `status` and the metrics did not).
    live = add_rows(db, 4, first=300)
    db.execute("UPDATE notifications SET locked_at = now(), locked_by = 'w1' WHERE id = ANY(%s)", (live,))
    verdict = check(db, "queue_depth")
    assert not verdict.breached and verdict.headline.startswith("ok: 5 due now")
    add_rows(db, 1, first=200)
    verdict = check(db, "queue_depth")
    assert verdict.breached
    assert "6 notifications are due now (alert above 5)" in verdict.headline
    assert "50 more wait for a later time" in verdict.facts[0]
    assert "notify-pipeline status" in verdict.first_check
    assert verdict.numbers["due"] == 6 and verdict.numbers["waiting"] == 50
    assert verdict.numbers["claimed"] == 4 and "4 more are being sent by a live drain" in verdict.facts[0]


def test_queue_depth_first_check_names_stale_claims_and_the_pause(db) -> None:
    ids = add_rows(db, 6)
    db.execute(
        "UPDATE notifications SET locked_at = now() - interval '1 hour', locked_by = 'dead' WHERE id = ANY(%s)",
        (ids[:2],),
    )
    assert "sweep_locks_job" in check(db, "queue_depth").first_check
    operations.set_paused(db, True, "incident 7", "tester")
    first = check(db, "queue_depth").first_check
    assert "paused" in first and "incident 7" in first and "resume_job" in first


def test_oldest_queued_measures_from_the_due_time(db) -> None:
    add_rows(db, 1, created="now() - interval '3 days'", due="now() + interval '1 hour'")  # scheduled
    add_rows(db, 1, due="now() - interval '30 minutes'", first=10)
    assert not check(db, "oldest_queued").breached
    add_rows(db, 1, due="now() - interval '2 hours'", first=20)
    verdict = check(db, "oldest_queued")
    assert (
        verdict.breached and "has waited 2 h" in verdict.headline and "alert above 60 min" in verdict.headline
    )


def test_failure_rate_names_worst_domains_and_explains_codes_from_the_code_table(db) -> None:
    add_rows(db, 40, status="sent", domain="core")
    add_rows(db, 12, status="sent", domain="orders", first=100)
    add_rows(db, 8, status="failed", domain="orders", code="131026", first=200)
    add_rows(db, 30, status="failed", domain="orders", code="opted_out", first=300)  # not a delivery failure
    add_rows(db, 30, status="failed", domain="orders", code="emergency_stop", first=400)
    # Expired rows are their own figure, not failures (README "Figures"; this alert used to count them).
    add_rows(db, 30, status="failed", domain="orders", code="expired", first=500)
    verdict = check(db, "failure_rate")
    # overall 8 / 60 = 13 %, but orders alone is 8 / 20 = 40 %
    assert verdict.breached
    assert "above 20.0% in orders" in verdict.headline and "overall 13.3%" in verdict.headline
    assert "Worst domains: orders 40.0% (8/20), core 0.0% (0/40)." in verdict.facts
    code_line = next(f for f in verdict.facts if f.startswith("Error code 131026 x8"))
    assert "Message undeliverable" in code_line  # Meta's meaning, not the runbook's table
    assert "retry_failed_job" in verdict.first_check


def test_failure_rate_needs_volume_and_old_rows_leave_the_window(db) -> None:
    add_rows(db, 5, status="failed", code="131000")
    verdict = check(db, "failure_rate")
    assert not verdict.breached and verdict.headline.startswith("no verdict: 5 finished")
    add_rows(db, 20, status="failed", code="131000", created="now() - interval '2 hours'", first=50)
    assert not check(db, "failure_rate").breached
    add_rows(db, 10, status="failed", code="131000", first=100)
    verdict = check(db, "failure_rate")
    assert verdict.breached and "Failure rate 100.0%" in verdict.headline
    assert verdict.first_check.startswith("The top error code, 131000: Retry; open a support ticket")


def test_worker_health_fires_only_when_work_waited_through_the_silence(db, monkeypatch) -> None:
    worker_start(db, ago="20 minutes")
    assert check(db, "worker_health").headline.startswith("ok: no worker start for 20 min, but no work")
    add_rows(db, 3, due="now() - interval '10 minutes'")
    verdict = check(db, "worker_health")
    assert verdict.breached
    assert "No send worker has started for 20 min while 3 notifications wait" in verdict.headline
    assert (
        "NOTIFICATION_WORKER_CRON_ENABLED" in verdict.first_check and "Dagster daemon" in verdict.first_check
    )

    operations.set_paused(db, True, "maintenance", "tester")
    verdict = check(db, "worker_health")
    assert not verdict.breached and verdict.headline == (
        "quiet on purpose: sending is paused in queue_control (maintenance)"
    )
    operations.set_paused(db, False, "done", "tester")
    monkeypatch.setenv("NOTIFICATION_WORKER_CRON_ENABLED", "false")
    assert (
        "quiet on purpose: NOTIFICATION_WORKER_CRON_ENABLED is false" in check(db, "worker_health").headline
    )
    monkeypatch.delenv("NOTIFICATION_WORKER_CRON_ENABLED")
    worker_start(db)
    assert check(db, "worker_health").headline.startswith("ok: last worker start")


def test_worker_health_is_quiet_for_a_held_sender_and_counts_silence_from_a_resume(db) -> None:
    worker_start(db, ago="20 minutes")
    add_rows(db, 3, due="now() - interval '10 minutes'")
    db.execute(
        "INSERT INTO sender_holds (sender, kind, code, reason) VALUES (%s, 'auth', '190', 'x')",
        (sender_key(),),
    )
    verdict = check(db, "worker_health")
    assert not verdict.breached and "the sender is held because Meta auth refused (190)" in verdict.headline
    lift_hold(db, sender_key(), "token fixed", "tester")
    assert not check(db, "worker_health").breached, "a send run's normal start after a resume is no fault"
    age_events(db, by="6 minutes")
    assert check(db, "worker_health").breached, "but silence long after the resume is"


def test_worker_health_counts_a_long_run_holding_fresh_claims_as_alive(db) -> None:
    ids = add_rows(db, 3, due="now() - interval '30 minutes'")
    db.execute("UPDATE notifications SET locked_at = now(), locked_by = 'w' WHERE id = %s", (ids[0],))
    assert not check(db, "worker_health").breached


def test_opt_out_spike_counts_opt_outs_and_blocked_sends(db) -> None:
    for i in range(2):
        db.execute("SELECT mark_opted_out(%s, 'STOP keyword')", (f"+25078900000{i}",))
    assert not check(db, "opt_out_spike").breached
    ids = add_rows(db, 2)
    worker_verdict(db, ids, status="failed", code="opted_out")
    verdict = check(db, "opt_out_spike")
    assert verdict.breached
    assert (
        "4 opt-outs in the last 60 min (alert above 3): 2 contacts opted out, 2 sends blocked"
        in verdict.headline
    )
    assert verdict.facts == ("Reasons: STOP keyword 2.",)
    assert "+2507" not in " ".join([verdict.headline, *verdict.facts, verdict.first_check])
    age_events(db)
    assert not check(db, "opt_out_spike").breached


def test_throttling_counts_metas_codes_and_reports_pair_limit_apart(db) -> None:
    pair = add_rows(db, 9)
    worker_verdict(db, pair, status="queued", code="pair_limit")
    assert not check(db, "throttling").breached, "our own limiter's deferrals are not Meta throttling"
    meta = add_rows(db, 5, first=100)
    worker_verdict(db, meta, status="queued", code="130429")
    verdict = check(db, "throttling")
    assert verdict.breached and "5 rate-limit errors from Meta in the last 60 s" in verdict.headline
    assert any(f.startswith("130429 x5: 130429 Cloud API throughput reached") for f in verdict.facts)
    assert "Our pair limiter also deferred 9 sends (not counted)." in verdict.facts
    hot = next(f for f in verdict.facts if f.startswith("Hot recipients"))
    assert "*" in hot and "+2507800000" not in hot, "masked by notify_mask_wa_id"
    assert "throughput_per_s" in verdict.first_check
    age_events(db, "2 minutes")
    assert not check(db, "throttling").breached


def test_durations_read_naturally() -> None:
    assert [duration(s) for s in (None, 45, 300, 3600, 7500, 90000, 200000)] == [
        "never",
        "45 s",
        "5 min",
        "60 min",
        "2 h 5 min",
        "25 h",
        "2 d 7 h",
    ]


def test_the_products_own_codes_are_explained_not_called_undocumented() -> None:
    for code in (
        "timeout_ambiguous",
        "connection",
        "http_503",
        "template_missing",
        "opted_out",
        "pair_limit",
    ):
        assert "not a documented Meta error code" not in meaning(code), code
    assert "WHATSAPP_API_BASE_URL" in meaning("connection")
    assert meaning("131047").startswith("131047 More than 24 hours since the user last replied")

"""One definition per figure (issue 12): over ONE data set, `status` (its data and --json),
`diagnose failures` (its report and --json), the alert readings and verdicts, the daily summary and
reporting/figures.py give the same failure rate and the same queue depth."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest

from notify_pipeline.defs.reporting import assets
from notify_pipeline.operations.diagnostics import failures
from notify_pipeline.operations.status import queue_status, render
from notify_pipeline.reporting import figures, summary
from notify_pipeline.reporting.alerts import readings
from notify_pipeline.reporting.alerts.catalog import BY_NAME
from notify_pipeline.reporting.summary import day_window
from notify_pipeline.thresholds import DEFAULTS
from notify_pipeline_tests.support.cli import cli
from notify_pipeline_tests.support.paths import REPO_ROOT

HOUR = 3600.0
THRESHOLDS = replace(DEFAULTS, failure_rate_window_s=HOUR, failure_rate_min_volume=1, queue_depth=1)

# (domain, status, last_error_code, rows, extra SQL columns) of the data set, all created now
# unless `created` says otherwise.
ROWS = """
INSERT INTO notifications (to_wa_id, notification_type, domain, status, last_error_code, created_at,
                           next_attempt_at, locked_at, locked_by, sent_at, failed_late_at, deferral_count)
SELECT '+2507880' || lpad((%(first)s + g)::text, 5, '0'), 'test', %(domain)s, %(status)s, %(code)s,
       now() - %(age)s::interval,
       CASE WHEN %(status)s = 'queued' THEN now() + %(due_in)s::interval END,
       CASE WHEN %(claim)s::text IS NOT NULL THEN now() - %(claim)s::interval END,
       CASE WHEN %(claim)s::text IS NOT NULL THEN 'w-test' END,
       CASE WHEN %(status)s = 'sent' OR %(late)s THEN now() - %(age)s::interval END,
       CASE WHEN %(late)s THEN now() END,
       %(deferrals)s
  FROM generate_series(1, %(count)s) g
"""


_batches = itertools.count(1)


def add(
    db,
    count: int,
    status: str,
    domain: str,
    code: str | None = None,
    *,
    age: str = "0 seconds",
    due_in: str = "-1 minute",
    claim: str | None = None,
    late: bool = False,
    deferrals: int = 0,
) -> None:
    """`count` rows of one kind, each to its own recipient."""
    params = {
        "first": next(_batches) * 100,
        "domain": domain,
        "status": status,
        "code": code,
        "age": age,
        "due_in": due_in,
        "claim": claim,
        "late": late,
        "deferrals": deferrals,
        "count": count,
    }
    db.execute(ROWS, params)


@pytest.fixture
def data_set(db):
    """Sent, failed by Meta's codes and by the engine, a late failure, opt-outs, stop holds, an
    expired row, due / waiting / claimed / stale-claimed / deferred queued rows, and an old failure
    outside every window."""
    add(db, 6, "sent", "core")
    add(db, 3, "sent", "orders")
    add(db, 2, "failed", "core", "131026")  # Meta: undeliverable
    add(db, 1, "failed", "core", "template_missing")  # the engine's refusal: a failure too
    add(db, 1, "failed", "orders", "131000")
    add(db, 1, "failed", "orders", "131026", late=True)  # accepted, then a status webhook said failed
    add(db, 2, "failed", "core", "opted_out")  # filtered
    add(db, 1, "failed", "orders", "marketing_opted_out")  # filtered
    add(db, 1, "failed", "orders", "131050")  # Meta: user stopped marketing: filtered too
    add(db, 3, "failed", "core", "emergency_stop")  # held
    add(db, 1, "failed", "orders", "expired")  # expired
    add(db, 2, "queued", "core", due_in="-10 minutes")  # due
    add(db, 1, "queued", "orders", due_in="-2 minutes")  # due
    add(db, 1, "queued", "core", due_in="-30 minutes", claim="2 hours")  # stale claim: due
    add(db, 2, "queued", "core", due_in="-1 minute", claim="5 seconds")  # a live drain holds them
    add(db, 2, "queued", "orders", due_in="1 day")  # scheduled: waiting
    add(db, 2, "queued", "core", "quiet_hours", due_in="8 hours", deferrals=1)  # deferred: waiting
    add(db, 4, "failed", "core", "131026", age="40 days")  # outside the hour and the day
    return db


# What the data set means, by the README's "Figures".
SENT, FAILED = 9, 5  # core 6 / 3, orders 3 / 2 (the late failure included)
RATE = FAILED / (SENT + FAILED)
BY_DOMAIN = {"core": (6, 3), "orders": (3, 2)}
DUE, WAITING, CLAIMED, STALE = 4, 4, 2, 1


def test_the_figures_module_over_the_data_set(data_set) -> None:
    found = figures.outcomes_since(data_set, HOUR)
    o = found.overall
    assert (o.sent, o.failed, o.filtered, o.held, o.expired, o.queued) == (SENT, FAILED, 4, 3, 1, 10)
    assert o.late_failed == 1 and o.failure_rate == pytest.approx(RATE)
    assert {d: (x.sent, x.failed) for d, x in found.by_domain.items()} == BY_DOMAIN
    assert found.failed_by_code == {"131026": 3, "131000": 1, "template_missing": 1}
    assert found.codes["filtered"] == {"opted_out": 2, "131050": 1, "marketing_opted_out": 1}
    shape = figures.queue_shape(data_set)
    assert (shape.due, shape.waiting, shape.claimed, shape.stale_claims) == (DUE, WAITING, CLAIMED, STALE)
    assert shape.queued == 10 and shape.oldest_due_s == pytest.approx(1800, abs=60)
    per = figures.queue_shape_by_domain(data_set)
    assert {d: (s.due, s.waiting, s.claimed) for d, s in per.items()} == {
        "core": (3, 2, 2),
        "orders": (1, 2, 0),
    }


def test_every_view_gives_the_same_failure_rate_and_depth(data_set, db_url) -> None:
    # status: its data function, its text and --json
    status = queue_status(data_set)
    assert (status.due_now, status.waiting, status.in_flight) == (DUE, WAITING, CLAIMED)
    assert status.outcomes.failure_rate == pytest.approx(RATE)
    assert {d: (s, f) for d, s, f, _ in status.failure_rate} == BY_DOMAIN
    assert f"{DUE} due now, {WAITING} waiting" in render(status)
    assert f"{100 * RATE:.2f} % overall" in render(status)
    shown = json.loads(cli("status", "--json", env={"NOTIFY_DATABASE_URL": db_url}).stdout)
    assert (shown["queue"]["due"], shown["queue"]["waiting"], shown["queue"]["claimed"]) == (
        DUE,
        WAITING,
        CLAIMED,
    )
    overall = shown["outcomes"]["overall"]
    assert (overall["sent"], overall["failed"]) == (SENT, FAILED)
    assert overall["failure_rate"] == pytest.approx(RATE)

    # diagnose failures: its report and --json
    report = failures(data_set, hours=1)
    assert (report.figures["sent"], report.figures["failed"]) == (SENT, FAILED)
    assert sum(r["failed"] for r in report.rows) == FAILED
    assert f"failure rate {100 * RATE:.1f} %" in report.notes[0]
    shown = json.loads(cli("diagnose", "failures", "--json", env={"NOTIFY_DATABASE_URL": db_url}).stdout)
    assert shown["figures"]["failure_rate"] == pytest.approx(RATE)
    assert sum(r["failed"] for r in shown["tables"][0]["rows"]) == FAILED

    # the alert readings and verdicts
    reading = readings.read_failures(data_set, HOUR)
    assert reading.by_domain == BY_DOMAIN and reading.late == 1
    verdict = BY_NAME["failure_rate"].check(data_set, THRESHOLDS)
    assert (verdict.numbers["sent"], verdict.numbers["failed"]) == (SENT, FAILED)
    assert verdict.numbers["rate"] == pytest.approx(RATE, abs=5e-5)
    depth = BY_NAME["queue_depth"].check(data_set, THRESHOLDS)
    assert (depth.numbers["due"], depth.numbers["waiting"], depth.numbers["claimed"]) == (
        DUE,
        WAITING,
        CLAIMED,
    )
    assert depth.numbers["stale_claims"] == STALE
    assert f"{DUE} notifications are due now" in depth.headline

    # the daily summary of today and its check, as the daily_domain_summary asset computes them
    # (today's partition is not materialisable before midnight: the asset's own functions instead)
    today = data_set.execute("SELECT (now() AT TIME ZONE 'Africa/Kigali')::date").fetchone()[0]
    window = day_window(today, "Africa/Kigali")
    frame = summary.domain_summary(
        today, summary.load_notifications(data_set, *window), summary.load_deferrals(data_set, *window)
    )
    rows = frame.set_index("domain")
    assert {d: (int(r.sent), int(r.failed)) for d, r in rows.iterrows()} == BY_DOMAIN
    for _domain, r in rows.iterrows():
        assert r.failure_rate == pytest.approx(r.failed / (r.sent + r.failed))
    day = figures.outcomes_between(data_set, *window)
    assert day.failure_rate == pytest.approx(RATE)
    assert {d: o.failure_rate for d, o in day.by_domain.items()} == pytest.approx(
        rows["failure_rate"].to_dict()
    )
    check = assets.failure_rate_check(frame, assets.SummaryConfig())
    worst = max(f / (s + f) for s, f in BY_DOMAIN.values())
    assert check.metadata["worst_failure_rate"].value == pytest.approx(worst, abs=5e-5)


def test_the_python_and_sql_classifications_agree(db) -> None:
    cases = [("sent", None), ("queued", None), ("queued", "quiet_hours"), ("failed", None)]
    cases += [("failed", code) for code in (*figures.NOT_DELIVERY_FAILURES, "131026", "template_missing", "")]
    for status, code in cases:
        (sql,) = db.execute(
            f"SELECT {figures.outcome_sql()} FROM (SELECT %s::text AS status, %s::text AS last_error_code) r",
            (status, code),
        ).fetchone()
        (failed,) = db.execute(
            f"SELECT {figures.failed_sql()} FROM (SELECT %s::text AS status, %s::text AS last_error_code) r",
            (status, code),
        ).fetchone()
        assert sql == figures.outcome(status, code), (status, code)
        assert failed == (sql == figures.FAILED), (status, code)


def test_the_readme_defines_each_figure_once() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Figures", 1)[1].split("\n## ", 1)[0]
    for name in ("due", "waiting", "claimed", "oldest due", "sent", "failed", "filtered", "held", "expired"):
        assert sum(line.startswith(f"| {name} |") for line in section.splitlines()) == 1, name
    assert "| failure rate |" in section and "runbook" in section


def test_an_empty_window_has_no_rate(db) -> None:
    found = figures.outcomes_since(db, HOUR)
    assert found.failure_rate is None and found.by_domain == {}
    assert figures.queue_shape(db) == figures.QueueShape()

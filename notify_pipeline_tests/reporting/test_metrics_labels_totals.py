"""The series the alert rules read exist before their first event (a series that first appears at its
full value has no earlier sample, and Prometheus' increase() never sees that jump): totals at 0 on
an empty database, a new domain's series at 0 from its first queued row, counters with label
values known in advance (the code table's codes, deferral reasons, opt-out causes) at 0; and each
total is the sum of the counters it stands for, so it only goes up as they do."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

from notify_pipeline.engine.reasons import DEFERRAL_REASONS
from notify_pipeline.reporting import metrics
from notify_pipeline.reporting.figures import OPT_OUT_CAUSES
from notify_pipeline.reporting.metrics_totals import DOMAIN_OUTCOMES, OUTCOMES
from notify_pipeline.whatsapp.errors import CODES, throttling_codes
from notify_pipeline_tests.support.metrics import (
    CLAIM,
    Samples,
    deferred,
    failed,
    new,
    samples,
    seed_finished,
    update,
    value,
)


def by(parsed: Samples, name: str, key: str) -> dict[str, float]:
    return {dict(labels)[key]: v for (n, labels), v in parsed.items() if n == name}


def total(parsed: Samples, name: str, **match: str) -> float:
    return sum(v for (n, labels), v in parsed.items() if n == name and set(match.items()) <= set(labels))


def test_the_rules_series_exist_at_zero_on_an_empty_database(db) -> None:
    parsed = samples(metrics.render(db))
    assert by(parsed, "notify_outcomes_total", "outcome") == dict.fromkeys(OUTCOMES, 0)
    assert by(parsed, "notify_opt_outs_total", "kind") == {"contact": 0, "blocked_send": 0}
    assert by(parsed, "notify_throttled_total", "error_code") == dict.fromkeys(throttling_codes(), 0)
    # Labelled counters start at 0 for the label values known in advance.
    assert by(parsed, "notify_contacts_opted_out_total", "reason") == dict.fromkeys(OPT_OUT_CAUSES, 0)
    assert by(parsed, "notify_late_failed_total", "error_code") == {str(code): 0 for code in CODES}
    deferrals = by(parsed, "notify_deferred_total", "reason")
    assert deferrals == dict.fromkeys((*throttling_codes(), *DEFERRAL_REASONS), 0)
    assert set(throttling_codes()) <= set(by(parsed, "notify_retried_total", "error_code"))


def test_a_new_domains_series_start_at_zero_with_its_first_queued_row(db) -> None:
    def domain_series() -> dict[str, float]:
        parsed = samples(metrics.render(db))
        return {
            dict(labels)["outcome"]: v
            for (n, labels), v in parsed.items()
            if n == "notify_domain_outcomes_total" and dict(labels)["domain"] == "campaigns"
        }

    assert domain_series() == {}
    row = new(db, "+250788700001", "campaigns")
    assert domain_series() == dict.fromkeys(DOMAIN_OUTCOMES, 0), "queued, not finished: at 0"
    update(db, row, CLAIM)
    db.execute(
        "UPDATE notifications SET status = 'failed', last_error_code = '132000', locked_at = NULL WHERE id = %s",
        (row,),
    )
    assert domain_series() == {"sent": 0, "failed": 1}
    # Rows deleted by a clean-up: the domain stays known (its counters), its series never vanish.
    db.execute("DELETE FROM notification_audit_log")
    db.execute("DELETE FROM notifications")
    assert domain_series() == {"sent": 0, "failed": 1}


def test_each_total_is_the_sum_of_the_counters_it_stands_for(db: psycopg.Connection) -> None:
    seed_finished(db)
    failed(db, "+250788800001", "promo", "131048")  # throttling answers: failed, retried, deferred
    deferred(db, "+250788800002", "130429")
    deferred(db, "+250788800003", "131056", retried=True)
    # Late failures as notify_apply_statuses counts them (a status webhook after Meta accepted).
    db.execute(
        "INSERT INTO notify_counters (name, labels, value) VALUES ('late_failed', %s, 2)",
        (Jsonb({"error_code": "131026"}),),
    )
    parsed = samples(metrics.render(db))
    for outcome in OUTCOMES:
        summed = total(parsed, f"notify_{outcome}_total")
        assert value(parsed, "notify_outcomes_total", outcome=outcome) == summed, outcome
    assert value(parsed, "notify_outcomes_total", outcome="failed") == 5
    assert value(parsed, "notify_outcomes_total", outcome="late_failed") == 2
    for domain in ("baskets", "core", "orders", "promo"):
        for outcome in DOMAIN_OUTCOMES:
            summed = total(parsed, f"notify_{outcome}_total", domain=domain)
            assert value(parsed, "notify_domain_outcomes_total", domain=domain, outcome=outcome) == summed
    assert value(parsed, "notify_opt_outs_total", kind="contact") == total(
        parsed, "notify_contacts_opted_out_total"
    )
    blocked = total(parsed, "notify_filtered_total", reason="opted_out", stage="send")
    assert value(parsed, "notify_opt_outs_total", kind="blocked_send") == blocked == 1
    throttled = by(parsed, "notify_throttled_total", "error_code")
    assert {code: n for code, n in throttled.items() if n} == {"131048": 1, "130429": 1, "131056": 2}
    # 131056: a pair-limit deferral of seed_finished and the retry here; pair_limit is ours, not Meta's.
    assert "pair_limit" not in throttled

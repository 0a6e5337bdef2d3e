"""`GET /metrics` on `notify-pipeline serve`'s metrics listener: real sends through the emulator,
then an emergency stop, a resume, a retry of failed rows and a clean-up, with a scrape before and
after each. Every counter and histogram must only go up, the exposition must parse, and the
runbook's PromQL names must be there. (The listener's own port and cache: service/test_serve_metrics.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from notify_pipeline.engine import operations
from notify_pipeline.operations import retention
from notify_pipeline_tests.support.engine import enqueue, load_demo_templates, run_drain, welcome
from notify_pipeline_tests.support.service import Service, running_service

Key = tuple[str, frozenset[tuple[str, str]]]
# The runbook's series without _total: cumulative, exposed untyped under their exact names.
RUNBOOK_CUMULATIVE = (
    "notification_filtered_optout",
    "notification_deferred_quiet_hours",
    "notification_deferred",
)


def scrape(service: Service) -> tuple[dict[Key, float], dict[str, str]]:
    """Samples keyed by name and labels, and each family's type."""
    response = service.metrics.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples, types = {}, {}
    for family in text_string_to_metric_families(response.text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, types


def cumulative(samples: dict[Key, float], types: dict[str, str]) -> dict[Key, float]:
    """The samples that must never go down: counters, histograms, the runbook's cumulative series."""
    kept = {}
    for (name, labels), value in samples.items():
        family = re.sub(r"_(total|bucket|sum|count)$", "", name)
        if types.get(family) in ("counter", "histogram") or name in RUNBOOK_CUMULATIVE:
            kept[(name, labels)] = value
    return kept


def total(samples: dict[Key, float], name: str, **match: str) -> float:
    return sum(v for (n, labels), v in samples.items() if n == name and set(match.items()) <= labels)


def assert_never_lower(before: dict[Key, float], after: dict[Key, float], step: str) -> None:
    for key, value in before.items():
        assert key in after, f"{step}: series {key} disappeared"
        assert after[key] >= value, f"{step}: {key} went from {value} to {after[key]}"


@pytest.fixture
def sent_and_failed(db: psycopg.Connection, db_url: str, emulator) -> psycopg.Connection:
    """Three messages accepted by Meta, one refused (131026), three more waiting for later."""
    load_demo_templates(db)
    emulator.configure(limits_enabled=False)
    emulator.add_fault(code=131026, max_count=1)
    for i in range(4):
        enqueue(db, welcome(f"+25078870000{i}"), {"domain": "baskets"})
    report = run_drain(db_url, emulator)
    assert report.sent == 3
    for i in range(3):
        enqueue(db, welcome(f"+25078871000{i}"), {"domain": "core", "delay_seconds": 600})
    return db


def test_counters_never_go_down_through_stop_resume_retry_and_cleanup(sent_and_failed, db_url) -> None:
    db = sent_and_failed
    with running_service(db_url) as service:
        steps: list[tuple[str, dict[Key, float]]] = []

        def step(name: str) -> dict[Key, float]:
            samples, types = scrape(service)
            if steps:
                assert_never_lower(steps[-1][1], cumulative(samples, types), name)
            steps.append((name, cumulative(samples, types)))
            return samples

        start = step("start")
        assert total(start, "notification_sent_total", domain="baskets") == 3
        assert total(start, "notification_failed_total", domain="baskets", error_code="131026") == 1
        assert total(start, "notify_meta_answer_seconds_count") == 4  # three accepted, one refused

        assert operations.emergency_stop(db, "metrics test", "test") == 3
        stopped = step("emergency stop")
        assert total(stopped, "notify_held_total", domain="core") == 3
        # The bug this replaces: the failed counter rose by the held rows, then fell on resume.
        assert total(stopped, "notification_failed_total") == total(start, "notification_failed_total")

        assert operations.resume(db, "metrics test", "test") == 3
        resumed = step("resume")
        assert total(resumed, "notify_requeued_total", reason="emergency_stop") == 3
        assert total(resumed, "notify_held_total") == 3

        retry = operations.RetryFilter(error_code="131026", include_permanent=True)
        assert operations.retry_failed(db, retry, dry_run=False).count == 1
        retried = step("retry-failed")
        assert total(retried, "notify_requeued_total", reason="131026") == 1
        assert total(retried, "notification_failed_total", error_code="131026") == 1

        # Everything the clean-up may delete is made old enough for it.
        for table in ("notification_audit_log", "observability_events"):
            db.execute(f"UPDATE {table} SET created_at = created_at - interval '100 days'")
        report = retention.cleanup(db, "test", older_than_days=90, dry_run=False)
        assert report.rows["notification_audit_log"] > 0 and report.rows["observability_events"] > 0
        cleaned = step("cleanup")
        assert total(cleaned, "notification_worker_latency_ms_count") >= 1  # not rebuilt from deleted events
        assert total(cleaned, "notify_worker_starts_total") >= 1


def test_exposition_parses_and_has_the_runbooks_promql_series(
    sent_and_failed, db_url, runbook_path: Path
) -> None:
    with running_service(db_url) as service:
        samples, types = scrape(service)
        head = service.metrics.head("/metrics")
    assert head.status_code == 200
    names = {name for name, _ in samples}
    runbook = runbook_path.read_text()
    promql = "\n".join(re.findall(r"```promql\n(.*?)```", runbook, flags=re.S))
    used = set(re.findall(r"\bnotification_[a-z0-9_]+\b", promql))
    assert {"notification_queue_depth", "notification_sent_total", "notification_failed_total"} <= used
    assert used <= names, used - names
    # The key metrics it lists by name, and the label its rate-limit line selects on.
    for listed in ("notification_queue_depth", *RUNBOOK_CUMULATIVE):
        assert f"`{listed}" in runbook and listed in names
    assert ("notification_queue_depth", frozenset({("trigger", "cron")})) in samples
    assert types["notification_sent"] == "counter" and types["notification_worker_latency_ms"] == "histogram"
    assert types["notification_deferred"] == "unknown"  # untyped: keeps its exact name, no _total


def test_histograms_are_in_seconds(sent_and_failed, db_url) -> None:
    with running_service(db_url) as service:
        samples, types = scrape(service)
    for family in (
        "notify_enqueue_to_accepted_seconds",
        "notify_meta_answer_seconds",
        "notify_worker_run_seconds",
    ):
        assert types[family] == "histogram"
        count = total(samples, f"{family}_count")
        assert count >= 1, family
        # Emulated sends take milliseconds to seconds, not thousands: the unit is the second.
        assert 0 < total(samples, f"{family}_sum") / count < 60, family
        bounds = sorted(float(dict(labels)["le"]) for name, labels in samples if name == f"{family}_bucket")
        assert bounds[-1] == float("inf") and bounds[0] < 1, family
    assert total(samples, "notify_enqueue_to_accepted_seconds_count", domain="baskets") == 3
    assert total(samples, "notify_meta_answer_seconds_count", answer="accepted") == 3
    assert total(samples, "notify_meta_answer_seconds_count", answer="error") == 1
    # The runbook's histogram stays in milliseconds, from the same stored buckets.
    worker_ms = total(samples, "notification_worker_latency_ms_sum")
    assert worker_ms == pytest.approx(1000 * total(samples, "notify_worker_run_seconds_sum"))


def test_any_replica_answers_the_same(sent_and_failed, db_url) -> None:
    with running_service(db_url) as first, running_service(db_url) as second:
        one, _ = scrape(first)
        two, _ = scrape(second)
    stable = {
        key: value for key, value in one.items() if "oldest" not in key[0] and "timestamp" not in key[0]
    }
    assert stable == {key: two[key] for key in stable}


def test_a_database_that_does_not_answer_fails_the_scrape(db_url) -> None:
    unreachable = re.sub(r"@[^/]+/", "@127.0.0.1:1/", db_url)
    with running_service(unreachable) as service:
        response = service.metrics.get("/metrics")
    assert response.status_code == 503
    assert "did not answer" in response.text and "127.0.0.1:1" not in response.text

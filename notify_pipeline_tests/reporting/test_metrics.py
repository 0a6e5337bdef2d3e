"""Prometheus metrics from the queue database: names and labels as the runbook's PromQL expects,
counters and histograms kept by the database (they only go up), an atomic textfile, and pushes
to a real HTTP gateway."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import socket
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.types.json import Jsonb

from notify_pipeline.db.connect import connect, connect_async
from notify_pipeline.engine import operations, store
from notify_pipeline.reporting import figures, metrics
from notify_pipeline.reporting.metrics_sql import read_snapshot
from notify_pipeline.whatsapp.errors import throttling_codes
from notify_pipeline_tests.support.metrics import (
    CLAIM,
    gateway,
    new,
    samples,
    seed_finished,
    seed_queue,
    update,
    value,
)
from notify_pipeline_tests.support.ports import free_port


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib sends even loopback requests through a configured proxy.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def one(db: psycopg.Connection, query: str, *args: object) -> int:
    return db.execute(query, args).fetchone()[0]


RUNBOOK_FAMILIES = {
    "notification_queue_depth": ("gauge", {"trigger"}),
    "notification_queue_waiting": ("gauge", set()),
    "notification_queue_in_flight": ("gauge", set()),
    "notification_queue_oldest_due_seconds": ("gauge", set()),
    "notification_sent": ("counter", {"domain"}),  # series notification_sent_total
    "notification_failed": ("counter", {"domain", "error_code"}),
    "notification_worker_latency_ms": ("histogram", {"trigger", "le"}),
    # No _total in the runbook: cumulative, untyped, under the exact name.
    "notification_filtered_optout": ("unknown", set()),
    "notification_deferred_quiet_hours": ("unknown", set()),
    "notification_deferred": ("unknown", {"error_code"}),
}
CONVENTIONAL_FAMILIES = {
    "notify_queue_due": ("gauge", set()),
    "notify_queue_waiting": ("gauge", set()),
    "notify_queue_claimed": ("gauge", set()),
    "notify_queue_oldest_due_seconds": ("gauge", set()),
    "notify_sent": ("counter", {"domain"}),
    "notify_failed": ("counter", {"domain", "error_code"}),
    "notify_late_failed": ("counter", {"error_code"}),
    "notify_delivered": ("counter", set()),
    "notify_read": ("counter", set()),
    "notify_receipt_confirmed": ("counter", set()),
    "notify_duplicate_sends": ("counter", set()),
    "notify_filtered": ("counter", {"domain", "reason", "stage"}),
    "notify_held": ("counter", {"domain"}),
    "notify_expired": ("counter", {"domain"}),
    "notify_cancelled": ("counter", {"domain", "reason"}),
    "notify_deferred": ("counter", {"reason"}),
    "notify_retried": ("counter", {"error_code"}),
    "notify_requeued": ("counter", {"reason"}),
    "notify_swept": ("counter", set()),
    "notify_worker_starts": ("counter", {"trigger"}),
    "notify_contacts_opted_out": ("counter", {"reason"}),
    "notify_enqueue_to_accepted_seconds": ("histogram", {"domain", "le"}),
    "notify_meta_answer_seconds": ("histogram", {"answer", "le"}),
    "notify_worker_run_seconds": ("histogram", {"trigger", "le"}),
    "notify_sending_paused": ("gauge", set()),
    "notify_sender_held": ("gauge", {"sender"}),
    "notify_worker_last_active_timestamp_seconds": ("gauge", set()),
    "notify_last_status_webhook_timestamp_seconds": ("gauge", set()),
    "notify_receipts_awaiting": ("gauge", set()),
    # The alert rules' totals (reporting/metrics_totals.py).
    "notify_outcomes": ("counter", {"outcome"}),
    "notify_domain_outcomes": ("counter", {"domain", "outcome"}),
    "notify_opt_outs": ("counter", {"kind"}),
    "notify_throttled": ("counter", {"error_code"}),
}


def test_metric_families_have_the_runbook_and_conventional_names_types_and_labels(db) -> None:
    seed_finished(db)
    families = {family.name: family for family in text_string_to_metric_families(metrics.render(db).decode())}
    expected = RUNBOOK_FAMILIES | CONVENTIONAL_FAMILIES
    assert set(families) == set(expected)
    for name, (kind, labels) in expected.items():
        assert families[name].type == kind, name
        for sample in families[name].samples:
            assert set(sample.labels) <= labels, (name, sample)
    names = {sample.name for family in families.values() for sample in family.samples}
    assert {"notification_sent_total", "notification_failed_total", "notification_deferred"} <= names
    assert {f"notification_worker_latency_ms_{part}" for part in ("bucket", "sum", "count")} <= names
    assert {"notify_sent_total", "notify_retried_total", "notify_enqueue_to_accepted_seconds_bucket"} <= names


def test_queue_depth_counts_due_rows_only(db) -> None:
    ids = seed_queue(db)
    parsed = samples(metrics.render(db))
    # Due now: the fresh row and the overdue one; the scheduled row waits; the claimed one is in flight.
    assert value(parsed, "notification_queue_depth", trigger="cron") == 2
    assert value(parsed, "notification_queue_waiting") == 1
    assert value(parsed, "notification_queue_in_flight") == 1
    assert 600 <= value(parsed, "notification_queue_oldest_due_seconds") < 3600
    # The same as the database says, status by status.
    assert value(parsed, "notification_queue_depth", trigger="cron") == one(
        db,
        "SELECT count(*) FROM notifications WHERE status = 'queued' AND locked_at IS NULL "
        "AND next_attempt_at <= now()",
    )
    # A quiet-hours deferral moves a row from due to waiting: no "queue backed up" at night.
    db.execute(
        "UPDATE notifications SET next_attempt_at = now() + interval '8 hours', last_error_code = 'quiet_hours' "
        "WHERE id = %s",
        (ids["due"],),
    )
    parsed = samples(metrics.render(db))
    assert value(parsed, "notification_queue_depth", trigger="cron") == 1
    assert value(parsed, "notification_queue_waiting") == 2


def test_empty_queue_exports_zeros_not_gaps(db) -> None:
    parsed = samples(metrics.render(db))
    assert value(parsed, "notification_queue_depth", trigger="cron") == 0
    assert value(parsed, "notification_queue_oldest_due_seconds") == 0
    assert value(parsed, "notification_filtered_optout") == 0
    for code in (*throttling_codes(), "quiet_hours", "pair_limit"):
        assert value(parsed, "notification_deferred", error_code=code) == 0


def labelled(parsed, name: str, *keys: str) -> dict:
    return {
        tuple(dict(labels)[k] for k in keys) if len(keys) > 1 else dict(labels)[keys[0]]: v
        for (n, labels), v in parsed.items()
        if n == name
    }


def test_sent_and_failed_counters_count_outcomes(db) -> None:
    seed_finished(db)
    parsed = samples(metrics.render(db))
    sent = labelled(parsed, "notification_sent_total", "domain")
    assert sent == {"baskets": 3, "core": 2}
    assert sent == labelled(parsed, "notify_sent_total", "domain")
    failed = labelled(parsed, "notification_failed_total", "domain", "error_code")
    # A worker's verdicts only: opt-outs are filtered, not failed.
    assert failed == {("baskets", "131026"): 2, ("core", "132001"): 1, ("core", "none"): 1}
    assert failed == labelled(parsed, "notify_failed_total", "domain", "error_code")
    filtered = labelled(parsed, "notify_filtered_total", "domain", "reason", "stage")
    assert filtered == {("core", "opted_out", "send"): 1, ("orders", "opted_out", "queue"): 2}
    # By cause, a bounded label (migration 0012): mark_opted_out called by a producer's SQL is "api".
    assert value(parsed, "notify_contacts_opted_out_total", reason="api") == 1
    assert value(parsed, "notify_worker_starts_total", trigger="sensor") == 1


def test_optouts_and_deferrals_are_cumulative(db) -> None:
    seed_finished(db)
    parsed = samples(metrics.render(db))
    assert value(parsed, "notification_filtered_optout") == 3
    # Every deferral ever, the one ten minutes ago included: a counter, read with increase().
    assert value(parsed, "notification_deferred_quiet_hours") == 3
    assert value(parsed, "notification_deferred", error_code="quiet_hours") == 3
    assert value(parsed, "notification_deferred", error_code="131056") == 1
    assert value(parsed, "notification_deferred", error_code="pair_limit") == 1
    assert value(parsed, "notification_deferred", error_code="131000") == 1  # a retry
    assert value(parsed, "notification_deferred", error_code="130429") == 0
    assert value(parsed, "notify_deferred_total", reason="quiet_hours") == 3
    assert value(parsed, "notify_retried_total", error_code="131000") == 1
    in_audit = dict(
        db.execute(
            "SELECT details->>'error_code', count(*) FROM notification_audit_log "
            "WHERE event_type IN ('deferred', 'retried') GROUP BY 1"
        ).fetchall()
    )
    exported = {
        dict(labels)["error_code"]: v
        for (name, labels), v in parsed.items()
        if name == "notification_deferred" and v
    }
    assert exported == in_audit


def test_counters_survive_stop_resume_retry_and_deleting_everything(db) -> None:
    seed_finished(db)
    seed_queue(db)

    def cumulative() -> dict:
        return {
            key: v
            for key, v in samples(metrics.render(db)).items()
            if key[0].endswith(("_total", "_bucket", "_count", "_sum"))
            or key[0].startswith(("notification_deferred", "notification_filtered"))
        }

    history = [cumulative()]
    assert operations.emergency_stop(db, "test", "test") > 0
    history.append(cumulative())
    operations.resume(db, "test", "test")
    history.append(cumulative())
    db.execute("UPDATE notifications SET status = 'queued', last_error_code = NULL WHERE status = 'failed'")
    history.append(cumulative())
    for table in ("notification_audit_log", "observability_events", "notifications"):
        db.execute(f"DELETE FROM {table}")
    history.append(cumulative())
    for before, after in itertools.pairwise(history):
        for key, v in before.items():
            assert after[key] >= v, key
    last = history[-1]
    assert last[("notify_held_total", frozenset({("domain", "core")}))] >= 1
    assert last[("notify_requeued_total", frozenset({("reason", "emergency_stop")}))] >= 1


def test_enqueue_to_accepted_histogram_is_in_seconds(db) -> None:
    notification_id = new(db, "+250788900001", "baskets")
    db.execute(
        "UPDATE notifications SET created_at = now() - interval '45 seconds' WHERE id = %s",
        (notification_id,),
    )
    update(db, notification_id, CLAIM)
    update(db, notification_id, "status = 'sent', sent_at = now(), locked_at = NULL")
    parsed = samples(metrics.render(db))

    def bucket(le: str) -> float:
        return value(parsed, "notify_enqueue_to_accepted_seconds_bucket", domain="baskets", le=le)

    assert bucket("30.0") == 0 and bucket("60.0") == 1 and bucket("+Inf") == 1
    assert 45 <= value(parsed, "notify_enqueue_to_accepted_seconds_sum", domain="baskets") < 50
    assert value(parsed, "notify_enqueue_to_accepted_seconds_count", domain="baskets") == 1


def test_meta_answer_time_lands_with_the_write_back(db, db_url) -> None:
    ids = [new(db, f"+25078891000{i}") for i in range(3)]
    db.execute(
        "UPDATE notifications SET locked_at = now(), locked_by = 'worker-1' WHERE id = ANY(%s)", (ids,)
    )
    outcomes = [
        store.Outcome("sent", ids[0], "sent", 0, 0, wa_message_id="wamid.1", latency_s=0.2),
        store.Outcome("deferred", ids[1], "queued", 0, 1, None, "throttled", "130429", latency_s=0.04),
        # The request never left: no answer to time.
        store.Outcome("deferred", ids[2], "queued", 0, 1, None, "unreachable", "connection", latency_s=5.0),
    ]

    async def write() -> int:
        conn = await connect_async(db_url, actor="test", autocommit=True)
        try:
            return await store.write_outcomes(conn, outcomes, worker="worker-1")
        finally:
            await conn.close()

    assert asyncio.run(write()) == 3
    parsed = samples(metrics.render(db))
    assert value(parsed, "notify_meta_answer_seconds_count", answer="accepted") == 1
    assert value(parsed, "notify_meta_answer_seconds_count", answer="error") == 1
    assert value(parsed, "notify_meta_answer_seconds_bucket", answer="accepted", le="0.1") == 0
    assert value(parsed, "notify_meta_answer_seconds_bucket", answer="accepted", le="0.25") == 1
    assert value(parsed, "notify_meta_answer_seconds_bucket", answer="error", le="0.05") == 1
    assert value(parsed, "notify_meta_answer_seconds_sum", answer="error") == pytest.approx(0.04)
    assert value(parsed, "notify_deferred_total", reason="130429") == 1


def test_worker_latency_histogram_has_cumulative_le_buckets(db) -> None:
    seed_finished(db)
    parsed = samples(metrics.render(db))

    def bucket(trigger: str, le: float | str) -> float:
        return value(parsed, "notification_worker_latency_ms_bucket", trigger=trigger, le=str(le))

    # Sensor runs of 100, 1,234, 52,000 and 700,000 ms; a DONE event without a duration is not a run.
    assert bucket("sensor", 100.0) == 1  # le is inclusive
    assert bucket("sensor", 250.0) == 1
    assert bucket("sensor", 2500.0) == 2
    assert bucket("sensor", 55000.0) == 3
    assert bucket("sensor", 600000.0) == 3
    assert bucket("sensor", "+Inf") == 4
    assert value(parsed, "notification_worker_latency_ms_count", trigger="sensor") == 4
    assert (
        value(parsed, "notification_worker_latency_ms_sum", trigger="sensor") == 100 + 1234 + 52_000 + 700_000
    )
    assert (
        bucket("manual", 100.0) == 1
        and value(parsed, "notification_worker_latency_ms_sum", trigger="manual") == 80
    )
    les = sorted(
        float(dict(labels)["le"])
        for (name, labels), _ in parsed.items()
        if name == "notification_worker_latency_ms_bucket" and dict(labels)["trigger"] == "sensor"
    )
    bounds = one(db, "SELECT bounds FROM notify_histogram_bounds WHERE name = 'worker_run'")
    assert les == [*map(float, bounds), float("inf")]
    assert les[0] == 100 and les[-2] == 600_000  # runs of 100 ms .. 10 min
    done = one(
        db,
        "SELECT count(*) FROM observability_events WHERE event_type = 'NOTIFY_WORKER_DONE' AND details ? 'duration_ms'",
    )
    worker_s = sum(v for (name, _), v in parsed.items() if name == "notify_worker_run_seconds_sum")
    assert worker_s == pytest.approx((100 + 1234 + 52_000 + 700_000 + 80) / 1000)
    assert done == sum(v for (name, _), v in parsed.items() if name == "notification_worker_latency_ms_count")


def test_snapshot_has_its_own_statement_timeout(db_url) -> None:
    with connect(db_url, actor="test", autocommit=True, statement_timeout_ms=30_000) as conn:
        with connect(db_url, actor="locker", autocommit=False) as locker:
            # A migration or a VACUUM FULL holding the table: the snapshot gives up, not waits.
            locker.execute("LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(psycopg.errors.QueryCanceled):
                read_snapshot(conn, statement_timeout_ms=200)
            locker.rollback()
        assert read_snapshot(conn).due == 0
        # The timeout was local to the snapshot's transaction.
        assert one(conn, "SHOW statement_timeout") == "30s"


def test_snapshot_inside_a_callers_transaction(db_url) -> None:
    with connect(db_url, actor="test", autocommit=False) as conn:
        conn.execute("SELECT 1")  # a transaction is open: the snapshot joins it
        assert read_snapshot(conn).counter("sent") == {}
        conn.rollback()
        assert read_snapshot(conn).counter("failed") == {}


def test_textfile_is_replaced_atomically_with_the_rendered_content(db, tmp_path: Path) -> None:
    seed_finished(db)
    path = tmp_path / "textfile" / "notify_pipeline.prom"
    assert metrics.write_textfile(db, path) == path
    assert path.read_bytes() == metrics.render(db)
    first_inode = path.stat().st_ino
    metrics.write_textfile(db, path)
    # Renamed into place (a new inode), never rewritten in place where a reader could see half.
    assert path.stat().st_ino != first_inode
    assert os.listdir(path.parent) == [path.name]


def test_a_failed_export_leaves_the_previous_textfile(db_url, tmp_path: Path) -> None:
    path = tmp_path / "notify_pipeline.prom"
    with connect(db_url, actor="test", autocommit=True) as conn:
        metrics.write_textfile(conn, path)
    before = path.read_bytes()
    with pytest.raises(psycopg.OperationalError):
        metrics.write_textfile(conn, path)  # the connection is closed: collecting fails
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name], "no temporary file left behind"


def test_push_puts_the_exposition_to_the_gateway(db) -> None:
    seed_finished(db)
    with gateway() as server:
        metrics.push(db, server.url, job="notify_pipeline", timeout_s=5)
    ((method, path, body),) = server.requests
    assert method == "PUT"  # replaces the job's series: a domain that disappeared goes too
    assert path == "/metrics/job/notify_pipeline"
    assert samples(body) == samples(metrics.render(db))


def test_export_writes_and_pushes_one_snapshot(db, tmp_path: Path) -> None:
    seed_finished(db)
    seed_queue(db)  # oldest-due seconds change between reads: one snapshot keeps file and push equal
    path = tmp_path / "m.prom"
    with gateway() as server:
        result = metrics.export(db, textfile=path, gateway_url=server.url)
    ((_, _, body),) = server.requests
    assert body == path.read_bytes()
    assert result.series == len(samples(body))
    assert result.textfile == path and result.pushed_to == server.url


def test_unreachable_gateway_is_one_clear_error(db) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(metrics.PushError) as caught:
        metrics.push(db, url, timeout_s=2)
    message = str(caught.value)
    assert url in message and "unreachable" in message and "NOTIFY_PUSHGATEWAY_URL" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__, "no chained traceback"


def test_gateway_that_never_answers_times_out(db) -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(metrics.PushError, match="unreachable"):
            metrics.push(db, url, timeout_s=0.3)


def test_gateway_errors_credentials_and_bad_urls(db) -> None:
    with gateway(status=500) as server:
        secret_url = server.url.replace("http://", "http://ops:s3cret@")
        with pytest.raises(metrics.PushError, match="HTTP 500") as caught:
            metrics.push(db, secret_url)
    assert "s3cret" not in str(caught.value) and "ops:***@" in str(caught.value)
    assert server.headers[0]["Authorization"] == "Basic " + base64.b64encode(b"ops:s3cret").decode()
    with pytest.raises(metrics.PushError, match="not usable"):
        metrics.push(db, "ftp://gateway.invalid:9091")


def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_METRICS_TEXTFILE", raising=False)
    monkeypatch.delenv("NOTIFY_PUSHGATEWAY_URL", raising=False)
    monkeypatch.setenv("NOTIFY_DATA_DIR", str(tmp_path))
    assert metrics.textfile_from_env() == tmp_path / "metrics" / "notify_pipeline.prom"
    assert metrics.pushgateway_url_from_env() is None
    monkeypatch.setenv("NOTIFY_METRICS_TEXTFILE", str(tmp_path / "node" / "q.prom"))
    monkeypatch.setenv("NOTIFY_PUSHGATEWAY_URL", " http://pushgateway:9091 ")
    assert metrics.textfile_from_env() == tmp_path / "node" / "q.prom"
    assert metrics.pushgateway_url_from_env() == "http://pushgateway:9091"


def test_worker_starts_count_runs_not_heartbeats(db) -> None:
    for details in (
        {"trigger": "sensor"},
        {"trigger": "sensor", "phase": "heartbeat"},
        {"trigger": "manual"},
    ):
        db.execute(
            "INSERT INTO observability_events (event_type, details) VALUES ('NOTIFY_WORKER_START', %s)",
            (Jsonb(details),),
        )
    parsed = samples(metrics.render(db))
    assert value(parsed, "notify_worker_starts_total", trigger="sensor") == 1
    assert value(parsed, "notify_worker_starts_total", trigger="manual") == 1
    # A heartbeat is activity all the same: the worker-health gauge moves with it.
    assert value(parsed, "notify_worker_last_active_timestamp_seconds") > 0


def test_counters_classify_outcomes_as_the_figures_do(db) -> None:
    codes = (*figures.NOT_DELIVERY_FAILURES, "131026", "template_missing", None)
    for event in ("failed", "cancelled"):
        for code in codes:
            (name,) = db.execute(
                "SELECT name FROM notify_outcome_counter(%s, 'core', %s, NULL)", (event, code)
            ).fetchone()
            expected = figures.outcome("failed", code)
            if event == "cancelled" and expected == figures.FAILED:
                expected = "cancelled"  # a waiting row stopped by someone: not a worker's verdict
            assert name == expected, (event, code)

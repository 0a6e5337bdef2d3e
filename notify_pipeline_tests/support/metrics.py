"""Helpers for the metrics tests: a seeded queue, exposition parsing, the series names the exposition
produces, and a local Pushgateway."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
from prometheus_client.parser import text_string_to_metric_families
from psycopg.types.json import Jsonb

from notify_pipeline.reporting import metrics
from notify_pipeline_tests.support.engine import enqueue, welcome

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

CLAIM = "locked_at = now(), locked_by = 'worker-1'"


def update(db: psycopg.Connection, notification_id: int, assignments: str) -> None:
    db.execute(f"UPDATE notifications SET {assignments} WHERE id = %s", (notification_id,))


def new(db: psycopg.Connection, to: str, domain: str = "core", **meta: Any) -> int:
    return enqueue(db, welcome(to), {"domain": domain, **meta})


def sent(db: psycopg.Connection, to: str, domain: str) -> int:
    notification_id = new(db, to, domain)
    update(db, notification_id, CLAIM)
    update(db, notification_id, "status = 'sent', sent_at = now(), locked_at = NULL")
    return notification_id


def failed(db: psycopg.Connection, to: str, domain: str, code: str | None) -> int:
    notification_id = new(db, to, domain)
    update(db, notification_id, CLAIM)
    db.execute(
        "UPDATE notifications SET status = 'failed', last_error_code = %s, locked_at = NULL WHERE id = %s",
        (code, notification_id),
    )
    return notification_id


def deferred(db: psycopg.Connection, to: str, code: str, *, retried: bool = False) -> int:
    """Claim, then give back for later: a 'deferred' audit event, or 'retried' when an attempt is used."""
    notification_id = new(db, to)
    update(db, notification_id, CLAIM)
    db.execute(
        "UPDATE notifications SET next_attempt_at = now() + interval '1 hour', locked_at = NULL, "
        "last_error_code = %s, retry_count = retry_count + %s WHERE id = %s",
        (code, 1 if retried else 0, notification_id),
    )
    return notification_id


def worker_done(db: psycopg.Connection, details: dict[str, Any]) -> None:
    db.execute(
        "INSERT INTO observability_events (event_type, details) VALUES ('NOTIFY_WORKER_DONE', %s)",
        (Jsonb(details),),
    )


def seed_finished(db: psycopg.Connection) -> None:
    """Sent and failed rows, worker runs and deferrals; nothing due now (no value moves with time)."""
    for i in range(3):
        sent(db, f"+25078810000{i}", "baskets")
    for i in range(2):
        sent(db, f"+25078820000{i}", "core")
    failed(db, "+250788300001", "baskets", "131026")
    failed(db, "+250788300002", "baskets", "131026")
    failed(db, "+250788300003", "core", "132001")
    failed(db, "+250788300004", "core", None)
    # Opt-outs: two waiting rows cancelled by mark_opted_out, and one the worker refused.
    new(db, "+250788400001", "orders", delay_seconds=600)
    new(db, "+250788400001", "orders", delay_seconds=900)
    db.execute("SELECT mark_opted_out('+250788400001', 'user_request')")
    failed(db, "+250788400002", "core", "opted_out")
    # Deferrals in the window: quiet hours twice, pair limits (ours and Meta's), a retry.
    deferred(db, "+250788500001", "quiet_hours")
    deferred(db, "+250788500002", "quiet_hours")
    deferred(db, "+250788500003", "131056")
    deferred(db, "+250788500004", "pair_limit")
    deferred(db, "+250788500005", "131000", retried=True)
    # A deferral before the window, which the gauges must not count.
    old = deferred(db, "+250788500006", "quiet_hours")
    db.execute(
        "UPDATE notification_audit_log SET created_at = now() - interval '10 minutes' "
        "WHERE notification_id = %s AND event_type = 'deferred'",
        (old,),
    )
    # Worker runs: on a bucket bound (le is inclusive), between bounds, above the last bound.
    for details in (
        {"trigger": "sensor", "duration_ms": 100},
        {"trigger": "sensor", "duration_ms": 1234},
        {"trigger": "sensor", "duration_ms": 52_000},
        {"trigger": "sensor", "duration_ms": 700_000},
        {"trigger": "manual", "duration_ms": 80},
        {"trigger": "sensor"},  # no duration: not a run that finished normally
    ):
        worker_done(db, details)
    db.execute(
        "INSERT INTO observability_events (event_type, details) "
        'VALUES (\'NOTIFY_WORKER_START\', \'{"trigger": "sensor", "duration_ms": 5}\')'
    )


def seed_queue(db: psycopg.Connection) -> dict[str, int]:
    """Due, waiting and claimed rows; returns their ids."""
    due = new(db, "+250788600001")
    overdue = new(db, "+250788600002")
    update(db, overdue, "next_attempt_at = now() - interval '10 minutes'")
    scheduled = new(db, "+250788600003", delay_seconds=3600)
    claimed = new(db, "+250788600004")
    update(db, claimed, CLAIM)
    return {"due": due, "overdue": overdue, "scheduled": scheduled, "claimed": claimed}


def samples(text: str | bytes) -> Samples:
    """Every sample of an exposition, keyed by sample name and label set."""
    if isinstance(text, bytes):
        text = text.decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(parsed: Samples, name: str, **labels: str) -> float:
    return parsed[(name, frozenset(labels.items()))]


def produced_series(db) -> set[str]:
    """Every series name the exposition produces, from its families (present even at zero)."""
    names = set()
    for family in text_string_to_metric_families(metrics.render(db).decode()):
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{part}" for part in ("bucket", "sum", "count")}
        else:
            names.add(family.name)
    return names


class Gateway:
    """A stand-in Pushgateway on 127.0.0.1: records (method, path, body) and headers; answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.headers: list[dict[str, str]] = []
        self.status = status
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                gateway.requests.append((self.command, self.path, body))
                gateway.headers.append(dict(self.headers))
                self.send_response(gateway.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST = _record

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def gateway(status: int = 200) -> Iterator[Gateway]:
    server = Gateway(status)
    try:
        yield server
    finally:
        server.close()

"""Claim order bench: rows/s of the claim-and-mark loop with the old order (due time, id) against
the current one (priority DESC, due time, id), and the plans behind them.

    python -m notify_pipeline.bench.claim_order [--server-url URL | --fresh-embedded] [--rows N]

On a scratch database beside the queue's (as `notify-pipeline bench` does), for each scenario and
batch size: fill `notifications` with `--rows` rows, settle them, then claim with one statement
and mark the batch sent with another until the queue is empty or `--seconds` have passed. The old
order runs without the claim index of migration 0005 (as the queue was before it), the new one
with it; rounds alternate the two, so a noisy neighbour hurts both alike. Prints JSON; asserts
nothing about speed.

Scenarios:
  backlog        every row due now at priority 0 (the big-backlog case; it must stay cheap)
  deferred_high  half the rows due now at priority 0, half at priority 50 deferred to tomorrow
                 (the claim index puts those first: one ordered scan over it walked them all on
                 PostgreSQL 15-17; the banded claim starts each band at its due rows)
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from notify_pipeline.bench import database
from notify_pipeline.bench.ceiling import MARK_SENT
from notify_pipeline.db import urls
from notify_pipeline.engine.claim import CLAIM

# The claim before migration 0005, kept for this comparison only.
OLD_CLAIM = """
WITH due AS (
    SELECT id FROM notifications
     WHERE status = 'queued'
       AND next_attempt_at <= now()
       AND (locked_at IS NULL OR locked_at < now() - make_interval(secs => %(lease_s)s))
     ORDER BY next_attempt_at, id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
UPDATE notifications n
   SET locked_at = now(), locked_by = %(worker)s
  FROM due
 WHERE n.id = due.id
RETURNING n.id, n.to_wa_id, n.template_name, n.language, n.domain, n.notification_type, n.payload,
          n.retry_count, n.deferral_count, n.quiet_hours_override, n.created_at
"""
CLAIM_INDEX = "notifications_claim_idx"
CREATE_CLAIM_INDEX = f"""
CREATE INDEX IF NOT EXISTS {CLAIM_INDEX} ON notifications (priority DESC, next_attempt_at, id)
 WHERE status = 'queued'
"""
# Rows of the demo's shape (a template payload of about 280 bytes), inserted in one statement:
# generate_series, not queueNotification, so a 200k-row fill takes seconds.
FILL = """
INSERT INTO notifications (to_wa_id, template_name, language, notification_type, domain, payload,
                           priority, next_attempt_at, correlation_id)
SELECT '+2507' || lpad(g::text, 8, '0'), 'order_shipped', 'en', 'order_shipped', 'orders',
       jsonb_build_object('messaging_product', 'whatsapp', 'to', '+2507' || lpad(g::text, 8, '0'),
                          'type', 'template', 'template', jsonb_build_object(
                              'name', 'order_shipped', 'language', jsonb_build_object('code', 'en'),
                              'components', jsonb_build_array(jsonb_build_object(
                                  'type', 'body', 'parameters', jsonb_build_array(
                                      jsonb_build_object('type', 'text', 'text', 'Order ' || g),
                                      jsonb_build_object('type', 'text', 'text', 'Courier ' || g %% 97)))))),
       CASE WHEN %(deferred_high)s AND g %% 2 = 0 THEN 50 ELSE 0 END,
       CASE WHEN %(deferred_high)s AND g %% 2 = 0 THEN now() + interval '1 day'
            ELSE now() - interval '1 minute' END,
       'bench-' || g
  FROM generate_series(1, %(rows)s) AS g
"""
SCENARIOS = ("backlog", "deferred_high")
VARIANTS = {"old": OLD_CLAIM, "new": CLAIM}


def prepare(conn: psycopg.Connection, variant: str, scenario: str, rows: int) -> int:
    """An empty queue with the variant's indexes, filled for the scenario; returns the due rows."""
    database.clear_queue(conn)
    if variant == "old":
        conn.execute(f"DROP INDEX IF EXISTS {CLAIM_INDEX}")
    else:
        conn.execute(CREATE_CLAIM_INDEX)
    conn.execute(FILL, {"rows": rows, "deferred_high": scenario == "deferred_high"})
    database.settle(conn)
    due = conn.execute("SELECT count(*) FROM notifications WHERE next_attempt_at <= now()").fetchone()
    return int(due[0]) if due else 0


def claim_and_mark_for(
    conn: psycopg.Connection, claim: str, batch_size: int, max_seconds: float
) -> tuple[int, int, float]:
    """Claim and mark sent until nothing is claimable or time is up; (rows, claims, seconds)."""
    rows = claims = 0
    params = {"worker": "bench-claim-order", "limit": batch_size, "lease_s": 900.0}
    started = time.perf_counter()
    while time.perf_counter() - started < max_seconds:
        claimed = conn.execute(claim, params).fetchall()
        if not claimed:
            break
        conn.execute(MARK_SENT, ([row[0] for row in claimed],))
        rows += len(claimed)
        claims += 1
    return rows, claims, time.perf_counter() - started


def explain(conn: psycopg.Connection, claim: str, batch_size: int) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of one claim, rolled back so it takes nothing."""
    params = {"worker": "bench-explain", "limit": batch_size, "lease_s": 900.0}
    with conn.transaction(force_rollback=True):
        plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + claim, params).fetchall()
    return [line for (line,) in plan]


def summary(per_variant: dict[str, list[float]]) -> dict[str, Any]:
    """Median and best round of each variant. On a shared machine the best round is the one least
    disturbed by neighbours, so it compares the statements more fairly than the median does."""
    out: dict[str, Any] = {}
    for label, pick in (("median", statistics.median), ("best", max)):
        old, new = pick(per_variant["old"]), pick(per_variant["new"])
        out[label] = {
            "old_rows_per_s": round(old),
            "new_rows_per_s": round(new),
            "change_pct": round(100 * (new - old) / old, 1),
        }
    out["rounds_rows_per_s"] = {v: [round(x) for x in xs] for v, xs in per_variant.items()}
    return out


def measure(
    url: str, *, rows: int, batches: list[int], rounds: int, seconds: float, scenarios: list[str]
) -> dict[str, Any]:
    with database.open_connection(url) as conn:
        results: dict[str, Any] = {
            "server_version": conn.execute("SHOW server_version").fetchone()[0],  # type: ignore[index]
            "rows": rows,
            "rounds": rounds,
            "max_seconds_per_cell": seconds,
            "scenarios": {},
        }
        for scenario in scenarios:
            cells: dict[str, Any] = {}
            for batch in batches:
                per_variant: dict[str, list[float]] = {"old": [], "new": []}
                for _ in range(rounds):
                    for variant, claim in VARIANTS.items():
                        prepare(conn, variant, scenario, rows)
                        done, _, took = claim_and_mark_for(conn, claim, batch, seconds)
                        per_variant[variant].append(done / took)
                cells[f"batch_{batch}"] = summary(per_variant)
            plans = {}
            for variant, claim in VARIANTS.items():
                prepare(conn, variant, scenario, rows)
                plans[variant] = explain(conn, claim, batches[0])
            cells["plans"] = plans
            results["scenarios"][scenario] = cells
        return results


@contextmanager
def fresh_embedded() -> Iterator[str]:
    """A throwaway embedded PostgreSQL in a temporary folder, stopped and removed afterwards."""
    from notify_pipeline.db.embedded import EmbeddedPostgres

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    root = Path(tempfile.mkdtemp(prefix="notify-claim-bench-"))
    server = EmbeddedPostgres(root)
    try:
        yield server.ensure_running(port=port)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--server-url", help="Server to create the scratch database on (default: the queue's)")
    where.add_argument("--fresh-embedded", action="store_true", help="Start a throwaway embedded server")
    parser.add_argument("--rows", type=int, default=200_000, help="Rows per fill (default 200000)")
    parser.add_argument("--batch", type=int, action="append", help="Batch size; repeat (default 100 and 10)")
    parser.add_argument("--rounds", type=int, default=4, help="Alternating old/new rounds per cell")
    parser.add_argument("--seconds", type=float, default=5.0, help="Time budget of one claim loop")
    parser.add_argument("--scenario", choices=SCENARIOS, action="append", help="Repeat (default: all)")
    parser.add_argument("--plans", action="store_true", help="Include EXPLAIN ANALYZE of one claim")
    args = parser.parse_args(argv)
    batches = args.batch or [100, 10]

    @contextmanager
    def server() -> Iterator[str]:
        if args.fresh_embedded:
            with fresh_embedded() as url:
                yield url
        elif args.server_url:
            yield urls.libpq(args.server_url)
        else:
            from notify_pipeline.db.location import queue_database_url

            yield queue_database_url()

    with server() as server_url, database.scratch_database(server_url) as url:
        result = measure(
            url,
            rows=args.rows,
            batches=batches,
            rounds=args.rounds,
            seconds=args.seconds,
            scenarios=args.scenario or list(SCENARIOS),
        )
    if not args.plans:
        for cells in result["scenarios"].values():
            cells.pop("plans")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

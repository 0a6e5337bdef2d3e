"""The metrics snapshot: what the queue database holds, read in one short read-only transaction.

Every query runs each minute, so each one stays on an index the schema already has:

- queue depth: the partial claim index (`notifications_due_idx`, queued rows only);
- failures and opt-outs: the partial index of failed rows (`notifications_failed_idx`);
- worker run durations: `observability_events (event_type, created_at)`;
- deferrals: the audit log's `created_at` index, over a trailing window only;
- receipts (delivered, read, late failures): notify_counters, a handful of rows the database
  increments as it applies status webhooks, so they only go up.

The one unbounded scan is the sent counter: a cumulative count of sent rows cannot be windowed
without breaking counter semantics, and no index holds sent rows alone. The snapshot runs under
its own statement timeout, so a slow database fails the export instead of piling up runs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import psycopg
from psycopg import pq

# Bounds of the worker latency histogram, in ms: a drain lasts from a tenth of a second (nothing
# due) to its time budget (50 s by default, at most an hour); finer steps near the default budget.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    20_000,
    30_000,
    45_000,
    55_000,
    60_000,
    90_000,
    120_000,
    300_000,
    600_000,
)

# The window of the deferral gauges: the export runs every minute, so each export counts the
# deferrals since the one before, and the runbook's "more than 10 a minute" reads off directly.
DEFERRAL_WINDOW_S = 60.0
# A snapshot that takes longer than this fails rather than overlapping the next export.
STATEMENT_TIMEOUT_MS = 10_000

QUEUE = """
SELECT count(*) FILTER (WHERE next_attempt_at <= now() AND locked_at IS NULL),
       count(*) FILTER (WHERE next_attempt_at > now() AND locked_at IS NULL),
       count(*) FILTER (WHERE locked_at IS NOT NULL),
       coalesce(extract(epoch FROM now() - min(next_attempt_at)
                        FILTER (WHERE next_attempt_at <= now() AND locked_at IS NULL)), 0)::float8
  FROM notifications
 WHERE status = 'queued'
"""

SENT = "SELECT domain, count(*) FROM notifications WHERE status = 'sent' GROUP BY domain"

FAILED = """
SELECT domain, coalesce(last_error_code, 'none'), count(*)
  FROM notifications
 WHERE status = 'failed'
 GROUP BY 1, 2
"""

# Each run is put in the bucket of the first bound at or above its duration (Prometheus' `le`);
# Python adds the buckets up. Runs from any time: a histogram is cumulative.
LATENCY = """
SELECT coalesce(e.details->>'trigger', 'unknown'),
       (SELECT count(*) FROM unnest(%(bounds)s::float8[]) AS b(le) WHERE b.le < e.ms),
       count(*),
       sum(e.ms)
  FROM (SELECT details, (details->>'duration_ms')::float8 AS ms
          FROM observability_events
         WHERE event_type = 'NOTIFY_WORKER_DONE' AND jsonb_typeof(details->'duration_ms') = 'number') e
 GROUP BY 1, 2
"""

DEFERRED = """
SELECT event_type, coalesce(details->>'error_code', 'none'), count(*)
  FROM notification_audit_log
 WHERE created_at > now() - make_interval(secs => %(window_s)s)
   AND event_type IN ('deferred', 'retried')
 GROUP BY 1, 2
"""

# Counters the database keeps (notify_counters, migration 0006): one row per name and label set.
RECEIPT_COUNTERS = ("delivered", "read", "late_failed")
COUNTERS = "SELECT name, labels, value FROM notify_counters WHERE name = ANY(%(names)s)"


@dataclass(frozen=True)
class LatencyHistogram:
    """Worker run durations of one trigger: cumulative counts per bound, total count and sum."""

    cumulative: tuple[int, ...]  # one per LATENCY_BUCKETS_MS bound
    count: int
    sum_ms: float


@dataclass(frozen=True)
class Snapshot:
    """One consistent reading of the queue, as the exporter publishes it."""

    due: int  # queued, due now, not claimed
    waiting: int  # queued for a later time (deferred or scheduled), not claimed
    in_flight: int  # claimed by a worker
    oldest_due_s: float  # how long the longest-due unclaimed row has been due; 0 when none
    sent: dict[str, int] = field(default_factory=dict)  # domain -> sent rows
    failed: dict[tuple[str, str], int] = field(default_factory=dict)  # (domain, error code) -> rows
    latency: dict[str, LatencyHistogram] = field(default_factory=dict)  # trigger -> histogram
    deferred: dict[str, int] = field(default_factory=dict)  # error code -> deferrals + retries in window
    deferred_quiet_hours: int = 0  # quiet-hours deferrals in window
    window_s: float = DEFERRAL_WINDOW_S
    delivered: int = 0  # messages Meta reported delivered (or read, which implies it), ever
    read: int = 0  # messages Meta reported read, ever
    late_failed: dict[str, int] = field(default_factory=dict)  # error code -> late failures, ever

    @property
    def opted_out(self) -> int:
        """Notifications never sent because the contact opted out."""
        return sum(count for (_domain, code), count in self.failed.items() if code == "opted_out")


def read_snapshot(
    conn: psycopg.Connection,
    *,
    window_s: float = DEFERRAL_WINDOW_S,
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
) -> Snapshot:
    """Read every metric in one read-only transaction, so the numbers agree with each other."""
    fresh = conn.info.transaction_status == pq.TransactionStatus.IDLE
    with conn.transaction():
        if fresh:
            # One snapshot for all queries; impossible inside a transaction the caller started.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        # Local to this transaction: the caller's connection keeps its own timeout afterwards.
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{int(statement_timeout_ms)}ms",))
        due, waiting, in_flight, oldest = conn.execute(QUEUE).fetchone()
        sent = {domain: count for domain, count in conn.execute(SENT)}
        failed = {(domain, code): count for domain, code, count in conn.execute(FAILED)}
        latency = _histograms(conn.execute(LATENCY, {"bounds": list(LATENCY_BUCKETS_MS)}).fetchall())
        deferred: Counter[str] = Counter()
        quiet = 0
        for event_type, code, count in conn.execute(DEFERRED, {"window_s": window_s}):
            deferred[code] += count
            if event_type == "deferred" and code == "quiet_hours":
                quiet += count
        counters = conn.execute(COUNTERS, {"names": list(RECEIPT_COUNTERS)}).fetchall()
    totals = {name: sum(value for n, _labels, value in counters if n == name) for name in RECEIPT_COUNTERS}
    late_failed = {
        labels.get("error_code", "none"): value for name, labels, value in counters if name == "late_failed"
    }
    return Snapshot(
        due=due,
        waiting=waiting,
        in_flight=in_flight,
        oldest_due_s=oldest,
        sent=sent,
        failed=failed,
        latency=latency,
        deferred=dict(deferred),
        deferred_quiet_hours=quiet,
        window_s=window_s,
        delivered=totals["delivered"],
        read=totals["read"],
        late_failed=late_failed,
    )


def _histograms(rows: list[tuple[str, int, int, float]]) -> dict[str, LatencyHistogram]:
    per_bucket: dict[str, list[int]] = {}
    sums: Counter[str] = Counter()
    for trigger, bucket, count, total_ms in rows:
        # bucket == len(bounds): above the last bound, counted only in +Inf.
        per_bucket.setdefault(trigger, [0] * (len(LATENCY_BUCKETS_MS) + 1))[bucket] += count
        sums[trigger] += float(total_ms)
    histograms = {}
    for trigger, counts in per_bucket.items():
        running, cumulative = 0, []
        for count in counts[:-1]:
            running += count
            cumulative.append(running)
        histograms[trigger] = LatencyHistogram(tuple(cumulative), sum(counts), sums[trigger])
    return histograms

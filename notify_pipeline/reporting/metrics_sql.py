"""The metrics snapshot: what the queue database holds, read in one short read-only transaction.

Two kinds of numbers, both from the database, so every exporter and every `serve` replica agree:

- Counters and histograms (migration 0008): `notify_counters` and `notify_histograms`, a few
  hundred rows at most, updated in the same transaction as each outcome (the audit trigger, the
  drain's write-back, status webhooks, recorded events). They only go up: a stop, a resume, a
  retry of failed rows or a clean-up of old events cannot lower them.
- Gauges of the present: the queue's shape (reporting/figures.py, the one definition of due,
  waiting, claimed and oldest due that status, diagnose and the alerts use too), the domains
  with queued rows (so a new domain's series can start at 0 before its first outcome), the
  pause flag and sender holds, the newest worker activity and the newest status webhook (each a
  max() on an index), and the sends still waiting for a status (`notifications_delivery_idx`).

Every query stays on an index, so a scrape costs the same at 10 rows or 10 million. The snapshot
runs under its own statement timeout: a slow database fails the scrape instead of piling up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import psycopg
from psycopg import pq

from notify_pipeline.reporting import figures
from notify_pipeline.thresholds import DEFAULTS

# A snapshot that takes longer than this fails rather than overlapping the next scrape.
STATEMENT_TIMEOUT_MS = 10_000
# How far back the newest status webhook is looked for (as the no-receipts alert does).
LAST_STATUS_S = 7 * 86400.0

# A label set as stored (jsonb), as a sorted tuple of (name, value) pairs: hashable, comparable.
Labels = tuple[tuple[str, str], ...]

COUNTERS = "SELECT name, labels, value FROM notify_counters"

HISTOGRAMS = """
SELECT b.name, b.unit, b.bounds, h.labels, h.bucket_le, h.count, h.sum
  FROM notify_histogram_bounds b
  LEFT JOIN notify_histograms h ON h.name = b.name
"""

# What the worker-health, no-receipts and switch gauges need. Worker activity is what the alert
# sensor counts from: a worker start, a resume or a released hold (a send run's normal start
# follows either), or the youngest claim a long-running worker still holds. Timestamps are Unix
# seconds; 0 when there is none (Prometheus' `time() - x` then reads as "forever").
STATE = """
SELECT coalesce(extract(epoch FROM greatest(
           (SELECT max(created_at) FROM observability_events WHERE event_type = 'NOTIFY_WORKER_START'),
           (SELECT max(created_at) FROM observability_events WHERE event_type = 'NOTIFY_RESUMED'),
           (SELECT max(created_at) FROM observability_events WHERE event_type = 'NOTIFY_SENDER_RELEASED'),
           (SELECT max(locked_at) FROM notifications WHERE status = 'queued' AND locked_at IS NOT NULL))), 0)::float8,
       coalesce(extract(epoch FROM (SELECT max(received_at) FROM webhook_events
                                     WHERE kind = 'status'
                                       AND received_at > now() - make_interval(secs => %(last)s))), 0)::float8,
       (SELECT count(*) FROM notifications WHERE status = 'sent' AND delivery_status IS NULL
           AND sent_at > now() - make_interval(secs => %(window)s)
           AND sent_at <= now() - make_interval(secs => %(grace)s)),
       coalesce((SELECT bool_or(paused) FROM queue_control), false),
       ARRAY(SELECT sender FROM sender_holds ORDER BY sender)
"""


@dataclass(frozen=True)
class Histogram:
    """One stored histogram: its bounds and, per label set, the count in each bucket (one per
    bound, then the +Inf bucket; not cumulative) and the sum of the observations."""

    name: str
    unit: str
    bounds: tuple[float, ...]
    series: dict[Labels, tuple[tuple[int, ...], float]] = field(default_factory=dict)

    def cumulative(self, labels: Labels) -> tuple[list[int], int, float]:
        """Prometheus' form: counts at or below each bound, the total count, the sum."""
        counts, total = self.series[labels]
        running, out = 0, []
        for count in counts[:-1]:
            running += count
            out.append(running)
        return out, running + counts[-1], total


@dataclass(frozen=True)
class Snapshot:
    """One consistent reading of the database, as the exporter publishes it."""

    # The queue's shape, as reporting/figures.py defines it.
    due: int  # queued, due now, not held by a live claim
    waiting: int  # queued for a later time (deferred or scheduled), not claimed
    in_flight: int  # held by a live drain (a claim younger than the lease)
    oldest_due_s: float  # how long the longest-due row of `due` has been due; 0 when none
    counters: dict[str, dict[Labels, int]] = field(default_factory=dict)  # name -> labels -> value
    histograms: dict[str, Histogram] = field(default_factory=dict)
    worker_active_at: float = 0.0  # Unix seconds of the newest worker start, resume or claim
    last_status_at: float = 0.0  # Unix seconds of the newest status webhook (0: none in a week)
    receipts_awaiting: int = 0  # sent in the no-receipts window, past its grace, no status yet
    paused: bool = False
    held_senders: tuple[str, ...] = ()
    queued_domains: tuple[str, ...] = ()  # domains with queued rows (figures.queue_figures)

    def counter(self, name: str) -> dict[Labels, int]:
        return self.counters.get(name, {})

    def total(self, name: str, **match: str) -> int:
        """The sum of a counter over every label set that carries `match`."""
        return sum(v for labels, v in self.counter(name).items() if set(match.items()) <= set(labels))

    def domains(self) -> tuple[str, ...]:
        """Every domain known now: with queued rows, or in any counter. Every queued row ends in a
        counter of its domain (sent, failed, filtered, held, expired, cancelled), so a domain
        once known stays known and its series never vanish."""
        counted = {
            value
            for per in self.counters.values()
            for labels in per
            for key, value in labels
            if key == "domain"
        }
        return tuple(sorted(counted | set(self.queued_domains)))


def labels_of(value: Mapping[str, object] | None) -> Labels:
    return tuple(sorted((str(k), "none" if v is None else str(v)) for k, v in (value or {}).items()))


def read_snapshot(conn: psycopg.Connection, *, statement_timeout_ms: int = STATEMENT_TIMEOUT_MS) -> Snapshot:
    """Read every metric in one read-only transaction, so the numbers agree with each other."""
    fresh = conn.info.transaction_status == pq.TransactionStatus.IDLE
    with conn.transaction():
        if fresh:
            # One snapshot for all queries; impossible inside a transaction the caller started.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        # Local to this transaction: the caller's connection keeps its own timeout afterwards.
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{int(statement_timeout_ms)}ms",))
        queue = figures.queue_figures(conn)
        counter_rows = conn.execute(COUNTERS).fetchall()
        histogram_rows = conn.execute(HISTOGRAMS).fetchall()
        worker_at, status_at, awaiting, paused, held = conn.execute(
            STATE,
            {
                "last": LAST_STATUS_S,
                "window": DEFAULTS.no_receipts_window_s,
                "grace": DEFAULTS.no_receipts_grace_s,
            },
        ).fetchone()
    counters: dict[str, dict[Labels, int]] = {}
    for name, labels, value in counter_rows:
        counters.setdefault(name, {})[labels_of(labels)] = int(value)
    shape = queue.total
    return Snapshot(
        due=shape.due,
        waiting=shape.waiting,
        in_flight=shape.claimed,
        oldest_due_s=shape.oldest_due_s or 0.0,
        counters=counters,
        histograms=_histograms(histogram_rows),
        worker_active_at=worker_at,
        last_status_at=status_at,
        receipts_awaiting=awaiting,
        paused=bool(paused),
        held_senders=tuple(held),
        queued_domains=tuple(queue.by_domain),
    )


def _histograms(rows: list[tuple]) -> dict[str, Histogram]:
    buckets: dict[str, dict[Labels, list[int]]] = {}
    sums: dict[str, dict[Labels, float]] = {}
    bounds_of: dict[str, tuple[tuple[float, ...], str]] = {}
    for name, unit, bounds, labels, le, count, total in rows:
        bounds_of[name] = (tuple(float(b) for b in bounds), unit)
        if labels is None:  # a histogram nothing was observed in yet
            continue
        key = labels_of(labels)
        edges = bounds_of[name][0]
        per_bucket = buckets.setdefault(name, {}).setdefault(key, [0] * (len(edges) + 1))
        index = edges.index(float(le)) if float(le) in edges else len(edges)  # 'Infinity': above them all
        per_bucket[index] += int(count)
        sums.setdefault(name, {})[key] = sums.get(name, {}).get(key, 0.0) + float(total)
    return {
        name: Histogram(
            name,
            unit,
            edges,
            {key: (tuple(counts), sums[name][key]) for key, counts in sorted(buckets.get(name, {}).items())},
        )
        for name, (edges, unit) in bounds_of.items()
    }

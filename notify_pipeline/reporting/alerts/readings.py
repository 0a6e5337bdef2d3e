"""What the alert conditions look at: one small snapshot per alert, each read by a cheap query.

Every query is a range scan on an existing index (the claim index, notifications.created_at,
observability_events (event_type, created_at), notification_audit_log.created_at, the index of sent
rows without a receipt, webhook_events.received_at) and runs under
the caller's statement timeout, so a slow database skips a sensor tick instead of hanging it.
Windows are measured with the database clock, which also stamped the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from notify_pipeline.engine.drain_config import worker_enabled
from notify_pipeline.engine.holds import active_hold
from notify_pipeline.engine.operations import paused
from notify_pipeline.reporting import figures
from notify_pipeline.settings import sender_key
from notify_pipeline.whatsapp.errors import the_code, throttling_codes

# The claim lease of the engine: a claim older than this belongs to a dead worker.
LEASE_S: float = figures.LEASE_S
# Our own per-recipient limiter's deferral reason (engine/claimer.py); not one of Meta's codes.
PAIR_LIMIT = "pair_limit"
# Meta's own pair-limit code (the code table's `pair_limit`): its deferrals also point at hot recipients.
META_PAIR_LIMIT = the_code(lambda entry: entry.pair_limit)


@dataclass(frozen=True)
class Switches:
    """Whether sending is meant to happen: the environment kill switch and the pause flag."""

    enabled: bool
    paused: bool
    pause_reason: str | None
    held: str | None = None  # the sender hold (Meta refused the credentials or the account)


@dataclass(frozen=True)
class QueueReading:
    # The queue's shape as reporting/figures.py defines it (the same numbers as `status`).
    due: int  # queued and due now, unclaimed or its claim stale
    claimed: int  # held by a live drain: being sent, not counted as due
    stale_claims: int  # claims older than the lease: a worker died holding them (in due or waiting)
    waiting: int  # queued for a later time (deferred or scheduled): not a backlog
    oldest_due_s: float | None  # how long the longest-due row has been due
    switches: Switches


@dataclass(frozen=True)
class FailureReading:
    # Outcomes as reporting/figures.py defines them (the same numbers as `status` and `diagnose`).
    window_s: float
    by_domain: dict[str, tuple[int, int]]  # domain -> (sent, failed)
    failed_by_code: dict[str, int]  # last_error_code -> failed rows
    late: int = 0  # ... of which Meta accepted, then reported failed (a status webhook)
    not_failures: dict[str, int] = field(default_factory=dict)  # filtered, held, expired: not counted


@dataclass(frozen=True)
class WorkerReading:
    switches: Switches
    last_start_age_s: float | None  # since the last NOTIFY_WORKER_START (None: never)
    last_claim_age_s: float | None  # since the youngest claim still held (a long run writes one START)
    due_unclaimed: int  # due rows no live worker holds
    oldest_unclaimed_due_s: float | None


@dataclass(frozen=True)
class OptOutReading:
    window_s: float
    contacts: int  # contacts opting out (mark_opted_out's counted events: once per change of mind)
    blocked_sends: int  # rows failed at send time because the contact had opted out
    reasons: dict[str, int]  # of the contacts: the reasons given, message ids left out
    repeats: int = 0  # opt-outs not counted: a STOP repeated, or within an hour of the contact's START
    causes: dict[str, int] = field(default_factory=dict)  # of the contacts: figures.OPT_OUT_CAUSES


@dataclass(frozen=True)
class ThrottleReading:
    window_s: float
    meta_by_code: dict[str, int]  # Meta's rate-limit codes (errors.throttling_codes())
    pair_limit: int  # our own limiter's deferrals: reported, not counted (see conditions.throttling)
    hot_recipients: list[tuple[str, int]]  # masked numbers with the most pair-limit deferrals


@dataclass(frozen=True)
class ReceiptReading:
    window_s: float
    grace_s: float
    awaiting: int  # sent between window_s and grace_s ago, no status applied yet
    statuses: int  # status webhooks received in the last window_s (applied or waiting)
    last_status_age_s: float | None  # since the newest status webhook; None: none in LAST_STATUS_S


# How far back the newest status webhook is looked for: bounds the scan when none ever came.
LAST_STATUS_S = 7 * 86400.0


def switches(conn: psycopg.Connection) -> Switches:
    is_paused, reason = paused(conn)
    hold = active_hold(conn, sender_key())
    held = f"{hold.kind} refused ({hold.code}): {hold.reason}" if hold else None
    return Switches(worker_enabled(), is_paused, reason, held)


def read_queue(conn: psycopg.Connection) -> QueueReading:
    shape = figures.queue_shape(conn, LEASE_S)
    return QueueReading(
        shape.due, shape.claimed, shape.stale_claims, shape.waiting, shape.oldest_due_s, switches(conn)
    )


def read_failures(conn: psycopg.Connection, window_s: float) -> FailureReading:
    # The figures' window (rows created in it, on notifications_created_at_idx) and definitions:
    # opt-outs, emergency-stop holds and expired rows are not failures; a late failure (Meta
    # accepted, then a status webhook said failed) is, and is told apart only to say so.
    found = figures.outcomes_since(conn, window_s)
    by_domain = {domain: (o.sent, o.failed) for domain, o in found.by_domain.items() if o.finished}
    overall = found.overall
    excluded = {
        figures.FILTERED: overall.filtered,
        figures.HELD: overall.held,
        figures.EXPIRED: overall.expired,
    }
    return FailureReading(
        window_s,
        by_domain,
        dict(found.failed_by_code),
        overall.late_failed,
        {k: v for k, v in excluded.items() if v},
    )


def read_worker(conn: psycopg.Connection) -> WorkerReading:
    # Silence counts from the last worker start, or from the moment sending became possible again
    # (a resume, a lifted hold): a send run needs its normal start after either.
    start_age, claim_age, due, oldest = conn.execute(
        "SELECT (SELECT extract(epoch FROM now() - max(created_at))::float FROM observability_events "
        "        WHERE event_type IN ('NOTIFY_WORKER_START', 'NOTIFY_RESUMED', 'NOTIFY_SENDER_RELEASED')), "
        "       (SELECT extract(epoch FROM now() - max(locked_at))::float FROM notifications "
        "        WHERE status = 'queued' AND locked_at IS NOT NULL), "
        "       count(*), extract(epoch FROM now() - min(next_attempt_at))::float "
        "FROM notifications WHERE status = 'queued' AND next_attempt_at <= now() "
        "AND (locked_at IS NULL OR locked_at < now() - make_interval(secs => %(lease)s))",
        {"lease": LEASE_S},
    ).fetchone()
    return WorkerReading(switches(conn), start_age, claim_age, due, oldest)


# Contacts, not events: mark_opted_out marks whether an opt-out counts (migration 0012), so one
# number alternating STOP and START is one contact; events recorded before 0012 all count. A reply's
# reason names its inbound message: grouped without it, so a hundred replies read as one reason.
OPT_OUTS = r"""
SELECT coalesce(regexp_replace(details->>'reason', '\s*\(inbound [^)]*\)$', ''), 'unknown'),
       notify_opt_out_cause(details->>'reason', details->>'actor'),
       details->'counted' IS DISTINCT FROM 'false'::jsonb,
       count(*)::int
  FROM observability_events
 WHERE event_type = 'CONTACT_OPTED_OUT' AND created_at > now() - make_interval(secs => %s)
 GROUP BY 1, 2, 3
"""


def read_opt_outs(conn: psycopg.Connection, window_s: float) -> OptOutReading:
    reasons: dict[str, int] = {}
    causes: dict[str, int] = {}
    repeats = 0
    for reason, cause, counted, count in conn.execute(OPT_OUTS, (window_s,)).fetchall():
        if not counted:
            repeats += count
            continue
        reasons[reason] = reasons.get(reason, 0) + count
        causes[cause] = causes.get(cause, 0) + count
    # 'failed' (a worker's verdict), not 'cancelled': mark_opted_out's own cancellations are the
    # opt-out itself, already counted once by its CONTACT_OPTED_OUT event.
    blocked = conn.execute(
        "SELECT count(*)::int FROM notification_audit_log WHERE created_at > now() - make_interval(secs => %s) "
        "AND event_type = 'failed' AND details->>'error_code' = 'opted_out'",
        (window_s,),
    ).fetchone()[0]
    return OptOutReading(window_s, sum(causes.values()), blocked, reasons, repeats, causes)


def read_throttling(conn: psycopg.Connection, window_s: float) -> ThrottleReading:
    codes = [*throttling_codes(), PAIR_LIMIT]
    counts = dict(
        conn.execute(
            "SELECT details->>'error_code', count(*)::int FROM notification_audit_log "
            "WHERE created_at > now() - make_interval(secs => %s) "
            "AND event_type IN ('deferred', 'retried', 'failed') AND details->>'error_code' = ANY(%s) "
            "GROUP BY 1",
            (window_s, codes),
        ).fetchall()
    )
    pair = counts.pop(PAIR_LIMIT, 0)
    hot = conn.execute(
        "SELECT notify_mask_wa_id(n.to_wa_id), count(*)::int FROM notification_audit_log a "
        "JOIN notifications n ON n.id = a.notification_id "
        "WHERE a.created_at > now() - make_interval(secs => %s) AND a.event_type = 'deferred' "
        "AND a.details->>'error_code' IN (%s, %s) GROUP BY n.to_wa_id ORDER BY 2 DESC, 1 LIMIT 3",
        (window_s, PAIR_LIMIT, META_PAIR_LIMIT),
    ).fetchall()
    return ThrottleReading(window_s, counts, pair, [(masked, count) for masked, count in hot])


def read_receipts(conn: psycopg.Connection, window_s: float, grace_s: float) -> ReceiptReading:
    # Sends awaiting a status: on notifications_delivery_idx (sent rows with no delivery status).
    # A status webhook of any outcome, applied or still waiting for its message id, proves the
    # subscription delivers: on webhook_events_received_at_idx.
    awaiting, statuses, last_age = conn.execute(
        "SELECT (SELECT count(*)::int FROM notifications WHERE status = 'sent' AND delivery_status IS NULL "
        "        AND sent_at > now() - make_interval(secs => %(window)s) "
        "        AND sent_at <= now() - make_interval(secs => %(grace)s)), "
        "       (SELECT count(*)::int FROM webhook_events WHERE kind = 'status' "
        "        AND received_at > now() - make_interval(secs => %(window)s)), "
        "       (SELECT extract(epoch FROM now() - max(received_at))::float FROM webhook_events "
        "        WHERE kind = 'status' AND received_at > now() - make_interval(secs => %(last)s))",
        {"window": window_s, "grace": grace_s, "last": LAST_STATUS_S},
    ).fetchone()
    return ReceiptReading(window_s, grace_s, awaiting, statuses, last_age)

"""One definition per figure: the queue's shape and the outcomes of notifications over a window.

Every view that shows one of these numbers (`notify-pipeline status`, `diagnose`, the alert
readings, the daily summary and its check, the metrics' queue gauges) reads it from here, so the
same fact gives the same number everywhere. Plain SQL and dataclasses; no Dagster.

Queue shape (queued rows, now, by the database clock):

- claimed: held by a live drain, a claim younger than the lease (a drain renews nothing: a claim
  older than the lease belongs to a dead worker, and the claim query hands it to another one);
- due: next_attempt_at <= now and not claimed (never claimed, or a stale claim);
- waiting: next_attempt_at > now and not claimed (deferred or scheduled: not a backlog);
- oldest due: how long the longest-due row among `due` has been due.

claimed + due + waiting is every queued row; stale_claims (claims past the lease) is told apart
only to say so, and those rows are already in due or waiting.

Outcomes, for the rows created in a window (created_at: see WINDOW below):

- sent: status 'sent' (Meta accepted the message);
- failed: status 'failed' for any other code than those below: Meta's refusal (at send time, or
  later through a status webhook: a late failure) or the engine's refusal of a message that should
  have gone out (bad payload, unusable template, template parameters Meta would refuse);
- filtered: failed because the contact said no (FILTERED_CODES: opted out, stopped marketing, by
  our contact preferences or by Meta's answer, the code table's `filtered` codes);
- held: failed by an emergency stop (HELD_CODES), queued again by `resume`;
- expired: past its expires_at before it could be sent (EXPIRED_CODES);
- queued: not finished yet.

failure rate = failed / (sent + failed); None when nothing finished.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import psycopg

from notify_pipeline.engine.drain_config import DrainConfig
from notify_pipeline.engine.operations import EMERGENCY_STOP_CODE
from notify_pipeline.whatsapp.errors import codes_with

# The claim lease of the engine: a claim older than this belongs to a dead worker.
LEASE_S: float = DrainConfig.lease_s

# Outcome classes of a notification row.
SENT, FAILED, FILTERED, HELD, EXPIRED, QUEUED = "sent", "failed", "filtered", "held", "expired", "queued"
OUTCOMES = (SENT, FAILED, FILTERED, HELD, EXPIRED, QUEUED)

# last_error_code values of 'failed' rows that are not delivery failures: the message was not sent
# by choice (the contact's wish, an operator's stop, a message too late to matter), nothing an
# operator fixes by retrying. Filtered is the contact's no, whoever enforced it: our opt-out and
# marketing opt-out, and Meta's codes the code table marks `filtered` (131050: the user stopped
# marketing messages). Every other failed row counts as failed, the engine's template and payload
# refusals included: those messages should have gone out and did not. The counters (migration 0008)
# hold the same list in SQL; test_whatsapp_errors.py keeps the two equal.
FILTERED_CODES: tuple[str, ...] = ("opted_out", "marketing_opted_out", *codes_with(lambda e: e.filtered))
HELD_CODES: tuple[str, ...] = (EMERGENCY_STOP_CODE,)
EXPIRED_CODES: tuple[str, ...] = ("expired",)
NOT_DELIVERY_FAILURES: tuple[str, ...] = FILTERED_CODES + HELD_CODES + EXPIRED_CODES

# Who opted a contact out: the opt-out counter's only label values (notify_opt_out_cause, migration
# 0012). A contact counts once per change of mind: a STOP repeated, or a STOP within an hour of its
# own START, is recorded but not counted again (mark_opted_out's 'counted').
OPT_OUT_CAUSES: tuple[str, ...] = ("reply_keyword", "operator", "api", "unknown")

# Rows are windowed on created_at, everywhere: it never changes, so a row stays in the hour or day
# it was queued in whatever happens to it later (a day's figures settle as its rows finish instead
# of moving between days); it is indexed (notifications_created_at_idx); and it is the runbook's
# window and the one `retry-failed --since` selects on.
WINDOW = "created_at"

_CODE = re.compile(r"^[a-z0-9_]+$")
assert all(_CODE.match(code) for code in NOT_DELIVERY_FAILURES), "codes are embedded in SQL as literals"


def _codes(codes: tuple[str, ...]) -> str:
    return ", ".join(f"'{code}'" for code in codes)


def outcome(status: str, code: str | None) -> str:
    """The outcome class of one row (the Python twin of outcome_sql)."""
    if status != "failed":
        return SENT if status == "sent" else QUEUED
    if code in FILTERED_CODES:
        return FILTERED
    if code in HELD_CODES:
        return HELD
    if code in EXPIRED_CODES:
        return EXPIRED
    return FAILED


def outcome_sql(alias: str = "") -> str:
    """A SQL expression giving a notifications row's outcome class (`alias.` prefixes columns)."""
    p = f"{alias}." if alias else ""
    return (
        f"CASE WHEN {p}status = 'sent' THEN 'sent' WHEN {p}status <> 'failed' THEN 'queued' "
        f"WHEN {p}last_error_code IN ({_codes(FILTERED_CODES)}) THEN 'filtered' "
        f"WHEN {p}last_error_code IN ({_codes(HELD_CODES)}) THEN 'held' "
        f"WHEN {p}last_error_code IN ({_codes(EXPIRED_CODES)}) THEN 'expired' ELSE 'failed' END"
    )


def failed_sql(alias: str = "") -> str:
    """A SQL condition true for the rows that count as failed."""
    p = f"{alias}." if alias else ""
    return f"({p}status = 'failed' AND coalesce({p}last_error_code, '') NOT IN ({_codes(NOT_DELIVERY_FAILURES)}))"


def failure_rate(sent: int, failed: int) -> float | None:
    """failed / (sent + failed); None when nothing finished."""
    return failed / (sent + failed) if sent + failed else None


# --- queue shape -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueShape:
    due: int = 0  # queued, next_attempt_at <= now, unclaimed or its claim stale
    waiting: int = 0  # queued for a later time (deferred or scheduled), not claimed
    claimed: int = 0  # held by a live drain (claim younger than the lease)
    stale_claims: int = 0  # claims past the lease (a dead worker's): already in due or waiting
    oldest_due_s: float | None = None  # how long the longest-due row of `due` has been due

    @property
    def queued(self) -> int:
        return self.due + self.waiting + self.claimed

    def as_dict(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "queued": self.queued}


@dataclass(frozen=True)
class QueueFigures:
    total: QueueShape
    by_domain: dict[str, QueueShape] = field(default_factory=dict)


# One scan of the queued rows (partial indexes on status = 'queued'), per domain and overall.
QUEUE_SQL = """
SELECT GROUPING(domain) = 1,
       domain,
       count(*) FILTER (WHERE NOT claimed AND next_attempt_at <= now())::int,
       count(*) FILTER (WHERE NOT claimed AND next_attempt_at > now())::int,
       count(*) FILTER (WHERE claimed)::int,
       count(*) FILTER (WHERE stale)::int,
       extract(epoch FROM now() - min(next_attempt_at) FILTER (WHERE NOT claimed AND next_attempt_at <= now()))::float
  FROM (SELECT domain, next_attempt_at,
               coalesce(locked_at >= now() - make_interval(secs => %(lease_s)s), false) AS claimed,
               coalesce(locked_at < now() - make_interval(secs => %(lease_s)s), false) AS stale
          FROM notifications
         WHERE status = 'queued') q
 GROUP BY GROUPING SETS ((domain), ())
"""


def queue_figures(conn: psycopg.Connection, lease_s: float = LEASE_S) -> QueueFigures:
    """The queue's shape overall and by domain, in one query."""
    total, by_domain = QueueShape(), {}
    for is_total, domain, *numbers in conn.execute(QUEUE_SQL, {"lease_s": lease_s}).fetchall():
        if is_total:
            total = QueueShape(*numbers)
        else:
            by_domain[domain] = QueueShape(*numbers)
    return QueueFigures(total, dict(sorted(by_domain.items())))


def queue_shape(conn: psycopg.Connection, lease_s: float = LEASE_S) -> QueueShape:
    """The queue's shape over every domain."""
    return queue_figures(conn, lease_s).total


def queue_shape_by_domain(conn: psycopg.Connection, lease_s: float = LEASE_S) -> dict[str, QueueShape]:
    """The queue's shape per domain (domains with queued rows only)."""
    return queue_figures(conn, lease_s).by_domain


# --- outcomes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcomes:
    sent: int = 0
    failed: int = 0
    filtered: int = 0
    held: int = 0
    expired: int = 0
    queued: int = 0
    late_failed: int = 0  # of `failed`: Meta accepted, then a status webhook said failed

    @property
    def finished(self) -> int:
        """The denominator of the failure rate: sent + failed."""
        return self.sent + self.failed

    @property
    def total(self) -> int:
        return self.sent + self.failed + self.filtered + self.held + self.expired + self.queued

    @property
    def failure_rate(self) -> float | None:
        return failure_rate(self.sent, self.failed)

    def __add__(self, other: Outcomes) -> Outcomes:
        return Outcomes(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, Any]:
        return {
            **{f.name: getattr(self, f.name) for f in fields(self)},
            "total": self.total,
            "failure_rate": self.failure_rate,
        }


@dataclass(frozen=True)
class OutcomeFigures:
    """Outcomes of the rows created in a window, overall and by domain, and the codes behind them."""

    overall: Outcomes
    by_domain: dict[str, Outcomes]
    # outcome class -> last_error_code -> rows, for failed, filtered, held and expired.
    codes: dict[str, dict[str, int]]
    window_s: float | None = None  # a trailing window (None: start..end)
    start: datetime | None = None
    end: datetime | None = None

    @property
    def failure_rate(self) -> float | None:
        return self.overall.failure_rate

    @property
    def failed_by_code(self) -> dict[str, int]:
        return self.codes.get(FAILED, {})

    def as_dict(self) -> dict[str, Any]:
        return {
            "window": {
                "on": WINDOW,
                "seconds": self.window_s,
                "start": self.start.isoformat() if self.start else None,
                "end": self.end.isoformat() if self.end else None,
            },
            "overall": self.overall.as_dict(),
            "by_domain": {domain: o.as_dict() for domain, o in self.by_domain.items()},
            "codes": self.codes,
        }


_OUTCOMES_SQL = f"""
SELECT domain, {outcome_sql()} AS outcome,
       CASE WHEN status = 'failed' THEN coalesce(last_error_code, 'none') END AS code,
       status = 'failed' AND failed_late_at IS NOT NULL AS late,
       count(*)::int
  FROM notifications
 WHERE {{window}}
 GROUP BY 1, 2, 3, 4
"""
_TRAILING = f"{WINDOW} > now() - make_interval(secs => %(window_s)s)"
_BETWEEN = f"{WINDOW} >= %(start)s AND {WINDOW} < %(end)s"


def _outcomes(rows: list[tuple[str, str, str | None, bool, int]], **window: Any) -> OutcomeFigures:
    counts: dict[str, dict[str, int]] = {}
    codes: dict[str, dict[str, int]] = {}
    for domain, kind, code, late, count in rows:
        per = counts.setdefault(domain, dict.fromkeys((*OUTCOMES, "late_failed"), 0))
        per[kind] += count
        if kind == FAILED and late:
            per["late_failed"] += count
        if code is not None:
            by_code = codes.setdefault(kind, {})
            by_code[code] = by_code.get(code, 0) + count
    by_domain = {domain: Outcomes(**per) for domain, per in sorted(counts.items())}
    overall = sum(by_domain.values(), Outcomes())
    ordered = {kind: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for kind, c in codes.items()}
    return OutcomeFigures(overall, by_domain, ordered, **window)


def outcomes_since(conn: psycopg.Connection, window_s: float) -> OutcomeFigures:
    """Outcomes of the rows created in the last window_s seconds (the database's clock)."""
    rows = conn.execute(_OUTCOMES_SQL.format(window=_TRAILING), {"window_s": window_s}).fetchall()
    return _outcomes(rows, window_s=float(window_s))


def outcomes_between(conn: psycopg.Connection, start: datetime, end: datetime) -> OutcomeFigures:
    """Outcomes of the rows created in [start, end) (a report's local day)."""
    rows = conn.execute(_OUTCOMES_SQL.format(window=_BETWEEN), {"start": start, "end": end}).fetchall()
    return _outcomes(rows, start=start, end=end)

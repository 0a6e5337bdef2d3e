"""Retention: delete audit-log rows, observability events and resolved alert episodes older than N
days (the runbook's weekly clean-up, > 90 days by default).

Deletes run in short batches (`DELETE ... WHERE id IN (SELECT id ... LIMIT n)`), each its own
transaction, so no single long transaction holds locks or pins vacuum while the queue runs. The
notifications table is never touched; firing alerts are kept whatever their age.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from notify_pipeline.engine.operations import record

DEFAULT_DAYS = 90
DEFAULT_BATCH = 5000
# table -> (age column, extra condition). Firing alert episodes stay, however old.
TABLES: dict[str, tuple[str, str]] = {
    "notification_audit_log": ("created_at", "true"),
    "observability_events": ("created_at", "true"),
    "alerts": ("resolved_at", "state = 'resolved'"),
}


@dataclass
class RetentionReport:
    cutoff: datetime
    rows: dict[str, int] = field(default_factory=dict)  # deleted (or matching, in a dry run)
    batches: dict[str, int] = field(default_factory=dict)
    dry_run: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "rows": self.rows,
            "batches": self.batches,
            "dry_run": self.dry_run,
        }


def validate(older_than_days: int, batch_size: int) -> None:
    if older_than_days < 1:
        raise ValueError("older than days must be at least 1: 0 would delete the whole audit trail")
    if not 1 <= batch_size <= 50_000:
        raise ValueError("batch size must be between 1 and 50000")


def cleanup(
    conn: psycopg.Connection,
    actor: str,
    *,
    older_than_days: int = DEFAULT_DAYS,
    batch_size: int = DEFAULT_BATCH,
    dry_run: bool = True,
    include_alerts: bool = True,
) -> RetentionReport:
    """Count (dry run) or delete old rows table by table, batch by batch; records RETENTION_CLEANUP."""
    validate(older_than_days, batch_size)
    cutoff = conn.execute("SELECT now() - make_interval(days => %s)", (older_than_days,)).fetchone()[0]
    report = RetentionReport(cutoff=cutoff, dry_run=dry_run)
    for table, (column, extra) in TABLES.items():
        if table == "alerts" and not include_alerts:
            continue
        where = f"{column} < %(cutoff)s AND {extra}"
        if dry_run:
            report.rows[table] = conn.execute(
                f"SELECT count(*) FROM {table} WHERE {where}", {"cutoff": cutoff}
            ).fetchone()[0]
            continue
        deleted = batches = 0
        while True:
            with conn.transaction():
                cur = conn.execute(
                    f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {where} LIMIT %(n)s)",
                    {"cutoff": cutoff, "n": batch_size},
                )
            if cur.rowcount:
                batches += 1
                deleted += cur.rowcount
            if cur.rowcount < batch_size:
                break
        report.rows[table], report.batches[table] = deleted, batches
    if not dry_run:
        record(
            conn,
            "RETENTION_CLEANUP",
            {
                "older_than_days": older_than_days,
                "deleted": report.rows,
                "batches": report.batches,
                "actor": actor,
            },
        )
    return report

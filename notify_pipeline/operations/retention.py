"""Retention: delete audit-log rows, observability events and resolved alert episodes older than N
days (the runbook's weekly clean-up, > 90 days by default), and webhook_events (every update Meta
posted, about 740 bytes each) older than their own M days (14 by default).

Deletes run in short batches (`DELETE ... WHERE id IN (SELECT id ... LIMIT n)`), each its own
transaction, so no single long transaction holds locks or pins vacuum while the queue runs. The
notifications table is never touched; firing alerts are kept whatever their age. webhook_events
are kept at least receipts.bounds.MIN_KEEP_DAYS, longer than Meta retries an update and than the
window its timestamps are accepted in: a replay then finds its key, or is refused by its date,
never applied twice; a status still waiting for its message id is kept as long, then goes.

`prune_dagster_runs` does the same for Dagster's own storage: old finished runs that touched no
asset, with their event logs, compute logs and storage folders.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from notify_pipeline.engine.operations import record
from notify_pipeline.receipts.bounds import MIN_KEEP_DAYS

DEFAULT_DAYS = 90
DEFAULT_BATCH = 5000
# table -> (age column, extra condition). Firing alert episodes stay, however old.
TABLES: dict[str, tuple[str, str]] = {
    "notification_audit_log": ("created_at", "true"),
    "observability_events": ("created_at", "true"),
    "alerts": ("resolved_at", "state = 'resolved'"),
}
WEBHOOK_EVENTS = "webhook_events"  # on webhook_events_received_at_idx, with its own age
DEFAULT_WEBHOOK_DAYS = 14


@dataclass
class RetentionReport:
    cutoff: datetime
    webhook_cutoff: datetime | None = None  # webhook_events older than this go
    rows: dict[str, int] = field(default_factory=dict)  # deleted (or matching, in a dry run)
    batches: dict[str, int] = field(default_factory=dict)
    dry_run: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "webhook_cutoff": self.webhook_cutoff.isoformat() if self.webhook_cutoff else None,
            "rows": self.rows,
            "batches": self.batches,
            "dry_run": self.dry_run,
        }


def validate(older_than_days: int, batch_size: int, webhook_days: int = DEFAULT_WEBHOOK_DAYS) -> None:
    if older_than_days < 1:
        raise ValueError("older than days must be at least 1: 0 would delete the whole audit trail")
    if not 1 <= batch_size <= 50_000:
        raise ValueError("batch size must be between 1 and 50000")
    if webhook_days < MIN_KEEP_DAYS:
        raise ValueError(
            f"webhook events must be kept at least {MIN_KEEP_DAYS} days: Meta retries an update for "
            "7 days, and one whose record is gone sooner would be applied twice"
        )


def _delete_in_batches(conn: psycopg.Connection, table: str, where: str, params: dict) -> tuple[int, int]:
    """Delete the rows matching `where`, `params["n"]` per transaction; (rows, batches)."""
    deleted = batches = 0
    while True:
        with conn.transaction():
            cur = conn.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {where} LIMIT %(n)s)", params
            )
        if cur.rowcount:
            batches += 1
            deleted += cur.rowcount
        if cur.rowcount < params["n"]:
            return deleted, batches


def cleanup(
    conn: psycopg.Connection,
    actor: str,
    *,
    older_than_days: int = DEFAULT_DAYS,
    batch_size: int = DEFAULT_BATCH,
    dry_run: bool = True,
    include_alerts: bool = True,
    webhook_days: int = DEFAULT_WEBHOOK_DAYS,
) -> RetentionReport:
    """Count (dry run) or delete old rows table by table, batch by batch; records RETENTION_CLEANUP."""
    validate(older_than_days, batch_size, webhook_days)
    cutoff, webhook_cutoff = conn.execute(
        "SELECT now() - make_interval(days => %s), now() - make_interval(days => %s)",
        (older_than_days, webhook_days),
    ).fetchone()
    report = RetentionReport(cutoff=cutoff, webhook_cutoff=webhook_cutoff, dry_run=dry_run)
    plan = [
        (table, f"{column} < %(cutoff)s AND {extra}", cutoff) for table, (column, extra) in TABLES.items()
    ]
    plan.append((WEBHOOK_EVENTS, "received_at < %(cutoff)s", webhook_cutoff))
    for table, where, table_cutoff in plan:
        if table == "alerts" and not include_alerts:
            continue
        if dry_run:
            report.rows[table] = conn.execute(
                f"SELECT count(*) FROM {table} WHERE {where}", {"cutoff": table_cutoff}
            ).fetchone()[0]
            continue
        report.rows[table], report.batches[table] = _delete_in_batches(
            conn, table, where, {"cutoff": table_cutoff, "n": batch_size}
        )
    if not dry_run:
        record(
            conn,
            "RETENTION_CLEANUP",
            {
                "older_than_days": older_than_days,
                "webhook_days": webhook_days,
                "deleted": report.rows,
                "batches": report.batches,
                "actor": actor,
            },
        )
    return report


# --- Dagster's own storage -------------------------------------------------------------------
# Dagster purges schedule and sensor ticks (dagster.yaml `retention:`) but never runs: their rows in
# `runs` and `event_logs`, and their folders under DAGSTER_HOME/storage (compute logs, outputs)
# stay forever. Runs that materialised, observed or checked an asset are kept whatever their age:
# deleting a run deletes its events, and those events are the assets' history.

DEFAULT_RUN_DAYS = 30
DEFAULT_MAX_RUNS = 20_000
FINISHED_STATUSES = ("SUCCESS", "FAILURE", "CANCELED")
ASSET_EVENT_TYPES = ("ASSET_MATERIALIZATION", "ASSET_OBSERVATION", "ASSET_CHECK_EVALUATION")


@dataclass
class RunRetentionReport:
    cutoff: datetime
    dry_run: bool = True
    examined: int = 0  # finished runs created before the cutoff
    deleted: int = 0  # deleted (or, in a dry run, that would be)
    kept_with_assets: int = 0  # old, but with asset events: kept
    folders_removed: int = 0  # run folders under the instance's storage directory

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "dry_run": self.dry_run,
            "examined": self.examined,
            "deleted": self.deleted,
            "kept_with_assets": self.kept_with_assets,
            "folders_removed": self.folders_removed,
        }


def _has_asset_events(instance, run_id: str) -> bool:
    from dagster import DagsterEventType

    kinds = {DagsterEventType[name] for name in ASSET_EVENT_TYPES}
    return bool(instance.get_records_for_run(run_id, of_type=kinds, limit=1).records)


def _delete_run_files(instance, run_id: str) -> bool:
    """The run's compute logs (whatever the compute log manager) and its folder under the
    instance's storage directory (outputs pickled by the filesystem IO manager, local logs)."""
    folder = Path(instance.storage_directory()) / run_id
    had_folder = folder.is_dir()
    with contextlib.suppress(NotImplementedError):  # a manager that cannot delete keeps its logs
        instance.compute_log_manager.delete_logs(prefix=[run_id])
    shutil.rmtree(folder, ignore_errors=True)
    return had_folder


def prune_dagster_runs(
    instance,
    *,
    older_than_days: int = DEFAULT_RUN_DAYS,
    dry_run: bool = True,
    max_runs: int = DEFAULT_MAX_RUNS,
    now: datetime | None = None,
) -> RunRetentionReport:
    """Delete (or count, in a dry run) finished Dagster runs created more than `older_than_days`
    ago that have no asset event, with their event logs and files; at most `max_runs` examined,
    oldest first, so a first clean-up of a large backlog is spread over several runs."""
    from dagster import DagsterRunStatus, RunsFilter

    if older_than_days < 1:
        raise ValueError("older than days must be at least 1")
    if max_runs < 1:
        raise ValueError("max runs must be at least 1")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    report = RunRetentionReport(cutoff=cutoff, dry_run=dry_run)
    filters = RunsFilter(
        created_before=cutoff, statuses=[DagsterRunStatus[name] for name in FINISHED_STATUSES]
    )
    # Newest first from storage; the oldest go first here.
    run_ids = list(reversed(instance.get_run_ids(filters=filters)))[:max_runs]
    for run_id in run_ids:
        report.examined += 1
        if _has_asset_events(instance, run_id):
            report.kept_with_assets += 1
            continue
        report.deleted += 1
        if not dry_run:
            instance.delete_run(run_id)
            report.folders_removed += _delete_run_files(instance, run_id)
    return report

"""sweep_locks_schedule: every five minutes, sweep stale claims, but only when there are some."""

import dagster as dg

from notify_pipeline.defs.queue.jobs import SweepConfig, sweep_locks_job
from notify_pipeline.defs.resources import QueueDatabase
from notify_pipeline.engine.due import stale_claims

LEASE_MINUTES = SweepConfig().older_than_minutes


@dg.schedule(
    name="sweep_locks_schedule",
    job=sweep_locks_job,
    cron_schedule="*/5 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=f"Every 5 minutes: launches sweep_locks_job only when a queued row is claimed longer "
    f"ago than the lease ({LEASE_MINUTES:g} minutes), i.e. a drain died holding it; skips otherwise, "
    "so an idle deployment starts no sweep runs.",
)
def sweep_locks_schedule(context: dg.ScheduleEvaluationContext, queue_db: QueueDatabase):
    with queue_db.connection(actor="sweep_locks_schedule") as conn:
        found = stale_claims(conn, LEASE_MINUTES * 60)
    if not found:
        return dg.SkipReason(f"no claim is older than the lease ({LEASE_MINUTES:g} minutes)")
    return dg.RunRequest(
        run_config=dg.RunConfig(ops={"sweep_stale_locks": SweepConfig(older_than_minutes=LEASE_MINUTES)}),
    )

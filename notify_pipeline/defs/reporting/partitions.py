"""Report days: a daily partition per calendar day in the report time zone, and the policies every
daily report asset shares."""

from datetime import timedelta

import dagster as dg

from notify_pipeline import settings

daily_report_partitions = dg.DailyPartitionsDefinition(
    start_date=settings.report_start_date(),
    timezone=settings.report_timezone(),
)

# Days the nightly run rebuilds: the day that just ended and the two before it. Rows deferred by
# quiet hours past midnight (until 07:00 by default) are only final once sent, and late failures
# arrive later still; two more nights of rebuilds let them land in their own day.
SETTLE_DAYS = 3
SETTLE_CRON = "30 0 * * *"  # 00:30 local time

# A build that fails (database restarting, a statement timeout) is tried again in the same run:
# after 1, 2 and 4 minutes, with jitter.
REPORT_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=60, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)

# The daily assets are built only by the 00:30 run (and backfills someone starts); today's numbers
# are a separate asset. So each day between 00:30 and 02:00 local time a daily asset must be
# materialised: if the nightly run failed for good, the asset turns stale in the UI at 02:00
# (the daemon's freshness evaluation: no run, no sensor) instead of leaving a quiet hole.
REPORT_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="0 2 * * *",
    lower_bound_delta=timedelta(minutes=90),
    timezone=settings.report_timezone(),
)

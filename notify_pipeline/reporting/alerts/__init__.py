"""Alerts: conditions over small database snapshots, their lifecycle in the `alerts` table, and a
Slack-compatible webhook sink. Plain modules: the Dagster sensors in notify_pipeline/defs/alerts/
only wire resources, the clock and the cursor to `lifecycle.evaluate`.

- readings.py: the cheap queries (one small snapshot per alert, under a statement timeout)
- conditions.py: pure functions, snapshot + thresholds -> Verdict (verdict.py: numbers, message, first check)
- catalog.py: the seven alerts (name, title, reading, condition, how long it must last)
- lifecycle.py: fire once, repeat on a slower cadence, resolve; state in `alerts` and the cursor
- messages.py: the Slack-compatible payloads; sink.py: delivery with timeouts and retries
- run_failures.py: the alert for a failed run of one of the product's jobs
"""

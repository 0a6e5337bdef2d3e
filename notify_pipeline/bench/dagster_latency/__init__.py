"""Enqueue-commit to emulator-receipt latency through the real Dagster deployment.

Starts `notify-pipeline dev` (embedded PostgreSQL, Cloud API emulator, Dagster webserver and
daemon, the supervising sensor and its long-lived send runs) in a temporary data folder with its
own DAGSTER_HOME and free ports, then runs load phases against it:

- trickle: one notification every 2 s;
- steady:  60 notifications/s while the emulator holds the sender to 80/s.

Each phase kills the live send run's process (`kill -9` of the pid its drain registered in
send_workers) midway. Every row is enqueued with `SELECT queueNotification(message, meta)` on an
autocommit connection, to its own recipient and with quiet hours overridden; the time taken right
after the statement returns is its commit time. The emulator records each accepted message with
its receive time and the notification id (biz_opaque_callback_data); latency is the difference.

The kill's recovery window runs from the kill until the first receipt after it plus a grace
(--recovery-grace). A message counts in the window when it was waiting at some moment inside it;
those are reported apart. A second, wider window ("until caught up") ends when latencies are back
under --slow-threshold for --stable-s of commits; figures excluding it are printed as well.

Figures only, no pass/fail: a readable table, then one JSON line (also written to --json-out).

    .venv/bin/python -m notify_pipeline.bench.dagster_latency --minutes 2
    .venv/bin/python -m notify_pipeline.bench.dagster_latency --phases trickle --minutes 3 --keep-data

The parts: deployment (the `dev` it drives), load (the producer and the queue it reads), kill (the
kill -9 and its recovery windows), phase (one phase's figures), report (the table), main (options,
start-up, the phases in turn).
"""

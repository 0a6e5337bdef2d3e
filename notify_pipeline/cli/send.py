"""`notify-pipeline send`: one drain of the queue from the command line. Its settings' defaults and
ranges are the drain's own (engine/drain_config.py), stated there once."""

from __future__ import annotations

import json

import click
import psycopg

from notify_pipeline import redact, settings
from notify_pipeline.cli.common import Number, OperatorError, as_operator_error, queue_url, unreachable
from notify_pipeline.engine.drain_config import DrainConfig, StopReason
from notify_pipeline.engine.drain_settings import BATCH_SIZE, CONCURRENCY, THROUGHPUT_PER_S

# Meta refused the credentials or the account: the sender is held until an operator lifts it.
HELD_BY_META = (StopReason.AUTH_ERROR, StopReason.ACCOUNT_ERROR)


@click.command("send")
@click.option(
    "--max-seconds",
    type=Number(float, 0, 86_400, lo_open=True),
    default=50.0,
    show_default=True,
    help="Time budget of the drain; with --serve, its lifetime.",
)
@click.option(
    "--batch-size",
    type=Number(int, BATCH_SIZE.low, BATCH_SIZE.high),
    default=BATCH_SIZE.default,
    show_default=True,
)
@click.option(
    "--concurrency",
    type=Number(int, CONCURRENCY.low, CONCURRENCY.high),
    default=CONCURRENCY.default,
    show_default=True,
    help="Requests in flight.",
)
@click.option(
    "--throughput-per-s",
    # 0 is the CLI's way to say "no limit" (DrainConfig's None), hence 0 rather than the tier's low.
    type=Number(float, 0, THROUGHPUT_PER_S.high, note=" (0: no limit)"),
    default=THROUGHPUT_PER_S.default,
    show_default=True,
    help="The sender number's throughput tier at Meta, msg/s (paced a margin under it); 0: no limit.",
)
@click.option("--serve", is_flag=True, help="Wait for work when nothing is due, until --max-seconds ends.")
@click.option(
    "--wait-for-sender",
    type=Number(float, 0, 3600),
    default=0.0,
    show_default=True,
    help="Seconds to wait while another drain sends for this sender (one drain per sender).",
)
@click.option(
    "--db-retry-seconds",
    type=Number(float, 0, 3600, lo_open=True),
    default=60.0,
    show_default=True,
    help="How long results are retried against a database that went away before they go to the "
    "local journal.",
)
def send_command(
    max_seconds, batch_size, concurrency, throughput_per_s, serve, wait_for_sender, db_retry_seconds
) -> None:
    """Claim and send due notifications until nothing is due (or, with --serve, until the lifetime
    ends). Prints the drain's report as JSON; exits 2 with one line when something failed. SIGTERM
    or Ctrl-C stops it cleanly: nothing more is sent, unsent rows are given back, exit 0.

    If the database is away and the journal cannot be written either, the results stay in this
    process's memory: it says so on stderr and does not exit until one of the two takes them."""
    from notify_pipeline.engine.drain import run_drain

    client = settings.whatsapp_client_settings()
    if not client.access_token or not client.phone_number_id:
        raise OperatorError(
            "set WHATSAPP_ACCESS_TOKEN and WHATSAPP_PHONE_NUMBER_ID (for the local emulator: "
            "any id, and the token it was started with)"
        )
    with as_operator_error(ValueError):
        config = DrainConfig(
            batch_size=batch_size,
            concurrency=concurrency,
            max_seconds=max_seconds,
            serve=serve,
            throughput_per_s=throughput_per_s or None,
            sender=settings.sender_key(),
            lock_wait_s=wait_for_sender,
            db_retry_s=db_retry_seconds,
            trigger="cli",
            notice=lambda line: click.echo(redact.scrub(f"notify-pipeline: {line}"), err=True),
        )
    try:
        report = run_drain(queue_url(), client, config)
    except psycopg.OperationalError as exc:
        raise unreachable(exc) from None
    click.echo(json.dumps(report.as_dict(), indent=2))
    if report.stopped_by == StopReason.SIGNAL:  # SIGTERM (systemd, a deploy) or Ctrl-C: a planned stop
        click.echo(
            f"send stopped as asked (signal): sent {report.sent}, gave {report.released} row(s) back, "
            "nothing in flight",
            err=True,
        )
    if report.stopped_by in HELD_BY_META:
        raise OperatorError(
            f"{report.fault}; sending stopped and the sender is held, the queue is intact: fix the "
            "credentials or the account, then `notify-pipeline resume --hold --reason ...`"
        )
    if report.failed_on_fault or report.stopped_by == StopReason.SENDER_BUSY:
        raise OperatorError(f"send stopped: {report.fault}")

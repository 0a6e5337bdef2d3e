"""`notify-pipeline bench`: the benchmark of SPEC section 6, printed as JSON."""

from __future__ import annotations

import json

import click
import psycopg
from click.core import ParameterSource

from notify_pipeline.cli.common import OperatorError, queue_url, shown_default
from notify_pipeline.db.errors import first_line


class Sections(click.Choice):
    """bench.options.SECTIONS, read when --only is given or bench's help is shown: importing the
    bench package at start-up would cost every other command about half a second."""

    def __init__(self) -> None:
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        from notify_pipeline.bench.options import SECTIONS

        return SECTIONS


@click.command("bench")
@click.option(
    "--quick", is_flag=True, help="Every measurement in miniature (about 20 s): a first look, or a test."
)
@shown_default("--messages", int, 10_000, "Notifications per send-path measurement.")
@click.option(
    "--latency-ms",
    "latencies_ms",
    type=float,
    multiple=True,
    default=(0.0, 50.0),
    show_default=True,
    help="Emulator latency of a send-path measurement; repeat for several.",
)
@shown_default("--batch-size", int, 500, "Rows the drain claims at once.")
@shown_default("--concurrency", int, 128, "Requests the drain keeps in flight.")
@click.option(
    "--rate",
    "rate_per_s",
    type=float,
    default=80.0,
    show_default=True,
    help="Limit (msg/s) for the rate-limit, latency, wakeup and priority measurements.",
)
@shown_default("--rate-messages", int, 800, "Messages sent under the rate limit.")
@shown_default("--steady-seconds", float, 10.0, "How long the producer enqueues at --rate.")
@shown_default(
    "--wakeup-messages", int, 50, "Single enqueues (200 ms apart) that wake an idle serving drain."
)
@shown_default(
    "--deferred-messages",
    int,
    10,
    "Deferred notifications (1 s) whose coming due wakes an idle serving drain.",
)
@shown_default(
    "--priority-backlog", int, 50_000, "MARKETING rows queued ahead of the OTPs in the priority measurement."
)
@shown_default("--priority-otps", int, 5, "OTPs (priority 100, 2 s apart) enqueued behind the backlog.")
@shown_default(
    "--webhook-statuses", int, 30_000, "Single-status webhook POSTs to `notify-pipeline serve` (64 at once)."
)
@shown_default(
    "--webhook-workers", int, 1, "Processes of `notify-pipeline serve` in the webhook measurement."
)
@shown_default("--ceiling-rows", int, 20_000, "Rows of the raw-SQL claim-and-mark loop.")
@click.option(
    "--only",
    "sections",
    type=Sections(),
    multiple=True,
    help="Run only these measurements (repeat). Default: all but faults, pacing and peer, which run only when named.",
)
@shown_default(
    "--pacing-rows",
    int,
    20_000,
    "pacing: rows of the backlog drained at the tier --rate, status webhooks on.",
)
@shown_default(
    "--pacing-inbound-share",
    float,
    0.0,
    "pacing: share of the tier the number's inbound messages use (the emulator enforces the rest).",
)
@shown_default(
    "--dev-restarts",
    int,
    2,
    "faults: Ctrl-C of `notify-pipeline dev` then `dev` again, this many times (0: not measured).",
)
@shown_default(
    "--storm-seconds",
    float,
    600.0,
    "faults: length of the 503 storm against a serving drain (0: not measured).",
)
@click.option("--base-url", help="Send to this Meta-compatible endpoint instead of starting the emulator.")
@click.option(
    "--token", envvar="WHATSAPP_ACCESS_TOKEN", show_envvar=True, help="Bearer token for --base-url."
)
@click.option(
    "--phone-number-id",
    envvar="WHATSAPP_PHONE_NUMBER_ID",
    show_envvar=True,
    help="Sender phone number id in request paths. Default: the emulator's test number.",
)
@click.option("--no-pin", is_flag=True, help="Do not pin the emulator and the sender to separate cores.")
def bench(quick: bool, base_url: str | None, token: str | None, no_pin: bool, **settings: object) -> None:
    """Measure the send path on this machine and print JSON.

    \b
    On a scratch database beside the queue's (notify_bench_<pid>, dropped at the end), against the
    emulator in its own process (pinned to one core, this process to another):
      1. send_path   full send path, limits off, at each --latency-ms: messages/s, and at a
                     latency above 0 the share of the bound concurrency / latency
      2. rate_limit  emulator limits on at --rate, the tier the drain paces under: achieved
                     rate, 130429 refusals
      3. latency     a producer enqueues at --rate while one serving drain runs (as the Dagster
                     send run): enqueue-to-accepted p50/p90/p99/max
      4. wakeup      an idle serving drain woken by single enqueues (NOTIFY) and by deferred
                     rows coming due (its timer): commit (or due time) to accepted
      5. priority    OTPs (priority 100) behind --priority-backlog MARKETING rows sent at
                     --rate: commit to accepted per OTP, backlog rows still waiting
      6. webhooks    --webhook-statuses status webhooks, one per POST, 64 at once, to
                     `notify-pipeline serve` (synchronous_commit on): statuses/s, answer p99
      7. ceiling     a raw-SQL claim-and-mark loop, no HTTP: rows/s the database allows
      8. faults      only with --only faults (about 15 minutes; --quick about 3): Ctrl-C of
                     `notify-pipeline dev` and `dev` again (--dev-restarts times): the stop, the
                     stopped runs' statuses, UI answering to a new message sent, duplicates; then
                     a 503 storm (--storm-seconds) against a serving drain with a stream: rows
                     failed, failed POSTs, probes a minute, each message sent once after it
      9. pacing      only with --only pacing (about 5 minutes; --quick seconds): a backlog of
                     --pacing-rows drained with the tier --rate (the emulator enforcing it), status
                     webhooks to `notify-pipeline serve` as under `dev`: achieved rate / tier, the
                     share of sends refused with 130429
     10. peer       only with --only peer (about 3 minutes; needs the bench extra): the same
                    --messages through the drain and through PgQueuer + aiohttp, 64 in flight,
                    3 alternating rounds: msg/s, the ratio, CPU s per 1,000 messages
    Each target (the spec's, issue #9's) is checked under "targets". The full run takes about
    1.5 minutes.

    With --base-url the send measurements go to that endpoint, real messages included: what
    needs the emulator's control API (setting latency, duplicates, 130429 counts, receive
    times) is reported as skipped.
    """
    from notify_pipeline.bench import BenchOptions, run_bench
    from notify_pipeline.db.migrate import MigrationError

    # Settings given on the command line win over the preset (--quick or the full run).
    source = click.get_current_context().get_parameter_source
    given = {name: value for name, value in settings.items() if source(name) is not ParameterSource.DEFAULT}
    try:
        options = BenchOptions.preset(
            quick=quick, base_url=base_url, token=token or "", pin=not no_pin, **given
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    # Before the bench pins itself to one core: an embedded server started later would inherit that.
    server_url = queue_url()
    try:
        result = run_bench(options, server_url, progress=lambda line: click.echo(f"bench: {line}", err=True))
    except MigrationError as exc:
        raise OperatorError(str(exc)) from exc
    except (psycopg.OperationalError, psycopg.errors.InsufficientPrivilege) as exc:
        raise OperatorError(f"bench database: {first_line(exc)}") from exc
    except RuntimeError as exc:  # the emulator did not start
        raise OperatorError(str(exc)) from exc
    click.echo(json.dumps(result, indent=2))

"""`notify-pipeline bench`: the benchmark of SPEC section 6, printed as JSON."""

from __future__ import annotations

import json

import click
import psycopg
from click.core import ParameterSource

# As bench.options.SECTIONS (not imported here: the bench package is loaded only when it runs).
SECTIONS = (
    "send_path",
    "rate_limit",
    "latency",
    "wakeup",
    "priority",
    "webhooks",
    "ceiling",
    "faults",
    "pacing",
)


@click.command("bench")
@click.option(
    "--quick", is_flag=True, help="Every measurement in miniature (about 20 s): a first look, or a test."
)
@click.option(
    "--messages", type=int, default=10_000, show_default=True, help="Notifications per send-path measurement."
)
@click.option(
    "--latency-ms",
    "latencies_ms",
    type=float,
    multiple=True,
    default=(0.0, 50.0),
    show_default=True,
    help="Emulator latency of a send-path measurement; repeat for several.",
)
@click.option("--batch-size", type=int, default=500, show_default=True, help="Rows the drain claims at once.")
@click.option(
    "--concurrency", type=int, default=128, show_default=True, help="Requests the drain keeps in flight."
)
@click.option(
    "--rate",
    "rate_per_s",
    type=float,
    default=80.0,
    show_default=True,
    help="Limit (msg/s) for the rate-limit, latency, wakeup and priority measurements.",
)
@click.option(
    "--rate-messages", type=int, default=800, show_default=True, help="Messages sent under the rate limit."
)
@click.option(
    "--steady-seconds",
    type=float,
    default=10.0,
    show_default=True,
    help="How long the producer enqueues at --rate.",
)
@click.option(
    "--wakeup-messages",
    type=int,
    default=50,
    show_default=True,
    help="Single enqueues (200 ms apart) that wake an idle serving drain.",
)
@click.option(
    "--deferred-messages",
    type=int,
    default=10,
    show_default=True,
    help="Deferred notifications (1 s) whose coming due wakes an idle serving drain.",
)
@click.option(
    "--priority-backlog",
    type=int,
    default=50_000,
    show_default=True,
    help="MARKETING rows queued ahead of the OTPs in the priority measurement.",
)
@click.option(
    "--priority-otps",
    type=int,
    default=5,
    show_default=True,
    help="OTPs (priority 100, 2 s apart) enqueued behind the backlog.",
)
@click.option(
    "--webhook-statuses",
    type=int,
    default=30_000,
    show_default=True,
    help="Single-status webhook POSTs to `notify-pipeline serve` (64 at once).",
)
@click.option(
    "--webhook-workers",
    type=int,
    default=1,
    show_default=True,
    help="Processes of `notify-pipeline serve` in the webhook measurement.",
)
@click.option(
    "--ceiling-rows",
    type=int,
    default=20_000,
    show_default=True,
    help="Rows of the raw-SQL claim-and-mark loop.",
)
@click.option(
    "--only",
    "sections",
    type=click.Choice(list(SECTIONS)),
    multiple=True,
    help="Run only these measurements (repeat). Default: all but faults and pacing, which run only when named.",
)
@click.option(
    "--pacing-rows",
    type=int,
    default=20_000,
    show_default=True,
    help="pacing: rows of the backlog drained at the tier --rate, status webhooks on.",
)
@click.option(
    "--pacing-inbound-share",
    type=float,
    default=0.0,
    show_default=True,
    help="pacing: share of the tier the number's inbound messages use (the emulator enforces the rest).",
)
@click.option(
    "--dev-restarts",
    type=int,
    default=2,
    show_default=True,
    help="faults: Ctrl-C of `notify-pipeline dev` then `dev` again, this many times (0: not measured).",
)
@click.option(
    "--storm-seconds",
    type=float,
    default=600.0,
    show_default=True,
    help="faults: length of the 503 storm against a serving drain (0: not measured).",
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
    Each target (the spec's, issue #9's) is checked under "targets". The full run takes about
    1.5 minutes.

    With --base-url the send measurements go to that endpoint, real messages included: what
    needs the emulator's control API (setting latency, duplicates, 130429 counts, receive
    times) is reported as skipped.
    """
    from notify_pipeline.bench import BenchOptions, run_bench
    from notify_pipeline.cli import OperatorError, _queue_url
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
    server_url = _queue_url()
    try:
        result = run_bench(options, server_url, progress=lambda line: click.echo(f"bench: {line}", err=True))
    except MigrationError as exc:
        raise OperatorError(str(exc)) from exc
    except (psycopg.OperationalError, psycopg.errors.InsufficientPrivilege) as exc:
        raise OperatorError(f"bench database: {str(exc).strip().splitlines()[0]}") from exc
    except RuntimeError as exc:  # the emulator did not start
        raise OperatorError(str(exc)) from exc
    click.echo(json.dumps(result, indent=2))

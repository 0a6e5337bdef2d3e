"""The `notify-pipeline` command: the top group, and the command modules registered on it. Each
subcommand is a thin shell over a plain module of the product."""

from __future__ import annotations

import click
import psycopg

from notify_pipeline import settings
from notify_pipeline.cli import admin, alerts, bench, db, dev, diagnostics, emulator, queue, send, serve
from notify_pipeline.cli.common import OperatorError, unreachable

__all__ = ["main"]


class _Main(click.Group):
    """The top command: the environment is checked first (one line per bad value), and what an
    operator can fix (a database that is down, a bad setting) ends as one line, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            words = {*getattr(ctx, "_protected_args", ()), *ctx.args}
            if not ctx.resilient_parsing and not {"-h", "--help"} & words:
                settings.check_environment()
            return super().invoke(ctx)
        except settings.SettingsError as exc:
            raise OperatorError(str(exc)) from None
        except psycopg.OperationalError as exc:
            raise unreachable(
                exc, " (check NOTIFY_DATABASE_URL, or `notify-pipeline db url` for the embedded one)"
            ) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="notify-pipeline")
def main() -> None:
    """WhatsApp notifications on PostgreSQL, run by Dagster.

    The queue database is NOTIFY_DATABASE_URL, or an embedded PostgreSQL under .notify_data/
    when that is unset.
    """


# --help lists the commands sorted by name, whatever the order here.
for command in [
    db.db,
    dev.dev,
    emulator.emulator,
    send.send_command,
    *queue.COMMANDS,
    *admin.COMMANDS,
    diagnostics.diagnose,
    bench.bench,
    serve.serve_command,
    alerts.alerts,
]:
    main.add_command(command)

if __name__ == "__main__":
    main()

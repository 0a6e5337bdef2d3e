"""`notify-pipeline db ...`: the queue database's migrations and location."""

from __future__ import annotations

import click

from notify_pipeline.cli.common import as_operator_error, queue_url
from notify_pipeline.db import urls


@click.group("db")
def db() -> None:
    """The queue database: migrations and location."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the schema migrations; a second run changes nothing."""
    from notify_pipeline.db.migrate import MigrationError, upgrade

    url = queue_url()
    with as_operator_error(MigrationError):
        result = upgrade(url)
    if result.changed:
        click.echo(
            f"{urls.mask(url)}: migrated from {result.before or 'an empty database'} to {result.after}"
        )
    else:
        click.echo(f"{urls.mask(url)}: already at {result.after}, nothing to do")


@db.command("url")
@click.option("--show-password", is_flag=True, help="Print the password too (for psql or a script).")
def db_url(show_password: bool) -> None:
    """Print the queue database URL in use (starting the embedded server if that is the one); the
    password (after the user name or as ?password=) is masked unless --show-password."""
    url = queue_url()
    click.echo(url if show_password else urls.mask(url))


@db.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL server, if it runs."""
    from notify_pipeline.db.location import embedded_server

    stopped = embedded_server().stop()
    click.echo("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")

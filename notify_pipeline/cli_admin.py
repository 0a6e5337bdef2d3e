"""Operator commands of `notify-pipeline`: `contact ...`, `template ...` and `cleanup`.

Thin shells over notify_pipeline.operations. Anything that may change many rows prints a count
unless --confirm is given; bad input exits with code 2 and one line that says what to type.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time

import click

from notify_pipeline import settings
from notify_pipeline.cli_queue import queue_connection
from notify_pipeline.cli_types import Number, Reason
from notify_pipeline.operations import contacts, retention, templates


def _operator_error(exc: Exception) -> click.ClickException:
    from notify_pipeline.cli import OperatorError

    return OperatorError(str(exc))


def _json_default(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime | date | time) else str(value)


@click.group("contact")
def contact_group() -> None:
    """A contact's preferences: show, init, set, opt-out, opt-in, bulk-defaults."""


@contact_group.command("show")
@click.argument("wa_id")
def contact_show(wa_id: str) -> None:
    """Print a contact's preferences and how many notifications wait for them."""
    with queue_connection("contact show") as conn:
        try:
            prefs = contacts.show_contact(conn, wa_id)
        except contacts.ContactError as exc:
            raise _operator_error(exc) from exc
    click.echo(json.dumps(prefs.as_dict(), indent=2, default=_json_default))


@contact_group.command("init")
@click.argument("wa_id")
@click.option("--profile-id", help="Your application's id for this contact.")
@click.option("--locale", help="Language code, e.g. en or fr. Default en.")
def contact_init(wa_id: str, profile_id: str | None, locale: str | None) -> None:
    """Create default preferences (22:00-07:00, Africa/Kigali); never overwrites existing ones."""
    with queue_connection("contact init") as conn:
        try:
            created = contacts.init_contact(conn, wa_id, "cli", profile_id=profile_id, locale=locale)
        except contacts.ContactError as exc:
            raise _operator_error(exc) from exc
    click.echo("preferences created with the defaults" if created else "preferences exist already; unchanged")


@contact_group.command("set")
@click.argument("wa_id")
@click.option("--quiet-hours", help="START-END on a 24-hour clock, e.g. 22:00-07:00.")
@click.option("--timezone", help="IANA zone, e.g. Africa/Kigali or Europe/Berlin (not CEST, not UTC+2).")
def contact_set(wa_id: str, quiet_hours: str | None, timezone: str | None) -> None:
    """Set an existing contact's quiet hours and/or time zone."""
    try:
        window = contacts.parse_window(quiet_hours) if quiet_hours is not None else None
        if timezone is not None:
            contacts.validate_timezone(timezone)
        with queue_connection("contact set") as conn:
            prefs = contacts.set_preferences(conn, wa_id, "cli", window=window, timezone=timezone)
    except contacts.ContactError as exc:
        raise _operator_error(exc) from exc
    click.echo(f"quiet hours {contacts.window_text(prefs) or 'none'} in {prefs.timezone}")


@contact_group.command("opt-out")
@click.argument("wa_id")
@click.option("--reason", required=True, type=Reason(), help="Why, e.g. user_request.")
def contact_opt_out(wa_id: str, reason: str) -> None:
    """Opt a contact out and cancel their waiting notifications."""
    with queue_connection("contact opt-out") as conn:
        try:
            cancelled = contacts.opt_out(conn, wa_id, reason)
        except contacts.ContactError as exc:
            raise _operator_error(exc) from exc
    click.echo(f"opted out; {cancelled} waiting notification(s) cancelled")


@contact_group.command("opt-in")
@click.argument("wa_id")
@click.option("--reason", required=True, type=Reason(), help="Why, e.g. user_request.")
def contact_opt_in(wa_id: str, reason: str) -> None:
    """Opt a contact back in (what the opt-out cancelled stays cancelled)."""
    with queue_connection("contact opt-in") as conn:
        try:
            was_out = contacts.opt_in(conn, wa_id, reason)
        except contacts.ContactError as exc:
            raise _operator_error(exc) from exc
    click.echo("opted back in" if was_out else "was not opted out; nothing to undo")


@contact_group.command("bulk-defaults")
@click.option("--quiet-hours", default="22:00-07:00", show_default=True, help="Window for the new rows.")
@click.option(
    "--timezone", default=contacts.DEFAULT_TIMEZONE, show_default=True, help="IANA zone for the new rows."
)
@click.option(
    "--batch-size",
    type=Number(int, 1, 50_000),
    default=1000,
    show_default=True,
    help="Contacts per transaction.",
)
@click.option("--confirm", is_flag=True, help="Write them; without it, only count.")
def contact_bulk_defaults(quiet_hours: str, timezone: str, batch_size: int, confirm: bool) -> None:
    """Default preferences for every recipient in notifications that has none (a count unless --confirm)."""
    try:
        window = contacts.parse_window(quiet_hours)
        with queue_connection("contact bulk-defaults") as conn:
            report = contacts.bulk_defaults(
                conn, "cli", window=window, timezone=timezone, dry_run=not confirm, batch_size=batch_size
            )
    except contacts.ContactError as exc:
        raise _operator_error(exc) from exc
    if confirm:
        click.echo(f"created preferences for {report.created} contact(s) in {report.batches} batch(es)")
    else:
        click.echo(f"would create preferences for {report.missing} contact(s) (add --confirm to do it)")


@click.group("template")
def template_group() -> None:
    """Message templates: show one, sync them from Meta."""


@template_group.command("show")
@click.argument("name")
def template_show(name: str) -> None:
    """Print a template's configuration in every language, with the notifications waiting for it."""
    with queue_connection("template show") as conn:
        try:
            rows = templates.show_template(conn, name)
        except templates.TemplateError as exc:
            raise _operator_error(exc) from exc
    click.echo(json.dumps(rows, indent=2, default=_json_default))


@template_group.command("sync")
@click.option("--confirm", is_flag=True, help="Write the changes; without it, only report them.")
def template_sync(confirm: bool) -> None:
    """Sync whatsapp_templates with Meta's message_templates (WHATSAPP_WABA_ID); a report unless --confirm."""
    client = settings.whatsapp_client_settings()
    if not client.access_token:
        raise _operator_error(
            ValueError("set WHATSAPP_ACCESS_TOKEN (and WHATSAPP_WABA_ID) to list templates")
        )
    try:
        remote = templates.fetch_remote(client, settings.whatsapp_waba_id())
        with queue_connection("template sync") as conn:
            report = templates.sync_templates(conn, remote, "cli", dry_run=not confirm)
    except templates.TemplateError as exc:
        raise _operator_error(exc) from exc
    for line in report.lines():
        click.echo(line)
    if not confirm:
        click.echo("dry run: nothing changed (add --confirm to do it)")


@click.command("cleanup")
@click.option(
    "--older-than-days",
    type=Number(int, hi=36_600),
    default=retention.DEFAULT_DAYS,
    show_default=True,
    help="Age in days past which audit-log rows, observability events and resolved alerts go.",
)
@click.option(
    "--webhook-days",
    type=Number(int, hi=36_600),
    default=retention.DEFAULT_WEBHOOK_DAYS,
    show_default=True,
    help="Age in days past which stored webhook updates go (at least Meta's retry window).",
)
@click.option(
    "--batch-size",
    type=Number(int, 1, 50_000),
    default=retention.DEFAULT_BATCH,
    show_default=True,
    help="Rows per transaction.",
)
@click.option("--keep-alerts", is_flag=True, help="Do not delete resolved alert episodes.")
@click.option("--confirm", is_flag=True, help="Delete; without it, only count.")
def cleanup_command(
    older_than_days: int, webhook_days: int, batch_size: int, keep_alerts: bool, confirm: bool
) -> None:
    """Delete audit-log rows, observability events, resolved alerts and stored webhook updates
    older than their retention, in batches."""
    try:
        retention.validate(older_than_days, batch_size, webhook_days)
    except ValueError as exc:
        raise _operator_error(exc) from exc
    with queue_connection("cleanup") as conn:
        report = retention.cleanup(
            conn,
            "cli",
            older_than_days=older_than_days,
            webhook_days=webhook_days,
            batch_size=batch_size,
            dry_run=not confirm,
            include_alerts=not keep_alerts,
        )
    verb = "deleted" if confirm else "would delete"
    for table, count in report.rows.items():
        batches = f" in {report.batches.get(table, 0)} batch(es)" if confirm else ""
        click.echo(f"{table}: {verb} {count} row(s){batches}")
    if not confirm:
        click.echo("dry run: nothing deleted (add --confirm to do it)")


COMMANDS = [contact_group, template_group, cleanup_command]

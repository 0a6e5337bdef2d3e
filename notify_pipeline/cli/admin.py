"""Operator commands of `notify-pipeline`: `contact ...`, `template ...` and `cleanup`.

Thin shells over notify_pipeline.operations. Anything that may change many rows prints a count
unless --confirm is given; bad input exits with code 2 and one line that says what to type.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time

import click

from notify_pipeline import settings
from notify_pipeline.cli.common import (
    Number,
    OperatorError,
    Reason,
    as_operator_error,
    on_queue,
    shown_default,
)
from notify_pipeline.operations import contacts, retention, templates

# Each operations module refuses bad input with its own error; its text is written for the operator.
CONTACT = contacts.ContactError
TEMPLATE = templates.TemplateError
_reason_option = click.option("--reason", required=True, type=Reason(), help="Why, e.g. user_request.")


def _print_json(value: object) -> None:
    """Rows as JSON, dates and times as ISO text, anything else as its str()."""

    def plain(item: object) -> str:
        return item.isoformat() if isinstance(item, datetime | date | time) else str(item)

    click.echo(json.dumps(value, indent=2, default=plain))


@click.group("contact")
def contact_group() -> None:
    """A contact's preferences: show, init, set, opt-out, opt-in, bulk-defaults."""


@contact_group.command("show")
@click.argument("wa_id")
def contact_show(wa_id: str) -> None:
    """Print a contact's preferences and how many notifications wait for them."""
    _print_json(on_queue("contact show", contacts.show_contact, wa_id, refused=CONTACT).as_dict())


@contact_group.command("init")
@click.argument("wa_id")
@click.option("--profile-id", help="Your application's id for this contact.")
@click.option("--locale", help="Language code, e.g. en or fr. Default en.")
def contact_init(wa_id: str, profile_id: str | None, locale: str | None) -> None:
    """Create default preferences (22:00-07:00, Africa/Kigali); never overwrites existing ones."""
    created = on_queue(
        "contact init",
        contacts.init_contact,
        wa_id,
        "cli",
        profile_id=profile_id,
        locale=locale,
        refused=CONTACT,
    )
    click.echo("preferences created with the defaults" if created else "preferences exist already; unchanged")


@contact_group.command("set")
@click.argument("wa_id")
@click.option("--quiet-hours", help="START-END on a 24-hour clock, e.g. 22:00-07:00.")
@click.option("--timezone", help="IANA zone, e.g. Africa/Kigali or Europe/Berlin (not CEST, not UTC+2).")
def contact_set(wa_id: str, quiet_hours: str | None, timezone: str | None) -> None:
    """Set an existing contact's quiet hours and/or time zone."""
    with as_operator_error(CONTACT):  # checked before connecting
        window = contacts.parse_window(quiet_hours) if quiet_hours is not None else None
        if timezone is not None:
            contacts.validate_timezone(timezone)
    prefs = on_queue(
        "contact set",
        contacts.set_preferences,
        wa_id,
        "cli",
        window=window,
        timezone=timezone,
        refused=CONTACT,
    )
    click.echo(f"quiet hours {contacts.window_text(prefs) or 'none'} in {prefs.timezone}")


@contact_group.command("opt-out")
@click.argument("wa_id")
@_reason_option
def contact_opt_out(wa_id: str, reason: str) -> None:
    """Opt a contact out and cancel their waiting notifications."""
    cancelled = on_queue("contact opt-out", contacts.opt_out, wa_id, reason, refused=CONTACT)
    click.echo(f"opted out; {cancelled} waiting notification(s) cancelled")


@contact_group.command("opt-in")
@click.argument("wa_id")
@_reason_option
def contact_opt_in(wa_id: str, reason: str) -> None:
    """Opt a contact back in (what the opt-out cancelled stays cancelled)."""
    was_out = on_queue("contact opt-in", contacts.opt_in, wa_id, reason, refused=CONTACT)
    click.echo("opted back in" if was_out else "was not opted out; nothing to undo")


@contact_group.command("bulk-defaults")
@click.option("--quiet-hours", default="22:00-07:00", show_default=True, help="Window for the new rows.")
@click.option(
    "--timezone", default=contacts.DEFAULT_TIMEZONE, show_default=True, help="IANA zone for the new rows."
)
@shown_default("--batch-size", Number(int, 1, 50_000), 1000, "Contacts per transaction.")
@click.option("--confirm", is_flag=True, help="Write them; without it, only count.")
def contact_bulk_defaults(quiet_hours: str, timezone: str, batch_size: int, confirm: bool) -> None:
    """Default preferences for every recipient in notifications that has none (a count unless --confirm)."""
    with as_operator_error(CONTACT):  # checked before connecting
        window = contacts.parse_window(quiet_hours)
    report = on_queue(
        "contact bulk-defaults",
        contacts.bulk_defaults,
        "cli",
        window=window,
        timezone=timezone,
        dry_run=not confirm,
        batch_size=batch_size,
        refused=CONTACT,
    )
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
    _print_json(on_queue("template show", templates.show_template, name, refused=TEMPLATE))


@template_group.command("sync")
@click.option("--confirm", is_flag=True, help="Write the changes; without it, only report them.")
def template_sync(confirm: bool) -> None:
    """Sync whatsapp_templates with Meta's message_templates (WHATSAPP_WABA_ID); a report unless --confirm."""
    client = settings.whatsapp_client_settings()
    if not client.access_token:
        raise OperatorError("set WHATSAPP_ACCESS_TOKEN (and WHATSAPP_WABA_ID) to list templates")
    with as_operator_error(TEMPLATE):
        remote = templates.fetch_remote(client, settings.whatsapp_waba_id())
    report = on_queue(
        "template sync", templates.sync_templates, remote, "cli", dry_run=not confirm, refused=TEMPLATE
    )
    for line in report.lines():
        click.echo(line)
    if not confirm:
        click.echo("dry run: nothing changed (add --confirm to do it)")


@click.command("cleanup")
@shown_default(
    "--older-than-days",
    Number(int, hi=36_600),
    retention.DEFAULT_DAYS,
    "Age in days past which audit-log rows, observability events and resolved alerts go.",
)
@shown_default(
    "--webhook-days",
    Number(int, hi=36_600),
    retention.DEFAULT_WEBHOOK_DAYS,
    "Age in days past which stored webhook updates go (at least Meta's retry window).",
)
@shown_default("--batch-size", Number(int, 1, 50_000), retention.DEFAULT_BATCH, "Rows per transaction.")
@click.option("--keep-alerts", is_flag=True, help="Do not delete resolved alert episodes.")
@click.option("--confirm", is_flag=True, help="Delete; without it, only count.")
def cleanup_command(
    older_than_days: int, webhook_days: int, batch_size: int, keep_alerts: bool, confirm: bool
) -> None:
    """Delete audit-log rows, observability events, resolved alerts and stored webhook updates
    older than their retention, in batches."""
    with as_operator_error(ValueError):
        retention.validate(older_than_days, batch_size, webhook_days)
    report = on_queue(
        "cleanup",
        retention.cleanup,
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

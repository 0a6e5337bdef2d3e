"""Contact jobs: opt out, opt in, set quiet hours / time zone, bulk defaults. Thin ops over
notify_pipeline.operations.contacts; an operator's mistake fails the run with one readable sentence."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import psycopg
from pydantic import Field

from notify_pipeline.defs.resources import QueueDatabase, run_actor
from notify_pipeline.operations import contacts


@contextmanager
def _refusals_fail_the_run() -> Iterator[None]:
    """An operator's mistake (a ContactError) fails the run with its one readable sentence."""
    try:
        yield
    except contacts.ContactError as exc:
        raise dg.Failure(description=str(exc)) from exc


@contextmanager
def _window_change(
    context: dg.OpExecutionContext, config: Any, queue_db: QueueDatabase
) -> Iterator[tuple[psycopg.Connection, Any]]:
    """The quiet-hours window the config gives (quiet_hours_start, quiet_hours_end), checked before
    any connection is opened, and a connection to write it with; a ContactError fails the run."""
    with _refusals_fail_the_run():
        window = contacts.quiet_hours(config.quiet_hours_start, config.quiet_hours_end)
        with queue_db.connection(actor=run_actor(context)) as conn:
            yield conn, window


class ContactChangeConfig(dg.Config):
    wa_id: str = Field(description="The contact's number with its country code, e.g. +250788123456.")
    reason: str = Field(default="operator_request", description="Why: recorded with the change.")


def _contact_change_job(
    name: str,
    change: Callable[[psycopg.Connection, str, str], Any],
    output: tuple[str, type],
    does: str,
    job_description: str,
) -> dg.JobDefinition:
    """The op `name` (one contact's opt-out or opt-in: `change(conn, wa_id, reason)`, its result the
    op's output and, under output[0], its metadata) and its job `<name>_job`."""

    @dg.op(name=name, description=does, out=dg.Out(output[1]))
    def change_contact(context: dg.OpExecutionContext, config: ContactChangeConfig, queue_db: QueueDatabase):
        with queue_db.connection(actor=run_actor(context)) as conn, _refusals_fail_the_run():
            result = change(conn, config.wa_id, config.reason)
        context.add_output_metadata({output[0]: result})
        return result

    @dg.job(name=f"{name}_job", description=job_description)
    def job() -> None:
        change_contact()

    return job


opt_out_contact_job = _contact_change_job(
    "opt_out_contact",
    contacts.opt_out,
    ("cancelled", int),
    "Opt the contact out and cancel their waiting notifications (audited by the database).",
    "Opt a contact out (mark_opted_out) and cancel their waiting notifications.",
)
opt_in_contact_job = _contact_change_job(
    "opt_in_contact",
    contacts.opt_in,
    ("was_opted_out", bool),
    "Opt the contact back in; what the opt-out cancelled stays cancelled.",
    "Opt a contact back in (mark_opted_in).",
)


class SetPreferencesConfig(dg.Config):
    wa_id: str = Field(description="The contact's number with its country code.")
    quiet_hours_start: str | None = Field(default=None, description="HH:MM; with quiet_hours_end or neither.")
    quiet_hours_end: str | None = Field(default=None, description="HH:MM; with quiet_hours_start or neither.")
    timezone: str | None = Field(default=None, description="IANA zone (Africa/Kigali), not CEST or UTC+2.")


@dg.op
def set_contact_preferences(
    context: dg.OpExecutionContext, config: SetPreferencesConfig, queue_db: QueueDatabase
) -> dict:
    """Set an existing contact's quiet hours and/or time zone, validated before any write."""
    with _window_change(context, config, queue_db) as (conn, window):
        prefs = contacts.set_preferences(
            conn, config.wa_id, run_actor(context), window=window, timezone=config.timezone
        )
    summary = {"quiet_hours": contacts.window_text(prefs), "timezone": prefs.timezone}
    context.add_output_metadata(summary)
    return summary


@dg.job(description="Set a contact's quiet hours (HH:MM start and end) and/or IANA time zone.")
def set_contact_preferences_job() -> None:
    set_contact_preferences()


class BulkDefaultsConfig(dg.Config):
    quiet_hours_start: str = Field(default="22:00", description="Default window start (HH:MM).")
    quiet_hours_end: str = Field(default="07:00", description="Default window end (HH:MM).")
    timezone: str = Field(default=contacts.DEFAULT_TIMEZONE, description="IANA zone for the new rows.")
    batch_size: int = Field(default=1000, ge=1, le=50_000, description="Contacts written per transaction.")
    dry_run: bool = Field(default=True, description="Count only. Set false to write the preferences.")


@dg.op
def apply_quiet_hours_defaults(
    context: dg.OpExecutionContext, config: BulkDefaultsConfig, queue_db: QueueDatabase
) -> int:
    """Give every recipient without preferences the default window and zone (a count when dry_run)."""
    with _window_change(context, config, queue_db) as (conn, window):
        assert window is not None
        report = contacts.bulk_defaults(
            conn,
            run_actor(context),
            window=window,
            timezone=config.timezone,
            dry_run=config.dry_run,
            batch_size=config.batch_size,
        )
    context.add_output_metadata(
        {
            "without_preferences": report.missing,
            "created": report.created,
            "batches": report.batches,
            "dry_run": report.dry_run,
        }
    )
    return report.missing if report.dry_run else report.created


@dg.job(description="Default quiet hours for every contact without preferences; dry_run: true counts first.")
def bulk_quiet_hours_defaults_job() -> None:
    apply_quiet_hours_defaults()

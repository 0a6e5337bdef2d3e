"""Contact preferences an operator manages: show, initialise, set quiet hours and time zone, bulk
defaults for contacts without preferences, opt out and back in.

Input is validated before the database is touched, with the same IANA rule as the table's CHECK,
so an operator gets a sentence that says what to type instead of a constraint name. Every change
records an observability event with the actor and counts; numbers appear only masked there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from notify_pipeline.db.errors import first_line
from notify_pipeline.engine import quiet_hours as quiet
from notify_pipeline.engine.operations import record
from notify_pipeline.engine.quiet_hours import DEFAULT_QUIET_HOURS, DEFAULT_TIMEZONE

# notify_is_valid_timezone's rule (migration 0001): Area/Location, or UTC.
_IANA = re.compile(
    r"^(Africa|America|Antarctica|Arctic|Asia|Atlantic|Australia|Europe|Indian|Pacific|Etc)(/[A-Za-z0-9_+-]+)+$"
)


class ContactError(ValueError):
    """Input an operator can fix, or a contact that does not exist: one readable sentence."""


def validate_timezone(name: str) -> str:
    """An IANA zone name this machine knows; abbreviations and offsets are refused with advice."""
    zone = (name or "").strip()
    if zone != "UTC" and not _IANA.match(zone):
        raise ContactError(
            f"time zone {name!r} is not an IANA zone name: use Area/Location such as Africa/Kigali or "
            "Europe/Berlin, or UTC (abbreviations like CEST and offsets like UTC+2 ignore daylight saving)"
        )
    if re.match(r"^Etc/GMT[+-]\d+$", zone):
        raise ContactError(
            f"time zone {name!r} is a fixed offset with an inverted sign ({zone} is UTC"
            f"{'-' if '+' in zone else '+'}{zone[8:]}): use the contact's Area/Location zone, e.g. "
            "Africa/Kigali or America/Bogota, or Etc/UTC"
        )
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ContactError(
            f"time zone {name!r} is not a known IANA zone: check the spelling (e.g. America/New_York)"
        ) from exc
    return zone


def parse_hhmm(value: str) -> time:
    with _as_contact_error():
        return quiet.parse_hhmm(value)


def quiet_hours(start: str | None, end: str | None) -> tuple[time, time] | None:
    """Both ends (HH:MM) or neither; a window must not be empty (start equal to end)."""
    with _as_contact_error():
        return quiet.window(start, end)


def parse_window(spec: str) -> tuple[time, time]:
    """'22:00-07:00' (a window may cross midnight)."""
    with _as_contact_error():
        return quiet.parse_window(spec)


@contextmanager
def _as_contact_error() -> Iterator[None]:
    try:
        yield
    except ValueError as exc:  # quiet_hours' refusals, worded for the operator already
        raise ContactError(str(exc)) from None


def normalize(conn: psycopg.Connection, raw: str) -> str:
    """The stored form of a number (+ and digits), by the database's own function."""
    try:
        return conn.execute("SELECT notify_normalize_wa_id(%s)", (raw,)).fetchone()[0]
    except psycopg.errors.InvalidParameterValue as exc:
        raise ContactError(
            f"{raw!r} is not a WhatsApp number: give it with its country code, e.g. +250788123456"
        ) from exc


def mask(conn: psycopg.Connection, wa_id: str) -> str:
    return conn.execute("SELECT notify_mask_wa_id(%s)", (wa_id,)).fetchone()[0]


@dataclass(frozen=True)
class ContactPreferences:
    wa_id: str
    profile_id: str | None
    locale: str
    quiet_hours_start: time | None
    quiet_hours_end: time | None
    timezone: str
    opted_out: bool
    opt_out_at: datetime | None
    opt_out_reason: str | None
    opted_in_at: datetime | None
    updated_at: datetime
    waiting: int  # queued notifications for this contact

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, time | datetime) else v) for k, v in asdict(self).items()}


def show_contact(conn: psycopg.Connection, raw: str) -> ContactPreferences:
    wa_id = normalize(conn, raw)
    row = conn.execute(
        "SELECT wa_id, profile_id, locale, quiet_hours_start, quiet_hours_end, timezone, opted_out, opt_out_at, "
        "opt_out_reason, opted_in_at, updated_at, "
        "(SELECT count(*) FROM notifications n WHERE n.to_wa_id = c.wa_id AND n.status = 'queued') "
        "FROM contact_preferences c WHERE wa_id = %s",
        (wa_id,),
    ).fetchone()
    if row is None:
        raise ContactError(f"contact {wa_id} has no preferences: create them with `contact init` first")
    return ContactPreferences(*row)


def init_contact(
    conn: psycopg.Connection, raw: str, actor: str, profile_id: str | None = None, locale: str | None = None
) -> bool:
    """init_contact_preferences (defaults 22:00-07:00, Africa/Kigali); True when it created the row."""
    wa_id = normalize(conn, raw)
    with conn.transaction():
        existed = conn.execute("SELECT 1 FROM contact_preferences WHERE wa_id = %s", (wa_id,)).fetchone()
        try:
            conn.execute("SELECT init_contact_preferences(%s, %s, %s)", (wa_id, profile_id, locale))
        except psycopg.errors.CheckViolation as exc:
            raise ContactError(f"locale {locale!r} is not a language code such as en or fr_RW") from exc
        record(
            conn,
            "CONTACT_PREFERENCES_INIT",
            {"wa_id": mask(conn, wa_id), "created": not existed, "actor": actor},
        )
    return not existed


def set_preferences(
    conn: psycopg.Connection,
    raw: str,
    actor: str,
    *,
    window: tuple[time, time] | None = None,
    timezone: str | None = None,
) -> ContactPreferences:
    """Change quiet hours and/or time zone of an existing contact (validated before any write)."""
    if window is None and timezone is None:
        raise ContactError("nothing to change: give quiet hours, a time zone, or both")
    zone = validate_timezone(timezone) if timezone is not None else None
    before = show_contact(conn, raw)
    with conn.transaction():
        _update(
            conn,
            "UPDATE contact_preferences SET quiet_hours_start = %s, quiet_hours_end = %s, timezone = %s "
            "WHERE wa_id = %s",
            (
                window[0] if window else before.quiet_hours_start,
                window[1] if window else before.quiet_hours_end,
                zone or before.timezone,
                before.wa_id,
            ),
        )
        changes: dict[str, Any] = {}
        if window:
            changes["quiet_hours"] = [window_text(before), f"{window[0]:%H:%M}-{window[1]:%H:%M}"]
        if zone:
            changes["timezone"] = [before.timezone, zone]
        record(
            conn, "CONTACT_PREFERENCES_SET", {"wa_id": mask(conn, before.wa_id), **changes, "actor": actor}
        )
    return show_contact(conn, before.wa_id)


def _update(conn: psycopg.Connection, statement: str, params: tuple[Any, ...]) -> None:
    try:
        conn.execute(statement, params)
    except psycopg.errors.CheckViolation as exc:  # this server's zone list differs from Python's
        raise ContactError(f"the database refused the change: {first_line(exc)}") from exc


def window_text(prefs: ContactPreferences) -> str | None:
    if prefs.quiet_hours_start is None or prefs.quiet_hours_end is None:
        return None
    return f"{prefs.quiet_hours_start:%H:%M}-{prefs.quiet_hours_end:%H:%M}"


@dataclass(frozen=True)
class BulkDefaultsReport:
    missing: int  # recipients without preferences before the run
    created: int  # rows written (0 in a dry run)
    batches: int
    dry_run: bool


_MISSING = (
    "FROM notifications n WHERE n.to_wa_id > %(after)s "
    "AND NOT EXISTS (SELECT 1 FROM contact_preferences c WHERE c.wa_id = n.to_wa_id)"
)
_BATCH = f"""
WITH batch AS (SELECT DISTINCT n.to_wa_id {_MISSING} ORDER BY 1 LIMIT %(limit)s),
     inserted AS (
        INSERT INTO contact_preferences (wa_id, quiet_hours_start, quiet_hours_end, timezone)
        SELECT to_wa_id, %(start)s, %(end)s, %(zone)s FROM batch
        ON CONFLICT (wa_id) DO NOTHING RETURNING 1)
SELECT (SELECT max(to_wa_id) FROM batch), (SELECT count(*) FROM batch), (SELECT count(*) FROM inserted)
"""


def bulk_defaults(
    conn: psycopg.Connection,
    actor: str,
    *,
    window: tuple[time, time] = DEFAULT_QUIET_HOURS,
    timezone: str = DEFAULT_TIMEZONE,
    dry_run: bool = True,
    batch_size: int = 1000,
) -> BulkDefaultsReport:
    """Give every recipient in notifications without preferences the default window and zone.

    A dry run only counts. The write walks recipients in order, one short transaction per batch,
    so a big backfill never holds locks the senders need; it never changes an existing row.
    """
    zone = validate_timezone(timezone)
    if not 1 <= batch_size <= 50_000:
        raise ContactError("batch size must be between 1 and 50000")
    missing = conn.execute(f"SELECT count(DISTINCT n.to_wa_id) {_MISSING}", {"after": ""}).fetchone()[0]
    if dry_run:
        return BulkDefaultsReport(missing, 0, 0, True)
    params = {"after": "", "limit": batch_size, "start": window[0], "end": window[1], "zone": zone}
    created = batches = 0
    while True:
        with conn.transaction():
            last, selected, inserted = conn.execute(_BATCH, params).fetchone()
        if not selected:
            break
        batches += 1
        created += inserted
        params["after"] = last
    record(
        conn,
        "CONTACT_DEFAULTS_APPLIED",
        {
            "created": created,
            "batches": batches,
            "quiet_hours": f"{window[0]:%H:%M}-{window[1]:%H:%M}",
            "timezone": zone,
            "actor": actor,
        },
    )
    return BulkDefaultsReport(missing, created, batches, False)


def opt_out(conn: psycopg.Connection, raw: str, reason: str) -> int:
    """mark_opted_out: opts out, cancels waiting rows and records CONTACT_OPTED_OUT (with the
    connection's actor); returns how many waiting notifications were cancelled."""
    if not (reason or "").strip():
        raise ContactError("give a reason for the opt-out (e.g. user_request)")
    wa_id = normalize(conn, raw)
    return conn.execute("SELECT mark_opted_out(%s, %s)", (wa_id, reason.strip())).fetchone()[0]


def opt_in(conn: psycopg.Connection, raw: str, reason: str) -> bool:
    """mark_opted_in; True when the contact was opted out before. Cancelled rows stay cancelled."""
    if not (reason or "").strip():
        raise ContactError("give a reason for the opt-in (e.g. user_request)")
    wa_id = normalize(conn, raw)
    return bool(conn.execute("SELECT mark_opted_in(%s, %s)", (wa_id, reason.strip())).fetchone()[0])

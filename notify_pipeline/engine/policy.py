"""What to do with a claimed notification before any HTTP call: send it, defer it, or fail it.

Pure functions over the row, the contact's preferences and the template registry, so every rule
is tested without a database or a server. Order matters: a message past its expiry fails before
anything else is looked at, and one that can never go out (opt-out, bad payload, unusable
template, a free-form text outside the 24-hour customer-service window) fails before quiet hours
would defer it.

`decide_row` is what the drain calls: a row that cannot be read or decided fails on its own
(invalid_payload, the cause in its error message) and never stops the rest of the batch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Literal

from notify_pipeline.engine.quiet_hours import DEFAULT_TIMEZONE, default_quiet_hours, quiet_until
from notify_pipeline.engine.row_json import UNREADABLE
from notify_pipeline.engine.store import Contact
from notify_pipeline.redact import scrub
from notify_pipeline.whatsapp.errors import CODES, ErrorClass, the_code
from notify_pipeline.whatsapp.messages import send_request
from notify_pipeline.whatsapp.templates import (
    TemplateDefinitionError,
    TemplateSpec,
    parse_spec,
    send_problems,
)

Action = Literal["send", "defer", "fail"]
# Template statuses that may come back (Meta reinstates paused templates): hold rows, do not fail.
HOLD_STATUSES = {"PAUSED", "IN_APPEAL", "FLAGGED", "LIMIT_EXCEEDED"}
# Meta's customer-service window: free-form text only within 24 h of the contact's last message.
SERVICE_WINDOW = timedelta(hours=24)
# What Meta answers a free-form text outside it with (131047): the code table's one code of the
# OUTSIDE_WINDOW class; a refusal on our side records the same code.
WINDOW_CODE = the_code(lambda entry: entry.error_class is ErrorClass.OUTSIDE_WINDOW)
# Overrides of the code table's bounds on deferrals, e.g. "131048=5,130429=200".
MAX_DEFERRALS_ENV = "NOTIFY_MAX_DEFERRALS"


@lru_cache(maxsize=8)
def _parse_limits(raw: str) -> dict[int, int]:
    limits: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        code, _, bound = item.partition("=")
        try:
            number, value = int(code), int(bound)
        except ValueError:
            raise ValueError(f"{MAX_DEFERRALS_ENV}: {item!r} is not CODE=COUNT (e.g. 131048=5)") from None
        entry = CODES.get(number)
        if entry is None or entry.error_class is not ErrorClass.THROTTLED or value < 0:
            raise ValueError(
                f"{MAX_DEFERRALS_ENV}: {item!r}: give a throttling code of the code table and a count >= 0"
            )
        limits[number] = value
    return limits


def max_deferrals(code: int, overrides: Mapping[int, int] | None = None) -> int | None:
    """How many times a row may be deferred for this throttling code (None: no bound): the
    given overrides, else NOTIFY_MAX_DEFERRALS, else the code table (whatsapp/errors.py)."""
    if overrides is None:
        overrides = _parse_limits(os.environ.get(MAX_DEFERRALS_ENV, ""))
    if code in overrides:
        return overrides[code]
    entry = CODES.get(code)
    return entry.max_deferrals if entry is not None else None


@dataclass(frozen=True)
class PolicyConfig:
    """Send-time rules that are configuration, not data."""

    # Quiet hours for contacts without preferences (None: no quiet hours for them).
    default_quiet_hours: tuple[time, time] | None = field(default_factory=default_quiet_hours)
    default_timezone: str = DEFAULT_TIMEZONE
    # Templates whose quiet_hours_exempt is NULL: AUTHENTICATION (one-time codes) goes out at night.
    exempt_categories: frozenset[str] = frozenset({"AUTHENTICATION"})
    # How long a row of a paused template waits before it is looked at again.
    template_hold_s: float = 900.0
    # How long a row whose send got no usable answer (a timeout after the request left, a gateway's
    # 502 or 504, a 200 without a message id: Meta may hold the message) waits for a status webhook
    # naming it (receipts/reconcile.py) before it is sent again. Meta's statuses come within
    # seconds; without webhooks this only delays the retry.
    receipt_wait_s: float = 180.0
    # Meta's customer-service window for free-form text (131047 outside it).
    service_window_s: float = SERVICE_WINDOW.total_seconds()


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str = ""
    message: str = ""
    until: datetime | None = None
    request: dict[str, Any] | None = None
    template: Mapping[str, Any] | None = None


def template_definition(template: Mapping[str, Any]) -> dict[str, Any]:
    """Meta's definition when synced; else a body built from the stored variable list."""
    if template.get("components"):
        return {"parameter_format": template.get("parameter_format"), "components": template["components"]}
    variables = list(template.get("variables") or [])
    named = str(template.get("parameter_format", "POSITIONAL")).upper() == "NAMED"
    names = [str(v) for v in variables] if named else [str(i) for i in range(1, len(variables) + 1)]
    # Only the placeholders are known, so the length check (132005) counts the values alone:
    # it can miss a body that is too long at Meta, never refuse one that fits.
    body = " ".join("{{" + name + "}}" for name in names)
    return {
        "parameter_format": template.get("parameter_format"),
        "components": [{"type": "BODY", "text": body}],
    }


_SPEC = "_parsed_spec"  # memo key in a template row: parsed once per row object, not per send


def _spec(template: Mapping[str, Any]) -> TemplateSpec | None:
    """The template's parsed definition, or None when it cannot be read.

    A drain decides thousands of rows against the same few templates: parse each template row
    once (the drain reloads the rows, and so the memo, every 30 s).
    """
    if template.get(UNREADABLE):
        return None  # its stored JSON could not be read (row_json.py)
    if _SPEC not in template:
        try:
            spec: TemplateSpec | None = parse_spec(template_definition(template))
        except TemplateDefinitionError:
            spec = None
        if isinstance(template, dict):
            template[_SPEC] = spec
        return spec
    return template[_SPEC]


def _check_template(
    row: Mapping[str, Any],
    templates: Mapping[tuple[str, str], Mapping[str, Any]],
    now: datetime,
    config: PolicyConfig,
) -> Verdict | None:
    name, language = row["template_name"], row["language"] or "en"
    template = templates.get((name, language))
    if template is None:
        return Verdict(
            "fail",
            "template_missing",
            f"Template {name} ({language}) is not in whatsapp_templates: sync or add it, then retry",
        )
    status = template["approval_status"]
    if not template["is_active"]:
        return Verdict(
            "fail", "template_inactive", f"Template {name} ({language}) is switched off (is_active = false)"
        )
    if status in HOLD_STATUSES:
        return Verdict(
            "defer",
            "template_paused",
            f"Template {name} ({language}) is {status} at Meta; held",
            until=now + timedelta(seconds=config.template_hold_s),
            template=template,
        )
    if status != "APPROVED":
        return Verdict(
            "fail",
            "template_not_approved",
            f"Template {name} ({language}) is {status}, not APPROVED: Meta would refuse it (132001)",
        )
    spec = _spec(template)
    if spec is None:
        # Our copy of the definition cannot be read (a component type we do not model, a
        # hand-edited row). Meta holds the real one: let it judge rather than fail a message
        # that may well be fine.
        return None
    problems = send_problems(spec, row["payload"].get("template", {}).get("components", []))
    if problems:
        # The reason is the code Meta would have answered, so last_error_code reads the same
        # whether the engine or Meta refused the send.
        return Verdict(
            "fail",
            str(problems[0].code),
            f"Template {name} ({language}) parameters do not fit, Meta would refuse the send: "
            + "; ".join(map(str, problems)),
        )
    return None


def _quiet(
    row: Mapping[str, Any],
    contact: Contact | None,
    template: Mapping[str, Any] | None,
    now: datetime,
    config: PolicyConfig,
) -> datetime | None:
    if row["quiet_hours_override"]:
        return None
    if template is not None:
        exempt = template.get("quiet_hours_exempt")
        if exempt is None:
            exempt = template.get("category") in config.exempt_categories
        if exempt:
            return None
    if contact is not None:
        return quiet_until(now, contact.timezone, contact.quiet_hours_start, contact.quiet_hours_end)
    if config.default_quiet_hours is None:
        return None
    return quiet_until(now, config.default_timezone, *config.default_quiet_hours)


def _expired(row: Mapping[str, Any], now: datetime) -> Verdict | None:
    # A late one-time code or reminder does harm: whatever else holds for the row, it is not sent.
    expires_at = row.get("expires_at")
    if expires_at is None or now < expires_at:
        return None
    at = expires_at.astimezone(UTC)
    return Verdict(
        "fail", "expired", f"Expired at {at:%Y-%m-%d %H:%M:%S} UTC before it could be sent: not sent"
    )


def _outside_window(contact: Contact | None, now: datetime, config: PolicyConfig) -> Verdict | None:
    # Only a known last message decides: with none on record (a contact who wrote before receipts
    # were kept, or through another number), the text goes and Meta judges (131047 comes back).
    last = contact.last_inbound_at if contact is not None else None
    if last is None or now - last <= timedelta(seconds=config.service_window_s):
        return None
    hours = (now - last).total_seconds() / 3600
    return Verdict(
        "fail",
        WINDOW_CODE,
        f"Not sent: the contact last wrote {hours:.0f} h ago, and free-form text is only allowed "
        f"within {config.service_window_s / 3600:g} h of the contact's last message ({WINDOW_CODE}); "
        "send an approved template instead",
    )


def decide(
    row: Mapping[str, Any],
    contact: Contact | None,
    templates: Mapping[tuple[str, str], Mapping[str, Any]],
    now: datetime,
    config: PolicyConfig,
) -> Verdict:
    """The verdict for one claimed row (rate limits are applied afterwards, by the drain loop)."""
    expired = _expired(row, now)
    if expired is not None:
        return expired
    try:
        request = send_request(row["id"], row["payload"])
    except ValueError as exc:
        return Verdict("fail", "invalid_payload", str(exc))
    if contact is not None and contact.opted_out:
        return Verdict("fail", "opted_out", "Contact opted out: not sent")
    template = None
    if request["type"] == "text":
        closed = _outside_window(contact, now, config)
        if closed is not None:
            return closed
    if request["type"] == "template":
        held = _check_template(row, templates, now, config)
        if held is not None:
            return held
        template = templates[(row["template_name"], row["language"] or "en")]
        if contact is not None and contact.marketing_opted_out and template.get("category") == "MARKETING":
            return Verdict(
                "fail",
                "marketing_opted_out",
                "Contact stopped marketing messages (Meta's user preference): MARKETING template not sent",
            )
    until = _quiet(row, contact, template, now, config)
    if until is not None:
        return Verdict(
            "defer",
            "quiet_hours",
            f"Deferred: quiet hours in the contact's time zone until {until:%Y-%m-%d %H:%M} UTC",
            until=until,
            template=template,
        )
    return Verdict("send", request=request, template=template)


def decide_row(
    row: Mapping[str, Any],
    contact: Contact | None,
    templates: Mapping[tuple[str, str], Mapping[str, Any]],
    now: datetime,
    config: PolicyConfig,
) -> Verdict:
    """The verdict for one row of a claimed batch, never an exception: a row whose JSON could not
    be read, or that `decide` cannot judge or build a request for, fails on its own with
    invalid_payload and the cause."""
    unreadable = row.get(UNREADABLE)
    if unreadable:
        return Verdict(
            "fail",
            "invalid_payload",
            f"Not sent, the stored row cannot be read: {unreadable}. Enqueue it again through "
            "queueNotification, which refuses such shapes",
        )
    try:
        return decide(row, contact, templates, now, config)
    except Exception as exc:  # one row's data must not stop the batch, whatever it holds
        cause = scrub(f"{type(exc).__name__}: {exc}")[:200]
        return Verdict("fail", "invalid_payload", f"Not sent: the row could not be decided ({cause})")

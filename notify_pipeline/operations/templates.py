"""Templates an operator manages: show one, and sync whatsapp_templates with Meta's message_templates.

A sync writes Meta's status, category, language and variables through `upsert_templates` (one
mapping for seed and sync). Templates we hold that Meta no longer lists are kept but switched off
(is_active = false), never deleted: their history stays readable. After the write, waiting rows are
settled by what the template became: held statuses (PAUSED ...) stay queued, the engine holds them
at send time; terminal ones (REJECTED, DISABLED, deleted ...) fail at once with a reason naming the
template, so nobody waits on a message that can never go out. Rows a worker holds are left to it.
A template a sync switched off comes back on when Meta lists it APPROVED again.

Meta's template webhooks (status, quality, category; receipts/apply.py) follow the same rules
through `settle_reason` and the SQL here, the moment `notify-pipeline serve` receives them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from notify_pipeline.engine.operations import record
from notify_pipeline.engine.policy import HOLD_STATUSES
from notify_pipeline.engine.templates_store import NOT_AT_META, body_variables, upsert_templates
from notify_pipeline.whatsapp.client import ClientSettings, CloudApiClient, TemplateListError
from notify_pipeline.whatsapp.templates import TemplateDefinitionError

# Meta statuses after which a template will not send again as it is: waiting rows fail.
TERMINAL_STATUSES = frozenset({"REJECTED", "DISABLED", "DELETED", "PENDING_DELETION", "ARCHIVED", "LOCKED"})
FAIL_BATCH = 5000
Key = tuple[str, str]  # (template_name, language)

# A template's waiting, unclaimed rows fail (rows being claimed are skipped): code, message, name,
# language, batch size.
FAIL_WAITING = (
    "UPDATE notifications SET status = 'failed', last_error_code = %s, error_message = %s, "
    "next_attempt_at = NULL WHERE id IN (SELECT id FROM notifications WHERE status = 'queued' "
    "AND locked_at IS NULL AND template_name = %s AND coalesce(language, 'en') = %s "
    "LIMIT %s FOR UPDATE SKIP LOCKED)"
)
# Rows held for a paused template go at once when it is APPROVED again (not a hold later): name, language.
RELEASE_HELD = (
    "UPDATE notifications SET next_attempt_at = now() WHERE status = 'queued' AND locked_at IS NULL "
    "AND template_name = %s AND coalesce(language, 'en') = %s AND last_error_code = 'template_paused' "
    "AND next_attempt_at > now()"
)


def settle_reason(key: Key, status: str) -> tuple[str, str] | None:
    """What a template's new Meta status does to its waiting rows: (code, why) when they fail now;
    None when they stay (APPROVED, or a held status the engine holds at send time)."""
    if status in TERMINAL_STATUSES:
        return "template_not_approved", f"Template {_label(key)} is {status} at Meta"
    return None


class TemplateError(RuntimeError):
    """An unknown template, or a sync that could not read Meta's list: one readable sentence."""


def show_template(conn: psycopg.Connection, name: str) -> list[dict[str, Any]]:
    """Every language of a template, with how many notifications wait for each."""
    cur = conn.execute(
        "SELECT t.template_key, t.template_name, t.language, t.category, t.domain, t.approval_status, t.is_active, "
        "t.parameter_format, t.variables, t.retry_policy, t.quiet_hours_exempt, t.meta_template_id, t.synced_at, "
        "(SELECT count(*) FROM notifications n WHERE n.status = 'queued' AND n.template_name = t.template_name "
        " AND coalesce(n.language, 'en') = t.language) AS waiting "
        "FROM whatsapp_templates t WHERE t.template_name = %s OR t.template_key = %s ORDER BY t.language",
        (name, name),
    )
    rows = [dict(zip([c.name for c in cur.description], row, strict=True)) for row in cur.fetchall()]
    if not rows:
        raise TemplateError(
            f"no template {name!r} in whatsapp_templates: check the name, or run `template sync`"
        )
    return rows


def fetch_remote(client: ClientSettings, waba_id: str) -> list[dict[str, Any]]:
    """Every template Meta lists for the business account (all pages)."""
    if not waba_id:
        raise TemplateError("no WhatsApp Business Account id: set WHATSAPP_WABA_ID")

    async def collect() -> list[dict[str, Any]]:
        async with CloudApiClient(client) as api:
            return [t async for t in api.list_templates(waba_id)]

    try:
        return asyncio.run(collect())
    except TemplateListError as exc:
        raise TemplateError(f"{exc}; check WHATSAPP_WABA_ID and WHATSAPP_ACCESS_TOKEN") from exc
    except httpx.HTTPError as exc:
        raise TemplateError(f"cannot reach the Cloud API at {client.base_url}: {exc}") from exc


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    changed: dict[str, str] = field(default_factory=dict)  # "name (lang)" -> "OLD->NEW" or fields
    unchanged: int = 0
    not_at_meta: list[str] = field(default_factory=list)  # kept, switched off (is_active = false)
    reactivated: list[str] = field(default_factory=list)  # switched off by a sync, APPROVED again
    held: dict[str, int] = field(default_factory=dict)  # waiting rows of held templates
    failed: dict[str, int] = field(default_factory=dict)  # waiting rows failed (or to fail)
    dry_run: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}

    def lines(self) -> list[str]:
        verb = "would " if self.dry_run else ""
        out = [
            f"added: {len(self.added)} {sorted(self.added)}",
            f"changed: {len(self.changed)}"
            + "".join(f"\n  {k}: {v}" for k, v in sorted(self.changed.items())),
            f"unchanged: {self.unchanged}",
            f"no longer at Meta ({verb}switch off, kept): {len(self.not_at_meta)} {sorted(self.not_at_meta)}",
            f"back at Meta APPROVED ({verb}switch on): {len(self.reactivated)} {sorted(self.reactivated)}",
        ]
        out += [
            f"held (stay queued until Meta releases the template): {k}: {v}"
            for k, v in sorted(self.held.items())
        ]
        out += [f"{verb}fail waiting rows: {k}: {v}" for k, v in sorted(self.failed.items())]
        return out


def _label(key: Key) -> str:
    return f"{key[0]} ({key[1]})"


def _local(conn: psycopg.Connection) -> dict[Key, dict[str, Any]]:
    cur = conn.execute(
        "SELECT template_name, language, approval_status, category, variables, is_active, inactive_reason "
        "FROM whatsapp_templates"
    )
    return {
        (r[0], r[1]): {
            "status": r[2],
            "category": r[3],
            "variables": r[4],
            "active": r[5],
            "inactive_reason": r[6],
        }
        for r in cur
    }


def _variables(key: Key, definition: Mapping[str, Any]) -> list[str]:
    try:
        return body_variables(definition)
    except TemplateDefinitionError as exc:
        raise TemplateError(f"Meta's definition of {_label(key)} cannot be read: {exc}") from exc


def _waiting(conn: psycopg.Connection, key: Key) -> int:
    return conn.execute(
        "SELECT count(*) FROM notifications WHERE status = 'queued' AND locked_at IS NULL "
        "AND template_name = %s AND coalesce(language, 'en') = %s",
        key,
    ).fetchone()[0]


def sync_templates(
    conn: psycopg.Connection, remote: Sequence[Mapping[str, Any]], actor: str, *, dry_run: bool = True
) -> SyncReport:
    """Compare Meta's list with whatsapp_templates; unless dry_run, write it and settle waiting rows."""
    local = _local(conn)
    by_key = {(str(t["name"]), str(t.get("language") or "en")): t for t in remote}
    report = SyncReport(dry_run=dry_run)
    reasons: dict[Key, tuple[str, str]] = {}
    for key, definition in by_key.items():
        status = str(definition.get("status", "PENDING"))
        old = local.get(key)
        if old is None:
            report.added.append(_label(key))
        else:
            diffs = [f"{old['status']}->{status}"] if old["status"] != status else []
            if old["category"] != definition.get("category", old["category"]):
                diffs.append(f"category {old['category']}->{definition['category']}")
            if list(old["variables"]) != _variables(key, definition):
                diffs.append("variables")
            if not old["active"] and status == "APPROVED" and old["inactive_reason"] == NOT_AT_META:
                report.reactivated.append(_label(key))
                diffs.append("switched on")
            if diffs:
                report.changed[_label(key)] = ", ".join(diffs)
            else:
                report.unchanged += 1
        if status in HOLD_STATUSES:
            report.held[_label(key)] = _waiting(conn, key)
        elif (reason := settle_reason(key, status)) is not None:
            reasons[key] = reason
    for key in sorted(set(local) - set(by_key)):
        report.not_at_meta.append(_label(key))
        reasons[key] = ("template_missing", f"Template {_label(key)} is no longer at Meta (deleted)")
    report.held = {k: v for k, v in report.held.items() if v}
    if dry_run:
        report.failed = {_label(k): n for k in reasons if (n := _waiting(conn, k))}
        return report
    with conn.transaction():
        try:
            upsert_templates(conn, by_key.values())
        except (psycopg.errors.CheckViolation, TemplateDefinitionError) as exc:
            raise TemplateError(f"Meta's template list does not fit whatsapp_templates: {exc}") from exc
        for name, language in (k for k in local if k not in by_key):
            # Only a switch-off of ours is undone by itself later; an operator's stays.
            conn.execute(
                "UPDATE whatsapp_templates SET is_active = false, inactive_reason = CASE WHEN is_active "
                "THEN %s ELSE inactive_reason END WHERE template_name = %s AND language = %s",
                (NOT_AT_META, name, language),
            )
        for name, language in (k for k in by_key if by_key[k].get("status") == "APPROVED"):
            conn.execute(RELEASE_HELD, (name, language))
    for key, (code, why) in reasons.items():
        if count := _fail_waiting(conn, key, code, f"{why}: cancelled by template sync, not sent"):
            report.failed[_label(key)] = count
    record(
        conn,
        "TEMPLATES_SYNCED",
        {
            "added": len(report.added),
            "changed": report.changed,
            "unchanged": report.unchanged,
            "switched_off": report.not_at_meta,
            "switched_on": report.reactivated,
            "held_rows": sum(report.held.values()),
            "failed_rows": report.failed,
            "actor": actor,
        },
    )
    return report


def _fail_waiting(conn: psycopg.Connection, key: Key, code: str, message: str) -> int:
    """Fail the template's waiting, unclaimed rows in short batches; rows being claimed are skipped."""
    total = 0
    while True:
        with conn.transaction():
            cur = conn.execute(FAIL_WAITING, (code, message, key[0], key[1], FAIL_BATCH))
        total += cur.rowcount
        if cur.rowcount < FAIL_BATCH:
            return total

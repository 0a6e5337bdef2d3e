"""Error codes in alert messages: what a code means and what to do about it.

Meaning comes from the product's tables only: Meta's codes from whatsapp/errors.py (the runbook's
table is wrong), the product's own labels (timeout_ambiguous, opted_out, template_missing ...) from
engine/reasons.py. This module adds just the first action for those own labels, so an alert never
says "not a documented Meta error code" about the product's own words.
"""

from __future__ import annotations

from notify_pipeline.engine import reasons
from notify_pipeline.whatsapp.errors import describe, lookup

_OWN_ACTIONS: dict[str, str] = {
    "timeout_ambiguous": "check the network path to WHATSAPP_API_BASE_URL and Meta's status page; "
    "a message may have been accepted before the answer was lost",
    "connection": "check DNS, proxy and firewall towards WHATSAPP_API_BASE_URL",
    "bad_response": "check that WHATSAPP_API_BASE_URL points at Meta",
    "template_missing": "sync or add the template, then retry",
    "template_inactive": "switch it back on if it should send",
    "template_not_approved": "check its status in Meta Business Manager",
    "invalid_payload": "fix the producer that queued it",
}


def meaning(code: str) -> str:
    """`code`: what it means and, where known, what to do; in one line."""
    if code in reasons.OWN_REASONS or code.startswith("http_") or code == "none":
        action = _OWN_ACTIONS.get(code) or (
            "check WHATSAPP_API_BASE_URL and any proxy" if code.startswith("http_") else None
        )
        text = f"{code}: {reasons.meaning(code)}"
        return f"{text}; {action}" if action else text
    return describe(code)


def fix(code: str) -> str | None:
    """Meta's advice for a code, when the code table has an entry."""
    try:
        entry = lookup(int(code))
    except ValueError:
        return None
    return entry.fix if entry else None

"""What a last_error_code means: Meta's codes (from whatsapp/errors.py) and the product's own
reasons for deferring or failing a notification before or without Meta."""

from __future__ import annotations

from notify_pipeline.whatsapp.errors import lookup

# The product's own codes, as stored in notifications.last_error_code and audit details.
OWN_REASONS: dict[str, str] = {
    "opted_out": "Contact opted out: not sent",
    "marketing_opted_out": "Contact stopped marketing messages: MARKETING template not sent",
    "invalid_payload": "The stored payload is not a sendable message",
    "template_missing": "Template not in whatsapp_templates (sync or add it)",
    "template_inactive": "Template switched off (is_active = false)",
    "template_not_approved": "Template not approved by Meta",
    "template_paused": "Template paused at Meta: rows held",
    "quiet_hours": "Deferred: the contact's quiet hours",
    "pair_limit": "Deferred: per-recipient pair rate limit (ours)",
    "emergency_stop": "Held by an emergency stop",
    "connection": "Could not reach the API; the request never left (deferred, no attempt used)",
    "timeout_ambiguous": "Request may have reached the API but no usable answer came back (retried)",
    "bad_response": "The API answered 200 without a message id",
    "expired": "Past its expires_at before it could be sent: not sent",
}

# Reasons that defer a row without using an attempt (Meta's throttling codes do too).
DEFERRAL_REASONS = ("quiet_hours", "pair_limit", "template_paused", "connection")


def meaning(code: str | None) -> str:
    """A short meaning for any last_error_code value."""
    if code is None or code == "none":
        return "no error code"
    if code in OWN_REASONS:
        return OWN_REASONS[code]
    if code.startswith("http_"):
        return f"HTTP {code[5:]} without a Meta error body"
    entry = lookup(int(code)) if code.isdigit() else None
    return entry.title if entry else f"undocumented code {code}"

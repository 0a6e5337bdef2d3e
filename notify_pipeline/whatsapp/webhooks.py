"""Webhook security: Meta signs each webhook POST with HMAC-SHA256 of the raw body, keyed by the
app secret, in the X-Hub-Signature-256 header ("sha256=<lowercase hex>")."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Hub-Signature-256"


def sign(app_secret: str, body: bytes) -> str:
    """The header value for `body`, as Meta computes it."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(app_secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` signs exactly these bytes. Compare in constant time; never re-serialise."""
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(app_secret, body), header.strip())

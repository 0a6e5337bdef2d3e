"""Webhook security: Meta signs each webhook POST with HMAC-SHA256 of the raw body, keyed by the
app secret, in the X-Hub-Signature-256 header ("sha256=<lowercase hex>")."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Hub-Signature-256"


def sign(app_secret: str, body: bytes) -> str:
    """The header value for `body`, as Meta computes it. An empty secret is a configuration
    error: anyone could sign with it."""
    if not app_secret:
        raise ValueError("no app secret: set WHATSAPP_APP_SECRET (the Meta app's secret)")
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(app_secret: str, body: bytes, header: str | bytes | None) -> bool:
    """True when `header` signs exactly these bytes. Compare in constant time; never re-serialise.
    A missing, malformed or non-ASCII header is simply not a valid signature."""
    expected = sign(app_secret, body).encode()
    if isinstance(header, str):
        try:
            header = header.encode("ascii")
        except UnicodeEncodeError:
            return False
    if not header or not header.strip().startswith(b"sha256="):
        return False
    return hmac.compare_digest(expected, header.strip())

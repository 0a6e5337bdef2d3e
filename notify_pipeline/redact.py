"""The one scrubber for text that leaves the process: error messages, logs, Dagster metadata, alert
and audit text.

It removes the secrets the environment holds (read when called, so a rotated token is covered at
once), the password of any postgresql:// URL or libpq `password=` found in the text, secrets the
process registered itself (the embedded server's password), and masks phone numbers the way
notify_mask_wa_id does (+2507******56): enough to tell numbers apart, not enough to dial one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

REDACTED = "<redacted>"
# Environment variables whose whole value is a secret.
SECRET_VARIABLES = (
    "WHATSAPP_ACCESS_TOKEN",
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_WEBHOOK_VERIFY_TOKEN",
    "NOTIFY_ALERT_WEBHOOK_URL",
    "NOTIFY_PAGERDUTY_ROUTING_KEY",
)
# Environment variables holding database URLs: their passwords are secrets.
URL_VARIABLES = ("NOTIFY_DATABASE_URL", "DAGSTER_POSTGRES_URL", "NOTIFY_TEST_DATABASE_URL")
# Shorter values are not scrubbed by value (they would blank out ordinary words); URL passwords
# are still removed by their position in the URL.
MIN_SECRET_CHARS = 4

_registered: set[str] = set()

# scheme://user:password@ ; the password may hold anything but '@' and whitespace.
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:@/\s'\"]*:)(?P<password>[^@\s'\"]+)(?=@)", re.I
)
_CONNINFO_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.I)
# What looks like a phone number inside free text: '+' and 7-15 digits, or 9-15 bare digits (so
# Meta's error codes, at most 7 digits, stay readable). SQL_NUMBER is the same in PostgreSQL's syntax.
_NUMBER = re.compile(r"\+\d{7,15}\b|\b\d{9,15}\b")
SQL_NUMBER = r"\+[0-9]{7,15}\M|\m[0-9]{9,15}\M"


def register(secret: str | None) -> None:
    """A secret this process holds that the environment does not name (e.g. a generated password)."""
    if secret and len(secret) >= MIN_SECRET_CHARS:
        _registered.add(secret)


def url_password(url: str | None) -> str | None:
    """The password in a URL, or None."""
    if not url:
        return None
    try:
        password = urlsplit(url.strip()).password
    except ValueError:
        match = _URL_PASSWORD.search(url)
        return match.group("password") if match else None
    return unquote(password) if password else None


def secrets(extra: Iterable[str | None] = ()) -> list[str]:
    """Every secret value known now, longest first (so a secret inside another goes with it)."""
    values: set[str] = set(_registered)
    for name in SECRET_VARIABLES:
        values.add(os.environ.get(name, "").strip())
    for name in URL_VARIABLES:
        password = url_password(os.environ.get(name, ""))
        if password:
            values.update((password, _quoted(password)))
    values.update(value.strip() for value in extra if value)
    return sorted((v for v in values if len(v) >= MIN_SECRET_CHARS), key=len, reverse=True)


def mask_number(number: str) -> str:
    """The same mask as the SQL function notify_mask_wa_id."""
    if len(number) <= 6:
        return "***"
    return number[:4] + "*" * (len(number) - 6) + number[-2:]


def mask_text(text: str | None) -> str | None:
    """Free text (error messages) with every phone-number-like run masked."""
    return None if text is None else _NUMBER.sub(lambda m: mask_number(m.group(0)), text)


def scrub(text: object, extra: Iterable[str | None] = (), *, numbers: bool = True) -> str:
    """`text` without secrets (and, unless numbers=False, with phone numbers masked)."""
    out = "" if text is None else str(text)
    out = _URL_PASSWORD.sub(_hide_url_password, out)
    out = _CONNINFO_PASSWORD.sub(lambda m: m.group("head") + "***", out)
    for secret in secrets(extra):
        out = out.replace(secret, REDACTED)
    return mask_text(out) if numbers else out


def _hide_url_password(match: re.Match[str]) -> str:
    # "user:password@host" in a message's example is a placeholder, not a password.
    password = match.group("password")
    return match.group(0) if password in ("password", "***") else match.group("head") + "***"


def leaks(text: str, extra: Iterable[str | None] = ()) -> list[str]:
    """The secrets found in `text` (for tests and checks): never print what this returns."""
    return [secret for secret in secrets(extra) if secret in text]


def _quoted(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")

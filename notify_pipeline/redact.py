"""The one scrubber for text that leaves the process: error messages, logs, Dagster metadata, alert
and audit text.

It knows secrets, not only strings: every secret the environment holds (read when called, so a
rotated token is covered at once) is removed wherever it appears inside any text, plain,
URL-encoded or JSON-escaped, and so is every secret part of a URL the environment names: its
password, the values of query parameters named like secrets (?password=, ?token=, ?key=), and for
a URL that is a secret as a whole (the alert webhook) its path and each path segment that looks
like a token, so a receiver answering `404 Cannot POST /services/T../B../<token>` gives nothing
away. Without knowing the value it also hides the password of any URL or libpq `password=` and
secret-named query values found in the text, secrets the process registered itself (the embedded
server's password), and masks phone numbers the way notify_mask_wa_id does (+2507******56): enough
to tell numbers apart, not enough to dial one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import parse_qsl, quote, unquote, urlsplit

REDACTED = "<redacted>"
# Environment variables whose whole value is a secret.
SECRET_VARIABLES = (
    "WHATSAPP_ACCESS_TOKEN",
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_WEBHOOK_VERIFY_TOKEN",
    "NOTIFY_ALERT_WEBHOOK_URL",
    "NOTIFY_PAGERDUTY_ROUTING_KEY",
)
# Secret variables holding a URL: besides the whole value, their path and token-like path segments
# and query values are secrets (Slack carries its token in the path).
SECRET_URL_VARIABLES = ("NOTIFY_ALERT_WEBHOOK_URL",)
# Environment variables holding URLs that are not secrets themselves: their passwords and
# secret-named query values are.
URL_VARIABLES = (
    "NOTIFY_DATABASE_URL",
    "DAGSTER_POSTGRES_URL",
    "NOTIFY_TEST_DATABASE_URL",
    "NOTIFY_PUSHGATEWAY_URL",
    "NOTIFY_PAGERDUTY_EVENTS_URL",
    "WHATSAPP_API_BASE_URL",
)
# Shorter values are not scrubbed by value (they would blank out ordinary words); URL passwords
# are still removed by their position in the URL.
MIN_SECRET_CHARS = 4
# A path segment or query value of a secret URL is taken for a token from this length on, unless
# it is plain lowercase words ("services", "incoming-webhooks"), which carry nothing secret.
MIN_TOKEN_CHARS = 8

_registered: set[str] = set()

# scheme://user:password@ ; the password may hold anything but '@' and whitespace.
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:@/\s'\"]*:)(?P<password>[^@\s'\"]+)(?=@)", re.I
)
# libpq's "password=..." (and sslpassword) outside a URL's query string, which _QUERY_VALUE handles.
_CONNINFO_PASSWORD = re.compile(
    r"(?<![?&;])(?P<head>\b(?:ssl)?password\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.I
)
_QUERY_VALUE = re.compile(r"(?P<head>[?&;](?P<name>[\w.\-\[\]]+)=)(?P<value>[^&#\s'\"<>]+)")
# Query parameter names whose values are secrets: ?password=, ?sslpassword=, ?token=,
# ?access_token=, ?hub.verify_token=, ?key=, ?api_key=, ?routing_key=, ?sig=, ?signature=, ?auth=
# (not ?sslkey=, a file name).
_SECRET_NAME = re.compile(
    r"(pass(word|wd)?|pwd|secret|token|signature|credentials?|api-?key|(^|[-_.])key|^sig|^auth(orization)?)$",
    re.I,
)
_PLAIN_WORDS = re.compile(r"[a-z]+(?:[-_.][a-z]+)*")
_HIDDEN = ("password", "***", REDACTED)  # placeholders and already hidden values stay as they are
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


def looks_like_token(part: str) -> bool:
    """A URL part long enough and not plain words: in a secret URL, taken for a token."""
    return len(part) >= MIN_TOKEN_CHARS and not _PLAIN_WORDS.fullmatch(part)


def url_secrets(url: str, *, whole: bool = False) -> set[str]:
    """The secret parts of a URL: its password and secret-named query values; when the URL is a
    secret as a whole (`whole`), also its path and every token-like path segment or query value."""
    url = url.strip()
    found = {url_password(url) or ""}
    try:
        parts = urlsplit(url)
    except ValueError:
        return {value for value in found if value}
    for name, value in parse_qsl(parts.query):
        if _SECRET_NAME.search(name) or (whole and looks_like_token(value)):
            found.add(value)
    if whole:
        tokens = [segment for segment in parts.path.split("/") if looks_like_token(unquote(segment))]
        if tokens:
            found.update((parts.path, unquote(parts.path), *tokens, *map(unquote, tokens)))
    return {value for value in found if len(value) >= MIN_SECRET_CHARS}


def secrets(extra: Iterable[str | None] = ()) -> list[str]:
    """Every secret value known now, with its URL-encoded forms, longest first (so a secret inside
    another goes with it). An `extra` value holding '://' is a secret URL (its parts go too)."""
    environment = tuple(
        (name, os.environ.get(name, "").strip()) for name in (*SECRET_VARIABLES, *URL_VARIABLES)
    )
    extras = tuple(sorted(value.strip() for value in extra if value and value.strip()))
    return list(_known(environment, extras, frozenset(_registered)))


@lru_cache(maxsize=64)
def _known(
    environment: tuple[tuple[str, str], ...], extras: tuple[str, ...], registered: frozenset[str]
) -> tuple[str, ...]:
    values: set[str] = set(registered)
    for name, value in environment:
        if not value:
            continue
        if name in SECRET_VARIABLES:
            values.add(value)
        if name in URL_VARIABLES or name in SECRET_URL_VARIABLES:
            values |= url_secrets(value, whole=name in SECRET_URL_VARIABLES)
    for value in extras:
        values.add(value)
        if "://" in value:
            values |= url_secrets(value, whole=True)
    # The forms a secret takes inside other text: URL-encoded (whole, or as a path) and JSON-escaped.
    values |= {
        form for value in values for form in (quote(value, safe=""), quote(value, safe="/"), _json(value))
    }
    return tuple(sorted((v for v in values if len(v) >= MIN_SECRET_CHARS), key=len, reverse=True))


def mask_number(number: str) -> str:
    """The same mask as the SQL function notify_mask_wa_id."""
    if len(number) <= 6:
        return "***"
    return number[:4] + "*" * (len(number) - 6) + number[-2:]


def mask_text(text: str | None) -> str | None:
    """Free text (error messages) with every phone-number-like run masked."""
    return None if text is None else _NUMBER.sub(lambda m: mask_number(m.group(0)), text)


def hide_query_secrets(text: str) -> str:
    """`text` with the value of every secret-named query parameter (?password=, &token=) as ***."""
    return _QUERY_VALUE.sub(_hide_query_value, text)


def scrub(text: object, extra: Iterable[str | None] = (), *, numbers: bool = True) -> str:
    """`text` without secrets (and, unless numbers=False, with phone numbers masked)."""
    out = "" if text is None else str(text)
    out = _URL_PASSWORD.sub(_hide_url_password, out)
    out = hide_query_secrets(out)
    out = _CONNINFO_PASSWORD.sub(lambda m: m.group("head") + "***", out)
    for secret in secrets(extra):
        out = out.replace(secret, REDACTED)
    return mask_text(out) if numbers else out


def _hide_url_password(match: re.Match[str]) -> str:
    # "user:password@host" in a message's example is a placeholder, not a password.
    password = match.group("password")
    return match.group(0) if password in _HIDDEN else match.group("head") + "***"


def _hide_query_value(match: re.Match[str]) -> str:
    if not _SECRET_NAME.search(match.group("name")) or match.group("value") in _HIDDEN:
        return match.group(0)
    return match.group("head") + "***"


def _json(value: str) -> str:
    return json.dumps(value)[1:-1]


def leaks(text: str, extra: Iterable[str | None] = ()) -> list[str]:
    """The secrets found in `text` (for tests and checks): never print what this returns."""
    return [secret for secret in secrets(extra) if secret in text]

"""Where alerts go: a Slack-compatible incoming webhook, or nowhere but the alerts table.

The webhook URL is a secret (a Slack webhook URL carries its token in the path). It is held only
by WebhookSink, never written to alerts, logs or metadata: every text that comes back from a
receiver (its error body, which may echo the path: `404 Cannot POST /services/<token>`) or from
the transport goes through notify_pipeline.redact with the URL's secret parts before it is kept
in a Delivery, and httpx's own "HTTP Request: POST <url>" log line is scrubbed by a filter
installed here.
Delivery has explicit timeouts and a few retries with exponential backoff on 5xx, 429 and
network errors; other 4xx answers (a revoked or mistyped webhook) are final at once. Delivery
never raises: a malformed URL or any transport problem is a failed Delivery, recorded by the
lifecycle and retried on a later tick, and one delivery never takes longer than BUDGET_S.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from notify_pipeline.redact import scrub as scrub_text

REDACTED = "<alert webhook>"
MAX_RETRY_AFTER_S = 5.0  # a sensor tick has about a minute: never sleep long on Retry-After
# One message's delivery, every attempt and backoff included, never takes longer than this: a tick
# may post to the webhook and to PagerDuty, and must stay well inside the sensor's 60 s.
BUDGET_S = 15.0
ERROR_CHARS = 200  # of a receiver's answer kept in a failed Delivery's error
SCRUB_CHARS = 4096  # of it read and scrubbed first (a token cut at 200 would no longer match)


@dataclass(frozen=True)
class Delivery:
    """What happened to one message: ok, which channel, how many attempts, the last error."""

    ok: bool
    channel: str  # webhook | pagerduty | none
    attempts: int = 0
    status: int | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        # Whoever built it, a Delivery's error (stored in alerts.details, logged, shown in Dagster)
        # holds no secret the environment names and no full phone number.
        if self.error:
            object.__setattr__(self, "error", scrub_text(self.error))

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    def describe(self) -> str:
        if self.channel == "none":
            return f"recorded only ({self.error})" if self.error else "recorded only"
        if self.ok:
            return f"{self.channel} delivered (attempt {self.attempts})"
        return f"{self.channel} delivery FAILED after {self.attempts} attempt(s): {self.error}"


class Sink(Protocol):
    def deliver(self, payload: dict[str, Any]) -> Delivery: ...


class RecordOnly:
    """No webhook configured: alerts live in the alerts table and the sensor's tick text only."""

    def __init__(self, why: str) -> None:
        self.why = why

    def deliver(self, payload: dict[str, Any]) -> Delivery:
        return Delivery(ok=True, channel="none", error=self.why)


def hide(text: str, secret: str, label: str) -> str:
    """`text` with `secret` shown as `label`, and every secret part of it (a URL's path, token and
    query secrets, their URL-encoded forms) and every secret the environment names removed."""
    if secret:
        text = text.replace(secret, label)
    return scrub_text(text, (secret,), numbers=False)


class _Scrub(logging.Filter):
    """Scrubs registered secrets from log records (httpx logs every request URL at INFO)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, str] = {}  # secret -> the label shown instead

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = original = record.getMessage()
            # Longest first: a shorter secret inside a longer one must not break the longer's label.
            for secret, label in sorted(self.secrets.items(), key=lambda item: -len(item[0])):
                text = hide(text, secret, label)
            if text != original:
                record.msg, record.args = text, ()
        return True


_SCRUB = _Scrub()
logging.getLogger("httpx").addFilter(_SCRUB)


def scrub(secret: str, label: str = REDACTED) -> None:
    """Keep `secret` (and its parts) out of httpx's log lines from now on."""
    if secret:
        _SCRUB.secrets[secret] = label


@dataclass(frozen=True)
class Retrying:
    """How a channel delivers one message (post_json): seconds per attempt, retries after a 5xx,
    429 or network error, the first backoff (doubled on each retry) and the budget of the whole
    delivery. The webhook and PagerDuty each hold one."""

    timeout_s: float = 5.0
    retries: int = 2
    backoff_s: float = 0.5
    budget_s: float = BUDGET_S
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def post(
        self, url: str, payload: dict[str, Any], *, channel: str, redact: Callable[[str], str]
    ) -> Delivery:
        return post_json(
            url,
            payload,
            channel=channel,
            timeout_s=self.timeout_s,
            retries=self.retries,
            backoff_s=self.backoff_s,
            budget_s=self.budget_s,
            sleep=self.sleep,
            redact=redact,
        )


class WebhookSink:
    """POSTs Slack-compatible JSON ({"text": ..., "blocks": [...]}) to one webhook URL; `retrying`
    takes the fields of Retrying (timeout_s, retries, backoff_s, budget_s, sleep)."""

    def __init__(self, url: str, **retrying: Any) -> None:
        self._url = url
        self.retrying = Retrying(**retrying)
        scrub(url)

    def __repr__(self) -> str:  # never show the URL, even in a traceback's locals
        return (
            f"WebhookSink({REDACTED}, timeout_s={self.retrying.timeout_s}, retries={self.retrying.retries})"
        )

    def redact(self, text: str) -> str:
        return hide(text, self._url, REDACTED)

    def deliver(self, payload: dict[str, Any]) -> Delivery:
        return self.retrying.post(self._url, payload, channel="webhook", redact=self.redact)


def post_json(
    url: str,
    payload: dict[str, Any],
    *,
    channel: str,
    timeout_s: float,
    retries: int,
    backoff_s: float,
    budget_s: float = BUDGET_S,
    sleep: Callable[[float], None] = time.sleep,
    redact: Callable[[str], str] = lambda text: scrub_text(text, numbers=False),
    clock: Callable[[], float] = time.monotonic,
) -> Delivery:
    """POST `payload` as JSON with retries on 5xx, 429 and network errors, never longer than
    `budget_s` in all (timeouts and backoff included), and never raising: a malformed URL or any
    transport problem is a failed Delivery whose error text went through `redact`."""
    deadline = clock() + budget_s
    status: int | None = None
    error = "not attempted"
    attempts = 0
    try:
        # A loopback receiver (tests, a local relay) must not be sent through a proxy; a real
        # host honours the environment's proxy settings.
        trust_env = urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1")
        with httpx.Client(trust_env=trust_env, follow_redirects=False) as client:
            for attempt in range(1, retries + 2):
                left = deadline - clock()
                if left <= 0.05:
                    error = f"{error}; gave up: the {budget_s:g} s delivery budget is spent"
                    break
                attempts = attempt
                per_try = min(timeout_s, left)
                timeout = httpx.Timeout(per_try, connect=min(per_try, 3.0))
                wait = backoff_s * 2 ** (attempt - 1)
                try:
                    response = client.post(url, json=payload, timeout=timeout)
                except httpx.UnsupportedProtocol as exc:  # a mistyped URL: retrying changes nothing
                    status, error = None, redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
                    break
                except httpx.HTTPError as exc:
                    status, error = None, redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
                else:
                    status = response.status_code
                    if 200 <= status < 300:
                        return Delivery(ok=True, channel=channel, attempts=attempt, status=status)
                    # Scrubbed before it is cut: a cut through an echoed token would leave a part
                    # of it that matches no known secret.
                    echoed = redact(response.text[:SCRUB_CHARS])[:ERROR_CHARS]
                    error = f"HTTP {status}: {echoed}".rstrip(": ")
                    if status != 429 and status < 500:
                        break  # the receiver refused this message: retrying changes nothing
                    wait = max(wait, _retry_after(response))
                if attempt <= retries:
                    if clock() + wait >= deadline:
                        error = f"{error}; gave up: the {budget_s:g} s delivery budget is spent"
                        break
                    sleep(wait)
    except Exception as exc:  # a malformed URL (httpx.InvalidURL, UnsupportedProtocol), anything else
        status, error = None, redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
    return Delivery(ok=False, channel=channel, attempts=attempts, status=status, error=error)


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("Retry-After", 0)), MAX_RETRY_AFTER_S)
    except ValueError:
        return 0.0

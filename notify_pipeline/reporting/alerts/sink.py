"""Where alerts go: a Slack-compatible incoming webhook, or nowhere but the alerts table.

The webhook URL is a secret (a Slack webhook URL carries its token in the path). It is held only
by WebhookSink, never written to alerts, logs or metadata: delivery errors are recorded without
it, and httpx's own "HTTP Request: POST <url>" log line is scrubbed by a filter installed here.
Delivery has explicit timeouts and a few retries with exponential backoff on 5xx, 429 and
network errors; other 4xx answers (a revoked or mistyped webhook) are final at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

REDACTED = "<alert webhook>"
MAX_RETRY_AFTER_S = 5.0  # a sensor tick has about a minute: never sleep long on Retry-After


@dataclass(frozen=True)
class Delivery:
    """What happened to one message: ok, which channel, how many attempts, the last error."""

    ok: bool
    channel: str  # webhook | none
    attempts: int = 0
    status: int | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    def describe(self) -> str:
        if self.channel == "none":
            return f"recorded only ({self.error})" if self.error else "recorded only"
        if self.ok:
            return f"webhook delivered (attempt {self.attempts})"
        return f"webhook delivery FAILED after {self.attempts} attempt(s): {self.error}"


class Sink(Protocol):
    def deliver(self, payload: dict[str, Any]) -> Delivery: ...


class RecordOnly:
    """No webhook configured: alerts live in the alerts table and the sensor's tick text only."""

    def __init__(self, why: str) -> None:
        self.why = why

    def deliver(self, payload: dict[str, Any]) -> Delivery:
        return Delivery(ok=True, channel="none", error=self.why)


class _Scrub(logging.Filter):
    """Replaces registered secrets in log records (httpx logs every request URL at INFO)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            if any(secret in text for secret in self.secrets):
                for secret in self.secrets:
                    text = text.replace(secret, REDACTED)
                record.msg, record.args = text, ()
        return True


_SCRUB = _Scrub()
logging.getLogger("httpx").addFilter(_SCRUB)


class WebhookSink:
    """POSTs Slack-compatible JSON ({"text": ..., "blocks": [...]}) to one webhook URL."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = url
        self.timeout_s, self.retries, self.backoff_s, self._sleep = timeout_s, retries, backoff_s, sleep
        _SCRUB.secrets.add(url)
        # A loopback receiver (tests, a local relay) must not be sent through a proxy; a real
        # webhook host honours the environment's proxy settings.
        self._trust_env = urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1")

    def __repr__(self) -> str:  # never show the URL, even in a traceback's locals
        return f"WebhookSink({REDACTED}, timeout_s={self.timeout_s}, retries={self.retries})"

    def redact(self, text: str) -> str:
        return text.replace(self._url, REDACTED)

    def deliver(self, payload: dict[str, Any]) -> Delivery:
        timeout = httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 3.0))
        status: int | None = None
        error = "not attempted"
        attempts = 0
        with httpx.Client(timeout=timeout, trust_env=self._trust_env, follow_redirects=False) as client:
            for attempt in range(1, self.retries + 2):
                attempts = attempt
                wait = self.backoff_s * 2 ** (attempt - 1)
                try:
                    response = client.post(self._url, json=payload)
                except httpx.HTTPError as exc:
                    status, error = None, self.redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
                else:
                    status = response.status_code
                    if 200 <= status < 300:
                        return Delivery(ok=True, channel="webhook", attempts=attempt, status=status)
                    error = self.redact(f"HTTP {status}: {response.text[:200]}".rstrip(": "))
                    if status != 429 and status < 500:
                        break  # the webhook refused this message: retrying changes nothing
                    wait = max(wait, _retry_after(response))
                if attempt <= self.retries:
                    self._sleep(wait)
        return Delivery(ok=False, channel="webhook", attempts=attempts, status=status, error=error)


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("Retry-After", 0)), MAX_RETRY_AFTER_S)
    except ValueError:
        return 0.0

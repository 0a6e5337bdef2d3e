"""What the service is told: where the database is, the app secret, the verify token, limits.

The limits bound what a caller who has not proven to be Meta can make the service hold: each has
a default here and an environment variable (checked at start, like every variable in settings.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limit:
    variable: str
    default: float
    low: float
    high: float
    whole: bool  # a whole number (bytes) rather than seconds

    def parse(self, raw: str) -> float:
        """The value of `raw`, or ValueError with a one-line message saying what to set."""
        try:
            value = int(raw) if self.whole else float(raw)
        except ValueError:
            value = float("nan")
        if not self.low <= value <= self.high:  # also refuses nan
            kind = "a whole number of bytes" if self.whole else "a number of seconds"
            low, high = (int(self.low), int(self.high)) if self.whole else (self.low, self.high)
            raise ValueError(f"{self.variable} must be {kind} from {low} to {high}, not {raw[:40]!r}")
        return value


# Meta sends bodies of up to 3 MB (up to 1,000 updates): the body cap never goes below that.
LIMITS: dict[str, Limit] = {
    # A new connection (or the next request on a kept-alive one) must deliver its request line
    # and headers within this time, and in no more than this many bytes (431 beyond it).
    "header_timeout_s": Limit("NOTIFY_SERVE_HEADER_TIMEOUT_S", 10, 0.1, 300, whole=False),
    "max_header_bytes": Limit("NOTIFY_SERVE_MAX_HEADER_BYTES", 32 * 1024, 1024, MIB, whole=True),
    # A webhook body must arrive whole within this time (408), and be no larger than this (413).
    "body_timeout_s": Limit("NOTIFY_SERVE_BODY_TIMEOUT_S", 20, 0.1, 600, whole=False),
    "max_body_bytes": Limit("NOTIFY_SERVE_MAX_BODY_BYTES", 4 * MIB, 3 * MIB, 64 * MIB, whole=True),
    # Bytes of bodies whose signature is not checked yet, beyond each body's first
    # SMALL_BODY_BYTES, held at once by the process (503 with Retry-After beyond it).
    "unauthenticated_bytes": Limit(
        "NOTIFY_SERVE_UNAUTHENTICATED_BYTES", 16 * MIB, 3 * MIB, 1024 * MIB, whole=True
    ),
    # A scrape of /metrics within this many seconds of the last database read gets that read's
    # answer (0: every scrape reads the database).
    "metrics_cache_s": Limit("NOTIFY_METRICS_CACHE_S", 5, 0, 300, whole=False),
}
# Status webhooks are a few KB: a body this small never waits on the shared budget (uvicorn
# already buffers this much per connection), so an attack that fills the budget does not stop them.
SMALL_BODY_BYTES = 64 * 1024


class ServiceConfigError(ValueError):
    """A setting the service cannot start with; the message says what to set."""


def limit_problem(variable: str, raw: str) -> str | None:
    """What is wrong with one limit variable's value, or None (for settings.environment_problems)."""
    for limit in LIMITS.values():
        if limit.variable == variable:
            try:
                limit.parse(raw)
            except ValueError as exc:
                return str(exc)
    return None


def _limit_from_env(name: str) -> float:
    limit = LIMITS[name]
    raw = os.environ.get(limit.variable, "").strip()
    return limit.parse(raw) if raw else limit.default


@dataclass(frozen=True)
class ServeLimits:
    header_timeout_s: float = LIMITS["header_timeout_s"].default
    max_header_bytes: int = int(LIMITS["max_header_bytes"].default)
    body_timeout_s: float = LIMITS["body_timeout_s"].default
    max_body_bytes: int = int(LIMITS["max_body_bytes"].default)
    unauthenticated_bytes: int = int(LIMITS["unauthenticated_bytes"].default)

    def __post_init__(self) -> None:
        if self.unauthenticated_bytes < self.max_body_bytes:
            raise ServiceConfigError(
                f"NOTIFY_SERVE_UNAUTHENTICATED_BYTES ({self.unauthenticated_bytes}) is below "
                f"NOTIFY_SERVE_MAX_BODY_BYTES ({self.max_body_bytes}): a body of the largest allowed "
                "size could never be read. Raise the first or lower the second"
            )

    @classmethod
    def from_env(cls) -> ServeLimits:
        """Each limit from its variable, else its default; ValueError names a bad one."""
        return cls(**{name: _limit_from_env(name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ServiceConfig:
    database_url: str = field(repr=False)
    app_secret: str = field(default="", repr=False)
    verify_token: str = field(default="", repr=False)
    allow_unsigned: bool = False  # development only: accept bodies without a signature check
    writers: int = 2
    limits: ServeLimits = field(default_factory=ServeLimits)
    # /metrics listens here, never on the webhook port; port None: no metrics listener.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    metrics_cache_s: float = LIMITS["metrics_cache_s"].default
    # Several worker processes each bind the metrics port (SO_REUSEPORT); any of them answers.
    metrics_reuse_port: bool = False

    def __post_init__(self) -> None:
        if not self.app_secret and not self.allow_unsigned:
            raise ServiceConfigError(
                "WHATSAPP_APP_SECRET is not set: the service would accept forged webhooks. Set it to "
                "the Meta app's secret (or, on a development machine only, pass --allow-unsigned)"
            )

    @classmethod
    def from_env(
        cls,
        database_url: str,
        *,
        allow_unsigned: bool = False,
        metrics_host: str | None = None,
        metrics_port: int | None = None,
        metrics_reuse_port: bool = False,
    ) -> ServiceConfig:
        from notify_pipeline import settings

        limits = ServeLimits.from_env()
        port = settings.metrics_port() if metrics_port is None else metrics_port
        return cls(
            database_url=database_url,
            app_secret=os.environ.get("WHATSAPP_APP_SECRET", "").strip(),
            verify_token=os.environ.get("WHATSAPP_WEBHOOK_VERIFY_TOKEN", "").strip(),
            allow_unsigned=allow_unsigned or os.environ.get("NOTIFY_SERVE_ALLOW_UNSIGNED", "") == "1",
            limits=limits,
            metrics_host=metrics_host or settings.metrics_host(),
            metrics_port=port or None,  # 0: no metrics listener in this process
            metrics_cache_s=_limit_from_env("metrics_cache_s"),
            metrics_reuse_port=metrics_reuse_port,
        )

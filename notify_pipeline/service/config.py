"""What the service is told: where the database is, the app secret, the verify token, limits.

The limits bound what a caller who has not proven to be Meta can make the service hold: each has
a default here and an environment variable (checked at start, like every variable in settings.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from notify_pipeline.service.limits import LIMITS, limit_from_env

# Status webhooks are a few KB: a body this small never waits on the shared budget (uvicorn
# already buffers this much per connection), so an attack that fills the budget does not stop them.
SMALL_BODY_BYTES = 64 * 1024


class ServiceConfigError(ValueError):
    """A setting the service cannot start with; the message says what to set."""


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
        return cls(**{name: limit_from_env(name) for name in cls.__dataclass_fields__})


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
            metrics_cache_s=limit_from_env("metrics_cache_s"),
            metrics_reuse_port=metrics_reuse_port,
        )

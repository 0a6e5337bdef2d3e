"""What the service is told: where the database is, the app secret, the verify token, limits."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# Meta sends bodies of up to 3 MB (up to 1,000 updates); anything much larger is not Meta.
MAX_BODY_BYTES = 4 * 1024 * 1024


class ServiceConfigError(ValueError):
    """A setting the service cannot start with; the message says what to set."""


@dataclass(frozen=True)
class ServiceConfig:
    database_url: str = field(repr=False)
    app_secret: str = field(default="", repr=False)
    verify_token: str = field(default="", repr=False)
    allow_unsigned: bool = False  # development only: accept bodies without a signature check
    max_body_bytes: int = MAX_BODY_BYTES
    writers: int = 2

    def __post_init__(self) -> None:
        if not self.app_secret and not self.allow_unsigned:
            raise ServiceConfigError(
                "WHATSAPP_APP_SECRET is not set: the service would accept forged webhooks. Set it to "
                "the Meta app's secret (or, on a development machine only, pass --allow-unsigned)"
            )

    @classmethod
    def from_env(cls, database_url: str, *, allow_unsigned: bool = False) -> ServiceConfig:
        return cls(
            database_url=database_url,
            app_secret=os.environ.get("WHATSAPP_APP_SECRET", "").strip(),
            verify_token=os.environ.get("WHATSAPP_WEBHOOK_VERIFY_TOKEN", "").strip(),
            allow_unsigned=allow_unsigned or os.environ.get("NOTIFY_SERVE_ALLOW_UNSIGNED", "") == "1",
        )

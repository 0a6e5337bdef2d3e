"""Resources, registered in one place. Secrets come from the environment via dg.EnvVar, so they are
resolved when a run starts and never appear in run config, the UI or event logs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from pydantic import Field

from notify_pipeline import settings
from notify_pipeline.db.connect import connect
from notify_pipeline.whatsapp.client import ClientSettings
from notify_pipeline.whatsapp.transports import DEFAULT_TRANSPORT


def run_actor(context: dg.OpExecutionContext) -> str:
    """Who the queue database records as changing rows for an op: its job and run."""
    return f"{context.job_name}:{context.run_id[:8]}"


class QueueDatabase(dg.ConfigurableResource):
    """The PostgreSQL database holding the notification queue."""

    url: str = Field(description="libpq URL of the queue database (from NOTIFY_DATABASE_URL).")
    connect_timeout_s: int = Field(default=10, description="Seconds to wait for a connection.")
    statement_timeout_ms: int = Field(default=30_000, description="Longest a single statement may run.")

    @contextmanager
    def connection(self, actor: str = "dagster") -> Iterator[psycopg.Connection]:
        with connect(
            self.url,
            actor=actor,
            connect_timeout_s=self.connect_timeout_s,
            statement_timeout_ms=self.statement_timeout_ms,
            autocommit=True,
        ) as conn:
            yield conn


class WhatsAppCloudApi(dg.ConfigurableResource):
    """Meta's WhatsApp Cloud API (or the local emulator) for one sender phone number."""

    base_url: str = Field(description="Graph API host (WHATSAPP_API_BASE_URL).")
    api_version: str = Field(description="Graph API version (WHATSAPP_API_VERSION).")
    phone_number_id: str = Field(description="Sender phone number id (WHATSAPP_PHONE_NUMBER_ID).")
    access_token: str = Field(description="Bearer token (WHATSAPP_ACCESS_TOKEN); secret.")
    transport: str = Field(
        default=DEFAULT_TRANSPORT, description="Transport of sends: aiohttp-native, aiohttp or httpx."
    )
    waba_id: str = Field(
        default="", description="WhatsApp Business Account id for template sync (WHATSAPP_WABA_ID)."
    )
    connect_timeout_s: float = Field(default=5.0, description="Seconds to open a connection.")
    read_timeout_s: float = Field(default=15.0, description="Seconds to wait for an answer.")

    def client_settings(self) -> ClientSettings:
        return ClientSettings(
            base_url=self.base_url,
            api_version=self.api_version,
            phone_number_id=self.phone_number_id,
            access_token=self.access_token,
            transport=self.transport,  # type: ignore[arg-type]
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
        )


def whatsapp_resource() -> WhatsAppCloudApi:
    # Non-secret settings are read when the code location loads (they show in the UI); the token
    # and the sender id stay environment references, resolved at run time. The WABA id is not a
    # secret and only template sync needs it: read at load, so an unset variable fails the sync
    # run with a clear message instead of every run that uses this resource (as a dg.EnvVar would).
    client = settings.whatsapp_client_settings()
    return WhatsAppCloudApi(
        base_url=client.base_url,
        api_version=client.api_version,
        phone_number_id=dg.EnvVar("WHATSAPP_PHONE_NUMBER_ID"),
        access_token=dg.EnvVar("WHATSAPP_ACCESS_TOKEN"),
        transport=client.transport,
        waba_id=settings.whatsapp_waba_id(),
    )


defs = dg.Definitions(
    resources={
        "queue_db": QueueDatabase(url=dg.EnvVar("NOTIFY_DATABASE_URL")),
        "whatsapp": whatsapp_resource(),
    },
)

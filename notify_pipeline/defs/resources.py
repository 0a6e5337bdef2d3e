"""Resources, registered in one place. Secrets and URLs come from the environment via dg.EnvVar,
so they are resolved when a run starts and never appear in run config or the UI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from pydantic import Field

from notify_pipeline.db.connect import connect


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
        ) as conn:
            yield conn


defs = dg.Definitions(
    resources={"queue_db": QueueDatabase(url=dg.EnvVar("NOTIFY_DATABASE_URL"))},
)

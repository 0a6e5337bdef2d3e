"""Where the send path goes: the emulator in its own process, or a Meta-compatible URL given by hand.

With the emulator the bench can set its latency and limits between measurements and read what it
accepted (duplicates, 130429 refusals, receive times). An outside endpoint has no control API:
those figures are then reported as skipped, and times come from the database instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from notify_pipeline import settings
from notify_pipeline.bench.emulator_process import EmulatorControl, EmulatorProcess
from notify_pipeline.bench.options import BENCH_TOKEN, BenchOptions
from notify_pipeline.whatsapp.client import ClientSettings

NO_CONTROL = "no emulator control API at --base-url"


@dataclass(frozen=True)
class Endpoint:
    """Client settings for the send path, and the emulator's control API when there is one."""

    client: ClientSettings
    control: EmulatorControl | None
    description: str

    def for_concurrency(self, concurrency: int) -> ClientSettings:
        """The client settings with a connection pool as large as the requests in flight."""
        return replace(self.client, max_connections=max(self.client.max_connections, concurrency))


@contextmanager
def open_endpoint(options: BenchOptions) -> Iterator[Endpoint]:
    """The endpoint of this run; starts (and stops) the emulator unless a base URL was given."""
    # The API version and transport come from the environment, as for `notify-pipeline send`.
    environment = settings.whatsapp_client_settings()
    client = replace(environment, phone_number_id=options.phone_number_id)
    if options.base_url:
        yield Endpoint(
            replace(client, base_url=options.base_url, access_token=options.token),
            None,
            f"{options.base_url} ({NO_CONTROL})",
        )
        return
    with EmulatorProcess(BENCH_TOKEN, pin=options.pin) as emulator:
        yield Endpoint(
            replace(client, base_url=emulator.base_url, access_token=BENCH_TOKEN),
            emulator.control,
            f"notify-pipeline emulator in its own process, {emulator.base_url}",
        )

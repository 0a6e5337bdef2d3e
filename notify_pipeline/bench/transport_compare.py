"""Which HTTP transport the Cloud API client should use: requests/s through CloudApiClient.send.

Starts `notify-pipeline emulator --no-limits` in its own process pinned to one core, runs the
product's client on another with 1 and 64 requests in flight, once per transport (httpx's own
pool, and aiohttp's through httpx-aiohttp), and prints JSON. Plain httpx.AsyncClient is known to
slow down with many requests in flight (encode/httpx#3215); this shows whether it does here.

    .venv/bin/python -m notify_pipeline.bench.transport_compare --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from notify_pipeline.bench import pinning
from notify_pipeline.bench.emulator_process import EmulatorProcess
from notify_pipeline.bench.options import BENCH_TOKEN
from notify_pipeline.emulator.config import DEFAULT_PHONE_NUMBER_ID
from notify_pipeline.whatsapp.client import ClientSettings, CloudApiClient
from notify_pipeline.whatsapp.messages import send_request, template_message

TRANSPORTS = ("httpx", "aiohttp")
IN_FLIGHT = (1, 64)


async def measure(base_url: str, transport: str, in_flight: int, seconds: float) -> dict:
    settings = ClientSettings(
        base_url=base_url,
        phone_number_id=DEFAULT_PHONE_NUMBER_ID,
        access_token=BENCH_TOKEN,
        transport=transport,
        max_connections=max(in_flight, 1),
    )
    payload = send_request(1, template_message("+250788000001", "welcome_message", "en", body=["Aline"]))
    done = errors = 0
    async with CloudApiClient(settings) as client:
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done, errors
            while time.monotonic() < deadline:
                result = await client.send(payload)
                done += 1
                errors += not result.ok

        await asyncio.gather(*(worker() for _ in range(min(in_flight, 4))))  # warm-up connections
        done = errors = 0
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed = time.monotonic() - started
    return {
        "transport": transport,
        "in_flight": in_flight,
        "requests": done,
        "errors": errors,
        "requests_per_s": round(done / elapsed),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m notify_pipeline.bench.transport_compare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=18089)
    args = parser.parse_args(argv)
    # The emulator is started inside the pin: it gets the emulator core with taskset all the same.
    with pinning.on_sender_core(), EmulatorProcess(BENCH_TOKEN, port=args.port) as emulator:
        results = [
            asyncio.run(measure(emulator.base_url, transport, in_flight, args.seconds))
            for transport in TRANSPORTS
            for in_flight in IN_FLIGHT
        ]
    print(
        json.dumps({"benchmark": "client_transport", "seconds": args.seconds, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()

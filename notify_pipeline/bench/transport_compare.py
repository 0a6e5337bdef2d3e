"""Which HTTP transport the Cloud API client should use: requests/s through CloudApiClient.send.

Starts `notify-pipeline emulator --no-limits` in its own process pinned to core 0, runs the
product's client on core 1 with 1 and 64 requests in flight, once per transport (httpx's own
pool, and aiohttp's through httpx-aiohttp), and prints JSON. Plain httpx.AsyncClient is known to
slow down with many requests in flight (encode/httpx#3215); this shows whether it does here.

    .venv/bin/python benchmarks/transport.py --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from notify_pipeline.whatsapp.client import ClientSettings, CloudApiClient
from notify_pipeline.whatsapp.messages import send_request, template_message

TOKEN = "bench-token"
CLI = str(Path(sys.executable).parent / "notify-pipeline")


def _pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def start_emulator(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [*_pinned(0), CLI, "emulator", "--port", str(port), "--token", TOKEN, "--no-limits"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_emulator/stats", timeout=1, trust_env=False)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the emulator did not start")


async def measure(base_url: str, transport: str, in_flight: int, seconds: float) -> dict:
    settings = ClientSettings(
        base_url=base_url,
        phone_number_id="106540352242922",
        access_token=TOKEN,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=18089)
    args = parser.parse_args()
    if _pinned(1):
        os.sched_setaffinity(0, {1})
    emulator = start_emulator(args.port)
    try:
        base_url = f"http://127.0.0.1:{args.port}"
        results = [
            asyncio.run(measure(base_url, transport, in_flight, args.seconds))
            for transport in ("httpx", "aiohttp")
            for in_flight in (1, 64)
        ]
    finally:
        emulator.terminate()
        emulator.wait(10)
    print(
        json.dumps({"benchmark": "client_transport", "seconds": args.seconds, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()

"""Measurement: status webhooks ingested per second by `notify-pipeline serve`.

The service runs as its own process (as in production) against the scratch database, with
PostgreSQL's synchronous_commit on: a 200 means the update is durable. `webhook_statuses` status
updates (sent, delivered and read for a third as many messages whose message ids the database
holds) are POSTed one per body, signed, by `webhook_concurrency` concurrent clients. Reported:
statuses/s over the whole run, answer time percentiles, and lost = statuses not applied.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from typing import Any

import aiohttp

from notify_pipeline.bench.context import BenchContext
from notify_pipeline.bench.dev_process import CLI
from notify_pipeline.bench.emulator_process import free_port
from notify_pipeline.bench.stats import summary_ms
from notify_pipeline.whatsapp.webhooks import SIGNATURE_HEADER, sign

SECRET = "bench-webhook-secret"
STATUSES = ("sent", "delivered", "read")


def _body(wamid: str, status: str, at: int) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "statuses": [{"id": wamid, "status": status, "timestamp": str(at), "recipient_id": "250788000001"}],
    }
    entry = {"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()


def _seed(ctx: BenchContext, messages: int) -> list[str]:
    ctx.conn.execute("TRUNCATE webhook_events")
    ctx.conn.execute("DELETE FROM notifications")
    ctx.conn.execute(
        "INSERT INTO notifications (to_wa_id, notification_type, status, sent_at, wa_message_id) "
        "SELECT '+2507' || lpad(g::text, 8, '0'), 'bench', 'sent', now(), 'wamid.bench.' || g "
        "FROM generate_series(1, %s) g",
        (messages,),
    )
    return [f"wamid.bench.{i}" for i in range(1, messages + 1)]


def start_service(url: str, workers: int) -> tuple[subprocess.Popen, str]:
    """`notify-pipeline serve` on `url` with this many workers, on all cores; it and its base URL."""
    port = free_port()
    # No metrics listener: the bench does not scrape, and a fixed port could be taken.
    env = {
        **os.environ,
        "NOTIFY_DATABASE_URL": url,
        "WHATSAPP_APP_SECRET": SECRET,
        "NOTIFY_METRICS_PORT": "0",
    }
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # The bench pins itself to the sender core; the service is its own process, on any core.
        preexec_fn=lambda: os.sched_setaffinity(0, range(os.cpu_count() or 1)),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    import httpx

    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1, trust_env=False).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(
        "notify-pipeline serve did not start: " + (process.stderr.read() or b"").decode()[-500:]
    )


async def _post_all(base: str, bodies: list[bytes], concurrency: int) -> tuple[list[float], int, float]:
    times: list[float] = []
    failures = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while not queue.empty():
            body = queue.get_nowait()
            headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(SECRET, body)}
            for _attempt in range(5):  # Meta retries a non-2xx answer; so does the bench
                started = time.perf_counter()
                async with session.post(f"{base}/webhooks/whatsapp", data=body, headers=headers) as answer:
                    await answer.read()
                    times.append(time.perf_counter() - started)
                    if answer.status == 200:
                        break
                    failures += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        return times, failures, time.perf_counter() - began


def measure(ctx: BenchContext) -> dict[str, Any]:
    options = ctx.options
    messages = max(1, options.webhook_statuses // len(STATUSES))
    wamids = _seed(ctx, messages)
    at = int(time.time())
    bodies = [_body(w, s, at + i) for w in wamids for i, s in enumerate(STATUSES)]
    sync = ctx.conn.execute("SHOW synchronous_commit").fetchone()[0]
    process, base = start_service(ctx.url, options.webhook_workers)
    try:
        times, failures, elapsed = asyncio.run(_post_all(base, bodies, options.webhook_concurrency))
    finally:
        process.terminate()
        process.wait(10)
    stored, read = ctx.conn.execute(
        "SELECT (SELECT count(*) FROM webhook_events WHERE applied_at IS NOT NULL), "
        "(SELECT count(*) FROM notifications WHERE delivery_status = 'read')"
    ).fetchone()
    return {
        "synchronous_commit": sync,
        "statuses": len(bodies),
        "concurrency": options.webhook_concurrency,
        "service_workers": options.webhook_workers,
        "one_status_per_post": True,
        "statuses_per_s": round(len(bodies) / elapsed, 1),
        "answer": summary_ms(times),
        "non_200_answers_retried": failures,
        "applied": stored,
        "messages_read": read,
        "lost": len(bodies) - stored,
    }

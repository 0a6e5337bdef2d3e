"""One webhook POST with Meta's retries: at once, then waits that grow.

Meta retries a body not answered 200 at once, then less and less often, for up to 7 days. Here
the waits double from webhook_retry_delay_ms up to webhook_retry_max_delay_ms, for
webhook_retries attempts after the first: enough for a receiver restarted in `make dev`, and
short in tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from notify_pipeline.emulator.config import EmulatorConfig


def retry_wait(config: EmulatorConfig, attempt: int) -> float:
    """Seconds to wait before attempt number `attempt` (0 is the first post)."""
    if attempt <= 1:
        return 0.0
    base, cap = config.webhook_retry_delay_ms / 1000, config.webhook_retry_max_delay_ms / 1000
    return min(cap, base * 2 ** (attempt - 2))


async def post_with_retries(
    session: aiohttp.ClientSession,
    config: EmulatorConfig,
    raw: bytes,
    headers: dict[str, str],
    counts: dict[str, int],
    current: Callable[[], bool],
) -> bool | None:
    """True once answered 200, False when every attempt failed, None when `current()` turned
    false meanwhile (a reset: the body is dropped, neither delivered nor failed)."""
    for attempt in range(config.webhook_retries + 1):
        wait = retry_wait(config, attempt)
        if wait:
            await asyncio.sleep(wait)
        if not current():
            return None
        counts["attempts"] += 1
        counts["retries"] += int(attempt > 0)
        try:
            timeout = aiohttp.ClientTimeout(total=config.webhook_timeout_s)
            async with session.post(config.webhook_url, data=raw, headers=headers, timeout=timeout) as resp:
                await resp.read()
                if resp.status == 200:  # Meta wants exactly 200; anything else is retried
                    return True
                counts["non_200"] += 1
        except (aiohttp.ClientError, TimeoutError, ValueError):
            counts["errors"] += 1
    return False

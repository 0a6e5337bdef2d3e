"""What happens to an accepted message after the 200: the chain of status webhooks it gets.

Every draw (will it fail, with which code, will it be delivered, read, and each delay's jitter)
is made at acceptance from the emulator's seeded RNG, so a given sequence of sends meets the
same fates on every run, however the webhook posts are timed.
"""

from __future__ import annotations

import random

from notify_pipeline.emulator.config import EmulatorConfig
from notify_pipeline.emulator.ledger import MessageRecord
from notify_pipeline.emulator.state import Emulator
from notify_pipeline.emulator.templates import Template
from notify_pipeline.emulator.webhook_payloads import pricing, status_update, webhook_error
from notify_pipeline.emulator.webhook_sender import Step

# Failures Meta decides before the message leaves (policy, limits, the window): no `sent` first.
# Others (131026 undeliverable, 131000) typically follow a `sent`.
_REFUSED_BEFORE_SENDING = frozenset((131047, 131049, 131050, 130472))
_FALLBACK_CODE = 131026


def draw_failure(emu: Emulator, template: Template | None) -> int | None:
    """A later failure for this message at `status_failed_share`, or None.

    Only codes that can happen to this kind of message are drawn: 131047 (outside the 24-hour
    window) only for free-form messages, 131049 (marketing limit per user) only for MARKETING.
    """
    config = emu.config
    if emu.status_rng.random() >= config.status_failed_share:
        return None
    eligible = [code for code in config.status_failed_codes if _possible(code, template)]
    return emu.status_rng.choice(eligible) if eligible else _FALLBACK_CODE


def _possible(code: int, template: Template | None) -> bool:
    if code == 131047:
        return template is None
    if code == 131049:
        return template is not None and template.category == "MARKETING"
    return True


def queue_statuses(
    emu: Emulator,
    record: MessageRecord,
    template: Template | None,
    *,
    details: str | None = None,
    drawn: bool = False,
) -> None:
    """Schedule the message's statuses. `drawn`: its failure (if any) came from draw_failure,
    so it may come after a `sent`; an injected fault or a window refusal fails it at once."""
    config, rng = emu.config, emu.status_rng
    category = template.category.lower() if template is not None else "service"
    # Service messages are free, and so are utility templates inside the service window.
    free = template is None or (category == "utility" and emu.window_open(record.wa_id))
    price = pricing(category, free=free)
    code = record.failed_code
    wanted = config.webhook_statuses
    if code is not None:
        error = webhook_error(code, details)
        steps: list[Step] = []
        if drawn and code not in _REFUSED_BEFORE_SENDING and "sent" in wanted:
            steps.append(
                (_delay(rng, config, config.status_sent_delay_ms), _build(emu, record, "sent", price))
            )
        pause = config.status_delivered_delay_ms if steps else config.status_sent_delay_ms
        steps.append((_delay(rng, config, pause), _build(emu, record, "failed", error=error)))
        emu.webhooks.submit(steps)
        return
    delivered = rng.random() < config.status_delivered_share
    read = delivered and rng.random() < config.status_read_share
    chain = [("sent", config.status_sent_delay_ms)]
    chain += [("delivered", config.status_delivered_delay_ms)] if delivered else []
    chain += [("read", config.status_read_delay_ms)] if read else []
    steps, waited, priced_later = [], 0.0, False
    for status, pause in chain:
        waited += _delay(rng, config, pause)
        if status not in wanted:
            continue  # not posted, but its time still passes
        # Pricing rides on `sent` and on the first of delivered/read posted, never on both.
        priced = status == "sent" or not priced_later
        priced_later = priced_later or status != "sent"
        steps.append((waited, _build(emu, record, status, price if priced else None)))
        waited = 0.0
    emu.webhooks.submit(steps)


def _delay(rng: random.Random, config: EmulatorConfig, ms: float) -> float:
    jitter = config.status_delay_jitter
    factor = rng.uniform(1 - jitter, 1 + jitter) if jitter else 1.0
    return ms * factor / 1000


def _build(
    emu: Emulator, record: MessageRecord, status: str, price: dict | None = None, error: dict | None = None
):
    # Built when due, from the settings then in force (metadata) and the time then (timestamp).
    return lambda: status_update(emu.config, record, status, price=price, error=error)

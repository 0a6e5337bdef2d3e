"""The emulator's run-time settings, and their validation when changed over the control API.

One flat, mutable-by-replacement dataclass: the send path reads it on every request, so changes
made through `PATCH /_emulator/config` take effect on the next request without a restart.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from notify_pipeline.whatsapp import errors

# The token the emulator accepts when neither --token nor WHATSAPP_ACCESS_TOKEN is given.
DEV_TOKEN = "dev-token"
# The phone number id EmulatorServer's helpers use (any numeric id is served unless configured).
DEFAULT_PHONE_NUMBER_ID = "106540352242922"
STATUS_WEBHOOKS = ("sent", "delivered", "read")
# How queued webhook updates are grouped into one body (see webhook_batches.py).
BATCH_LAYOUTS = ("merged", "changes", "entries", "mixed")
_SECRET_FIELDS = ("token", "app_secret")


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything that shapes the emulator's answers. Frozen: change it with `changed(...)`."""

    token: str = DEV_TOKEN
    app_secret: str | None = None
    # Added to every answer of the send endpoint (errors too: the network does not care).
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    limits_enabled: bool = True
    # Meta's default throughput is 80 messages/s per business number.
    throughput_per_s: float = 80.0
    # None: a fifth of a second's worth of messages (at least 1). Meta does not document this.
    throughput_burst: int | None = None
    # Pair limit, per Meta: one message per 6 s to one user, bursts of up to 45 borrowed ahead.
    pair_interval_s: float = 6.0
    pair_burst: int = 45
    # Free-form messages (anything but templates) need the user to have written within 24 h;
    # without that Meta accepts the POST and then fails the message with 131047.
    enforce_service_window: bool = True
    service_window_s: float = 24 * 3600.0
    webhook_url: str | None = None
    webhook_statuses: tuple[str, ...] = STATUS_WEBHOOKS  # which of these are posted (failed always is)
    # What happens to an accepted message later. Defaults suit the demo: most delivered, many
    # read, a few failed, all within seconds. Shares are drawn from the seeded RNG at acceptance.
    status_failed_share: float = 0.03  # of accepted messages (async faults and 131047 come on top)
    status_failed_codes: tuple[int, ...] = (131026, 131049, 131047, 130472)  # drawn uniformly
    status_delivered_share: float = 0.95  # of the messages that did not fail
    status_read_share: float = 0.7  # of the delivered messages
    status_sent_delay_ms: float = 300.0  # acceptance -> sent (or -> failed, for failures)
    status_delivered_delay_ms: float = 1500.0  # sent -> delivered (or -> failed)
    status_read_delay_ms: float = 3000.0  # delivered -> read
    status_delay_jitter: float = 0.5  # each delay times uniform(1 - jitter, 1 + jitter)
    # Meta batches up to 1,000 updates per body; a body is cut when full or after the linger.
    webhook_batch_max: int = 1
    webhook_batch_linger_ms: float = 50.0
    webhook_batch_layout: str = "merged"
    webhook_retries: int = 10  # after the first attempt: immediately, then waits that double
    webhook_retry_delay_ms: float = 200.0
    webhook_retry_max_delay_ms: float = 30_000.0
    webhook_timeout_s: float = 5.0
    webhook_duplicate_share: float = 0.0  # the same bytes again: Meta re-sends; receivers must dedupe
    webhook_rebatch_share: float = 0.0  # a delivered body's updates again, grouped with others
    waba_id: str = "102290129340398"
    display_phone_number: str = "15550783881"
    # None: any numeric phone number id is served. Set: others get Graph's unknown-object error.
    phone_number_id: str | None = None
    seed: int = 0
    max_recorded_messages: int = 1_000_000

    @property
    def effective_throughput_burst(self) -> int:
        if self.throughput_burst is not None:
            return self.throughput_burst
        return max(1, math.ceil(self.throughput_per_s / 5))

    def changed(self, changes: dict[str, Any]) -> EmulatorConfig:
        """A copy with `changes` applied; ValueError names the first bad key or value."""
        if not isinstance(changes, dict):
            raise ValueError("config changes must be a JSON object")
        clean = {key: _check(key, value) for key, value in changes.items()}
        result = dataclasses.replace(self, **clean)
        if result.webhook_url and not result.app_secret:
            raise ValueError("webhook_url needs app_secret: Meta signs every webhook with the app secret")
        return result

    def public(self) -> dict[str, Any]:
        """The settings as JSON, with secrets replaced by whether they are set."""
        data = dataclasses.asdict(self)
        for name in _SECRET_FIELDS:
            data[name] = "<set>" if data[name] else None
        data["webhook_statuses"] = list(self.webhook_statuses)
        data["status_failed_codes"] = list(self.status_failed_codes)
        data["effective_throughput_burst"] = self.effective_throughput_burst
        return data


def _field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(EmulatorConfig)}


@dataclass(frozen=True)
class _Rule:
    kinds: tuple[type, ...]
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    choices: tuple[str, ...] = field(default=())  # for lists: the values items may take
    one_of: tuple[str, ...] = field(default=())  # for strings: the values it may take


_NUM = (int, float)
_RULES: dict[str, _Rule] = {
    "token": _Rule((str,)),
    "app_secret": _Rule((str,), nullable=True),
    "latency_ms": _Rule(_NUM, 0),
    "jitter_ms": _Rule(_NUM, 0),
    "limits_enabled": _Rule((bool,)),
    "throughput_per_s": _Rule(_NUM, 0.001),
    "throughput_burst": _Rule((int,), 1, nullable=True),
    "pair_interval_s": _Rule(_NUM, 0.001),
    "pair_burst": _Rule((int,), 1),
    "enforce_service_window": _Rule((bool,)),
    "service_window_s": _Rule(_NUM, 0),
    "webhook_url": _Rule((str,), nullable=True),
    "webhook_statuses": _Rule((list, tuple), choices=STATUS_WEBHOOKS),
    "status_failed_share": _Rule(_NUM, 0, 1),
    "status_failed_codes": _Rule((list, tuple)),
    "status_delivered_share": _Rule(_NUM, 0, 1),
    "status_read_share": _Rule(_NUM, 0, 1),
    "status_sent_delay_ms": _Rule(_NUM, 0),
    "status_delivered_delay_ms": _Rule(_NUM, 0),
    "status_read_delay_ms": _Rule(_NUM, 0),
    "status_delay_jitter": _Rule(_NUM, 0, 1),
    "webhook_batch_max": _Rule((int,), 1, 1000),
    "webhook_batch_linger_ms": _Rule(_NUM, 0),
    "webhook_batch_layout": _Rule((str,), one_of=BATCH_LAYOUTS),
    "webhook_retries": _Rule((int,), 0, 30),
    "webhook_retry_delay_ms": _Rule(_NUM, 0),
    "webhook_retry_max_delay_ms": _Rule(_NUM, 0),
    "webhook_timeout_s": _Rule(_NUM, 0.01),
    "webhook_duplicate_share": _Rule(_NUM, 0, 1),
    "webhook_rebatch_share": _Rule(_NUM, 0, 1),
    "waba_id": _Rule((str,)),
    "display_phone_number": _Rule((str,)),
    "phone_number_id": _Rule((str,), nullable=True),
    "seed": _Rule((int,)),
    "max_recorded_messages": _Rule((int,), 0),
}
assert set(_RULES) == _field_names(), "every config field needs a validation rule"


def _check(key: str, value: Any) -> Any:
    rule = _RULES.get(key)
    if rule is None:
        raise ValueError(f"unknown config key {key!r}; known: {', '.join(sorted(_RULES))}")
    if value is None:
        if rule.nullable:
            return None
        raise ValueError(f"{key} must not be null")
    # bool is an int in Python; a JSON true where a number belongs is a mistake.
    if isinstance(value, bool) and bool not in rule.kinds:
        raise ValueError(f"{key} must be {_kind_names(rule)}, not a boolean")
    if not isinstance(value, rule.kinds):
        raise ValueError(f"{key} must be {_kind_names(rule)}")
    if key == "status_failed_codes":
        return _failure_codes(value)
    if rule.one_of and value not in rule.one_of:
        raise ValueError(f"{key} must be one of {list(rule.one_of)}, not {value!r}")
    if rule.choices:
        unknown = [item for item in value if item not in rule.choices]
        if unknown:
            raise ValueError(f"{key}: unknown values {unknown}; allowed: {list(rule.choices)}")
        return tuple(value)
    if rule.minimum is not None and value < rule.minimum:
        raise ValueError(f"{key} must be at least {rule.minimum}")
    if rule.maximum is not None and value > rule.maximum:
        raise ValueError(f"{key} must be at most {rule.maximum}")
    if key == "phone_number_id" and not value.isdigit():
        raise ValueError("phone_number_id must be digits")
    return float(value) if rule.kinds == _NUM else value


def _failure_codes(value: list | tuple) -> tuple[int, ...]:
    codes = tuple(value)
    if not codes:
        raise ValueError("status_failed_codes needs at least one code (set status_failed_share to 0 instead)")
    for code in codes:
        if not isinstance(code, int) or isinstance(code, bool) or errors.lookup(code) is None:
            raise ValueError(
                f"status_failed_codes: {code!r} is not a code in notify_pipeline/whatsapp/errors.py"
            )
    return codes


def _kind_names(rule: _Rule) -> str:
    if rule.kinds == _NUM:
        return "a number"
    return " or ".join(f"a {kind.__name__}" for kind in rule.kinds)

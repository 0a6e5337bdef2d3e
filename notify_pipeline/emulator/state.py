"""The emulator's state: settings, templates, limiters, faults, records and webhook queue.

One object, owned by the server's event loop (every request runs there), so nothing here needs
locks. `reset()` returns it to how it started, for tests that share one server.
"""

from __future__ import annotations

import base64
import copy
import hmac
import itertools
import random
import secrets
import time
from typing import Any

from notify_pipeline.demo import load_template_catalog
from notify_pipeline.emulator.config import EmulatorConfig
from notify_pipeline.emulator.faults import FaultBook
from notify_pipeline.emulator.ledger import Ledger
from notify_pipeline.emulator.templates import TemplateRegistry
from notify_pipeline.emulator.webhook_sender import WebhookSender
from notify_pipeline.ratelimit import Gcra

_LIMIT_FIELDS = ("throughput_per_s", "throughput_burst", "pair_interval_s", "pair_burst")


class Emulator:
    """Everything one emulator instance knows; the ASGI layers only translate HTTP to calls here."""

    def __init__(
        self, config: EmulatorConfig | None = None, templates: list[dict[str, Any]] | None = None
    ) -> None:
        self._initial_config = config or EmulatorConfig()
        self._initial_templates = copy.deepcopy(
            templates if templates is not None else load_template_catalog()
        )
        # Checked now, so that a bad catalog fails at start-up rather than on the first reset.
        TemplateRegistry(self._initial_templates)
        self.config = self._initial_config
        self.webhooks = WebhookSender(lambda: self.config, seed=self.config.seed)
        # wamids are unique across emulator runs too: a random run tag plus a counter.
        self._run_tag = secrets.token_hex(6).upper()
        self._counter = itertools.count(1)
        self.internal_errors = 0
        self.reset()

    def reset(self, keep_config: bool = False) -> None:
        """Clear records, limiter state, faults, windows and queued webhooks; restore templates."""
        if not keep_config:
            self.config = self._initial_config
        self.templates = TemplateRegistry(self._initial_templates)
        self.ledger = Ledger(self.config.max_recorded_messages)
        self.faults = FaultBook(self.config.seed)
        self.windows: dict[str, float] = {}  # wa_id -> unix time of the user's last message
        self.marketing_stopped: set[str] = set()  # wa_ids that stopped marketing messages
        # The fates of accepted messages (delivered, read, failed, delays): see status_chain.py.
        self.status_rng = random.Random(self.config.seed)
        self.latency_rng = random.Random(self.config.seed)
        self.internal_errors = 0
        self._rebuild_limiters()
        self._rebuild_auth()
        self.webhooks.reset()

    def configure(self, changes: dict[str, Any]) -> EmulatorConfig:
        """Apply settings at run time; ValueError when a key or value is wrong."""
        new = self.config.changed(changes)
        old, self.config = self.config, new
        if any(getattr(old, name) != getattr(new, name) for name in _LIMIT_FIELDS):
            self._rebuild_limiters()
        if "seed" in changes:
            self.status_rng = random.Random(new.seed)
        if "max_recorded_messages" in changes:
            self.ledger.messages = type(self.ledger.messages)(
                self.ledger.messages, maxlen=new.max_recorded_messages
            )
        self._rebuild_auth()
        return new

    def authorized(self, header: bytes | None) -> bool:
        """Whether an Authorization header carries the accepted bearer token."""
        if header is None or len(header) < 7 or header[:7].lower() != b"bearer ":
            return False
        return hmac.compare_digest(header[7:].strip(), self._token)

    def new_wamid(self, wa_id: str) -> str:
        raw = f"{wa_id}:{self._run_tag}{next(self._counter):012d}".encode()
        return "wamid." + base64.b64encode(raw).decode()

    def latency_s(self) -> float:
        config = self.config
        ms = config.latency_ms
        if config.jitter_ms:
            ms += self.latency_rng.uniform(0, config.jitter_ms)
        return ms / 1000

    def window_open(self, wa_id: str) -> bool:
        last = self.windows.get(wa_id)
        return last is not None and time.time() - last < self.config.service_window_s

    def stats(self) -> dict[str, Any]:
        stats = self.ledger.stats()
        stats["webhooks"] = self.webhooks.stats()
        stats["internal_errors"] = self.internal_errors
        return stats

    def _rebuild_limiters(self) -> None:
        config = self.config
        self.throughput = Gcra(config.throughput_per_s, config.effective_throughput_burst)
        self.pair = Gcra(1 / config.pair_interval_s, config.pair_burst)

    def _rebuild_auth(self) -> None:
        self._token = self.config.token.encode()

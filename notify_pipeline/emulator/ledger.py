"""What the emulator accepted and refused: the records tests count deliveries and duplicates with.

A duplicate is a second acceptance of the same `biz_opaque_callback_data`: the product puts its
notification id there, so each one should be accepted once, however often the sender retried.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any, NamedTuple


class MessageRecord(NamedTuple):
    """One accepted message. A tuple of plain values: the garbage collector can skip a million of them."""

    wamid: str
    phone_number_id: str
    to: str
    wa_id: str
    type: str
    template_name: str | None
    template_language: str | None
    biz_opaque_callback_data: str | None
    received_at: float  # unix seconds
    message_status: str | None = None  # pacing status given in the answer, if any
    failed_code: int | None = None  # the message fails after the 200 (async fault, 131047)
    via_timeout: bool = False  # accepted although the client was left waiting

    def public(self) -> dict[str, Any]:
        return self._asdict()


_FILTERS = ("wa_id", "to", "type", "template_name", "biz_opaque_callback_data", "wamid", "phone_number_id")


class Ledger:
    """Accepted messages (the newest `max_records`) and counters over all of them."""

    def __init__(self, max_records: int = 1_000_000) -> None:
        self.messages: deque[MessageRecord] = deque(maxlen=max_records)
        self.total = 0
        self.rejected = 0
        self.duplicates = 0
        self.async_failed = 0
        self.timeouts = 0
        self.node_reads = 0  # GETs of the phone number's node: what clients probe reachability with
        self.by_recipient: Counter[str] = Counter()
        self.by_template: Counter[str] = Counter()
        self.by_code: Counter[str] = Counter()
        self._callback_counts: Counter[str] = Counter()
        self.started_at = time.time()

    def accept(self, record: MessageRecord) -> None:
        self.messages.append(record)
        self.total += 1
        if record.failed_code is not None:
            self.async_failed += 1
            self.by_code[str(record.failed_code)] += 1
        self.by_recipient[record.wa_id] += 1
        if record.template_name is not None:
            self.by_template[record.template_name] += 1
        key = record.biz_opaque_callback_data
        if key is not None:
            self._callback_counts[key] += 1
            if self._callback_counts[key] > 1:
                self.duplicates += 1

    def reject(self, code: int | str) -> None:
        self.rejected += 1
        self.by_code[str(code)] += 1

    def stats(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "delivered": self.total - self.async_failed,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "duplicate_keys": {k: n for k, n in self._callback_counts.items() if n > 1},
            "async_failed": self.async_failed,
            "timeouts": self.timeouts,
            "node_reads": self.node_reads,
            "by_recipient": dict(self.by_recipient),
            "by_template": dict(self.by_template),
            "by_code": dict(self.by_code),
            "since": self.started_at,
        }

    def query(self, filters: dict[str, str], limit: int = 1000, offset: int = 0) -> dict[str, Any]:
        """Accepted messages, oldest first, where every given field equals the given value."""
        unknown = set(filters) - set(_FILTERS)
        if unknown:
            raise ValueError(f"unknown filters {sorted(unknown)}; known: {list(_FILTERS)}")
        rows = [m for m in self.messages if all(getattr(m, k) == v for k, v in filters.items())]
        return {"count": len(rows), "data": [m.public() for m in rows[offset : offset + limit]]}

"""Grouping webhook updates into bodies, the ways Meta groups them.

Meta puts up to 1,000 updates in one POST, and the same update may come again later grouped
with others (a re-batch). A receiver must therefore be idempotent per update, not per body. The
layouts here make every grouping a receiver can meet:

- merged: updates of the same field and business number share one change (several `statuses`,
  or `messages` with their `contacts`); template events, one per change; all in one entry;
- changes: one change per update, all in one entry;
- entries: one entry per update, one change each;
- mixed: one of the above per body, drawn from the sender's seeded RNG.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Sequence
from typing import Any

from notify_pipeline.emulator.webhook_payloads import Update

LAYOUTS = ("merged", "changes", "entries")
# The lists a merged change concatenates, per field; other fields carry one item per change.
_MERGEABLE = {
    "messages": ("contacts", "messages", "statuses", "errors"),
    "user_preferences": ("contacts", "user_preferences"),
}


def encode(body: dict[str, Any]) -> bytes:
    """The bytes to post: compact ASCII with \\u escapes, and "/" escaped as Meta's JSON does.

    Escaping "/" (valid JSON, and what Meta sends) catches receivers that verify the signature
    over a re-serialised body instead of the raw bytes.
    """
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode()


def compose(waba_id: str, updates: Sequence[Update], layout: str, rng: random.Random | None = None) -> dict:
    """One webhook body holding `updates`, in order."""
    if layout == "mixed":
        layout = (rng or random.Random()).choice(LAYOUTS)
    if layout == "entries":
        entries = [_entry(waba_id, [u], [_change(u)]) for u in updates]
    elif layout == "changes":
        entries = [_entry(waba_id, updates, [_change(u) for u in updates])]
    else:
        entries = [_entry(waba_id, updates, _merged(updates))]
    return {"object": "whatsapp_business_account", "entry": entries}


def split(updates: Sequence[Update], size: int) -> list[list[Update]]:
    return [list(updates[start : start + size]) for start in range(0, len(updates), size)]


def _entry(waba_id: str, updates: Sequence[Update], changes: list[dict]) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": waba_id}
    times = [u.time for u in updates if u.time is not None]
    if times:
        entry["time"] = max(times)
    entry["changes"] = changes
    return entry


def _change(update: Update) -> dict[str, Any]:
    return {"value": copy.deepcopy(update.value), "field": update.field}


def _merged(updates: Sequence[Update]) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = []
    open_changes: dict[tuple[str, str], dict[str, Any]] = {}
    for update in updates:
        keys = _MERGEABLE.get(update.field)
        group = (update.field, json.dumps(update.value.get("metadata"), sort_keys=True))
        target = open_changes.get(group) if keys else None
        if target is None:
            change = _change(update)
            changes.append(change)
            if keys:
                open_changes[group] = change
            continue
        value = target["value"]
        for key in keys:
            for item in update.value.get(key, ()):
                if key == "contacts" and any(c.get("wa_id") == item.get("wa_id") for c in value.get(key, ())):
                    continue  # one contact per user, however many of their messages
                value.setdefault(key, []).append(copy.deepcopy(item))
    return changes

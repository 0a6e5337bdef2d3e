"""Fault injection: rules that make some sends fail the ways Meta (or the path to it) fails.

Rules are checked in order and the first that matches applies. Each rule draws from its own
seeded RNG, and only for requests its filters select, so a given sequence of requests meets the
same faults on every run.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from notify_pipeline.emulator.answers import MetaAPIError
from notify_pipeline.emulator.envelope import SendRequest
from notify_pipeline.whatsapp import errors

MODES = ("error", "timeout", "non_json", "async")


@dataclass
class FaultRule:
    """One rule. `mode` says how the fault shows:

    - error: the POST gets Meta's error body for `code` (HTTP status from errors.py or `http_status`);
    - async: the POST gets 200 and a wamid, then a `failed` status webhook carries `code`;
    - non_json: the POST gets `http_status` (default 503) with `body` (default: HTML for 5xx, empty otherwise);
    - timeout: the request is held `hold_s` seconds, or until the client hangs up. With `accepted`
      the message counts as sent all the same (Meta took it; the client never heard), and a client
      still waiting gets the success body; otherwise it gets `code`'s error (default 131000).

    With `whole_api` (modes error and non_json, no recipient or template filter) the rule also
    answers GETs of the phone number's node, which clients probe for reachability: an outage of
    the whole API rather than of sending alone.
    """

    mode: str = "error"
    code: int | None = None
    share: float = 1.0
    recipients: list[str] | None = None  # wa_ids (digits); any notation of `to` matches
    templates: list[str] | None = None  # template names; free-form messages never match
    max_count: int | None = None
    http_status: int | None = None
    details: str | None = None
    title: str | None = None  # for codes errors.py does not know
    hold_s: float = 60.0
    accepted: bool = False
    body: str | None = None
    content_type: str | None = None
    whole_api: bool = False
    seed: int | None = None
    id: int = 0
    hits: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def error(self) -> MetaAPIError:
        code = self.code if self.code is not None else 131000
        details = self.details or f"Injected fault (rule {self.id})."
        return MetaAPIError(code, details, http_status=self.http_status, title=self.title)

    def public(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _PUBLIC}

    def matches(self, request: SendRequest) -> bool:
        if not self._has_room():
            return False
        if self.recipients is not None and request.wa_id not in self.recipients:
            return False
        if self.templates is not None and request.template_name not in self.templates:
            return False
        return self._drawn()

    def matches_node_read(self) -> bool:
        """Whether this rule answers a GET of the phone number's node (see `whole_api`)."""
        return self.whole_api and self._has_room() and self._drawn()

    def _has_room(self) -> bool:
        return self.max_count is None or self.hits < self.max_count

    def _drawn(self) -> bool:
        return self.share >= 1.0 or self._rng.random() < self.share


_PUBLIC = (
    "id", "mode", "code", "share", "recipients", "templates", "max_count", "http_status", "details",
    "title", "hold_s", "accepted", "body", "content_type", "whole_api", "seed", "hits",
)  # fmt: skip
_SETTABLE = frozenset(_PUBLIC) - {"id", "hits"}


class FaultBook:
    """The active rules, in order."""

    def __init__(self, default_seed: int = 0) -> None:
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._default_seed = default_seed

    def __bool__(self) -> bool:
        return bool(self._rules)

    def add(self, spec: dict[str, Any]) -> FaultRule:
        """Validate a rule given as JSON and append it; ValueError says what is wrong."""
        rule = _build(spec)
        rule.id = next(self._ids)
        seed = rule.seed if rule.seed is not None else self._default_seed * 1_000_003 + rule.id
        rule._rng = random.Random(seed)
        self._rules.append(rule)
        return rule

    def match(self, request: SendRequest) -> FaultRule | None:
        for rule in self._rules:
            if rule.matches(request):
                rule.hits += 1
                return rule
        return None

    def match_node_read(self) -> FaultRule | None:
        """The first `whole_api` rule that answers a GET of the phone number's node, if any."""
        for rule in self._rules:
            if rule.matches_node_read():
                rule.hits += 1
                return rule
        return None

    def all(self) -> list[FaultRule]:
        return list(self._rules)

    def remove(self, rule_id: int) -> bool:
        before = len(self._rules)
        self._rules = [r for r in self._rules if r.id != rule_id]
        return len(self._rules) < before

    def clear(self) -> int:
        count = len(self._rules)
        self._rules.clear()
        return count


def _build(spec: Any) -> FaultRule:
    if not isinstance(spec, dict):
        raise ValueError("a fault rule must be a JSON object")
    unknown = set(spec) - _SETTABLE
    if unknown:
        raise ValueError(f"unknown fault rule fields {sorted(unknown)}; known: {sorted(_SETTABLE)}")
    rule = FaultRule(**spec)
    if rule.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if rule.mode in ("error", "async") and rule.code is None:
        raise ValueError(f"mode {rule.mode} needs a code")
    if rule.code is not None:
        if not isinstance(rule.code, int) or isinstance(rule.code, bool):
            raise ValueError("code must be an integer")
        if errors.lookup(rule.code) is None and (rule.title is None or rule.http_status is None):
            raise ValueError(
                f"code {rule.code} is not in notify_pipeline/whatsapp/errors.py; give title and http_status"
            )
    if not isinstance(rule.share, int | float) or not 0 <= rule.share <= 1:
        raise ValueError("share must be a number from 0 to 1")
    if rule.http_status is not None and not (
        isinstance(rule.http_status, int) and 100 <= rule.http_status <= 599
    ):
        raise ValueError("http_status must be an HTTP status code")
    if rule.mode == "non_json" and rule.http_status is None:
        rule.http_status = 503
    if rule.max_count is not None and (not isinstance(rule.max_count, int) or rule.max_count < 0):
        raise ValueError("max_count must be a non-negative integer")
    if not isinstance(rule.hold_s, int | float) or rule.hold_s < 0:
        raise ValueError("hold_s must be a non-negative number of seconds")
    for key in ("recipients", "templates"):
        value = getattr(rule, key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise ValueError(f"{key} must be a list of strings")
    if not isinstance(rule.whole_api, bool):
        raise ValueError("whole_api must be true or false")
    if rule.whole_api and (
        rule.mode not in ("error", "non_json") or rule.recipients is not None or rule.templates is not None
    ):
        raise ValueError(
            "whole_api needs mode error or non_json and no recipients or templates: it is an outage "
            "of the whole API"
        )
    if rule.recipients is not None:
        rule.recipients = ["".join(ch for ch in r if ch.isdigit()) for r in rule.recipients]
    return rule

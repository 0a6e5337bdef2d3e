"""Opt-out and opt-in keywords in users' replies (STOP, UNSUBSCRIBE ... START): case, spacing and
trailing punctuation ignored. Configurable with NOTIFY_OPT_OUT_KEYWORDS / NOTIFY_OPT_IN_KEYWORDS
(comma-separated)."""

from __future__ import annotations

import os
import re

DEFAULT_OPT_OUT = ("STOP", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPT OUT", "OPTOUT")
DEFAULT_OPT_IN = ("START", "UNSTOP", "SUBSCRIBE", "OPT IN", "OPTIN")


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text).upper().split())


def _configured(name: str, default: tuple[str, ...]) -> frozenset[str]:
    raw = os.environ.get(name, "").strip()
    words = [w for w in raw.split(",")] if raw else list(default)
    return frozenset(n for w in words if (n := normalise(w)))


def classify(text: str | None) -> str | None:
    """'opt_out', 'opt_in' or None for a reply's text."""
    if not text:
        return None
    said = normalise(text)
    if said in _configured("NOTIFY_OPT_OUT_KEYWORDS", DEFAULT_OPT_OUT):
        return "opt_out"
    if said in _configured("NOTIFY_OPT_IN_KEYWORDS", DEFAULT_OPT_IN):
        return "opt_in"
    return None

"""What a condition concludes (a Verdict), and the number formats alert text shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Verdict:
    breached: bool
    headline: str  # one line: what is wrong (or why all is well), with the numbers
    facts: tuple[str, ...] = ()  # breakdowns worth a line each
    first_check: str = ""  # the first thing an operator should look at
    numbers: dict[str, Any] = field(default_factory=dict)  # recorded in alerts.details


def duration(seconds: float | None) -> str:
    """12 s, 5 min, 2 h 5 min, 3 d 4 h: short enough for a chat line."""
    if seconds is None:
        return "never"
    s = round(seconds)
    if s < 120:
        return f"{s} s"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if hours < 2:
        return f"{minutes} min"
    if days < 2:
        return f"{hours} h {minutes % 60} min" if minutes % 60 else f"{hours} h"
    return f"{days} d {hours % 24} h"


def pct(rate: float) -> str:
    return f"{100 * rate:.1f}%"

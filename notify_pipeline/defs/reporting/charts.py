"""Small charts for asset metadata, drawn as Markdown tables with bar characters.

The Dagster UI renders Markdown metadata (MetadataValue.md) but no images or chart specs, so a
bar is a run of block characters: eighths of a block give a smooth end, and each row also shows
its number, so the chart reads correctly when copied as text.
"""

from __future__ import annotations

from collections.abc import Sequence

WIDTH = 24  # characters of the longest bar
_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float, top: float, width: int = WIDTH) -> str:
    """A bar of `value` on a scale where `top` fills `width` characters (empty for 0)."""
    if top <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / top * width * 8))
    full, rest = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")


def bar_chart(
    title: tuple[str, str], rows: Sequence[tuple[str, float, str]], *, top: float | None = None
) -> str:
    """A Markdown table: label | bar | shown value. `rows` are (label, value, text of the value);
    `top` is the value of a full bar (default: the largest value)."""
    if not rows:
        return "nothing to chart"
    scale = top if top is not None else max(value for _, value, _ in rows)
    lines = [f"| {title[0]} | | {title[1]} |", "| --- | --- | ---: |"]
    lines += [f"| {label} | {bar(value, scale)} | {text} |" for label, value, text in rows]
    return "\n".join(lines)


def sends_per_hour(counts: dict[int, int]) -> str:
    """Messages sent per local hour, 24 rows (hours without sends show an empty bar)."""
    rows = [(f"{hour:02d}:00", float(counts.get(hour, 0)), str(counts.get(hour, 0))) for hour in range(24)]
    if not any(value for _, value, _ in rows):
        return "nothing sent"
    return bar_chart(("hour", "sent"), rows)


def failure_rate_by_domain(rates: dict[str, float | None], warn_above: float) -> str:
    """Failure rate per domain, worst first; a bar fills at 100 %, and ⚠ marks rates above the
    warning threshold."""
    known = sorted(((d, r) for d, r in rates.items() if r is not None), key=lambda item: (-item[1], item[0]))
    rows = [(f"{domain}{' ⚠' if rate > warn_above else ''}", rate, f"{rate:.1%}") for domain, rate in known]
    return bar_chart(("domain", "failure rate"), rows, top=1.0) if rows else "nothing finished"

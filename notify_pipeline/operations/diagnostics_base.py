"""What every diagnostic report shares: the typed result, input checks, masking and the renderers
(plain-text tables for the CLI, Markdown for Dagster metadata)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

MAX_HOURS = 24 * 366
MAX_LIMIT = 1000
# The look-back window on created_at, for queries that take %(hours)s.
SINCE = "created_at > now() - %(hours)s::float8 * interval '1 hour'"


class DiagnosticsError(ValueError):
    """Input an operator can fix: an unknown template or correlation id, a bad window or limit."""


@dataclass(frozen=True)
class Table:
    """One table of a report; every row has the keys in `columns`."""

    title: str
    columns: tuple[str, ...]
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    tables: tuple[Table, ...]
    notes: tuple[str, ...] = ()
    # The report's headline numbers for scripts (`diagnose ... --json`), e.g. the failure figures.
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The main (first) table's rows."""
        return self.tables[0].rows

    def as_dict(self) -> dict[str, Any]:
        """Machine-readable, with the same (masked) cells the tables show."""
        return {
            "report": self.name,
            "title": self.title,
            "figures": self.figures,
            "tables": [
                {
                    "title": t.title,
                    "columns": list(t.columns),
                    "rows": [{c: r.get(c) for c in t.columns} for r in t.rows],
                }
                for t in self.tables
            ],
            "notes": list(self.notes),
        }


def to_json(report: Report) -> str:
    """The report as JSON: times in ISO 8601 (UTC), decimals as numbers."""
    return json.dumps(report.as_dict(), indent=2, default=_json_value)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def check_hours(hours: float) -> float:
    if isinstance(hours, bool) or not isinstance(hours, int | float) or math.isnan(hours):
        raise DiagnosticsError(f"window {hours!r} is not a number of hours")
    if not 0 < hours <= MAX_HOURS:
        raise DiagnosticsError(
            f"window of {hours:g} hours: give more than 0 and at most {MAX_HOURS} (a year)"
        )
    return float(hours)


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise DiagnosticsError(f"limit {limit!r}: give a whole number from 1 to {MAX_LIMIT}")
    return limit


def fetch(conn: psycopg.Connection, query: str, params: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def _cell(value: Any, width: int | None) -> str:
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, datetime):
        text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    elif isinstance(value, float):
        text = f"{value:.1f}"
    else:
        text = " ".join(str(value).split())
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def _text_table(table: Table, width: int) -> str:
    last = len(table.columns) - 1
    cells = [list(table.columns)] + [
        [_cell(r.get(c), None if i == last else width) for i, c in enumerate(table.columns)]
        for r in table.rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(report: Report, width: int = 60) -> str:
    """The report as plain-text tables for the CLI: cells cut at `width` characters, except in the
    last column (where reports put what must be read in full, such as the fix)."""
    parts = [report.title, "=" * len(report.title)]
    for table in report.tables:
        if table.title:
            parts += ["", table.title]
        parts.append(_text_table(table, width) if table.rows else "  (none)")
    parts += [""] * bool(report.notes) + [f"- {note}" for note in report.notes]
    return "\n".join(parts)


def render_markdown(report: Report) -> str:
    """The report as Markdown (dg.MetadataValue.md), cells in full."""

    def cell(value: Any) -> str:
        return _cell(value, None).replace("|", "\\|")

    parts = [f"### {report.title}"]
    for table in report.tables:
        if table.title:
            parts.append(f"**{table.title}**")
        if not table.rows:
            parts.append("_none_")
            continue
        lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
        lines += ["| " + " | ".join(cell(r.get(c)) for c in table.columns) + " |" for r in table.rows]
        parts.append("\n".join(lines))
    parts += [f"- {cell(note)}" for note in report.notes]
    return "\n\n".join(parts)

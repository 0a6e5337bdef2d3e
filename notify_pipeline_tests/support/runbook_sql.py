"""Reads the SQL statements out of the operations runbook, with the heading each stands under."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Statement:
    heading: str
    sql: str

    @property
    def verb(self) -> str:
        return self.sql.split(None, 1)[0].upper()


def split_statements(block: str) -> list[str]:
    """Split SQL on ';' outside quotes and comments; drop comment-only pieces."""
    statements, current, i, quote = [], [], 0, None
    while i < len(block):
        char = block[i]
        if quote:
            current.append(char)
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
            current.append(char)
        elif block.startswith("--", i):
            end = block.find("\n", i)
            i = len(block) if end == -1 else end
            continue
        elif char == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    statements.append("".join(current))
    return [text.strip() for text in statements if text.strip()]


def statements(path: Path) -> list[Statement]:
    found, heading, block, in_sql = [], "", [], False
    for line in path.read_text().splitlines():
        if not in_sql and line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif not in_sql and re.match(r"^```sql\s*$", line):
            in_sql, block = True, []
        elif in_sql and line.startswith("```"):
            in_sql = False
            found.extend(Statement(heading, sql) for sql in split_statements("\n".join(block)))
        elif in_sql:
            block.append(line)
    return found


def find(all_statements: list[Statement], heading: str, contains: str = "") -> Statement:
    matches = [s for s in all_statements if heading.lower() in s.heading.lower() and contains in s.sql]
    assert len(matches) == 1, f"expected one runbook statement under {heading!r} with {contains!r}: {matches}"
    return matches[0]

"""The engine's SQL statements, by name, read once at import from queries.sql beside this module.

Call sites read a statement as an attribute (`queries.claim_batch`); STATEMENTS holds them all. A
name the file does not define raises AttributeError at the line that asks for it, and a file with
a duplicate, empty or malformed name, or a name without a statement, fails the import, naming the
file and line.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

SQL_FILE = Path(__file__).with_name("queries.sql")

_HEADER = re.compile(r"--\s*name:(.*)$")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


class QueryFileError(ValueError):
    """queries.sql cannot be read as named statements; the message names the file and line."""


def parse(text: str, source: str = str(SQL_FILE)) -> dict[str, str]:
    """name -> statement text. A statement runs from its `-- name:` line to the next one; whole-line
    comments are dropped (they explain, they do not run), the rest is kept as written."""
    statements: dict[str, str] = {}
    lines_of: dict[str, list[str]] = {}
    where: dict[str, int] = {}
    current: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line.strip())
        if header:
            name = header.group(1).strip()
            if not _NAME.fullmatch(name):
                problem = "an empty name" if not name else f"the name {name!r} is not snake_case"
                raise QueryFileError(f"{source}:{number}: {problem}")
            if name in where:
                raise QueryFileError(
                    f"{source}:{number}: {name} is defined again (first at line {where[name]})"
                )
            current, where[name], lines_of[name] = name, number, []
        elif line.lstrip().startswith("--"):
            continue
        elif current is not None:
            lines_of[current].append(line)
        elif line.strip():
            raise QueryFileError(f"{source}:{number}: SQL before the first `-- name:` line")
    for name, lines in lines_of.items():
        statement = "\n".join(lines).strip()
        if not statement:
            raise QueryFileError(f"{source}:{where[name]}: {name} has no statement")
        statements[name] = statement
    return statements


STATEMENTS = MappingProxyType(parse(SQL_FILE.read_text(encoding="utf-8")))


def __getattr__(name: str) -> str:
    # Module attributes are the statements (PEP 562), so a call site reads `queries.claim_batch`.
    try:
        return STATEMENTS[name]
    except KeyError:
        raise AttributeError(f"{SQL_FILE.name} has no statement named {name!r}") from None

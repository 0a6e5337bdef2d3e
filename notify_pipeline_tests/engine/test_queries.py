"""The engine's named statements (engine/queries.sql, read by engine/queries.py).

Each name is used by some engine module and every name used exists; each statement prepares on a
migrated database; the loader refuses a malformed file, naming the line; and no SQL is left in the
engine's Python except the one statement built from an operator's filters (retry_failed).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from notify_pipeline.engine import queries
from notify_pipeline.engine.queries import STATEMENTS, QueryFileError, parse
from notify_pipeline.engine.row_json import MAX_DEPTH

ENGINE = Path(queries.__file__).parent
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s")
_SQL_WORDS = re.compile(r"SELECT |UPDATE |INSERT INTO|DELETE FROM")
# Where SQL may still sit in a string: retry_failed's WHERE clause and its left-alone reason are
# assembled from the filters the operator gave, so no one fixed text could be named for them.
DYNAMIC_SQL = {("operations.py", "_left_reason"), ("operations.py", "retry_failed")}
# What psycopg sends that the server cannot infer from the statement alone: sweep_locks passes a
# timedelta (an interval); left unknown, `now() - $1` would be read as timestamptz - timestamptz.
PARAMETER_TYPES = {"sweep_stale_locks": ["interval"]}


def engine_sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(ENGINE.glob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def names_used() -> set[str]:
    """Every `queries.<name>` the engine's modules read."""
    return {
        node.attr
        for path, tree in engine_sources()
        if path.name != "queries.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "queries"
    }


def test_every_statement_is_used_and_every_name_used_exists() -> None:
    used = names_used()
    assert sorted(set(STATEMENTS) - used) == [], "statements in queries.sql no engine module runs"
    assert sorted(used - set(STATEMENTS)) == [], "names the engine reads that queries.sql lacks"


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no statement named 'no_such_statement'"):
        _ = queries.no_such_statement


def test_claim_flags_payloads_deeper_than_max_depth() -> None:
    # The jsonpath's depth is written in the SQL so a reader sees what runs; it must stay one more
    # than the depth row_json.py reports.
    assert f"'strict $.**{{{MAX_DEPTH + 1}}}'" in queries.claim_batch


def as_prepared(name: str, statement: str) -> str:
    """PREPARE text for a statement: psycopg's placeholders as $n (a repeated name is one
    parameter, as psycopg sends it), with a type only where the server cannot infer it."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        key = match.group(1) or f"#{len(numbers)}"
        return f"${numbers.setdefault(key, len(numbers) + 1)}"

    body = _PLACEHOLDER.sub(number, statement)
    given = PARAMETER_TYPES.get(name, [])
    types = ", ".join([*given, *["unknown"] * (len(numbers) - len(given))])
    return f"PREPARE {name} ({types}) AS {body}" if types else f"PREPARE {name} AS {body}"


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_statement_prepares_on_the_migrated_schema(db: psycopg.Connection, name: str) -> None:
    # PREPARE parses and analyses the statement against the schema (tables, columns, functions,
    # types) without planning or running it, so the writes need no sample rows and change nothing.
    db.execute(as_prepared(name, STATEMENTS[name]))
    db.execute(f"DEALLOCATE {name}")


def sql_in_strings(path: Path, tree: ast.Module) -> Iterator[tuple[str, str, int]]:
    """(file, enclosing function, line) of each string literal holding SQL, docstrings left out."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and ast.get_docstring(node, clean=False) is not None
    }

    def visit(node: ast.AST, function: str) -> Iterator[tuple[str, str, int]]:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and _SQL_WORDS.search(node.value)
        ):
            yield path.name, function, node.lineno
        for child in ast.iter_child_nodes(node):
            yield from visit(child, function)

    yield from visit(tree, "")


def test_no_sql_left_in_the_engine_code() -> None:
    found = [hit for path, tree in engine_sources() for hit in sql_in_strings(path, tree)]
    assert [hit for hit in found if hit[:2] not in DYNAMIC_SQL] == [], "SQL belongs in queries.sql"
    assert {hit[:2] for hit in found} == DYNAMIC_SQL, (
        "a documented dynamic statement moved: update DYNAMIC_SQL"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n", r"x\.sql:3: a is defined again \(first at line 1\)"),
        ("-- name:\nSELECT 1\n", r"x\.sql:1: an empty name"),
        ("-- name: Claim Batch\nSELECT 1\n", r"x\.sql:1: the name 'Claim Batch' is not snake_case"),
        ("-- name: a\nSELECT 1\n\n-- name: b\n-- only a comment\n", r"x\.sql:4: b has no statement"),
        ("-- why\nSELECT 1\n-- name: a\nSELECT 2\n", r"x\.sql:2: SQL before the first"),
    ],
)
def test_a_malformed_file_names_its_line(text: str, problem: str) -> None:
    with pytest.raises(QueryFileError, match=problem):
        parse(text, "x.sql")


def test_comments_are_left_out_of_the_statement() -> None:
    text = "-- name: a\n-- 100% of rows\nSELECT 1\n  -- indented\n  FROM t\n\n-- name: b\nSELECT %(x)s\n"
    assert parse(text, "x.sql") == {"a": "SELECT 1\n  FROM t", "b": "SELECT %(x)s"}

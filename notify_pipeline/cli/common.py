"""What every `notify-pipeline` command shares: OperatorError (one line on stderr, exit code 2,
secrets scrubbed), the queue database (its URL and a connection), and option types that refuse nan,
infinities, out-of-range numbers and blank reasons with that one line instead of a traceback or a
usage screen. The command modules import this one and never each other."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
import psycopg

from notify_pipeline import redact
from notify_pipeline.db import urls
from notify_pipeline.db.connect import connect
from notify_pipeline.db.errors import first_line

MAX_REASON_CHARS = 500
T = TypeVar("T")


class OperatorError(click.ClickException):
    """An error the operator can fix: printed as one line (one per problem), exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        for line in redact.scrub(self.format_message()).splitlines() or [""]:
            click.echo(f"notify-pipeline: {line}", err=True)


def unreachable(exc: BaseException, hint: str = "") -> OperatorError:
    """The one line for a queue database that does not answer."""
    return OperatorError(f"cannot reach the queue database: {first_line(exc)}{hint}")


@contextmanager
def as_operator_error(*kinds: type[Exception]) -> Iterator[None]:
    """The product's own refusals (bad input, an unknown contact, a migration that cannot run)
    become OperatorError: their text is already written for the operator."""
    try:
        yield
    except kinds as exc:
        raise OperatorError(str(exc)) from exc


def queue_url() -> str:
    """The queue database URL in use (NOTIFY_DATABASE_URL, else the embedded server, started now)."""
    from notify_pipeline.db.embedded import EmbeddedPostgresError
    from notify_pipeline.db.location import queue_database_url

    try:
        return queue_database_url()
    except (EmbeddedPostgresError, urls.DatabaseUrlError) as exc:
        raise OperatorError(str(exc)) from exc
    except Exception as exc:  # psycopg.OperationalError while creating the embedded database
        raise unreachable(exc) from exc


@contextmanager
def queue_connection(actor: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the queue database, its actor `cli:<actor>` in the audit log."""
    url = queue_url()
    try:
        with connect(url, actor=f"cli:{actor}", autocommit=True) as conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise unreachable(exc) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise OperatorError("the queue database is not migrated: run `notify-pipeline db upgrade`") from exc


def on_queue(
    actor: str,
    action: Callable[..., T],
    *args: Any,
    refused: type[Exception] | tuple[type[Exception], ...] = (),
    **kwargs: Any,
) -> T:
    """`action(conn, *args, **kwargs)` on a queue connection (see queue_connection); the `refused`
    errors, the action's own refusals of bad input, end as one line."""
    kinds = refused if isinstance(refused, tuple) else (refused,)
    with queue_connection(actor) as conn, as_operator_error(*kinds):
        return action(conn, *args, **kwargs)


def shown_default(name: str, kind: Any, default: Any, help: str, **attrs: Any) -> Callable[..., Any]:
    """An option whose default --help shows."""
    return click.option(name, type=kind, default=default, show_default=True, help=help, **attrs)


def _option_name(param: click.Parameter | None) -> str:
    if param is None:
        return "the value"
    opts = getattr(param, "opts", None) or []
    return max(opts, key=len) if opts else (param.name or "the value")


def _plain(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class Number(click.ParamType):
    """A finite int or float within [lo, hi] (lo excluded when lo_open); `note` explains a bound."""

    def __init__(
        self,
        kind: type = float,
        lo: float | None = None,
        hi: float | None = None,
        *,
        lo_open: bool = False,
        note: str = "",
    ) -> None:
        self.kind, self.lo, self.hi, self.lo_open, self.note = kind, lo, hi, lo_open, note
        self.name = "integer" if kind is int else "number"

    def _range(self) -> str:
        lo, hi = _plain(self.lo), _plain(self.hi)
        if self.lo is not None and self.hi is not None:
            return f"more than {lo} and at most {hi}" if self.lo_open else f"from {lo} to {hi}"
        if self.lo is not None:
            return f"more than {lo}" if self.lo_open else f"at least {lo}"
        return f"at most {hi}" if self.hi is not None else "finite"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        what = "whole number" if self.kind is int else "number"
        problem = (
            f"{_option_name(param)} must be a {what} {self._range()}{self.note}, not {str(value)[:40]!r}"
        )
        if isinstance(value, bool):
            raise OperatorError(problem)
        try:
            number = self.kind(value) if self.kind is int else float(value)
        except (TypeError, ValueError, OverflowError):
            raise OperatorError(problem) from None
        if not math.isfinite(number):
            raise OperatorError(problem)
        too_low = self.lo is not None and (number <= self.lo if self.lo_open else number < self.lo)
        if too_low or (self.hi is not None and number > self.hi):
            raise OperatorError(problem)
        return number


class Reason(click.ParamType):
    """A reason recorded with an operator's action: one non-blank line of at most 500 characters."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        name = _option_name(param)
        if not text:
            raise OperatorError(f"{name} must say why (it is recorded), e.g. {name} 'maintenance window'")
        if len(text) > MAX_REASON_CHARS or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
            raise OperatorError(f"{name} must be one line of at most {MAX_REASON_CHARS} characters")
        return text


PORT = Number(int, 1, 65535)

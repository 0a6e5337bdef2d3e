"""What every `notify-pipeline` command shares for bad input: OperatorError (one line on stderr,
exit code 2, secrets scrubbed) and option types that refuse nan, infinities, out-of-range numbers
and blank reasons with that one line instead of a traceback or a usage screen."""

from __future__ import annotations

import math
from typing import Any

import click

from notify_pipeline import redact

MAX_REASON_CHARS = 500


class OperatorError(click.ClickException):
    """An error the operator can fix: printed as one line (one per problem), exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        for line in redact.scrub(self.format_message()).splitlines() or [""]:
            click.echo(f"notify-pipeline: {line}", err=True)


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

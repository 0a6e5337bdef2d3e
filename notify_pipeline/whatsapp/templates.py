"""Template definitions (as Meta's message_templates endpoint returns them) against send payloads.

One place knows how many parameters each component of a template takes, so the engine can refuse
a bad request before any HTTP call, and the emulator answers 132000 exactly as it would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


@dataclass(frozen=True)
class ExpectedParameters:
    """Placeholders per component: names in order ('1', '2', ... for positional templates)."""

    named: bool = False
    header: tuple[str, ...] = ()
    header_media: str | None = None  # image | video | document | location, when the header is media
    body: tuple[str, ...] = ()
    buttons: dict[int, tuple[str, ...]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        media = 1 if self.header_media else 0
        return media + len(self.header) + len(self.body) + sum(len(names) for names in self.buttons.values())


def _placeholders(text: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(PLACEHOLDER.findall(text or "")))


def expected_parameters(definition: Mapping[str, Any]) -> ExpectedParameters:
    header: tuple[str, ...] = ()
    header_media = None
    body: tuple[str, ...] = ()
    buttons: dict[int, tuple[str, ...]] = {}
    for component in definition.get("components") or []:
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            fmt = str(component.get("format", "TEXT")).upper()
            if fmt == "TEXT":
                header = _placeholders(component.get("text"))
            else:
                header_media = fmt.lower() if fmt != "GIF" else "video"
        elif kind == "BODY":
            body = _placeholders(component.get("text"))
        elif kind == "BUTTONS":
            for index, button in enumerate(component.get("buttons") or []):
                names = _placeholders(button.get("url")) if str(button.get("type")).upper() == "URL" else ()
                if names:
                    buttons[index] = names
    return ExpectedParameters(
        named=str(definition.get("parameter_format", "POSITIONAL")).upper() == "NAMED",
        header=header,
        header_media=header_media,
        body=body,
        buttons=buttons,
    )


def _count_problem(where: str, given: int, expected: int) -> str:
    return f"{where}: number of localizable_params ({given}) does not match the expected number of params ({expected})"


def _named_problem(where: str, given: Sequence[Mapping[str, Any]], expected: tuple[str, ...]) -> str | None:
    names = [parameter.get("parameter_name") for parameter in given]
    missing = [name for name in expected if name not in names]
    unknown = [name for name in names if name not in expected]
    if missing or unknown:
        parts = [
            f"missing {', '.join(missing)}" if missing else "",
            f"unknown {', '.join(map(str, unknown))}" if unknown else "",
        ]
        return f"{where}: named parameters do not match the template ({'; '.join(p for p in parts if p)})"
    return None


def parameter_problems(
    definition: Mapping[str, Any], components: Sequence[Mapping[str, Any]] | None
) -> list[str]:
    """Why a send's components do not fit the template (Meta's 132000 details); empty when they fit."""
    expected = expected_parameters(definition)
    given: dict[str, list[Mapping[str, Any]]] = {"header": [], "body": []}
    given_buttons: dict[int, list[Mapping[str, Any]]] = {}
    for component in components or []:
        kind = str(component.get("type", "")).lower()
        parameters = list(component.get("parameters") or [])
        if kind == "button":
            try:
                given_buttons[int(component.get("index", -1))] = parameters
            except (TypeError, ValueError):
                given_buttons[-1] = parameters
        elif kind in given:
            given[kind] = parameters
    problems = []
    header_expected = 1 if expected.header_media else len(expected.header)
    if len(given["header"]) != header_expected:
        problems.append(_count_problem("header", len(given["header"]), header_expected))
    if len(given["body"]) != len(expected.body):
        problems.append(_count_problem("body", len(given["body"]), len(expected.body)))
    elif expected.named and expected.body:
        problem = _named_problem("body", given["body"], expected.body)
        if problem:
            problems.append(problem)
    if expected.named and expected.header and len(given["header"]) == len(expected.header):
        problem = _named_problem("header", given["header"], expected.header)
        if problem:
            problems.append(problem)
    for index in sorted(set(expected.buttons) | set(given_buttons)):
        want, got = len(expected.buttons.get(index, ())), len(given_buttons.get(index, []))
        if want != got:
            problems.append(_count_problem(f"buttons[{index}]", got, want))
    return problems

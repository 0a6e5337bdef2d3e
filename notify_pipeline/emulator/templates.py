"""The emulator's template registry: definitions in Meta's message_templates shape, parsed once.

Each definition is parsed into a `TemplateSpec` (what a send must fill in) when it is added, by
notify_pipeline.whatsapp.templates, the parser the delivery engine uses too; the send path then
only compares counts and names. Our own fields (`domain` from the demo catalog, `paced`) live
beside Meta's and are never served by the Graph endpoint.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from typing import Any

from notify_pipeline.whatsapp.templates import TemplateDefinitionError, TemplateSpec, parse_spec

STATUSES = (
    "APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED", "IN_APPEAL", "FLAGGED", "REINSTATED",
    "PENDING_DELETION", "DELETED", "ARCHIVED", "UNARCHIVED", "LIMIT_EXCEEDED", "LOCKED",
)  # fmt: skip
CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
# Fields that are ours, not Meta's: kept in the registry, never served on the Graph endpoint.
PRIVATE_FIELDS = ("domain", "paced")

_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_ids = itertools.count(2_000_000_000_000_001)


@dataclass
class Template:
    """One registry entry: the definition as given, its parsed spec, and our pacing flag."""

    definition: dict[str, Any]
    spec: TemplateSpec
    paced: bool = False

    @property
    def name(self) -> str:
        return self.definition["name"]

    @property
    def language(self) -> str:
        return self.definition["language"]

    @property
    def status(self) -> str:
        return self.definition["status"]

    @property
    def category(self) -> str:
        return self.definition.get("category", "UTILITY")

    def control_view(self) -> dict[str, Any]:
        return {**self.definition, "paced": self.paced}

    def graph_view(self) -> dict[str, Any]:
        return {k: v for k, v in self.definition.items() if k not in PRIVATE_FIELDS}


class TemplateRegistry:
    """Templates by (name, language code), in the order they were added."""

    def __init__(self, definitions: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
        self._by_key: dict[tuple[str, str], Template] = {}
        for definition in definitions:
            self.put(definition)

    def get(self, name: str, language: str) -> Template | None:
        return self._by_key.get((name, language))

    def all(self) -> list[Template]:
        return list(self._by_key.values())

    def put(self, definition: dict[str, Any]) -> Template:
        """Add or replace one template; TemplateDefinitionError says what is wrong with it."""
        if not isinstance(definition, dict):
            raise TemplateDefinitionError("a template must be a JSON object")
        definition = copy.deepcopy(definition)
        paced = definition.pop("paced", False)
        if not isinstance(paced, bool):
            raise TemplateDefinitionError("paced must be true or false")
        name, language = definition.get("name"), definition.get("language")
        if not isinstance(name, str) or not _NAME.match(name):
            raise TemplateDefinitionError("name must match ^[a-z0-9_]+$ (at most 512 characters)")
        if not isinstance(language, str) or not language:
            raise TemplateDefinitionError("language must be a language code such as en or en_US")
        definition.setdefault("status", "APPROVED")
        definition.setdefault("category", "UTILITY")
        definition.setdefault("parameter_format", "POSITIONAL")
        definition.setdefault("components", [])
        _check_choice("status", definition["status"], STATUSES)
        _check_choice("category", definition["category"], CATEGORIES)
        _check_choice("parameter_format", definition["parameter_format"], ("POSITIONAL", "NAMED"))
        existing = self._by_key.get((name, language))
        definition.setdefault("id", existing.definition["id"] if existing else str(next(_ids)))
        template = Template(definition, parse_spec(definition), paced)
        self._by_key[(name, language)] = template
        return template

    def update(
        self, name: str, language: str, status: str | None = None, paced: bool | None = None
    ) -> Template:
        """Change a template's status or pacing at run time; KeyError when it does not exist."""
        template = self._by_key[(name, language)]
        if status is not None:
            _check_choice("status", status, STATUSES)
            template.definition["status"] = status
        if paced is not None:
            template.paced = paced
        return template

    def remove(self, name: str, language: str) -> None:
        del self._by_key[(name, language)]


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise TemplateDefinitionError(f"{key} must be one of {', '.join(choices)}, not {value!r}")

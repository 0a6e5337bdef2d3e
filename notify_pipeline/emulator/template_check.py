"""Checks a template send against the registry, with Meta's codes and details.

The registry's own answers (unknown, paused, disabled: 132001, 132015, 132016) are here; whether
the parameters fit comes from notify_pipeline.whatsapp.templates, the check the delivery engine
runs before sending, so a send the engine lets through is one this emulator takes.
"""

from __future__ import annotations

from typing import Any

from notify_pipeline.emulator.answers import MetaAPIError
from notify_pipeline.emulator.templates import Template, TemplateRegistry
from notify_pipeline.whatsapp.templates import send_problems


def check_template_send(registry: TemplateRegistry, template: dict[str, Any]) -> Template:
    """The registry entry for a valid send; MetaAPIError (132xxx, 131008, 100) otherwise."""
    name, language = template["name"], template["language"]["code"]
    entry = registry.get(name, language)
    if entry is None or entry.status not in ("APPROVED", "PAUSED", "DISABLED"):
        raise MetaAPIError(132001, f"template name ({name}) does not exist in {language}")
    if entry.status == "PAUSED":
        raise MetaAPIError(132015, f"Template {name} ({language}) is paused because of low quality.")
    if entry.status == "DISABLED":
        raise MetaAPIError(
            132016, f"Template {name} ({language}) was paused too often and is disabled for good."
        )
    problems = send_problems(entry.spec, template.get("components", []))
    if problems:  # Meta answers one error: the first it finds
        raise MetaAPIError(problems[0].code, problems[0].details)
    return entry

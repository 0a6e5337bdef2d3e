"""Template definitions and the parameters a send must carry: the one place that knows both.

Definitions come in the shape of Meta's message_templates endpoint (UPPERCASE components: HEADER,
BODY, FOOTER, BUTTONS); sends fill them with lower-case components (header, body, button).
`parse_spec` reads a definition once; `send_problems` compares a send with it and says what Meta
would answer (code and details). The emulator answers with the first problem; the delivery engine
refuses the row before any HTTP call. One check for both, so they can never disagree.

Where Meta's exact behaviour is undocumented the check is strict rather than lenient: a sender
that passes here should pass at Meta, and the reverse matters less.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MEDIA_FORMATS = ("IMAGE", "VIDEO", "DOCUMENT", "LOCATION", "GIF")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]*)\s*\}\}")
_NAMED_KEY = re.compile(r"^[a-z_][a-z0-9_]*$")
# Send-time `sub_type` for each button type of a definition (OTP buttons are filled like URLs).
_SUB_TYPE = {
    "URL": "url", "OTP": "url", "COPY_CODE": "copy_code", "QUICK_REPLY": "quick_reply",
    "FLOW": "flow", "CATALOG": "catalog", "MPM": "mpm",
}  # fmt: skip
# The one parameter kind each button sub_type takes.
_BUTTON_PARAM = {
    "url": "text", "copy_code": "coupon_code", "quick_reply": "payload",
    "flow": "action", "catalog": "action", "mpm": "action",
}  # fmt: skip
# Buttons without variables may still carry one parameter (a custom payload or flow action).
_OPTIONAL_PARAM = ("quick_reply", "flow", "catalog", "mpm")
_MAX_CHARS = {"header": 60, "body": 1024}
# Meta refuses these in parameter values (the message would render oddly).
_BAD_TEXT = re.compile(r"[\n\t]| {5,}")
_BODY_TYPES = ("text", "currency", "date_time")


class TemplateDefinitionError(ValueError):
    """A definition that cannot be read (placeholders out of shape, unknown component type, ...)."""


@dataclass(frozen=True)
class ParameterProblem:
    """Why Meta would refuse a send: its error code (132000, 132005, ...) and its details text."""

    code: int
    details: str

    def __str__(self) -> str:
        return f"(#{self.code}) {self.details}"


@dataclass(frozen=True)
class TextSpec:
    """A header or body: its text and placeholder keys in order of first use ("1", "2" or names)."""

    text: str
    keys: tuple[str, ...]
    media: str | None = None  # a media header expects one parameter of this type instead
    # For the filled-in length without rendering: characters outside placeholders, and how
    # often each key appears.
    static_len: int = 0
    uses: dict[str, int] = field(default_factory=dict)

    def filled_len(self, values: dict[str, str]) -> int:
        total = self.static_len
        for key, count in self.uses.items():  # a plain loop: this runs on every send
            total += len(values[key]) * count
        return total


@dataclass(frozen=True)
class ButtonSpec:
    index: int
    kind: str  # URL, COPY_CODE, QUICK_REPLY, PHONE_NUMBER, ...
    params: int  # parameters a send must give for this button (dynamic URL suffix, coupon code)


@dataclass(frozen=True)
class TemplateSpec:
    """What a send must fill in for one template."""

    named: bool
    header: TextSpec | None
    body: TextSpec | None
    buttons: dict[int, ButtonSpec] = field(default_factory=dict)


def parse_spec(definition: Mapping[str, Any]) -> TemplateSpec:
    """What a send must fill in, from a definition; TemplateDefinitionError when it cannot be read."""
    named = str(definition.get("parameter_format") or "POSITIONAL").upper() == "NAMED"
    components = definition.get("components", [])
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        raise TemplateDefinitionError("components must be a list of objects")
    header = body = None
    buttons: dict[int, ButtonSpec] = {}
    for component in components:
        kind = component.get("type")
        if kind == "HEADER":
            fmt = component.get("format", "TEXT")
            if fmt in MEDIA_FORMATS:
                header = TextSpec("", (), media="IMAGE" if fmt == "GIF" else fmt)
            else:
                header = _text_spec(component.get("text", ""), named, "HEADER")
        elif kind == "BODY":
            body = _text_spec(component.get("text", ""), named, "BODY")
        elif kind == "BUTTONS":
            for index, button in enumerate(component.get("buttons") or []):
                buttons[index] = _button_spec(index, button)
        elif kind != "FOOTER":
            raise TemplateDefinitionError(f"unknown component type {kind!r} (HEADER, BODY, FOOTER, BUTTONS)")
    return TemplateSpec(named, header, body, buttons)


def _text_spec(text: Any, named: bool, where: str) -> TextSpec:
    if not isinstance(text, str):
        raise TemplateDefinitionError(f"{where}.text must be a string")
    found = _PLACEHOLDER.findall(text)
    keys = tuple(dict.fromkeys(found))
    if named:
        bad = [k for k in keys if not _NAMED_KEY.match(k)]
        if bad:
            raise TemplateDefinitionError(
                f"{where}: NAMED templates use {{{{snake_case}}}} placeholders, not {bad}"
            )
    elif sorted(keys, key=lambda k: int(k) if k.isdigit() else -1) != [
        str(i) for i in range(1, len(keys) + 1)
    ]:
        raise TemplateDefinitionError(
            f"{where}: POSITIONAL placeholders must be {{{{1}}}}..{{{{n}}}}, got {list(keys)}"
        )
    if not named:
        keys = tuple(sorted(keys, key=int))  # parameter i fills {{i+1}}, wherever it appears
    uses = {key: found.count(key) for key in keys}
    return TextSpec(text, keys, None, len(_PLACEHOLDER.sub("", text)), uses)


def _button_spec(index: int, button: Any) -> ButtonSpec:
    if not isinstance(button, dict):
        raise TemplateDefinitionError("each button must be an object")
    kind = str(button.get("type", "")).upper()
    if kind == "URL":
        params = len(_PLACEHOLDER.findall(str(button.get("url", ""))))
        if params > 1:
            raise TemplateDefinitionError("a URL button has at most one variable, {{1}}, at the end")
    elif kind in ("COPY_CODE", "OTP"):
        params = 1
    else:
        params = 0
    return ButtonSpec(index, kind, params)


# -- a send against a spec --------------------------------------------------------------------


class _Refused(Exception):
    """Raised inside one component's check; the caller turns it into a ParameterProblem."""

    def __init__(self, code: int, details: str) -> None:
        super().__init__(details)
        self.problem = ParameterProblem(code, details)


def parameter_problems(definition: Mapping[str, Any], components: Any) -> list[ParameterProblem]:
    """Why a send's `components` do not fit `definition`; empty when Meta would take them.

    TemplateDefinitionError when the definition itself cannot be read.
    """
    return send_problems(parse_spec(definition), components)


def send_problems(spec: TemplateSpec, components: Any) -> list[ParameterProblem]:
    """Problems of a send's `components` (its template['components']); empty when they fit.

    Meta answers one error, so the emulator answers the first of these. A malformed component
    list is one problem; otherwise header, body and each button are checked on their own (the
    first problem of each), so the engine can say everything that is wrong at once.
    """
    try:
        header, body, buttons = _split_components(components)
    except _Refused as refused:
        return [refused.problem]
    checks: list[tuple[Any, ...]] = [
        (_check_text, "header", spec.header, header, spec.named),
        (_check_text, "body", spec.body, body, spec.named),
    ]
    checks += [(_check_button, i, spec.buttons.get(i), *buttons[i]) for i in sorted(buttons)]
    checks += [(_missing_button, b) for i, b in spec.buttons.items() if b.params and i not in buttons]
    problems = []
    for check, *args in checks:
        try:
            check(*args)
        except _Refused as refused:
            problems.append(refused.problem)
    return problems


def _split_components(components: Any) -> tuple[list | None, list | None, dict[int, tuple[str, list]]]:
    if not isinstance(components, list):
        raise _Refused(100, "Param template['components'] must be an array.")
    header = body = None
    buttons: dict[int, tuple[str, list]] = {}
    for position, component in enumerate(components):
        where = f"template['components'][{position}]"
        if not isinstance(component, dict):
            raise _Refused(100, f"Param {where} must be an object.")
        kind, params = component.get("type"), component.get("parameters", [])
        if not isinstance(params, list):
            raise _Refused(100, f"Param {where}['parameters'] must be an array.")
        if kind in ("header", "body"):
            if (header if kind == "header" else body) is not None:
                raise _Refused(100, f"Param {where}: more than one {kind} component.")
            header, body = (params, body) if kind == "header" else (header, params)
        elif kind == "button":
            index = _button_index(component, where)
            if index in buttons:
                raise _Refused(100, f"Param {where}: more than one button component with index {index}.")
            sub_type = component.get("sub_type")
            if not isinstance(sub_type, str) or not sub_type:
                raise _Refused(131008, f"The parameter {where}['sub_type'] is required.")
            buttons[index] = (sub_type, params)
        else:
            raise _Refused(100, f"Param {where}['type'] must be one of {{header, body, button}}.")
    return header, body, buttons


def _button_index(component: dict, where: str) -> int:
    index = component.get("index")
    if index is None:
        raise _Refused(131008, f"The parameter {where}['index'] is required.")
    # Meta's examples send the index as a string; insisting on it keeps senders on the documented form.
    if not isinstance(index, str) or not index.isdigit() or int(index) > 9:
        raise _Refused(100, f'Param {where}[\'index\'] must be a string from "0" to "9".')
    return int(index)


def _count_error(where: str, got: int, expected: int) -> _Refused:
    return _Refused(
        132000,
        f"{where}: number of localizable_params ({got}) does not match the expected number of params ({expected})",
    )


def _check_text(where: str, spec: TextSpec | None, params: list | None, named: bool) -> None:
    params = params or []
    expected = 1 if spec is not None and spec.media else len(spec.keys) if spec is not None else 0
    if len(params) != expected:
        raise _count_error(where, len(params), expected)
    if spec is None or not params:
        return
    if spec.media:
        _check_media(where, spec.media.lower(), params[0])
        return
    values = _text_values(where, params)
    keys: Sequence[str]
    if named:
        keys = _named_keys(where, params, spec)
    else:
        if any("parameter_name" in p for p in params):
            raise _Refused(
                132000, f"{where}: parameter_name is only for templates with parameter_format NAMED"
            )
        keys = spec.keys
    length = spec.filled_len(dict(zip(keys, values, strict=True)))
    if length > _MAX_CHARS[where]:
        raise _Refused(
            132005, f"{where}: text is {length} characters once filled in; the limit is {_MAX_CHARS[where]}"
        )


def _text_values(where: str, params: list) -> list[str]:
    allowed = _BODY_TYPES if where == "body" else ("text",)
    values = []
    for position, param in enumerate(params):
        if type(param) is not dict:
            raise _Refused(100, f"{where} parameter {position} must be an object.")
        kind = param.get("type")
        if kind == "text":
            value = param.get("text")
            if type(value) is not str or not value.strip():
                raise _Refused(
                    131008,
                    f"{where} parameter {position}: the parameter text is required and must not be empty.",
                )
            if _BAD_TEXT.search(value):
                raise _Refused(
                    132018,
                    f"{where} parameter {position}: Param text cannot have new-line/tab characters or more "
                    "than 4 consecutive spaces",
                )
        elif kind in allowed:
            inner = param.get(kind)
            value = inner.get("fallback_value") if isinstance(inner, dict) else None
            if not isinstance(value, str) or not value:
                raise _Refused(
                    131008,
                    f"{where} parameter {position}: the parameter {kind}['fallback_value'] is required.",
                )
        else:
            raise _Refused(
                132012,
                f"{where} parameter {position}: type {kind!r} does not match the format of the template's {where}",
            )
        values.append(value)
    return values


def _named_keys(where: str, params: list, spec: TextSpec) -> list[str]:
    keys: list[str] = []
    for param in params:
        name = param.get("parameter_name")
        if not isinstance(name, str) or not name:
            raise _Refused(
                132000, f"{where}: parameter_name is required for every parameter of a NAMED template"
            )
        if name not in spec.keys:
            raise _Refused(132000, f"{where}: parameter_name ({name}) is not a variable of this template")
        if name in keys:
            raise _Refused(132000, f"{where}: parameter_name ({name}) is given twice")
        keys.append(name)
    return keys


def _check_media(where: str, kind: str, param: Any) -> None:
    if not isinstance(param, dict) or param.get("type") != kind:
        got = param.get("type") if isinstance(param, dict) else param
        raise _Refused(
            132012, f"{where}: parameter type {got!r} does not match the template's format ({kind})"
        )
    media = param.get(kind)
    needed = ("latitude", "longitude") if kind == "location" else None
    ok = isinstance(media, dict) and (
        all(k in media for k in needed) if needed else bool(media.get("id") or media.get("link"))
    )
    if not ok:
        what = "latitude and longitude" if needed else "id or link"
        raise _Refused(131008, f"{where}: the {kind} parameter needs {what}.")


def _check_button(index: int, button: ButtonSpec | None, sub_type: str, params: list) -> None:
    where = f"button at index {index}"
    if button is None:
        raise _count_error(where, len(params), 0)
    if sub_type != _SUB_TYPE.get(button.kind):
        raise _Refused(
            132012, f"{where}: sub_type {sub_type} does not match the template's {button.kind} button"
        )
    expected = button.params or (min(len(params), 1) if sub_type in _OPTIONAL_PARAM else 0)
    if len(params) != expected:
        raise _count_error(where, len(params), expected)
    kind = _BUTTON_PARAM[sub_type]
    for param in params:
        value = param.get(kind) if isinstance(param, dict) and param.get("type") == kind else None
        if not value:
            raise _Refused(131008, f'{where}: the parameter must be {{"type": "{kind}", "{kind}": ...}}.')


def _missing_button(button: ButtonSpec) -> None:
    raise _count_error(f"button at index {button.index}", 0, button.params)

"""Loa's JSON alert format: parse, and validate against ``schemas/alert.schema.json``.

Both formats end here: a CAP alert arrives as the dict :func:`streams.ingest.cap.parse_cap`
made of it, and is checked with ``cap=True`` so that every problem is told in CAP's terms (a
1-based XPath such as ``/alert/info[1]/area[2]`` and ``<element>`` names) rather than in Loa's
JSON mapping (a JSON pointer such as ``/info/0/area/1``).

Validation reports every fault of the alert (up to :data:`MAX_PROBLEMS`), not only the first,
so an agency fixes a file in one round. Messages are written for the agency: what is wrong,
where, and what would be right; input is quoted as JSON text, never as a Python repr.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from jsonschema import ValidationError

from streams.errors import MalformedInput, Problem, SchemaViolation, quote
from streams.ingest.cap import json_pointer_to_xpath
from streams.schemas import validator

__all__ = ["MAX_PROBLEMS", "decode_json_alert", "validate_json_alert"]

#: Most problems one rejection lists (a broken 16-info alert must not make a megabyte record).
MAX_PROBLEMS: Final = 20
_TIME_FIELDS: Final = ("effective", "onset", "expires")
_TIME_EXAMPLE: Final = "2026-09-06T08:00:00+07:00"
_GEOCODE_NAMES: Final = "VN, VN-PROVINCE or VN-WARD"

#: Why an element is required, beyond "the schema says so" (CAP 1.2 section 3.2, Loa's own needs).
_REQUIRED_BECAUSE: Final = {
    "identifier": "CAP 1.2 requires it in every alert",
    "sender": "CAP 1.2 requires it in every alert",
    "sent": f"CAP 1.2 requires it in every alert (a date-time such as {_TIME_EXAMPLE})",
    "status": "CAP 1.2 requires it in every alert; Loa never assumes Actual",
    "msgType": "CAP 1.2 requires it in every alert; Loa never assumes Alert",
    "scope": "CAP 1.2 requires it in every alert; Loa never assumes Public",
    "restriction": "scope Restricted needs it (the rule for who may receive the alert)",
    "addresses": "scope Private needs it (the intended recipients)",
    "info": "an Alert or Update needs at least one info block (what to tell, and where)",
    "category": "CAP 1.2 requires it in every info block",
    "event": "CAP 1.2 requires it in every info block",
    "urgency": "CAP 1.2 requires it in every info block",
    "severity": "CAP 1.2 requires it in every info block",
    "certainty": "CAP 1.2 requires it in every info block",
    "headline": "Loa requires it in every info block: it is the text people receive first",
    "area": "Loa requires at least one area in every info block: it says whom to reach",
    "areaDesc": "CAP 1.2 requires it in every area",
    "valueName": "CAP 1.2 requires it in every geocode, eventCode and parameter",
    "value": "CAP 1.2 requires it in every geocode, eventCode and parameter",
}
#: What a value of a patterned field looks like.
_PATTERN_HINT: Final = {
    "identifier": "must not contain spaces, commas, < or &",
    "sender": "must not contain spaces, commas, < or &",
    "sent": f"is not a date-time with a time zone such as {_TIME_EXAMPLE}",
    "references": (
        "must be space-separated sender,identifier,sent triples such as "
        f"nchmf.gov.vn,BAO-1,{_TIME_EXAMPLE}"
    ),
    "regions": "is not a Loa region code (VN, VN-PP or VN-PP-WWWWW)",
    "language": "is not a language tag such as vi-VN",
}


@dataclass(frozen=True, slots=True)
class _Style:
    """How a format names places and elements: CAP's XPath and ``<tags>``, or JSON's own."""

    cap: bool

    def where(self, pointer: str) -> str:
        if self.cap:
            return json_pointer_to_xpath(pointer) or "/alert"
        return pointer or "the alert"

    def name(self, key: str) -> str:
        return f"<{key}>" if self.cap else key

    def targets(self) -> str:
        if self.cap:
            return f"a <geocode> (valueName {_GEOCODE_NAMES}), a <polygon> or a <circle>"
        return f"regions, a geocode (valueName {_GEOCODE_NAMES}), a polygon or a circle"


def decode_json_alert(raw: bytes) -> dict[str, Any]:
    """Decode a JSON object; raises :class:`MalformedInput`."""
    if not raw or not raw.strip():
        raise MalformedInput("empty record")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedInput(f"not valid UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedInput(f"an alert is a JSON object, got {_json_type(doc)}")
    return doc


def validate_json_alert(doc: dict[str, Any], *, cap: bool = False) -> None:
    """Check ``doc`` against ``schemas/alert.schema.json`` and its date-times.

    Raises :class:`SchemaViolation` whose ``problems`` list every fault found (at most
    :data:`MAX_PROBLEMS`, shallowest first); ``cap`` tells them in CAP's terms.
    """
    style = _Style(cap)
    errors = sorted(validator("alert").iter_errors(doc), key=lambda e: len(e.absolute_path))
    problems: list[Problem] = []
    # jsonschema reports each missing property of one "required" as its own error, in the
    # order of the list: count them to know which one each error is about
    nth_missing: dict[tuple[object, ...], int] = {}
    for error in errors:
        n = 0
        if error.validator == "required":
            at = (*error.absolute_path, id(error.schema))
            n = nth_missing[at] = nth_missing.get(at, -1) + 1
        problem = _problem(error, style, n)
        if problem not in problems:
            problems.append(problem)
    faulted = {p.pointer for p in problems}
    problems += [p for p in _time_problems(doc, style) if p.pointer not in faulted]
    if problems:
        first = problems[0]
        raise SchemaViolation(
            first.message, pointer=first.pointer, problems=tuple(problems[:MAX_PROBLEMS])
        )


def _pointer(path: Iterable[str | int]) -> str:
    return "".join(f"/{part}" for part in path)


def _problem(error: ValidationError, style: _Style, nth_missing: int = 0) -> Problem:
    path = list(error.absolute_path)
    where = style.where(_pointer(path))
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        required = error.schema.get("required", ()) if isinstance(error.schema, dict) else ()
        absent = [n for n in required if n not in instance]
        missing = absent[min(nth_missing, len(absent) - 1)] if absent else ""
        at = style.where(_pointer([*path, missing]))
        return Problem(at, f"{at}: {style.name(missing)} is missing: {_because(missing, error)}")
    if error.validator == "anyOf" and path and path[-2:-1] == ["area"]:
        return Problem(where, f"{where}: this area has no target: add {style.targets()}")
    return Problem(where, f"{where}: {_fault(error, style, path)}")


def _because(name: str, error: ValidationError) -> str:
    because = _REQUIRED_BECAUSE.get(name, "it is required here")
    properties = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
    choices = _choices(properties.get(name, {}))
    return f"{because} ({choices})" if choices else because


def _choices(schema: dict[str, Any]) -> str:
    values = schema.get("enum") or schema.get("items", {}).get("enum")
    return "one of " + ", ".join(values) if values else ""


def _fault(error: ValidationError, style: _Style, path: list[str | int]) -> str:
    value: Any = error.instance
    rule, bound = error.validator, error.validator_value
    if value == "" and rule in ("enum", "pattern", "minLength"):
        return "is empty"
    key = next((p for p in reversed(path) if isinstance(p, str)), "")
    if rule == "enum":
        schema = error.schema if isinstance(error.schema, dict) else {}
        return f"{quote(value)} is not {_choices(schema)}"
    if rule == "pattern":
        return f"{quote(value)} {_PATTERN_HINT.get(key, 'does not have the required form')}"
    if rule == "minLength":
        return f"is shorter than {bound} characters"
    if rule == "maxLength":
        return f"has {len(value)} characters, at most {bound} are allowed"
    if rule == "minItems":
        return f"needs at least {bound} {style.name(key)}"
    if rule == "maxItems":
        return f"has {len(value)} {style.name(key)}, at most {bound} are allowed"
    if rule == "type":
        return f"{quote(value)} is {_json_type(value)}, not {bound}"
    if rule == "additionalProperties" and isinstance(value, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extra = ", ".join(quote(k) for k in value if k not in known)
        return f"{extra} is not a field of Loa's JSON alert here"
    return f"breaks the rule {rule!s} of schemas/alert.schema.json"


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "an array" if isinstance(value, list) else "an object"


def _time_problems(doc: dict[str, Any], style: _Style) -> list[Problem]:
    """Date-times the schema's pattern cannot judge (month 13, a missing offset in info)."""
    found: list[Problem] = []
    fields: list[tuple[str, object]] = [("/sent", doc.get("sent"))]
    infos = doc.get("info")
    for i, info in enumerate(infos if isinstance(infos, list) else ()):
        if isinstance(info, dict):
            fields += [(f"/info/{i}/{f}", info[f]) for f in _TIME_FIELDS if f in info]
    for pointer, value in fields:
        if not isinstance(value, str) or not value:
            continue  # missing, empty or not a string: the schema says so
        why = _time_fault(value)
        if why:
            where = style.where(pointer)
            found.append(Problem(where, f"{where}: {quote(value)} {why}"))
    return found


def _time_fault(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return f"is not a date-time such as {_TIME_EXAMPLE}"
    if parsed.tzinfo is None:
        return f"has no time zone (write it as in {_TIME_EXAMPLE})"
    return ""

"""Loa's JSON alert format: parse and validate against ``schemas/alert.schema.json``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from jsonschema import ValidationError
from jsonschema.exceptions import best_match

from streams.errors import MalformedInput, SchemaViolation
from streams.schemas import validator

__all__ = ["decode_json_alert", "validate_json_alert"]

_MAX_MESSAGE = 300


def _pointer(error: ValidationError) -> str:
    pointer = "".join(f"/{part}" for part in error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        required: list[str] = (
            list(error.schema.get("required", ())) if isinstance(error.schema, dict) else []
        )
        missing = [name for name in required if name not in error.instance]
        if missing:  # point at the element that is missing, not at its parent
            return f"{pointer}/{missing[0]}"
    return pointer


def decode_json_alert(raw: bytes) -> dict[str, Any]:
    """Decode a JSON object; raises :class:`MalformedInput`."""
    if not raw or not raw.strip():
        raise MalformedInput("empty record")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedInput(f"not valid UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedInput(f"an alert is a JSON object, got {type(doc).__name__}")
    return doc


def validate_json_alert(doc: dict[str, Any]) -> None:
    """Check ``doc`` against ``schemas/alert.schema.json``; raises :class:`SchemaViolation`."""
    error = best_match(validator("alert").iter_errors(doc))
    if error is not None:
        pointer = _pointer(error)
        message = error.message
        if len(message) > _MAX_MESSAGE:
            message = message[:_MAX_MESSAGE] + "..."
        raise SchemaViolation(f"{pointer or '/'}: {message}", pointer=pointer)
    _check_times(doc)


def _check_times(doc: dict[str, Any]) -> None:
    _parse_time(doc["sent"], "/sent")
    for i, info in enumerate(doc.get("info", ())):
        for field in ("effective", "onset", "expires"):
            if field in info:
                _parse_time(info[field], f"/info/{i}/{field}")


def _parse_time(value: str, pointer: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise SchemaViolation(f"{pointer}: {value!r} is not a date-time", pointer=pointer) from None
    if parsed.tzinfo is None:
        raise SchemaViolation(f"{pointer}: {value!r} has no time zone", pointer=pointer)
    return parsed

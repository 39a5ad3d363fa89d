"""The JSON Schemas in ``schemas/``: the contracts of every record Loa reads or writes."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator

__all__ = ["schema_dir", "validator"]


def schema_dir() -> Path:
    """``LOA_SCHEMAS_DIR`` or the repository's ``schemas/`` next to the package."""
    override = os.environ.get("LOA_SCHEMAS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "schemas"


@cache
def load(name: str) -> dict[str, Any]:
    path = schema_dir() / f"{name}.schema.json"
    schema: dict[str, Any] = orjson.loads(path.read_bytes())
    return schema


@cache
def validator(name: str) -> Draft202012Validator:
    schema = load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)

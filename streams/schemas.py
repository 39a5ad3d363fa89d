"""The JSON Schemas in ``schemas/``: the contracts of every record Loa reads or writes.

They ship in the wheel as package data (``streams/data/schemas`` links to the repository's
``schemas/``) and are read through :mod:`importlib.resources`, so an installed Loa finds them
wherever it is installed; ``LOA_SCHEMAS_DIR`` points elsewhere (e.g. a newer contract set).
"""

from __future__ import annotations

import os
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator

__all__ = ["schema_dir", "validator"]


def schema_dir() -> Traversable:
    """``LOA_SCHEMAS_DIR`` or the schemas shipped with the package."""
    override = os.environ.get("LOA_SCHEMAS_DIR")
    if override:
        return Path(override)
    return files("streams") / "data" / "schemas"


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

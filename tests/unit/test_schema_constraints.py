"""Every constraint of the alert and agency schemas is enforced (schemas are data: no mutation
tool mutates them, so each constraint gets a document that violates it alone).

A full document (every optional field present) is walked together with its schema: for each
``required``, ``pattern``, ``enum``, ``type``, ``minLength``, ``maxLength``, ``minItems``,
``maxItems``, ``uniqueItems``, ``additionalProperties``, ``propertyNames`` and ``anyOf`` met on
the way, one copy of the document is broken at that place. The validator must report that very
keyword at that very place (so dropping the constraint from the schema fails its case), and the
entry point that reads the record (``validate_json_alert``, ``parse_agency``) must refuse it.
``if``/``then``/``else`` are listed by hand below. ``format: date-time`` is not a schema
constraint here (no format checker): ``validate_json_alert`` checks times itself, pinned in
``test_ingest_rules.py``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h3
import pytest

from streams.errors import InvalidAgency, PoisonError
from streams.ingest.agencies import parse_agency
from streams.ingest.json_alert import validate_json_alert
from streams.ingest.signatures import new_key_pair
from streams.schemas import load, validator

ROOT = Path(__file__).resolve().parents[2]
Path_ = tuple[str | int, ...]

FULL_ALERT: dict[str, Any] = {
    "identifier": "X-1",
    "sender": "qn.gov.vn",
    "sent": "2026-09-06T08:00:00+07:00",
    "status": "Actual",
    "msgType": "Update",
    "scope": "Public",
    "references": "qn.gov.vn,X-0,2026-09-06T07:00:00+07:00 qn.gov.vn,X-00,2026-09-06T07:30:00Z",
    "incidents": "I-1",
    "source": "trạm Bãi Cháy",
    "restriction": "-",
    "addresses": "-",
    "code": ["loa:1"],
    "note": "ghi chú",
    "info": [
        {
            "language": "vi-VN",
            "category": ["Met", "Safety"],
            "event": "Bão",
            "responseType": ["Prepare", "Monitor"],
            "urgency": "Immediate",
            "severity": "Severe",
            "certainty": "Likely",
            "audience": "ven biển",
            "eventCode": [{"valueName": "SAME", "value": "HUW"}],
            "effective": "2026-09-06T08:00:00+07:00",
            "onset": "2026-09-06T09:00:00+07:00",
            "expires": "2026-09-07T08:00:00+07:00",
            "senderName": "UBND Quảng Ninh",
            "headline": "Bão số 3",
            "description": "Gió mạnh",
            "instruction": "Vào nơi trú ẩn",
            "web": "https://qn.gov.vn",
            "contact": "112",
            "parameter": [{"valueName": "wind", "value": "12"}],
            "area": [
                {
                    "areaDesc": "ven biển",
                    "regions": ["VN-22", "VN"],
                    "geocode": [{"valueName": "VN", "value": "22"}],
                    "polygon": ["21.0,107.0 21.1,107.0 21.1,107.1 21.0,107.0"],
                    "circle": ["21.0,107.3 5"],
                    "altitude": 10,
                    "ceiling": 100,
                }
            ],
        }
    ],
}

KEY = new_key_pair("qn.gov.vn", "qn/1")
FULL_AGENCY: dict[str, Any] = {
    "id": "qn.gov.vn",
    "name": "Quảng Ninh",
    "keys": {"qn/1": KEY.public_key_b64},
    "certificates": {"qn/c1": "-----BEGIN CERTIFICATE-----\n"},
    "jurisdiction": ["VN-22", "VN-31"],
    "jurisdiction_cells": [h3.latlng_to_cell(21.0, 107.3, 5)],
    "allowed_statuses": ["Actual", "Test"],
    "max_severity": "Severe",
    "contact": "trực ban",
    "amends": [{"of": ["hp.gov.vn", "*"], "msg_types": ["Update", "Cancel"]}],
}

_WRONG_TYPE: dict[str, Any] = {
    "string": 12345,
    "array": "x",
    "object": ["x"],
    "number": "1",
    "integer": "1",
    "boolean": "true",
}


@dataclass(frozen=True)
class Case:
    schema: str
    keyword: str
    #: Where the validator must report it (the instance path of the error).
    at: Path_
    what: str
    #: Applies the violation to a copy of the full document.
    breaks: Callable[[Any], None]

    @property
    def id(self) -> str:
        where = "/" + "/".join(map(str, self.at))
        return f"{self.schema}:{where}:{self.keyword}:{self.what}"


def _get(doc: Any, path: Path_) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _setter(path: Path_, value: Any) -> Callable[[Any], None]:
    def apply(doc: Any) -> None:
        _get(doc, path[:-1])[path[-1]] = copy.deepcopy(value)

    return apply


def _deleter(path: Path_, *names: str) -> Callable[[Any], None]:
    def apply(doc: Any) -> None:
        parent = _get(doc, path)
        for name in names:
            del parent[name]

    return apply


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = _get(root, tuple(node["$ref"].removeprefix("#/").split("/")))
    return node


def _not_in(choices: list[Any], value: Any) -> str:
    wrong = f"{value}x" if isinstance(value, str) else "x"
    assert wrong not in choices
    return wrong


def _cases(
    schema: str, node: dict[str, Any], value: Any, at: Path_, root: dict[str, Any]
) -> Iterator[Case]:
    node = _resolve(node, root)
    if isinstance(node.get("type"), str) and at:  # the root's type: test_agency_files
        yield Case(schema, "type", at, "wrong type", _setter(at, _WRONG_TYPE[node["type"]]))
    if "enum" in node:
        yield Case(schema, "enum", at, "not listed", _setter(at, _not_in(node["enum"], value)))
    if "pattern" in node:
        yield Case(schema, "pattern", at, "leading space", _setter(at, " " + value))
        if node["pattern"].endswith("$(?!\\n)"):
            yield Case(schema, "pattern", at, "trailing newline", _setter(at, value + "\n"))
    if node.get("minLength", 0) > 0:
        shorter = value[: node["minLength"] - 1]
        yield Case(schema, "minLength", at, "one too short", _setter(at, shorter))
    if "maxLength" in node:
        longer = value + value[-1] * (node["maxLength"] + 1 - len(value))
        yield Case(schema, "maxLength", at, "one too long", _setter(at, longer))
    if "minItems" in node and node["minItems"] > 0:
        yield Case(schema, "minItems", at, "too few", _setter(at, value[: node["minItems"] - 1]))
    if "maxItems" in node:
        more = (value * (node["maxItems"] + 1))[: node["maxItems"] + 1]
        yield Case(schema, "maxItems", at, "one too many", _setter(at, more))
    if node.get("uniqueItems"):
        yield Case(schema, "uniqueItems", at, "repeated", _setter(at, [*value, value[0]]))
    for name in node.get("required", ()):
        yield Case(schema, "required", at, f"no {name}", _deleter(at, name))
    branches = node.get("anyOf", ())
    if branches and all(set(b) == {"required"} for b in branches):
        names = [n for b in branches for n in b["required"] if n in value]
        yield Case(schema, "anyOf", at, "none of " + "/".join(names), _deleter(at, *names))
    properties = node.get("properties", {})
    extra = node.get("additionalProperties")
    if extra is False:
        yield Case(schema, "additionalProperties", at, "unknown field", _setter((*at, "zz"), "x"))
    if "propertyNames" in node:
        name = next(iter(value))
        for what, bad in (("trailing newline", name + "\n"), ("empty", "")):

            def rename(doc: Any, name: str = name, bad: str = bad) -> None:
                parent = _get(doc, at)
                parent[bad] = parent.pop(name)

            yield Case(schema, "propertyNames", at, what, rename)
    if isinstance(value, dict):
        for key, sub in value.items():
            child = properties.get(key, extra if isinstance(extra, dict) else None)
            if child is not None:
                yield from _cases(schema, child, sub, (*at, key), root)
    if isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            yield from _cases(schema, node["items"], item, (*at, i), root)


ALERT_CASES = list(_cases("alert", load("alert"), FULL_ALERT, (), load("alert")))
AGENCY_CASES = list(_cases("agency", load("agency"), FULL_AGENCY, (), load("agency")))


def _broken(case: Case, full: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(full)
    case.breaks(doc)
    return doc


def _reports(case: Case, doc: dict[str, Any]) -> bool:
    """The validator reports ``case.keyword`` (anywhere on the error's schema path: a
    ``propertyNames`` error is its ``pattern``'s) at ``case.at``."""
    return any(
        case.keyword in e.schema_path and tuple(e.absolute_path) == case.at
        for e in validator(case.schema).iter_errors(doc)
    )


def test_the_full_documents_are_valid() -> None:
    assert list(validator("alert").iter_errors(FULL_ALERT)) == []
    assert list(validator("agency").iter_errors(FULL_AGENCY)) == []
    validate_json_alert(copy.deepcopy(FULL_ALERT))


def test_the_walk_meets_every_kind_of_constraint() -> None:
    """The full documents reach every constraint: a field added to a schema without one here
    would go unchecked."""
    for cases, schema in ((ALERT_CASES, "alert"), (AGENCY_CASES, "agency")):
        met = {(c.keyword, c.at[-1] if c.at else "") for c in cases}
        wanted = set(_declared(load(schema)))
        assert wanted <= {k for k, _ in met}, wanted - {k for k, _ in met}
    assert len(ALERT_CASES) > 100
    assert len(AGENCY_CASES) > 30


def _declared(node: Any) -> Iterator[str]:
    keywords = {"required", "pattern", "enum", "minLength", "maxLength", "minItems", "maxItems"}
    keywords.add("uniqueItems")
    if isinstance(node, dict):
        for k, v in node.items():
            if k in keywords and not (k in ("minItems", "minLength") and v == 0):
                yield k
            yield from _declared(v)
    elif isinstance(node, list):
        for v in node:
            yield from _declared(v)


@pytest.mark.parametrize("case", ALERT_CASES, ids=lambda c: c.id)
def test_each_alert_constraint_is_enforced(case: Case) -> None:
    doc = _broken(case, FULL_ALERT)
    assert _reports(case, doc)
    with pytest.raises(PoisonError):
        validate_json_alert(doc)


@pytest.mark.parametrize("case", AGENCY_CASES, ids=lambda c: c.id)
def test_each_agency_constraint_is_enforced(case: Case) -> None:
    doc = _broken(case, FULL_AGENCY)
    assert _reports(case, doc)
    with pytest.raises(InvalidAgency):
        parse_agency(doc)


@pytest.mark.parametrize(
    ("change", "keyword"),
    [
        ({"scope": "Restricted", "restriction": None}, "required"),
        ({"scope": "Private", "addresses": None}, "required"),
        ({"msgType": "Alert", "info": None}, "required"),
        ({"msgType": "Update", "info": None}, "required"),
    ],
)
def test_conditional_requirements_are_enforced(change: dict[str, Any], keyword: str) -> None:
    doc = copy.deepcopy(FULL_ALERT)
    for k, v in change.items():
        if v is None:
            del doc[k]
        else:
            doc[k] = v
    assert (keyword, ()) in [
        (e.validator, tuple(e.absolute_path)) for e in validator("alert").iter_errors(doc)
    ]
    with pytest.raises(PoisonError):
        validate_json_alert(doc)


@pytest.mark.parametrize("msg_type", ["Cancel", "Ack", "Error"])
def test_messages_that_are_about_another_need_no_info(msg_type: str) -> None:
    doc = {k: v for k, v in FULL_ALERT.items() if k != "info"}
    doc["msgType"] = msg_type
    assert list(validator("alert").iter_errors(doc)) == []


@pytest.mark.parametrize("path", sorted((ROOT / "schemas").glob("*.json")), ids=lambda p: p.name)
def test_no_pattern_ends_in_a_bare_dollar(path: Path) -> None:
    """jsonschema runs patterns with Python's ``re.search``, where ``$`` also matches before a
    final newline: every end anchor is ``$(?!\\n)``."""

    def patterns(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "pattern" and isinstance(v, str):
                    yield v
                else:
                    yield from patterns(v)
        elif isinstance(node, list):
            for v in node:
                yield from patterns(v)

    for pattern in patterns(json.loads(path.read_text(encoding="utf-8"))):
        assert not pattern.endswith("$") or pattern.endswith("$(?!\\n)"), pattern
        assert "$" not in pattern.removesuffix("$(?!\\n)"), pattern


@pytest.mark.parametrize("doc", [[], "alert", 1, None])
def test_an_alert_that_is_no_object_is_refused(doc: Any) -> None:
    assert any(e.validator == "type" for e in validator("alert").iter_errors(doc))

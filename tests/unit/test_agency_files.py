"""Hostile agency files and records: every one is refused with ``InvalidAgency`` naming its
file, never a traceback (``load_agency_files``, ``decode_agency_record``, ``parse_agency``).

A trailing newline is the case that used to slip through: JSON Schema's ``$`` is
ECMA-262's (end of input), but jsonschema runs the pattern with Python's ``re.search``,
where ``$`` also matches before a final newline; a key ``...=\\n`` then passed the schema
and crashed ``base64.b64decode(validate=True)`` with ``binascii.Error``. The schemas'
patterns now end in ``$(?!\\n)``, and ``parse_agency`` turns a decoding error into a refusal
in case an older schema set (``LOA_SCHEMAS_DIR``) lets one through.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h3
import orjson
import pytest

import streams.schemas
from streams.errors import InvalidAgency
from streams.ingest.agencies import decode_agency_record, load_agency_files, parse_agency
from streams.ingest.signatures import new_key_pair

ROOT = Path(__file__).resolve().parents[2]
KEY = new_key_pair("qn.gov.vn", "qn/1")
CELL = h3.latlng_to_cell(21.0, 107.3, 5)


def _doc() -> dict[str, Any]:
    return {
        "id": "qn.gov.vn",
        "name": "Quảng Ninh",
        "keys": {"qn/1": KEY.public_key_b64},
        "jurisdiction": ["VN-22"],
        "jurisdiction_cells": [CELL],
        "allowed_statuses": ["Actual", "Test"],
        "max_severity": "Severe",
    }


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return change


def _rename_key(new: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["keys"] = {new: doc["keys"]["qn/1"]}

    return change


B64 = KEY.public_key_b64
HOSTILE: dict[str, Callable[[dict[str, Any]], None]] = {
    "key with a trailing newline": _set(("keys", "qn/1"), B64 + "\n"),
    "key with a trailing CRLF": _set(("keys", "qn/1"), B64 + "\r\n"),
    "key with a leading newline": _set(("keys", "qn/1"), "\n" + B64),
    "key id with a trailing newline": _rename_key("qn/1\n"),
    "key id empty": _rename_key(""),
    "id with a trailing newline": _set(("id",), "qn.gov.vn\n"),
    "id with a comma": _set(("id",), "qn.gov.vn,x"),
    "jurisdiction with a trailing newline": _set(("jurisdiction",), ["VN-22\n"]),
    "jurisdiction lower case": _set(("jurisdiction",), ["vn-22"]),
    "cell with a trailing newline": _set(("jurisdiction_cells",), [CELL + "\n"]),
    "cell upper case": _set(("jurisdiction_cells",), [CELL.upper()]),
    "certificate id with a trailing newline": _set(
        ("certificates",), {"c\n": "-----BEGIN CERTIFICATE-----\n"}
    ),
    "certificate that is not PEM": _set(
        ("certificates",), {"c": "-----BEGIN CERTIFICATE-----\nnot base64\n"}
    ),
    "key of 31 bytes": _set(("keys", "qn/1"), base64.b64encode(bytes(31)).decode()),
    "key of 33 bytes": _set(("keys", "qn/1"), base64.b64encode(bytes(33)).decode()),
    "key in the URL-safe alphabet": _set(
        ("keys", "qn/1"), base64.b64encode(b"\xfb\xff" * 16).decode().replace("+", "-")
    ),
    "status not in the list": _set(("allowed_statuses",), ["Actual\n"]),
    "severity with a trailing newline": _set(("max_severity",), "Severe\n"),
    "unknown field": _set(("admin",), True),
    "name empty": _set(("name",), ""),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_agency_file_is_refused_naming_the_file(case: str, tmp_path: Path) -> None:
    doc = _doc()
    HOSTILE[case](doc)
    good = tmp_path / "a-good.json"
    good.write_bytes(orjson.dumps({**_doc(), "id": "other.gov.vn"}))
    bad = tmp_path / "b-hostile.json"
    bad.write_bytes(orjson.dumps(doc))
    with pytest.raises(InvalidAgency) as refused:
        load_agency_files(tmp_path)
    assert str(bad) in refused.value.message
    with pytest.raises(InvalidAgency):
        decode_agency_record(b"qn.gov.vn", orjson.dumps(doc))


@pytest.mark.parametrize(
    "content",
    [b"", b"[]", b"null", b'"qn.gov.vn"', b"{", b"\xff\xfe", b'{"id": 1}'],
)
def test_an_agency_file_that_is_no_agency_object_is_refused(content: bytes, tmp_path: Path) -> None:
    bad = tmp_path / "hostile.json"
    bad.write_bytes(content)
    with pytest.raises(InvalidAgency) as refused:
        load_agency_files(bad)
    assert str(bad) in refused.value.message


def test_the_unchanged_document_loads() -> None:
    agency = parse_agency(_doc())
    assert agency.keys == {"qn/1": KEY.public_key}
    assert agency.jurisdiction_cells == (CELL,)


@pytest.fixture
def weak_schemas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An older contract set whose patterns still end in a bare ``$``."""
    weak = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", weak)
    agency = weak / "agency.schema.json"
    agency.write_text(agency.read_text().replace("$(?!\\\\n)", "$"))
    assert "(?!" not in agency.read_text()
    monkeypatch.setenv("LOA_SCHEMAS_DIR", str(weak))
    streams.schemas.load.cache_clear()
    streams.schemas.validator.cache_clear()
    yield
    monkeypatch.delenv("LOA_SCHEMAS_DIR")
    streams.schemas.load.cache_clear()
    streams.schemas.validator.cache_clear()


@pytest.mark.usefixtures("weak_schemas")
def test_a_key_an_older_schema_lets_through_is_still_refused() -> None:
    doc = _doc()
    doc["keys"]["qn/1"] = B64 + "\n"
    with pytest.raises(InvalidAgency) as refused:
        parse_agency(doc)
    assert refused.value.message == 'key "qn/1" is not base64'
    assert refused.value.agency == "qn.gov.vn"

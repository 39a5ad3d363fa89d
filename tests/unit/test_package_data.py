"""Schemas and default agency files are package data, read through importlib.resources."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from streams.schemas import schema_dir, validator
from streams.settings.model import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_schemas_are_read_from_the_package() -> None:
    assert str(schema_dir()) == str(files("streams") / "data" / "schemas")
    assert validator("alert").schema["$schema"]


def test_package_data_is_the_repository_schemas_and_agencies() -> None:
    data = Path(str(files("streams"))) / "data"
    assert sorted(p.name for p in (data / "schemas").glob("*.json")) == sorted(
        p.name for p in (ROOT / "schemas").glob("*.json")
    )
    assert (data / "agencies" / "nchmf.gov.vn.json").read_bytes() == (
        ROOT / "deploy" / "agencies" / "nchmf.gov.vn.json"
    ).read_bytes()


def test_default_agencies_dir_is_the_packaged_one() -> None:
    assert Settings().resolved_agencies_dir == str(files("streams") / "data" / "agencies")
    assert Settings(agencies_dir="/etc/loa").resolved_agencies_dir == "/etc/loa"

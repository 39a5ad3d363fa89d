"""Subscriber files for ``loa directory load FILE``: CSV or JSON Lines to a columnar batch.

Every row is checked by the same code that checks change records on the topic
(:func:`streams.directory.wire.apply_doc`), so a file row is accepted exactly when the record
it becomes would be. A bad row is reported with its line number and skipped; it never stops
the load and is never dropped silently.

JSON Lines: one ``schemas/subscriber_change.schema.json`` object per line, where ``lat`` and
``lon`` may stand for ``cell``, and ``{"recipient_id": N, "unsubscribe": true}`` unsubscribes.

CSV (header row required, columns in any order)::

    recipient_id,ward,channels,language,test_audience,cell,lat,lon,opted_out,unsubscribe
    84901234567,VN-01-00004,oa|sms,vi,false,,21.03,105.85,Met|Fire,

``ward`` is a Loa ward code or the official 5-digit ward code; lists (``channels``,
``opted_out``) are separated by ``|``; ``test_audience`` and ``unsubscribe`` are
``true``/``false``/``1``/``0``/empty; only ``recipient_id``, ``ward``, ``channels`` and
``language`` are required.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import h3
import orjson

from streams.directory.index import ChangeBatch
from streams.directory.wire import Columns, apply_doc
from streams.errors import LoaError
from streams.regions import RegionRegistry

__all__ = ["BadRow", "read_subscribers"]

BadRow = tuple[int, str]

_TRUE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": False}
_CSV_REQUIRED = ("recipient_id", "ward", "channels", "language")
_CSV_KNOWN = frozenset(
    (*_CSV_REQUIRED, "test_audience", "cell", "lat", "lon", "opted_out", "unsubscribe")
)


def read_subscribers(
    path: Path, regions: RegionRegistry, *, h3_resolution: int, fmt: str | None = None
) -> tuple[ChangeBatch, list[BadRow], int]:
    """``(changes in file order, bad rows as (line, reason), rows read)``.

    ``fmt`` is ``csv`` or ``jsonl``; by default the file's suffix decides (``.csv`` is CSV).
    """
    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    lines: list[tuple[int, dict[str, Any] | str]]
    if fmt == "csv":
        with path.open("r", encoding="utf-8", newline="") as text:
            lines = list(_csv_rows(text))
    else:
        with path.open("rb") as raw:
            lines = list(_jsonl_rows(raw))
    out = Columns(len(lines))
    bad: list[BadRow] = []
    ward_by_official = {code[-5:]: code for code in regions.ward_codes}
    for i, (line, doc) in enumerate(lines):
        if isinstance(doc, str):
            bad.append((line, doc))
            continue
        try:
            _row(i, doc, regions, h3_resolution, ward_by_official, out)
        except (ValueError, KeyError, TypeError, LoaError, h3.H3BaseException) as exc:
            bad.append((line, _reason(exc)))
    return out.batch(), bad, len(lines)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"unknown or missing value {exc}"
    return str(exc) or type(exc).__name__


def _row(
    i: int,
    doc: dict[str, Any],
    regions: RegionRegistry,
    h3_resolution: int,
    ward_by_official: dict[str, str],
    out: Columns,
) -> None:
    rid = doc.get("recipient_id")
    if type(rid) is not int:
        raise ValueError(f"recipient_id {rid!r} is not an integer")
    if doc.get("unsubscribe") is True:
        extra = doc.keys() - {"recipient_id", "unsubscribe"}
        if extra:
            raise ValueError(f"an unsubscribe row has only recipient_id, not {sorted(extra)}")
        if not 0 <= rid < 2**64:
            raise ValueError(f"recipient_id {rid} is not an unsigned 64-bit integer")
        out.ids[i] = rid
        out.deleted[i] = True
        out.ok[i] = True
        return
    doc.pop("unsubscribe", None)
    ward = doc.get("ward")
    if isinstance(ward, str) and ward in ward_by_official:
        doc["ward"] = ward_by_official[ward]
    if "lat" in doc or "lon" in doc:
        if doc.get("cell") is not None:
            raise ValueError("give either cell or lat/lon, not both")
        lat, lon = doc.pop("lat", None), doc.pop("lon", None)
        if not isinstance(lat, int | float) or not isinstance(lon, int | float):
            raise ValueError(f"lat/lon {lat!r}, {lon!r} are not numbers")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(f"lat/lon {lat}, {lon} out of range")
        doc["cell"] = h3.latlng_to_cell(lat, lon, h3_resolution)
    apply_doc(i, b"%d" % rid if rid >= 0 else b"", doc, regions, h3_resolution, out)


def _jsonl_rows(raw: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for line, text in enumerate(raw, start=1):
        if not text.strip():
            continue
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            yield line, f"not JSON: {exc}"
            continue
        if not isinstance(doc, dict):
            yield line, f"not a JSON object but {type(doc).__name__}"
            continue
        yield line, doc


def _csv_rows(text: IO[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    reader = csv.DictReader(text)
    header = reader.fieldnames or []
    missing = [c for c in _CSV_REQUIRED if c not in header]
    unknown = [c for c in header if c not in _CSV_KNOWN]
    if missing or unknown:
        yield 1, f"bad header: missing {missing}, unknown {unknown}; nothing loaded"
        return
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            yield reader.line_num, f"unreadable CSV: {exc}"
            return
        line = reader.line_num
        if None in row or any(v is None for v in row.values()):
            yield line, f"expected {len(header)} fields as in the header"
            continue
        try:
            yield line, _csv_doc(row)
        except ValueError as exc:
            yield line, str(exc)


def _csv_doc(row: dict[str, str]) -> dict[str, Any]:
    def flag(name: str) -> bool:
        value = row.get(name, "").strip().lower()
        if value not in _TRUE:
            raise ValueError(f"{name} {row[name]!r} is not true/false")
        return _TRUE[value]

    rid = row["recipient_id"].strip()
    if not rid.isdigit():
        raise ValueError(f"recipient_id {row['recipient_id']!r} is not an integer")
    doc: dict[str, Any] = {"recipient_id": int(rid)}
    if flag("unsubscribe"):
        doc["unsubscribe"] = True
        return doc
    doc["ward"] = row["ward"].strip()
    doc["channels"] = [c.strip() for c in row["channels"].split("|") if c.strip()]
    doc["language"] = row["language"].strip()
    doc["test_audience"] = flag("test_audience")
    opted = row.get("opted_out", "").strip()
    doc["opted_out"] = [c.strip() for c in opted.split("|")] if opted else []
    cell = row.get("cell", "").strip()
    if cell:
        doc["cell"] = cell
    lat, lon = row.get("lat", "").strip(), row.get("lon", "").strip()
    if lat or lon:
        try:
            doc["lat"], doc["lon"] = float(lat), float(lon)
        except ValueError:
            raise ValueError(f"lat/lon {lat!r}, {lon!r} are not numbers") from None
    return doc

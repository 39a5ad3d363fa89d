"""Region search for the console's pickers: official names, accent-insensitive, by jurisdiction.

Where it sits: behind ``GET /api/regions``. Pure and built once per process from the same
``vietnam-provinces`` data as :func:`streams.regions.registry` (codes ``VN-51``,
``VN-51-21001``), so a code the picker offers is one ingest knows.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Any

import vietnam_provinces as vp

from streams.ingest.agencies import Agency
from streams.regions import RegionRegistry, province_code, ward_code

__all__ = ["RegionEntry", "fold", "names", "search"]


@dataclass(frozen=True, slots=True)
class RegionEntry:
    code: str
    name: str
    kind: str
    province: str
    #: name and code folded for matching (lower case, no accents, đ -> d)
    key: str

    def to_doc(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "kind": self.kind, "province": self.province}


def fold(text: str) -> str:
    """Lower case without accents: ``Quảng Ngãi`` and ``quang ngai`` match (``đ`` is ``d``)."""
    text = text.casefold().replace("đ", "d")
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def _entries(regions: RegionRegistry) -> tuple[RegionEntry, ...]:
    return _all_entries(frozenset(regions.province_codes) | frozenset(regions.ward_codes))


@cache
def _all_entries(known: frozenset[str]) -> tuple[RegionEntry, ...]:
    found: list[RegionEntry] = []
    for p in sorted(vp.Province.iter_all(), key=lambda p: int(p.code)):
        code = province_code(int(p.code))
        found.append(RegionEntry(code, p.name, "province", code, fold(f"{p.name} {code}")))
    for w in sorted(vp.Ward.iter_all(), key=lambda w: int(w.code)):
        code = ward_code(int(w.province_code), int(w.code))
        province = province_code(int(w.province_code))
        found.append(RegionEntry(code, w.name, "ward", province, fold(f"{w.name} {code}")))
    return tuple(e for e in found if e.code in known)


def names(regions: RegionRegistry) -> dict[str, str]:
    """Code -> official name, for every province and ward."""
    return _names(_entries(regions))


@cache
def _names(entries: tuple[RegionEntry, ...]) -> dict[str, str]:
    return {e.code: e.name for e in entries}


def search(regions: RegionRegistry, agency: Agency, query: str, limit: int) -> list[RegionEntry]:
    """Provinces first, then wards, whose name or code holds every word of ``query``, inside
    ``agency``'s jurisdiction."""
    words = fold(query).split()
    found = []
    for entry in _entries(regions):
        if all(w in entry.key for w in words) and agency.covers(entry.code):
            found.append(entry)
            if len(found) >= limit:
                break
    return found

"""Region registry: hierarchical, prefix-matchable codes built on Viet Nam's official divisions.

Codes are ``VN`` (country), ``VN-<province:02>`` (province or centrally run city) and
``VN-<province:02>-<ward:05>`` (ward, commune or special zone), taken from the
``vietnam-provinces`` package (the divisions in force since 1 July 2025: 34 provinces, 3,321
wards). A code is valid only if it names a node of the tree; a parent code covers every ward
below it.

Everything at recipient scale uses the *ward index* (0..n_wards-1, ``uint16``), so targeting a
set of codes becomes one boolean mask over wards, applied to the directory with one vectorized
gather.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt
import vietnam_provinces as vp

from streams.errors import UnknownRegion

__all__ = ["COUNTRY", "RegionRegistry", "registry"]

COUNTRY = "VN"


@dataclass(frozen=True, slots=True)
class RegionRegistry:
    """The division tree of one country, indexed for vectorized targeting."""

    country: str
    #: Province codes (``VN-01``...), in official order.
    province_codes: tuple[str, ...]
    #: Ward codes (``VN-01-00004``...), sorted by official ward code; position = ward index.
    ward_codes: tuple[str, ...]
    #: For each ward index, the index of its province in ``province_codes``.
    ward_province: npt.NDArray[np.uint8]
    #: Ward names, for humans (previews, demo summary).
    ward_names: tuple[str, ...]
    province_names: tuple[str, ...]
    _ward_index: dict[str, int]
    _province_index: dict[str, int]

    @property
    def n_wards(self) -> int:
        return len(self.ward_codes)

    def ward_index(self, code: str) -> int:
        """Index of a ward code; raises :class:`UnknownRegion`."""
        try:
            return self._ward_index[code]
        except KeyError:
            raise UnknownRegion(f"unknown ward code {code!r}") from None

    def province_index(self, code: str) -> int:
        try:
            return self._province_index[code]
        except KeyError:
            raise UnknownRegion(f"unknown province code {code!r}") from None

    def is_known(self, code: str) -> bool:
        return code == self.country or code in self._province_index or code in self._ward_index

    def ward_mask(self, codes: Iterable[tuple[str, str]]) -> npt.NDArray[np.bool_]:
        """Boolean mask over wards covered by ``(pointer, code)`` pairs.

        ``pointer`` names where the code came from, so an unknown code is reported at its field.
        """
        mask = np.zeros(self.n_wards, dtype=np.bool_)
        for pointer, code in codes:
            if code == self.country:
                mask[:] = True
            elif code in self._province_index:
                mask |= self.ward_province == self._province_index[code]
            elif code in self._ward_index:
                mask[self._ward_index[code]] = True
            else:
                raise UnknownRegion(f"unknown region code {code!r}", pointer=pointer)
        return mask


def province_code(official: int) -> str:
    return f"{COUNTRY}-{official:02d}"


def ward_code(official_province: int, official_ward: int) -> str:
    return f"{COUNTRY}-{official_province:02d}-{official_ward:05d}"


@cache
def registry() -> RegionRegistry:
    """The Vietnamese registry, built once per process from ``vietnam-provinces``."""
    provinces = sorted(vp.Province.iter_all(), key=lambda p: int(p.code))
    wards = sorted(vp.Ward.iter_all(), key=lambda w: int(w.code))
    province_codes = tuple(province_code(int(p.code)) for p in provinces)
    province_index = {code: i for i, code in enumerate(province_codes)}
    ward_codes = tuple(ward_code(int(w.province_code), int(w.code)) for w in wards)
    ward_province = np.fromiter(
        (province_index[province_code(int(w.province_code))] for w in wards),
        dtype=np.uint8,
        count=len(wards),
    )
    return RegionRegistry(
        country=COUNTRY,
        province_codes=province_codes,
        ward_codes=ward_codes,
        ward_province=ward_province,
        ward_names=tuple(w.name for w in wards),
        province_names=tuple(p.name for p in provinces),
        _ward_index={code: i for i, code in enumerate(ward_codes)},
        _province_index=province_index,
    )

"""Region registry: hierarchical, prefix-matchable codes built on Viet Nam's official divisions.

Codes are ``VN`` (country), ``VN-<province:02>`` (province or centrally run city) and
``VN-<province:02>-<ward:05>`` (ward, commune or special zone), taken from the
``vietnam-provinces`` package (the divisions in force since 1 July 2025: 34 provinces, 3,321
wards). A code is valid only if it names a node of the tree; a parent code covers every ward
below it.

Everything at recipient scale uses the *ward index* (0..n_wards-1, ``uint16``), so targeting a
set of codes becomes one boolean mask over wards, applied to the directory with one vectorized
gather.

Alert areas (:func:`resolve_targets`, called by ingest) resolve to that target:

* ``regions``: Loa codes, as above.
* ``geocode`` (CAP ``valueName``/``value``), mapped to Loa codes. Accepted value names:
  ``VN`` or ``LOA`` (a Loa code: ``VN``, ``VN-01``, ``VN-01-00004``; ``VN`` is the name the
  README and ``schemas/cap/README.md`` document, ``LOA`` an alias), ``VN-PROVINCE`` (an official
  2-digit province code: ``01``), ``VN-WARD`` (an official 5-digit ward code, unique in the
  country: ``00004``). Any other value name, or a value naming no current division, rejects the
  alert (``unknown_region``, at the field): an unknown code never becomes an empty audience.
* ``polygon`` (CAP: ``"lat,lon lat,lon ..."``, WGS 84, at least 4 points, first = last) and
  ``circle`` (CAP: ``"lat,lon radius_km"``) resolve to H3 cells at ``LOA_H3_RESOLUTION``: a
  polygon to the cells whose centre lies inside it (H3's polyfill; a polygon too small to hold
  a cell centre takes the cells it overlaps), a circle to the cells whose centre is within the
  radius. The cells travel compacted (``h3.compact_cells``) in the fan-out order; subscribers
  whose location cell lies inside are targeted. A shape outside the country's bounding box is
  ``unknown_region``; a malformed one is ``schema``; one needing over :data:`MAX_AREA_CELLS`
  cells is ``unsupported`` (target it with region codes instead).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import Any

import h3
import numpy as np
import numpy.typing as npt
import vietnam_provinces as vp

from streams.errors import SchemaViolation, UnknownRegion, Unsupported, quote

__all__ = [
    "COUNTRY",
    "GEOCODE_NAMES",
    "MAX_AREA_CELLS",
    "RegionRegistry",
    "Targets",
    "circle_cells",
    "parse_circle",
    "parse_polygon",
    "polygon_cells",
    "registry",
    "resolve_targets",
]

COUNTRY = "VN"
#: CAP geocode value names Loa maps to region codes (see the module docstring).
GEOCODE_NAMES = ("VN", "LOA", "VN-PROVINCE", "VN-WARD")
_LOA_CODE_NAMES = frozenset({"VN", "LOA"})
#: Most H3 cells one alert's polygons and circles may cover (before compaction).
MAX_AREA_CELLS = 1_000_000
#: Most compacted cells one alert may carry (they travel in every fan-out order).
MAX_COMPACT_CELLS = 20_000
#: ``(south, west, north, east)`` of Viet Nam including its islands; shapes must touch it.
COUNTRY_BOUNDS = (7.0, 102.0, 23.5, 118.0)
DEFAULT_H3_RESOLUTION = 7  # = Settings.h3_resolution's default


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
    #: Province names, for humans (previews, demo summary).
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
            raise UnknownRegion(f"unknown ward code {quote(code)}") from None

    def province_index(self, code: str) -> int:
        try:
            return self._province_index[code]
        except KeyError:
            raise UnknownRegion(f"unknown province code {quote(code)}") from None

    def is_known(self, code: str) -> bool:
        return code == self.country or code in self._province_index or code in self._ward_index

    def geocode(self, name: object, value: object, *, pointer: str) -> str:
        """The Loa code of a CAP geocode; raises :class:`UnknownRegion` at ``pointer``."""
        code: str | None = None
        if name in _LOA_CODE_NAMES and isinstance(value, str) and self.is_known(value):
            code = value
        elif name == "VN-PROVINCE" and isinstance(value, str) and len(value) == 2:
            code = f"{self.country}-{value}"
            code = code if code in self._province_index else None
        elif name == "VN-WARD" and isinstance(value, str) and len(value) == 5:
            code = self._ward_by_official().get(value)
        elif name not in GEOCODE_NAMES:
            raise UnknownRegion(
                f"geocode valueName {quote(name)} is not one of {', '.join(GEOCODE_NAMES)}",
                pointer=f"{pointer}/valueName",
            )
        if code is None:
            raise UnknownRegion(
                f"unknown {name} geocode {quote(value)}", pointer=f"{pointer}/value"
            )
        return code

    def _ward_by_official(self) -> dict[str, str]:
        return _ward_by_official(self.ward_codes)

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
                raise UnknownRegion(f"unknown region code {quote(code)}", pointer=pointer)
        return mask


@cache
def _ward_by_official(ward_codes: tuple[str, ...]) -> dict[str, str]:
    return {code[-5:]: code for code in ward_codes}


@dataclass(frozen=True, slots=True)
class Targets:
    """What an alert targets: where (codes, cells) and about what (categories, for opt-outs)."""

    #: Loa region codes, in first-seen order, without repeats.
    codes: tuple[str, ...]
    #: Compacted H3 cells (string form, mixed resolutions) of the polygons and circles.
    cells: tuple[str, ...]
    #: CAP categories of the alert's info blocks, in first-seen order.
    categories: tuple[str, ...]
    #: ``(pointer, code)`` of every region code and resolved geocode, for authorization.
    pointed: tuple[tuple[str, str], ...] = ()
    #: ``(pointer, message)`` of each shape that lies partly outside the country.
    outside: tuple[tuple[str, str], ...] = ()


def resolve_targets(
    infos: Sequence[Mapping[str, Any]],
    regions: RegionRegistry,
    *,
    h3_resolution: int = DEFAULT_H3_RESOLUTION,
) -> Targets:
    """Resolve the areas of schema-valid ``info`` blocks; raises a :class:`PoisonError` with the
    JSON pointer of the offending field (unknown code, malformed or oversized shape)."""
    codes: list[str] = []
    pointed: list[tuple[str, str]] = []
    cells: set[str] = set()
    categories: list[str] = []

    def add(pointer: str, code: str) -> None:
        pointed.append((pointer, code))
        if code not in codes:
            codes.append(code)

    for i, info in enumerate(infos):
        for category in info.get("category", ()):
            if category not in categories:
                categories.append(category)
        for j, area in enumerate(info["area"]):
            at = f"/info/{i}/area/{j}"
            for k, code in enumerate(area.get("regions", ())):
                add(f"{at}/regions/{k}", code)
            for k, pair in enumerate(area.get("geocode", ())):
                pointer = f"{at}/geocode/{k}"
                add(pointer, regions.geocode(pair["valueName"], pair["value"], pointer=pointer))
            for k, text in enumerate(area.get("polygon", ())):
                pointer = f"{at}/polygon/{k}"
                points = parse_polygon(text, pointer=pointer)
                found = polygon_cells(points, h3_resolution, pointer=pointer)
                _add_cells(cells, found, pointer)
            for k, text in enumerate(area.get("circle", ())):
                pointer = f"{at}/circle/{k}"
                lat, lon, radius = parse_circle(text, pointer=pointer)
                found = circle_cells(lat, lon, radius, h3_resolution, pointer=pointer)
                _add_cells(cells, found, pointer)
    regions.ward_mask(pointed)  # raises UnknownRegion at the offending field
    compact = sorted(h3.compact_cells(list(cells))) if cells else []
    if len(compact) > MAX_COMPACT_CELLS:
        raise Unsupported(
            f"the alert's shapes compact to {len(compact)} H3 cells, the limit is "
            f"{MAX_COMPACT_CELLS}; target large areas with region codes",
            pointer="/info",
        )
    return Targets(tuple(codes), tuple(compact), tuple(categories), tuple(pointed))


def _add_cells(cells: set[str], found: list[str], pointer: str) -> None:
    cells.update(found)
    if len(cells) > MAX_AREA_CELLS:
        raise Unsupported(
            f"the alert's shapes cover over {MAX_AREA_CELLS} H3 cells; target large areas "
            "with region codes",
            pointer=pointer,
        )


def _point(text: str, pointer: str) -> tuple[float, float]:
    try:
        lat_s, lon_s = text.split(",")
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise SchemaViolation(f"{quote(text)} is not a 'lat,lon' point", pointer=pointer) from None
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise SchemaViolation(f"point {quote(text)} is out of range", pointer=pointer)
    return lat, lon


def _in_country(lat: float, lon: float) -> bool:
    s, w, n, e = COUNTRY_BOUNDS
    return s <= lat <= n and w <= lon <= e


def parse_polygon(text: str, *, pointer: str) -> list[tuple[float, float]]:
    """A CAP polygon (``"lat,lon lat,lon ..."``, closed) as ``(lat, lon)`` points."""
    points = [_point(p, pointer) for p in text.split()]
    if len(points) < 4:
        raise SchemaViolation("a CAP polygon has at least 4 points", pointer=pointer)
    if points[0] != points[-1]:
        raise SchemaViolation("a CAP polygon ends where it starts", pointer=pointer)
    if _twice_area(points) == 0:
        raise SchemaViolation(
            "a CAP polygon encloses an area (its points are not all on one line)", pointer=pointer
        )
    if not _touches_country(points):
        raise UnknownRegion(f"the polygon lies outside {COUNTRY}", pointer=pointer)
    return points


def _touches_country(ring: list[tuple[float, float]]) -> bool:
    """True if the closed ring shares a point with :data:`COUNTRY_BOUNDS`: a vertex inside the
    box, the box inside the ring, or an edge crossing the box (a strip drawn across the country
    from sea to sea has no vertex in it). Edges are straight in (lat, lon), as H3 fills them."""
    if any(_in_country(lat, lon) for lat, lon in ring):
        return True
    s, w, n, e = COUNTRY_BOUNDS
    box = [(s, w), (s, e), (n, e), (n, w), (s, w)]
    if _encloses(ring, box[0]):
        return True
    return any(_crosses(a, b, c, d) for a, b in pairwise(ring) for c, d in pairwise(box))


def _encloses(ring: list[tuple[float, float]], point: tuple[float, float]) -> bool:
    """Ray casting along the longitude axis (even-odd rule)."""
    lat, lon = point
    inside = False
    for (a_lat, a_lon), (b_lat, b_lon) in pairwise(ring):
        if (a_lat > lat) != (b_lat > lat):
            cross_lon = a_lon + (lat - a_lat) * (b_lon - a_lon) / (b_lat - a_lat)
            if lon < cross_lon:
                inside = not inside
    return inside


def _side(p: tuple[float, float], q: tuple[float, float], r: tuple[float, float]) -> float:
    """Positive if ``r`` lies left of the line ``p -> q``, negative if right, 0 on it."""
    return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])


def _crosses(
    a: tuple[float, float], b: tuple[float, float], c: tuple[float, float], d: tuple[float, float]
) -> bool:
    """True if segment ``a-b`` crosses segment ``c-d`` at a point inside both (segments that
    only touch at an end or run along one line do not count)."""
    return _side(a, b, c) * _side(a, b, d) < 0 and _side(c, d, a) * _side(c, d, b) < 0


def _twice_area(points: list[tuple[float, float]]) -> float:
    """Shoelace sum of a closed ring: 0 for one point or points on one line (H3 fails on those)."""
    return abs(sum(a[0] * b[1] - b[0] * a[1] for a, b in pairwise(points)))


def parse_circle(text: str, *, pointer: str) -> tuple[float, float, float]:
    """A CAP circle (``"lat,lon radius_km"``) as ``(lat, lon, radius_km)``."""
    parts = text.split()
    if len(parts) != 2:
        raise SchemaViolation(f"{quote(text)} is not a 'lat,lon radius' circle", pointer=pointer)
    lat, lon = _point(parts[0], pointer)
    try:
        radius = float(parts[1])
    except ValueError:
        raise SchemaViolation(
            f"radius {quote(parts[1])} is not a number", pointer=pointer
        ) from None
    if not (math.isfinite(radius) and radius >= 0):
        raise SchemaViolation(f"radius {quote(parts[1])} is not a distance in km", pointer=pointer)
    if not _in_country(lat, lon):
        raise UnknownRegion(f"the circle's centre lies outside {COUNTRY}", pointer=pointer)
    return lat, lon, radius


def _estimate(area_km2: float, res: int, pointer: str) -> None:
    if area_km2 / h3.average_hexagon_area(res, "km^2") > MAX_AREA_CELLS:
        raise Unsupported(
            f"the shape covers over {MAX_AREA_CELLS} H3 cells at resolution {res}; target "
            "large areas with region codes",
            pointer=pointer,
        )


def polygon_cells(points: list[tuple[float, float]], res: int, *, pointer: str = "") -> list[str]:
    """Cells whose centre lies inside the polygon; if none, the cells it overlaps."""
    shape = h3.LatLngPoly(points[:-1])
    lats = [p[0] for p in points]
    lons = [p[1] for p in points]
    box_km2 = (max(lats) - min(lats)) * 111.0 * (max(lons) - min(lons)) * 111.0
    _estimate(box_km2, res, pointer)
    cells = list(h3.h3shape_to_cells(shape, res))
    if not cells:
        try:
            cells = list(h3.h3shape_to_cells_experimental(shape, res, contain="overlap"))
        except h3.H3BaseException:  # a sliver H3 cannot fill: poison, not a bug
            raise SchemaViolation(
                "the polygon is too thin to cover any cell", pointer=pointer
            ) from None
    return cells


def circle_cells(
    lat: float, lon: float, radius_km: float, res: int, *, pointer: str = ""
) -> list[str]:
    """Cells whose centre is within ``radius_km`` of the centre (at least the centre's cell)."""
    _estimate(math.pi * radius_km**2, res, pointer)
    centre = h3.latlng_to_cell(lat, lon, res)
    # a disk of k rings covers every cell whose centre is within k * (min spacing) of the centre
    spacing = h3.average_hexagon_edge_length(res, "km") * math.sqrt(3) * 0.8
    k = int(radius_km / spacing) + 2
    out = [centre]
    for cell in h3.grid_disk(centre, k):
        if cell != centre:
            c_lat, c_lon = h3.cell_to_latlng(cell)
            if h3.great_circle_distance((lat, lon), (c_lat, c_lon), "km") <= radius_km:
                out.append(cell)
    return out


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
        province_names=tuple(p.name for p in provinces),
        _ward_index={code: i for i, code in enumerate(ward_codes)},
        _province_index=province_index,
    )

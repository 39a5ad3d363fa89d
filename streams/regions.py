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
  whose location cell lies inside are targeted. A malformed shape is ``schema``; one needing
  over :data:`MAX_AREA_CELLS` cells is ``unsupported`` (target it with region codes instead).

Shapes are checked against the country's real outline (:class:`Territory`: land and territorial
sea as OpenStreetMap draws them, shipped as compacted H3 cells in ``streams/data/geo``, see
``docs/geography.md``). A shape none of whose cells overlaps the territory is
``unknown_region`` at its field, naming the shape; a shape partly outside is accepted whole (its
cells are not clipped: a subscriber located just across the border is in the same danger) and
:attr:`Targets.outside` says, per shape, which share lies outside and where, for the agency's
decision. :data:`COUNTRY_BOUNDS` is only a cheap first filter that skips filling shapes far
from the country; the decision comes from the outline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import h3
import numpy as np
import numpy.typing as npt
import orjson
import vietnam_provinces as vp
from h3.api import basic_int as h3_int
from h3.api import numpy_int as h3_np

from streams.errors import SchemaViolation, UnknownRegion, Unsupported, quote

if TYPE_CHECKING:
    from streams.directory.cells import CellSet

__all__ = [
    "COUNTRY",
    "GEOCODE_NAMES",
    "MAX_AREA_CELLS",
    "RegionRegistry",
    "Targets",
    "Territory",
    "circle_cells",
    "parse_circle",
    "parse_polygon",
    "polygon_cells",
    "registry",
    "resolve_targets",
    "territory",
]

COUNTRY = "VN"
#: CAP geocode value names Loa maps to region codes (see the module docstring).
GEOCODE_NAMES = ("VN", "LOA", "VN-PROVINCE", "VN-WARD")
_LOA_CODE_NAMES = frozenset({"VN", "LOA"})
#: Most H3 cells one alert's polygons and circles may cover (before compaction).
MAX_AREA_CELLS = 1_000_000
#: Most compacted cells one alert may carry (they travel in every fan-out order).
MAX_COMPACT_CELLS = 20_000
#: ``(south, west, north, east)`` around Viet Nam's territory (:func:`territory`, islands and
#: territorial sea included): a shape that does not touch it is outside without being filled.
COUNTRY_BOUNDS = (7.0, 102.0, 23.5, 118.0)
COUNTRY_NAME = "Viet Nam"
_TERRITORY_FILE = "vn-territory.json"
_KM_PER_DEGREE_LAT = 110.5  # the shortest degree of latitude (at the equator), so boxes err wide
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
    #: ``(pointer, message)`` of every polygon or circle that lies partly outside the country:
    #: which share of its cells and which box, for the agency to see in its decision.
    outside: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Territory:
    """A country's land and maritime zone as compacted H3 cells, against which every polygon and
    circle is checked (:func:`territory` loads Viet Nam's)."""

    #: The country, for messages: ``Viet Nam``.
    name: str
    #: What the cells cover and where they come from, for messages.
    source: str
    #: Finest resolution of the cells (their edge is drawn at it).
    resolution: int
    cells: CellSet

    def overlaps(self, cells: npt.NDArray[np.uint64], res: int) -> npt.NDArray[np.bool_]:
        """Which ``cells`` (all of resolution ``res``) share area with the territory.

        A cell at the territory's resolution or finer is inside when its ancestor is in the set;
        a coarser one when any territory cell lies in it, so a coarse ``LOA_H3_RESOLUTION``
        never calls a shape outside that touches the country.
        """
        from streams.directory.cells import to_resolution  # lazily: streams.directory imports us

        hit = self.cells.contains(cells)
        if res < self.resolution:
            finer = [members for level, members in self.cells.levels if level > res]
            if finer:
                hit |= np.isin(cells, np.unique(to_resolution(np.concatenate(finer), res)))
        return hit


def resolve_targets(
    infos: Sequence[Mapping[str, Any]],
    regions: RegionRegistry,
    *,
    h3_resolution: int = DEFAULT_H3_RESOLUTION,
    land: Territory | None = None,
) -> Targets:
    """Resolve the areas of schema-valid ``info`` blocks; raises a :class:`PoisonError` with the
    JSON pointer of the offending field (unknown code, malformed or oversized shape, a shape
    wholly outside ``land``, by default :func:`territory`)."""
    land = territory() if land is None else land
    codes: list[str] = []
    pointed: list[tuple[str, str]] = []
    outside: list[tuple[str, str]] = []
    # the union of the shapes' cells, sorted: numpy, as a national shape has ~10^5 cells
    cells = np.empty(0, dtype=np.uint64)
    categories: list[str] = []

    def add(pointer: str, code: str) -> None:
        pointed.append((pointer, code))
        if code not in codes:
            codes.append(code)

    def shape(pointer: str, label: str, these: npt.NDArray[np.uint64]) -> None:
        nonlocal cells
        part = _outside_part(these, h3_resolution, label, pointer, land)
        if part is not None:
            outside.append((pointer, part))
        cells = _sorted_unique(np.concatenate([cells, these]))
        if cells.shape[0] > MAX_AREA_CELLS:
            raise Unsupported(
                f"the alert's shapes cover over {MAX_AREA_CELLS} H3 cells; target large areas "
                "with region codes",
                pointer=pointer,
            )

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
                pointer, label = f"{at}/polygon/{k}", _label("polygon", i, j, k)
                points = parse_polygon(text, pointer=pointer)
                if not _touches_country(points):
                    raise _wholly_outside(label, pointer, land)
                shape(pointer, label, _polygon_cells(points, h3_resolution, pointer))
            for k, text in enumerate(area.get("circle", ())):
                pointer, label = f"{at}/circle/{k}", _label("circle", i, j, k)
                lat, lon, radius = parse_circle(text, pointer=pointer)
                if not _circle_touches_country(lat, lon, radius):
                    raise _wholly_outside(label, pointer, land)
                found = circle_cells(lat, lon, radius, h3_resolution, pointer=pointer)
                shape(pointer, label, _cells_u64(found))
    regions.ward_mask(pointed)  # raises UnknownRegion at the offending field
    compact = sorted(h3.int_to_str(c) for c in h3_np.compact_cells(cells).tolist())
    if len(compact) > MAX_COMPACT_CELLS:
        raise Unsupported(
            f"the alert's shapes compact to {len(compact)} H3 cells, the limit is "
            f"{MAX_COMPACT_CELLS}; target large areas with region codes",
            pointer="/info",
        )
    return Targets(tuple(codes), tuple(compact), tuple(categories), tuple(pointed), tuple(outside))


def _label(kind: str, info: int, area: int, index: int) -> str:
    """How a message names a shape, counting from 1 as people do: ``circle 1 of area 1``."""
    label = f"{kind} {index + 1} of area {area + 1}"
    return label if info == 0 else f"{label} of info {info + 1}"


def _wholly_outside(label: str, pointer: str, land: Territory) -> UnknownRegion:
    return UnknownRegion(
        f"{label} lies wholly outside {land.name} ({land.source})", pointer=pointer
    )


def _outside_part(
    cells: npt.NDArray[np.uint64], res: int, label: str, pointer: str, land: Territory
) -> str | None:
    """What of a shape's cells lies outside ``land``, as a message; None if nothing does.

    Raises :class:`UnknownRegion` if every cell does."""
    inside = land.overlaps(cells, res)
    n_in = int(np.count_nonzero(inside))
    if n_in == 0:
        raise _wholly_outside(label, pointer, land)
    if n_in == cells.shape[0]:
        return None
    out = cells[~inside]
    south, west, north, east = _cells_box(out)
    return (
        f"{label}: {_share(out.shape[0], cells.shape[0])} of its area ({out.shape[0]} of "
        f"{cells.shape[0]} H3 cells at resolution {res}) lies outside {land.name} "
        f"({land.source}), within lat {south:.3f} to {north:.3f}, lon {west:.3f} to {east:.3f}; "
        "subscribers located there are alerted too"
    )


def _share(part: int, whole: int) -> str:
    """A percentage that never reads 0 % or 100 % for a part that is neither none nor all."""
    pct = 100.0 * part / whole
    if pct < 0.1:
        return "under 0.1 %"
    if pct > 99.9:
        return "over 99.9 %"
    return f"{pct:.1f} %"


def _cells_u64(found: list[str]) -> npt.NDArray[np.uint64]:
    """H3 cells from their string form, vectorized (a cell's string is 15 hex digits)."""
    from streams.directory.cells import parse_hex  # lazily: streams.directory imports us

    text = "".join(found).encode("ascii")
    if len(text) != 15 * len(found):
        return np.fromiter((h3.str_to_int(c) for c in found), dtype=np.uint64, count=len(found))
    cells, ok = parse_hex(np.frombuffer(text, dtype=np.uint8).reshape(-1, 15))
    if not ok.all():
        raise ValueError("not an H3 cell")  # a bug: every cell here came from h3
    return cells


def _cells_box(cells: npt.NDArray[np.uint64]) -> tuple[float, float, float, float]:
    """``(south, west, north, east)`` of the cells' boundaries (of one resolution)."""
    # compacting first keeps this cheap for a shape of a million cells: only its edge stays at
    # full resolution; a compacted parent's boundary bounds its children to within a fraction
    # of a child (H3 children stick out a little), which is precise enough for a message
    lats: list[float] = []
    lons: list[float] = []
    for cell in h3_np.compact_cells(cells).tolist():
        for lat, lon in h3_int.cell_to_boundary(cell):
            lats.append(lat)
            lons.append(lon)
    return min(lats), min(lons), max(lats), max(lons)


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


def _circle_touches_country(lat: float, lon: float, radius_km: float) -> bool:
    """True if the circle's bounding box (erring wide) touches :data:`COUNTRY_BOUNDS`."""
    s, w, n, e = COUNTRY_BOUNDS
    dlat = radius_km / _KM_PER_DEGREE_LAT
    if lat - dlat > n or lat + dlat < s:
        return False
    cos_lat = math.cos(math.radians(min(abs(lat) + dlat, 90.0)))
    dlon = 180.0 if cos_lat < 1e-9 else min(180.0, dlat / cos_lat)
    # the same box shifted by a turn, for a circle whose box wraps the antimeridian
    return any(lon + t - dlon <= e and lon + t + dlon >= w for t in (-360.0, 0.0, 360.0))


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
    return [h3.int_to_str(c) for c in _polygon_cells(points, res, pointer).tolist()]


def _polygon_cells(
    points: list[tuple[float, float]], res: int, pointer: str
) -> npt.NDArray[np.uint64]:
    """:func:`polygon_cells` as integers: a national polygon has ~10^5 cells, and their string
    form alone would cost a third of a second."""
    shape = h3.LatLngPoly(points[:-1])
    lats = [p[0] for p in points]
    lons = [p[1] for p in points]
    box_km2 = (max(lats) - min(lats)) * 111.0 * (max(lons) - min(lons)) * 111.0
    _estimate(box_km2, res, pointer)
    cells: npt.NDArray[np.uint64] = h3_np.h3shape_to_cells(shape, res)
    if not cells.size:
        try:
            cells = h3_np.h3shape_to_cells_experimental(shape, res, contain="overlap")
        except h3.H3BaseException:  # a sliver H3 cannot fill: poison, not a bug
            raise SchemaViolation(
                "the polygon is too thin to cover any cell", pointer=pointer
            ) from None
    return _sorted_unique(cells)


def _sorted_unique(cells: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Sorted without repeats (np.unique's hashing is ten times slower on ~10^5 cells)."""
    cells = np.sort(cells)
    if cells.size:
        keep = np.empty(cells.shape[0], dtype=np.bool_)
        keep[0] = True
        np.not_equal(cells[1:], cells[:-1], out=keep[1:])
        cells = cells[keep]
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


@cache
def territory() -> Territory:
    """Viet Nam's land and territorial sea (``streams/data/geo/vn-territory.json``, derived by
    ``deploy/geo/build.sh`` from OpenStreetMap's outline), loaded once per process."""
    from streams.directory.cells import CellSet  # lazily: streams.directory imports us

    doc = orjson.loads((files("streams") / "data" / "geo" / _TERRITORY_FILE).read_bytes())
    origin = doc["provenance"]
    return Territory(
        name=COUNTRY_NAME,
        source=(
            f"land and territorial sea as OpenStreetMap draws them, "
            f"{origin['package']} {origin['version']}"
        ),
        resolution=int(doc["resolution"]),
        cells=CellSet.of(h3.str_to_int(c) for c in doc["cells"]),
    )


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

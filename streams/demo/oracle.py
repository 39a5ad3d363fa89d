"""An independent audience oracle: who an alert should reach, from raw subscriber rows.

Where it sits: outside the data flow. The demo's "expected" count and the tests' expected
audiences come from here, so they can disagree with the fan-out when the fan-out is wrong. It
shares no code with what it checks (:mod:`streams.regions` targeting, the directory index,
:mod:`streams.fanout`): it reads the rows as the directory changes topic carries them (ward
code strings, location cells) and applies the simplest rules the README states:

* **Region codes** (``regions``, and geocodes ``LOA``, ``VN-PROVINCE``, ``VN-WARD``): a
  subscriber is targeted when its ward code *is* the code or starts with the code plus ``-``
  (``VN`` covers every ward, ``VN-01`` every ``VN-01-*``). Plain string comparison.
* **Polygons and circles**: a subscriber's location is the centre of its H3 cell (all the
  directory knows); it is targeted when that point lies inside a polygon (ray casting in the
  lat/lon plane) or within a circle's radius (haversine great-circle distance).
* **Status**: anything but ``Actual`` reaches only the test audience. ``Draft``, ``System``,
  ``Ack``, ``Error`` reach nobody.

Tolerance: Loa resolves shapes to H3 cells at ``LOA_H3_RESOLUTION`` (a cell counts when its
centre is inside; a shape too small for any centre takes the cells it overlaps; a circle always
takes its centre's cell). A subscriber whose location lies within one cell edge
(:func:`tolerance_km`, 1.2 times H3's average edge length: about 1.7 km at resolution 7) of a
shape's boundary may therefore land on either side; the oracle puts those in
:attr:`Expected.maybe` and everyone else in :attr:`Expected.sure` or nowhere. Region codes
have no tolerance. Opt-outs are not modelled: give it rows without ``opted_out``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import h3
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from streams.directory.index import ChangeBatch

__all__ = [
    "EARTH_RADIUS_KM",
    "Expected",
    "Rows",
    "expected_audience",
    "haversine_km",
    "in_polygon",
    "polygon_boundary_km",
    "tolerance_km",
    "ward_matches",
]

#: Mean Earth radius (IUGG), as in most haversine code.
EARTH_RADIUS_KM = 6371.0088
#: H3's average hexagon edge length in km by resolution (h3geo.org, "Tables of cell statistics
#: across resolutions"), written out so the oracle does not ask the library it checks.
_H3_AVERAGE_EDGE_KM = (
    1281.256011,
    483.0568391,
    182.5129565,
    68.97922179,
    26.07175968,
    9.854090990,
    3.724532667,
    1.406475763,
    0.531414010,
    0.200786148,
    0.075863783,
    0.028663897,
    0.010830188,
    0.004092010,
    0.001546100,
    0.000584169,
)
#: Cells are not regular: the centre-to-vertex distance varies by about 10 % around the
#: average; 1.2 covers it (tested over Viet Nam in tests/unit/test_oracle.py).
_EDGE_SLACK = 1.2
_SILENT_STATUSES = frozenset({"Draft", "System"})
_SILENT_TYPES = frozenset({"Ack", "Error"})


def tolerance_km(resolution: int) -> float:
    """How far from a shape's boundary a subscriber may be counted on either side."""
    return _H3_AVERAGE_EDGE_KM[resolution] * _EDGE_SLACK


@dataclass(frozen=True, slots=True)
class Rows:
    """Subscriber rows as the directory changes topic carries them (one array per field)."""

    ids: npt.NDArray[np.uint64]
    #: Ward code strings (``VN-01-00004``).
    ward: npt.NDArray[np.str_]
    test_audience: npt.NDArray[np.bool_]
    #: Location (centre of the subscriber's cell), NaN when the subscriber has none.
    lat: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]

    @classmethod
    def of(
        cls,
        ids: Iterable[int] | npt.NDArray[np.uint64],
        ward: Sequence[str] | npt.NDArray[np.str_],
        test_audience: Iterable[bool] | npt.NDArray[np.bool_],
        cells: Iterable[int | str | None] | npt.NDArray[np.uint64],
    ) -> Rows:
        """Rows from plain fields; ``cells`` are H3 cells (int or hex string), 0/None = none."""
        cell = np.fromiter((_cell_int(c) for c in cells), dtype=np.uint64)
        unique, inverse = np.unique(cell, return_inverse=True)
        centres = np.array(
            [
                h3.cell_to_latlng(h3.int_to_str(int(c))) if c else (math.nan, math.nan)
                for c in unique
            ],
            dtype=np.float64,
        ).reshape(-1, 2)
        return cls(
            ids=np.fromiter(ids, dtype=np.uint64),
            ward=np.asarray(ward, dtype=np.str_),
            test_audience=np.fromiter(test_audience, dtype=np.bool_),
            lat=centres[inverse, 0],
            lon=centres[inverse, 1],
        )

    @classmethod
    def from_batch(cls, batch: ChangeBatch, ward_codes: Sequence[str]) -> Rows:
        """The rows a directory batch puts on the changes topic: ward index -> code string, as
        ``directory.wire`` writes it (bit 0 of ``flags`` is the test audience)."""
        ward = np.asarray(ward_codes, dtype=np.str_)[batch.ward]
        return cls.of(batch.ids, ward, (batch.flags & 1) != 0, batch.cell)

    @classmethod
    def from_records(cls, docs: Iterable[Mapping[str, Any]]) -> Rows:
        """Rows from decoded ``subscriber_change`` records (``schemas/``)."""
        items = list(docs)
        return cls.of(
            (int(d["recipient_id"]) for d in items),
            [str(d["ward"]) for d in items],
            (bool(d.get("test_audience", False)) for d in items),
            (d.get("cell") for d in items),
        )


def _cell_int(cell: object) -> int:
    if cell is None:
        return 0
    return int(cell, 16) if isinstance(cell, str) else int(cell)  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class Expected:
    """Who an alert must reach (``sure``) and who may go either way (``maybe``, shape edges)."""

    sure: frozenset[int]
    maybe: frozenset[int] = frozenset()

    def problems(self, actual: Iterable[int]) -> list[str]:
        """What is wrong with ``actual`` (empty when it is a right audience)."""
        got = set(actual)
        missing = self.sure - got
        extra = got - self.sure - self.maybe
        out = []
        if missing:
            out.append(f"{len(missing)} expected recipients missing, e.g. {sorted(missing)[:5]}")
        if extra:
            out.append(f"{len(extra)} recipients not targeted got it, e.g. {sorted(extra)[:5]}")
        return out


def ward_matches(ward: npt.NDArray[np.str_], code: str) -> npt.NDArray[np.bool_]:
    """Rows whose ward code is ``code`` or below it (whole ``-`` segments)."""
    same: npt.NDArray[np.bool_] = np.equal(ward, code)
    below: npt.NDArray[np.bool_] = np.char.startswith(ward, code + "-")
    return same | below


def haversine_km(
    lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64], lat0: float, lon0: float
) -> npt.NDArray[np.float64]:
    """Great-circle distance in km from ``(lat0, lon0)`` to each point."""
    p, p0 = np.radians(lat), math.radians(lat0)
    dp, dl = p - p0, np.radians(lon - lon0)
    a = np.sin(dp / 2) ** 2 + np.cos(p) * math.cos(p0) * np.sin(dl / 2) ** 2
    distance: npt.NDArray[np.float64] = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a))
    return distance


def in_polygon(
    lat: npt.NDArray[np.float64],
    lon: npt.NDArray[np.float64],
    ring: Sequence[tuple[float, float]],
) -> npt.NDArray[np.bool_]:
    """Even-odd ray casting of each point against a closed ring of ``(lat, lon)``."""
    inside = np.zeros(lat.shape, dtype=np.bool_)
    for (y1, x1), (y2, x2) in pairwise(ring):
        if y1 == y2:
            continue
        crosses = (y1 > lat) != (y2 > lat)
        x_at = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (lon < x_at)
    return inside


def polygon_boundary_km(
    lat: npt.NDArray[np.float64],
    lon: npt.NDArray[np.float64],
    ring: Sequence[tuple[float, float]],
) -> npt.NDArray[np.float64]:
    """Distance in km from each point to the nearest edge of the ring (local flat projection,
    good to a few metres over the size of a province)."""
    lat0 = math.radians(sum(p[0] for p in ring) / len(ring))
    ky, kx = math.pi * EARTH_RADIUS_KM / 180, math.pi * EARTH_RADIUS_KM / 180 * math.cos(lat0)
    px, py = lon * kx, lat * ky
    best = np.full(lat.shape, np.inf)
    for (y1, x1), (y2, x2) in pairwise(ring):
        ax, ay, bx, by = x1 * kx, y1 * ky, x2 * kx, y2 * ky
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        t = np.zeros(lat.shape) if length2 == 0 else ((px - ax) * dx + (py - ay) * dy) / length2
        t = np.clip(t, 0.0, 1.0)
        best = np.minimum(best, np.hypot(px - (ax + t * dx), py - (ay + t * dy)))
    return best


def _geocode_rows(rows: Rows, name: str, value: str, country: str) -> npt.NDArray[np.bool_]:
    if name == "LOA":
        return ward_matches(rows.ward, value)
    if name == "VN-PROVINCE":
        return ward_matches(rows.ward, f"{country}-{value}")
    if name == "VN-WARD":
        return np.char.endswith(rows.ward, "-" + value)
    raise ValueError(f"geocode valueName {name!r} is not one the oracle knows")


def _ring(text: str) -> list[tuple[float, float]]:
    points = []
    for pair in text.split():
        lat, lon = pair.split(",")
        points.append((float(lat), float(lon)))
    return points


def expected_audience(
    doc: Mapping[str, Any],
    rows: Rows,
    *,
    resolution: int = 7,
    country: str = "VN",
) -> Expected:
    """The audience of a Loa JSON alert ``doc`` (CAP mapped to JSON) among ``rows``."""
    if doc.get("status", "Actual") in _SILENT_STATUSES or doc.get("msgType") in _SILENT_TYPES:
        return Expected(frozenset())
    sure = np.zeros(rows.ids.shape, dtype=np.bool_)
    maybe = np.zeros(rows.ids.shape, dtype=np.bool_)
    located = ~np.isnan(rows.lat)
    lat, lon = np.nan_to_num(rows.lat), np.nan_to_num(rows.lon)
    edge = tolerance_km(resolution)
    for info in doc.get("info", ()):
        for area in info.get("area", ()):
            for code in area.get("regions", ()):
                sure |= ward_matches(rows.ward, code)
            for pair in area.get("geocode", ()):
                sure |= _geocode_rows(rows, pair["valueName"], pair["value"], country)
            for text in area.get("polygon", ()):
                ring = _ring(text)
                near = located & (polygon_boundary_km(lat, lon, ring) < edge)
                sure |= located & in_polygon(lat, lon, ring) & ~near
                maybe |= near
            for text in area.get("circle", ()):
                centre, radius = text.split()
                lat0, lon0 = (float(v) for v in centre.split(","))
                distance = haversine_km(lat, lon, lat0, lon0)
                near = located & (np.abs(distance - float(radius)) < edge)
                sure |= located & (distance <= float(radius)) & ~near
                maybe |= near
    if doc.get("status", "Actual") != "Actual":
        sure &= rows.test_audience
        maybe &= rows.test_audience
    maybe &= ~sure
    return Expected(
        frozenset(rows.ids[sure].tolist()),
        frozenset(rows.ids[maybe].tolist()),
    )

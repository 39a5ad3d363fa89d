"""Derives the console's province outlines (streams/console/static/vendor/vn-provinces.geojson)
from the pinned @svg-maps/vietnam package, run by deploy/console/build.sh.

The package draws Viet Nam's 63 provinces of before the 2025 merger (plus the Hoàng Sa and
Trường Sa archipelagos) as SVG paths in a Mercator projection. The 34 provinces since
Resolution 202/2025/QH15 are whole merges of the old ones, so each new outline is the union of
its old parts. This script:

1. parses the paths (absolute and relative moveto/lineto/curveto; a curve keeps its end point);
2. georeferences them: x is linear in longitude and y linear in Mercator northing, fitted on
   four extreme points of the country (A Pa Chải in the west, Lũng Cú in the north, Mũi Đôi
   in the east, Mũi Cà Mau in the south);
3. dissolves each merge through H3 cells: every old province becomes the cells whose centres
   it holds (an island smaller than a cell keeps the cell of its first point), the new
   province is the union of its parts' cells and its outline the outer rings of that union.
   (The package's neighbours do not always share vertices, so cancelling shared edges left
   old borders inside new provinces; cells make neighbours share their border exactly.)
   Each ring is then simplified (Douglas-Peucker), which also smooths the cells' zigzag;
4. writes a GeoJSON FeatureCollection, coordinates rounded to 3 decimals (about 100 m),
   `properties.code` the Loa province code (`VN-51`) and `properties.name` the official name
   from the vietnam-provinces package.

The outlines are for drawing only (about 1 km off at worst): Loa resolves areas from official
codes and its own territory data, never from these shapes. Output is deterministic, so
tests/deploy/test_console_build.py rebuilds it and compares bytes.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import h3
import vietnam_provinces as vp

# Resolution 202/2025/QH15: new province (official code) -> the package's ids of its old parts.
# Hoàng Sa belongs to Đà Nẵng and Trường Sa to Khánh Hòa.
MERGES: dict[int, tuple[str, ...]] = {
    1: ("hanoi",),
    4: ("caobang",),
    8: ("tuyenquang", "hagiang"),
    11: ("dienbien",),
    12: ("laichau",),
    14: ("sonla",),
    15: ("laocai", "yenbai"),
    19: ("thainguyen", "backan"),
    20: ("langson",),
    22: ("quangninh",),
    24: ("bacninh", "bacgiang"),
    25: ("phutho", "vinhphuc", "hoabinh"),
    31: ("haiphong", "haiduong"),
    33: ("hungyen", "thaibinh"),
    37: ("ninhbinh", "hanam", "namdinh"),
    38: ("thanhhoa",),
    40: ("nghean",),
    42: ("hatinh",),
    44: ("quangtri", "quangbinh"),
    46: ("tthue",),
    48: ("danang", "quangnam", "hoangsa"),
    51: ("quangngai", "kontum"),
    52: ("gialai", "binhdinh"),
    56: ("khanhhoa", "ninhthuan", "truongsa"),
    66: ("daklak", "phuyen"),
    68: ("lamdong", "daknong", "binhthuan"),
    75: ("dongnai", "binhphuoc"),
    79: ("hcm", "binhduong", "baria"),
    80: ("tayninh", "longan"),
    82: ("dongthap", "tiengiang"),
    86: ("vinhlong", "bentre", "travinh"),
    91: ("angiang", "kiengiang"),
    92: ("cantho", "soctrang", "haugiang"),
    96: ("camau", "baclieu"),
}

# (package id, "min"/"max" of x or y, the real coordinate): the extreme points of the country
WEST = ("dienbien", 102.1444)  # A Pa Chải, min x
NORTH = ("hagiang", 23.3925)  # Lũng Cú, min y
EAST = ("khanhhoa", 109.4639)  # Mũi Đôi, max x
SOUTH = ("camau", 8.5600)  # Mũi Cà Mau, max y

Point = tuple[float, float]
_TOKEN = re.compile(r"[MmLlZzCc]|-?(?:\d+\.?\d*|\.\d+)(?:e-?\d+)?")


def parse_path(path: str) -> list[list[Point]]:
    """The closed rings of an SVG path, vertices rounded to the package's 2 decimals."""
    tokens = _TOKEN.findall(path)
    rings: list[list[Point]] = []
    ring: list[Point] = []
    x = y = 0.0
    command = ""
    i = 0

    def number() -> float:
        nonlocal i
        i += 1
        return float(tokens[i - 1])

    while i < len(tokens):
        if tokens[i].isalpha():
            command = tokens[i]
            i += 1
        if command in "Zz":
            if ring:
                rings.append(ring)
            x, y = ring[0] if ring else (x, y)
            ring = []
            continue
        if command in "Cc":
            args = [number() for _ in range(6)]
            dx, dy = args[4], args[5]
        else:
            dx, dy = number(), number()
        x, y = (x + dx, y + dy) if command.islower() else (dx, dy)
        if command in "Mm":
            if ring:
                rings.append(ring)
            ring = []
            command = "l" if command == "m" else "L"
        ring.append((round(x, 2), round(y, 2)))
    if ring:
        rings.append(ring)
    return [r for r in (_dedupe(r) for r in rings) if len(r) >= 3]


def _dedupe(ring: list[Point]) -> list[Point]:
    out = [p for k, p in enumerate(ring) if k == 0 or p != ring[k - 1]]
    while len(out) > 1 and out[0] == out[-1]:
        out.pop()
    return out


def simplify(ring: list[Point], tolerance: float) -> list[Point]:
    """Douglas-Peucker on a closed ring, keeping at least 4 vertices (a triangle, closed)."""
    if len(ring) <= 4:
        return ring
    far = max(
        range(len(ring)),
        key=lambda k: (ring[k][0] - ring[0][0]) ** 2 + (ring[k][1] - ring[0][1]) ** 2,
    )
    first = _douglas_peucker(ring[: far + 1], tolerance)
    second = _douglas_peucker(ring[far:] + ring[:1], tolerance)
    out = first[:-1] + second[:-1]
    return out if len(out) >= 3 else ring


def _douglas_peucker(points: list[Point], tolerance: float) -> list[Point]:
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        lo, hi = stack.pop()
        (ax, ay), (bx, by) = points[lo], points[hi]
        length = math.hypot(bx - ax, by - ay)
        best, index = 0.0, -1
        for k in range(lo + 1, hi):
            px, py = points[k]
            if length == 0:
                dist = math.hypot(px - ax, py - ay)
            else:
                dist = abs((bx - ax) * (ay - py) - (ax - px) * (by - ay)) / length
            if dist > best:
                best, index = dist, k
        if index >= 0 and best > tolerance:
            keep[index] = True
            stack += [(lo, index), (index, hi)]
    return [p for p, kept in zip(points, keep, strict=True) if kept]


def _northing(lat: float) -> float:
    return math.degrees(math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)))


def _latitude(northing: float) -> float:
    return math.degrees(2 * math.atan(math.exp(math.radians(northing))) - math.pi / 2)


def georeference(shapes: dict[str, list[list[Point]]]):  # type: ignore[no-untyped-def]
    """A function from SVG (x, y) to (lon, lat), fitted on the country's extreme points."""

    def extreme(name: str, axis: int, pick) -> float:  # type: ignore[no-untyped-def]
        return float(pick(p[axis] for ring in shapes[name] for p in ring))

    x_west, x_east = extreme(WEST[0], 0, min), extreme(EAST[0], 0, max)
    y_north, y_south = extreme(NORTH[0], 1, min), extreme(SOUTH[0], 1, max)
    lon_per_x = (EAST[1] - WEST[1]) / (x_east - x_west)
    n_north, n_south = _northing(NORTH[1]), _northing(SOUTH[1])
    north_per_y = (n_south - n_north) / (y_south - y_north)

    def to_lonlat(p: Point, digits: int) -> Point:
        lon = WEST[1] + (p[0] - x_west) * lon_per_x
        lat = _latitude(n_north + (p[1] - y_north) * north_per_y)
        return (round(lon, digits), round(lat, digits))

    return to_lonlat


def _signed_area(ring: list[Point]) -> float:
    return (
        sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(ring, ring[1:] + ring[:1], strict=True)) / 2
    )


def part_cells(rings: list[list[Point]], resolution: int) -> set[str]:
    """The H3 cells whose centres one old province's rings (lon, lat) hold."""
    cells: set[str] = set()
    for ring in rings:
        found = h3.polygon_to_cells(h3.LatLngPoly([(lat, lon) for lon, lat in ring]), resolution)
        cells |= set(found) or {h3.latlng_to_cell(ring[0][1], ring[0][0], resolution)}
    return cells


def outline(cells: set[str]) -> list[list[list[Point]]]:
    """Polygons of a union of cells as (lon, lat) outer rings, largest first. Holes are
    dropped: no province of 2025 encloses another, so a hole is a gap where two old
    neighbours' borders disagree by more than a cell."""
    shape = h3.cells_to_h3shape(sorted(cells))
    polygons = list(shape.polys) if isinstance(shape, h3.LatLngMultiPoly) else [shape]
    out = [[[(lon, lat) for lat, lon in poly.outer]] for poly in polygons]
    return sorted(out, key=lambda poly: (-abs(_signed_area(poly[0])), poly[0][0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package-js", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--package", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--integrity", required=True)
    parser.add_argument("--licence", required=True)
    parser.add_argument("--attribution", required=True)
    parser.add_argument(
        "--resolution", type=int, required=True, help="H3 resolution of the dissolve"
    )
    parser.add_argument("--tolerance", type=float, required=True, help="simplification, degrees")
    args = parser.parse_args()

    text = args.package_js.read_text(encoding="utf-8").strip()
    doc = json.loads(text.removeprefix("export default").strip().rstrip(";"))
    shapes = {loc["id"]: parse_path(loc["path"]) for loc in doc["locations"]}
    used = {part for parts in MERGES.values() for part in parts}
    if used != set(shapes):
        raise SystemExit(f"error: merger table and package differ: {sorted(used ^ set(shapes))}")
    names = {int(p.code): p.name for p in vp.Province.iter_all()}
    if set(names) != set(MERGES):
        raise SystemExit(
            f"error: merger table and vietnam-provinces differ: {sorted(set(names) ^ set(MERGES))}"
        )
    to_lonlat = georeference(shapes)

    features = []
    for official, parts in sorted(MERGES.items()):
        cells: set[str] = set()
        for part in parts:
            cells |= part_cells(
                [[to_lonlat(p, 6) for p in ring] for ring in shapes[part]], args.resolution
            )
        coordinates = []
        for polygon in outline(cells):
            rings = [simplify(ring, args.tolerance) for ring in polygon]
            rings = [[[round(lon, 3), round(lat, 3)] for lon, lat in ring] for ring in rings]
            coordinates.append([[*ring, ring[0]] for ring in rings if len(ring) >= 3])
        features.append(
            {
                "type": "Feature",
                "properties": {"code": f"VN-{official:02d}", "name": names[official]},
                "geometry": {"type": "MultiPolygon", "coordinates": coordinates},
            }
        )
    out = {
        "type": "FeatureCollection",
        "provenance": {
            "package": args.package,
            "version": args.version,
            "integrity": args.integrity,
            "licence": args.licence,
            "attribution": args.attribution,
            "derived": "the 63 old provinces dissolved into the 34 of Resolution 202/2025/QH15 "
            f"through H3 cells of resolution {args.resolution}; for drawing only, a few km off",
        },
        "features": features,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()

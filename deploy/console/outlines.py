"""Derives the console's province outlines (streams/console/static/vendor/vn-provinces.geojson)
from the pinned @svg-maps/vietnam package, run by deploy/console/build.sh.

The package draws Viet Nam's 63 provinces of before the 2025 merger (plus the Hoàng Sa and
Trường Sa archipelagos) as SVG paths in a Mercator projection. The 34 provinces since
Resolution 202/2025/QH15 are whole merges of the old ones, so each new outline is the union of
its old parts. This script:

1. parses the paths (absolute and relative moveto/lineto/curveto; a curve keeps its end point);
2. dissolves each merge by cancelling the edges two old provinces share (the package's paths
   come from one topology, so a shared border has the same vertices on both sides);
3. simplifies each ring (Douglas-Peucker) and georeferences it: x is linear in longitude and
   y linear in Mercator northing, fitted on four extreme points of the country (A Pa Chải in
   the west, Lũng Cú in the north, Mũi Đôi in the east, Mũi Cà Mau in the south);
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
from collections import defaultdict
from pathlib import Path

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


def dissolve(parts: list[list[Point]]) -> list[list[Point]]:
    """The union of rings that meet only along shared borders: cancel each edge drawn both ways."""
    edges: dict[tuple[Point, Point], int] = defaultdict(int)
    for ring in parts:
        for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
            if (b, a) in edges:
                edges[(b, a)] -= 1
                if edges[(b, a)] == 0:
                    del edges[(b, a)]
            else:
                edges[(a, b)] += 1
    following: dict[Point, list[Point]] = defaultdict(list)
    for (a, b), count in sorted(edges.items()):
        following[a].extend([b] * count)
    rings: list[list[Point]] = []
    for start in sorted(following):
        while following[start]:
            ring = [start]
            point = following[start].pop()
            while point != start:
                ring.append(point)
                if not following[point]:
                    break  # an open chain: the source was not one topology here; keep what we have
                point = following[point].pop()
            if len(ring) >= 3:
                rings.append(ring)
    return rings


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

    def to_lonlat(p: Point) -> list[float]:
        lon = WEST[1] + (p[0] - x_west) * lon_per_x
        lat = _latitude(n_north + (p[1] - y_north) * north_per_y)
        return [round(lon, 3), round(lat, 3)]

    return to_lonlat


def _signed_area(ring: list[Point]) -> float:
    return (
        sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(ring, ring[1:] + ring[:1], strict=True)) / 2
    )


def _inside(point: Point, ring: list[Point]) -> bool:
    x, y = point
    inside = False
    for (ax, ay), (bx, by) in zip(ring, ring[1:] + ring[:1], strict=True):
        if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
            inside = not inside
    return inside


def polygons(rings: list[list[Point]]) -> list[list[list[Point]]]:
    """Group rings into polygons: holes wind against the outer rings (SVG keeps orientation)."""
    if not rings:
        return []
    biggest = max(rings, key=lambda r: abs(_signed_area(r)))
    outer_sign = math.copysign(1, _signed_area(biggest))
    outers = [r for r in rings if math.copysign(1, _signed_area(r)) == outer_sign]
    result: list[list[list[Point]]] = [[r] for r in outers]
    for hole in (r for r in rings if math.copysign(1, _signed_area(r)) != outer_sign):
        for poly in result:
            if _inside(hole[0], poly[0]):
                poly.append(hole)
                break
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package-js", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--package", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--integrity", required=True)
    parser.add_argument("--licence", required=True)
    parser.add_argument("--attribution", required=True)
    parser.add_argument("--tolerance", type=float, required=True, help="in SVG pixels (~2 km each)")
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
        rings = dissolve([ring for part in parts for ring in shapes[part]])
        rings = [simplify(r, args.tolerance) for r in rings]
        rings = [r for r in rings if abs(_signed_area(r)) > args.tolerance**2]  # specks vanish
        coordinates = [
            [[*(to_lonlat(p) for p in ring), to_lonlat(ring[0])] for ring in poly]
            for poly in polygons(rings)
        ]
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
            "derived": "the 63 old provinces dissolved into the 34 of Resolution 202/2025/QH15; "
            "drawing only, about 1 km off at worst",
        },
        "features": features,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()

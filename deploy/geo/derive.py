"""Derive Viet Nam's territory as compacted H3 cells from a country-outline GeoJSON.

Run by ``deploy/geo/build.sh``, which fetches the pinned npm package, checks its integrity and
passes the provenance here; the result is ``streams/data/geo/vn-territory.json``, which
``streams.regions`` loads to decide whether an alert's polygon or circle lies in the country.

The output is deterministic (sorted cells, fixed JSON layout), so rebuilding from the registry
must reproduce the committed file byte for byte (``tests/deploy/test_geo_build.py``).

Edge rule: a cell belongs to the territory when it shares any area with the outline (H3's
"overlap" containment), not only when its centre lies inside. The territory is thus slightly
larger than the outline, never smaller: a coastal or border ward is never called outside, and
a shape wholly beyond the border by more than one cell is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import h3
import orjson

#: Country code the feature is selected by (the dataset's ISO 3166-1 alpha-3 property ``A3``).
COUNTRY_A3 = "VNM"
FORMAT = "loa-territory/1"


def country_feature(geojson: dict[str, Any], a3: str) -> dict[str, Any]:
    """The one feature whose ``A3`` property is ``a3``; a missing or repeated one stops."""
    found = [f for f in geojson["features"] if f.get("properties", {}).get("A3") == a3]
    if len(found) != 1:
        raise SystemExit(f"error: expected one feature with A3={a3}, found {len(found)}")
    feature: dict[str, Any] = found[0]
    return feature


def territory_cells(geometry: dict[str, Any], res: int) -> list[str]:
    """Compacted cells (sorted) of every cell at ``res`` that overlaps the geometry."""
    shape = h3.geo_to_h3shape(geometry)
    # a cell overlapping two parts of a MultiPolygon is listed twice: the set drops repeats
    cells = set(h3.h3shape_to_cells_experimental(shape, res, contain="overlap"))
    return sorted(h3.compact_cells(list(cells)))


def parts(geometry: dict[str, Any]) -> list[dict[str, Any]]:
    """Each polygon of the geometry with its outer ring's bounding box, for the provenance."""
    polygons = geometry["coordinates"]
    if geometry["type"] == "Polygon":
        polygons = [polygons]
    out = []
    for polygon in polygons:
        lons = [p[0] for p in polygon[0]]
        lats = [p[1] for p in polygon[0]]
        out.append(
            {
                "vertices": len(polygon[0]),
                "south_west_north_east": [min(lats), min(lons), max(lats), max(lons)],
            }
        )
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--geojson", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--package", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--integrity", required=True)
    p.add_argument("--licence", required=True)
    p.add_argument("--attribution", required=True)
    p.add_argument("--resolution", required=True, type=int)
    a = p.parse_args(argv)
    feature = country_feature(orjson.loads(a.geojson.read_bytes()), COUNTRY_A3)
    cells = territory_cells(feature["geometry"], a.resolution)
    doc = {
        "format": FORMAT,
        "provenance": {
            "package": a.package,
            "version": a.version,
            "registry": "npm",
            "integrity": a.integrity,
            "file": "package/map.geo.json",
            "feature": {"A3": COUNTRY_A3},
            "licence": a.licence,
            "attribution": a.attribution,
            "draws": (
                "Viet Nam's national boundary as OpenStreetMap maps it (admin_level 2): land, "
                "coastal islands and the territorial sea (12 nautical miles from the baseline), "
                "and four Truong Sa (Spratly) islands as small land polygons; not the exclusive "
                "economic zone; the Hoang Sa (Paracel) islands are drawn under another country's "
                "feature and are not in it"
            ),
            "parts": parts(feature["geometry"]),
        },
        "resolution": a.resolution,
        "edge": (
            "overlap: a cell is in the territory when it shares any area with the outline "
            "(h3 contain='overlap'), so the territory is never smaller than the outline"
        ),
        "cells_uncompacted": len(h3.uncompact_cells(cells, a.resolution)),
        "cells": cells,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    # one cell per line: readable diffs when the data is rebuilt from a newer release
    a.out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{a.out}: {len(cells)} compacted cells at resolution {a.resolution}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

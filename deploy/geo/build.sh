#!/usr/bin/env bash
# Rebuilds streams/data/geo/vn-territory.json (Viet Nam's land and territorial sea as compacted
# H3 cells, read by streams/regions.py) from a pinned npm package, so the committed data
# provably comes from the registry: tests/deploy/test_geo_build.py runs this into a temp dir
# and compares. See docs/geography.md for the dataset, its licence and the edge rule.
#
#   bash deploy/geo/build.sh [OUT]      OUT defaults to streams/data/geo/vn-territory.json
#
# Needs npm (only to fetch the tarball: no Node code runs, nothing is installed) and Loa's
# Python with h3 (PYTHON, default .venv/bin/python). Non-interactive; a tarball whose sha512
# differs from the pinned one stops the build before anything is read from it.
set -euo pipefail

PACKAGE="@geo-maps/countries-maritime-10m"
VERSION="0.6.0"
# sha512 of the tarball, as the registry publishes it (`npm view PACKAGE@VERSION dist.integrity`)
INTEGRITY="sha512-3Auc7lXpsOL+Z+axKGTaS2dvmDr/odfxa1Wk5UT/4naT+xYK3Rf+ImSLkO1zyO3vi7WSaVhjjQfBdrldjPDIbA=="
LICENCE="ODbL-1.0 (the map data, from OpenStreetMap); MIT (the package's code)"
ATTRIBUTION="© OpenStreetMap contributors (openstreetmap.org/copyright), via geo-maps by Simone Primarosa"
RESOLUTION="7"

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${1:-$ROOT/streams/data/geo/vn-territory.json}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

command -v npm >/dev/null || { echo "error: npm not found (needed to fetch $PACKAGE)" >&2; exit 1; }
[ -x "$PYTHON" ] || { echo "error: $PYTHON not found (make setup, or set PYTHON)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

published="$(npm view "$PACKAGE@$VERSION" dist.integrity </dev/null)"
if [ "$published" != "$INTEGRITY" ]; then
  echo "error: the registry now publishes $published for $PACKAGE@$VERSION, pinned $INTEGRITY" >&2
  exit 1
fi
tarball="$(cd "$work" && npm pack --silent "$PACKAGE@$VERSION" </dev/null | tail -n 1)"
# npm pack checks the registry's own integrity; this checks the pinned one, independently
actual="$("$PYTHON" - "$work/$tarball" <<'EOF'
import base64, hashlib, sys
with open(sys.argv[1], "rb") as f:
    print("sha512-" + base64.b64encode(hashlib.sha512(f.read()).digest()).decode())
EOF
)"
if [ "$actual" != "$INTEGRITY" ]; then
  echo "error: $tarball has $actual, pinned $INTEGRITY" >&2
  exit 1
fi
tar -xzf "$work/$tarball" -C "$work" package/map.geo.json

"$PYTHON" "$ROOT/deploy/geo/derive.py" \
  --geojson "$work/package/map.geo.json" \
  --out "$OUT" \
  --package "$PACKAGE" \
  --version "$VERSION" \
  --integrity "$INTEGRITY" \
  --licence "$LICENCE" \
  --attribution "$ATTRIBUTION" \
  --resolution "$RESOLUTION"

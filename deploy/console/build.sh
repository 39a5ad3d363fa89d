#!/usr/bin/env bash
# Builds the console's vendored front-end files from pinned npm packages, so what the console
# serves provably comes from the registry (tests/deploy/test_console_build.py rebuilds into a
# temp dir and compares). Nothing is fetched at run time; the wheel ships the built files.
#
#   bash deploy/console/build.sh [STATIC_VENDOR] [TEST_VENDOR]
#     STATIC_VENDOR defaults to streams/console/static/vendor   (served by the console)
#     TEST_VENDOR   defaults to tests/browser/vendor            (axe-core: tests only, never served)
#
# Writes: STATIC_VENDOR/leaflet-VERSION/{leaflet.js,leaflet.css,images/*,LICENSE} (the version in
#         the path: the console serves static/vendor/ as immutable, index.html names it),
#         STATIC_VENDOR/vn-provinces.geojson (deploy/console/outlines.py), TEST_VENDOR/axe.min.js
# Needs npm (only to fetch tarballs: no Node code runs, nothing is installed) and Loa's Python
# (PYTHON, default .venv/bin/python). Each tarball's sha512 is checked against its pin before
# anything is read from it. See docs/console-ui.md.
set -euo pipefail

LEAFLET_VERSION="1.9.4"
LEAFLET_INTEGRITY="sha512-nxS1ynzJOmOlHp+iL3FyWqK89GtNL8U8rvlMOsQdTTssxZwCXh8N2NB3GDQOL+YR3XnWyZAxwQixURb+FA74PA=="
AXE_VERSION="4.11.0"
AXE_INTEGRITY="sha512-ilYanEU8vxxBexpJd8cWM4ElSQq4QctCLKih0TSfjIfCQTeyH/6zVrmIJfLPrKTKJRbiG+cfnZbQIjAlJmF1jQ=="
OUTLINES_PACKAGE="@svg-maps/vietnam"
OUTLINES_VERSION="2.0.0"
OUTLINES_INTEGRITY="sha512-aLgrlx5xI+fPrkxiQk40rC+Hp3bbrg+zfc9RnJzdExa51M8udP81KjiA9iJKNq6m79Dwt+kEsnUSKUhBMvTfCA=="
OUTLINES_LICENCE="CC-BY-4.0"
OUTLINES_ATTRIBUTION="Map of Vietnam by Stephen Truong, svg-maps (github.com/VictorCazanave/svg-maps), CC BY 4.0; dissolved into the 34 provinces of 2025 by Loa"
# the dissolve's H3 resolution (7: cells of 5 km², edges of 1.4 km) and the Douglas-Peucker
# tolerance in degrees (0.01: about 1 km, which also smooths the cells' zigzag)
RESOLUTION="7"
TOLERANCE="0.01"

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
STATIC_VENDOR="${1:-$ROOT/streams/console/static/vendor}"
TEST_VENDOR="${2:-$ROOT/tests/browser/vendor}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

command -v npm >/dev/null || { echo "error: npm not found (needed to fetch the pinned packages)" >&2; exit 1; }
[ -x "$PYTHON" ] || { echo "error: $PYTHON not found (make setup, or set PYTHON)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# fetch PACKAGE VERSION INTEGRITY DIR: the tarball, checked, unpacked into DIR/package
fetch() {
  local package="$1" version="$2" integrity="$3" dir="$work/$4"
  mkdir -p "$dir"
  local tarball actual
  tarball="$(cd "$dir" && npm pack --silent "$package@$version" </dev/null | tail -n 1)"
  # npm pack checks the registry's own integrity; this checks the pinned one, independently
  actual="$("$PYTHON" - "$dir/$tarball" <<'PY'
import base64, hashlib, sys
with open(sys.argv[1], "rb") as f:
    print("sha512-" + base64.b64encode(hashlib.sha512(f.read()).digest()).decode())
PY
)"
  if [ "$actual" != "$integrity" ]; then
    echo "error: $package@$version has $actual, pinned $integrity" >&2
    exit 1
  fi
  tar -xzf "$dir/$tarball" -C "$dir"
}

fetch leaflet "$LEAFLET_VERSION" "$LEAFLET_INTEGRITY" leaflet
fetch axe-core "$AXE_VERSION" "$AXE_INTEGRITY" axe
fetch "$OUTLINES_PACKAGE" "$OUTLINES_VERSION" "$OUTLINES_INTEGRITY" outlines

leaflet="$STATIC_VENDOR/leaflet-$LEAFLET_VERSION"
rm -rf "$STATIC_VENDOR"/leaflet*
mkdir -p "$leaflet/images" "$TEST_VENDOR"
cp "$work/leaflet/package/dist/leaflet.js" "$work/leaflet/package/dist/leaflet.css" "$leaflet/"
cp "$work/leaflet/package/dist/images/"*.png "$leaflet/images/"
cp "$work/leaflet/package/LICENSE" "$leaflet/LICENSE"
cp "$work/axe/package/axe.min.js" "$TEST_VENDOR/axe.min.js"
cp "$work/axe/package/LICENSE" "$TEST_VENDOR/axe-LICENSE"

"$PYTHON" "$ROOT/deploy/console/outlines.py" \
  --package-js "$work/outlines/package/index.js" \
  --out "$STATIC_VENDOR/vn-provinces.geojson" \
  --package "$OUTLINES_PACKAGE" \
  --version "$OUTLINES_VERSION" \
  --integrity "$OUTLINES_INTEGRITY" \
  --licence "$OUTLINES_LICENCE" \
  --attribution "$OUTLINES_ATTRIBUTION" \
  --resolution "$RESOLUTION" \
  --tolerance "$TOLERANCE"

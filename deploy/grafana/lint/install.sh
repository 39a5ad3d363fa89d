#!/usr/bin/env bash
# Builds loa-dashboard-lint (this folder: Grafana's foundation SDK schema + the rules of Grafana's
# dashboard linter on Prometheus' PromQL parser) into a cache outside the repo and prints the
# binary's path. Versions are pinned by go.mod and go.sum (modules from the Go module proxy);
# the cached binary is named by a hash of this folder's sources, so a change rebuilds it and an
# unchanged tree is a quick no-op. Non-interactive (CI runs it with no stdin).
#
#   LOA_TOOLS_CACHE   where binaries go (default ~/.cache/loa/tools)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${LOA_TOOLS_CACHE:-${HOME:-/tmp}/.cache/loa/tools}"
HASH="$(cd "$HERE" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)"
BIN="$CACHE/loa-dashboard-lint-$HASH"

if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null 2>&1 || {
  echo "error: go not found: loa-dashboard-lint is built with the Go toolchain (go.mod: $(grep '^go ' "$HERE/go.mod"))" >&2
  exit 1
}
mkdir -p "$CACHE"
TMP="$(mktemp "$CACHE/.loa-dashboard-lint.XXXXXX")"
trap 'rm -f "$TMP"' EXIT
# readonly: go.sum is the pin; local: never fetch another toolchain
(cd "$HERE" && GOFLAGS=-mod=readonly GOTOOLCHAIN=local go build -trimpath -o "$TMP" . </dev/null) >&2
chmod +x "$TMP"
mv -f "$TMP" "$BIN"
trap - EXIT
echo "$BIN"

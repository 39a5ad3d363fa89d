#!/usr/bin/env bash
# Installs Debian's `prometheus` package (the server and `promtool`) when either is missing.
# Idempotent and quick when both are already on PATH. Non-interactive: CI runs it as root on a
# clean Debian machine with no stdin. Installing the package may start a `prometheus` service on
# systemd hosts; Loa's tests never use it (they start their own on a free loopback port).
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
  else
    echo "error: prometheus/promtool missing and not root (install Debian's 'prometheus' package)" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q </dev/null
$SUDO apt-get install -y -q --no-install-recommends prometheus </dev/null

command -v prometheus >/dev/null && command -v promtool >/dev/null || {
  echo "error: Debian's prometheus package installed but prometheus/promtool not on PATH" >&2
  exit 1
}

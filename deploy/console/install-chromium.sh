#!/usr/bin/env bash
# Installs Debian's Chromium and its chromedriver for the console's browser tests
# (tests/browser/), when they are missing. Non-interactive; uses sudo only when not root.
# Prints the chromedriver path on its last line, so callers can pass it to Selenium
# (Selenium Manager must never download a browser or a driver).
#
#   bash deploy/console/install-chromium.sh
set -euo pipefail

find_driver() {
  command -v chromedriver 2>/dev/null || { [ -x /usr/bin/chromedriver ] && echo /usr/bin/chromedriver; } || true
}
find_browser() {
  command -v chromium 2>/dev/null || { [ -x /usr/bin/chromium ] && echo /usr/bin/chromium; } || true
}

if [ -z "$(find_driver)" ] || [ -z "$(find_browser)" ]; then
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "error: not root and no sudo: install chromium chromium-driver" >&2; exit 1; }
    as_root=(sudo -n)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq >&2
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >&2
fi

driver="$(find_driver)"
[ -n "$driver" ] || { echo "error: chromedriver still missing after the install" >&2; exit 1; }
echo "$driver"

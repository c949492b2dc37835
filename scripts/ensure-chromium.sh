#!/usr/bin/env bash
# Make sure Debian's Chromium is there for the dashboard's browser tests.
#
# With CI=true a missing Chromium is installed (apt-get, as root or through sudo), so that
# the browser tests run; elsewhere this only says how to get it, and the tests skip.
# Playwright drives this Chromium; `playwright install` (which downloads its own) is not used.
set -euo pipefail

chromium="${UNDERWAY_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$chromium" ] || command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "${CI:-}" != "true" ]; then
    echo "ensure-chromium: Chromium is not installed; the dashboard's browser tests will be" \
        "skipped. Install it with: sudo apt-get install chromium" >&2
    exit 0
fi
sudo=""
if [ "$(id -u)" != "0" ]; then
    sudo="sudo"
fi
echo "ensure-chromium: CI=true and Chromium is missing: installing Debian's chromium." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
chromium --version

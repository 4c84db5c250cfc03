#!/usr/bin/env bash
# Headless Chromium for the web console's browser tests (tests/serving/test_console_browser.py):
# Debian's package, driven by Playwright from the test extra. Nothing to do when it is installed.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/lib/chromium/chromium ]; then
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium

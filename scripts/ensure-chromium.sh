#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium, where the browser tests (tests/browser) look.
# Playwright's own browser download cannot work here (only package registries are reachable),
# so the tests drive Debian's build; install its package when missing and we are root. Exits
# non-zero with a clear message when it cannot.
set -euo pipefail

chromium=/usr/bin/chromium

works() {
    [ -x "$chromium" ] && "$chromium" --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1
}

if works; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-chromium: $chromium is not installed (apt-get install chromium as root)" >&2
    exit 1
fi

echo "ensure-chromium: installing Debian's chromium" >&2
DEBIAN_FRONTEND=noninteractive apt-get update -qq
# Named explicitly, so that with recommends turned off screenshots still have a usable font.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation >/dev/null

if ! works; then
    echo "ensure-chromium: installed Debian's chromium but $chromium --version fails" >&2
    exit 1
fi

#!/usr/bin/env bash
# Make sure promtool is on PATH: tests/unit/test_promtool.py checks and unit-tests the alerting
# rules of deploy/monitoring/ with it. Debian ships promtool only in its `prometheus` package
# (about 19 MB); install that when missing and we are root. Exits non-zero with a clear message
# when it cannot.
set -euo pipefail

works() {
    command -v promtool >/dev/null 2>&1 && promtool --version >/dev/null 2>&1
}

if works; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-promtool: promtool is not installed (apt-get install prometheus as root)" >&2
    exit 1
fi

echo "ensure-promtool: installing Debian's prometheus for its promtool" >&2
# Only the tool is wanted: the package's postinst would start a Prometheus server (on :9090, the
# port our processes serve metrics on) unless a policy-rc.d forbids it. Machines built from a
# container image have one; elsewhere put one in place for the install alone.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    trap 'rm -f "$policy"' EXIT
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
fi
DEBIAN_FRONTEND=noninteractive apt-get update -qq
# Without recommends: prometheus-node-exporter would be one more daemon.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null

if ! works; then
    echo "ensure-promtool: installed Debian's prometheus but promtool --version fails" >&2
    exit 1
fi

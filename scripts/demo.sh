#!/usr/bin/env bash
# `make demo`: the web console on the embedded defaults (SQLite, the example config).
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."

export DJANGO_SETTINGS_MODULE=podseidon_site.settings.development
export PODSEIDON_CONFIG="${PODSEIDON_CONFIG:-deploy/examples/podseidon.yaml}"
py=.venv/bin/python
mkdir -p var

$py manage.py migrate --noinput >/dev/null
$py manage.py ensure_admin --username admin --reset-password

echo "console: http://127.0.0.1:8000/  (admin: http://127.0.0.1:8000/admin/)"
echo "Ctrl-C to stop."
exec .venv/bin/gunicorn -c python:podseidon_site.gunicorn_conf \
    --bind 127.0.0.1:8000 --workers 1

#!/usr/bin/env bash
# Make sure a Redis server answers at $REDIS_URL (default redis://127.0.0.1:6379/0).
# Starts a local redis-server when none answers, installing Debian's package first when it is
# missing and we are root. Exits non-zero with a clear message when it cannot.
set -euo pipefail

url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
py="${VENV:-.venv}/bin/python"

ping() {
    "$py" - "$url" <<'PY' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

if ping; then
    exit 0
fi

hostport="${url#*://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"
host="${hostport%:*}"; port="${hostport##*:}"
[ "$port" = "$hostport" ] && port=6379
case "$host" in
    127.*|localhost|"") ;;
    *) echo "ensure-redis: nothing answers at $url and it is not local; start it yourself" >&2; exit 1 ;;
esac

if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "ensure-redis: redis-server is not installed (apt-get install redis-server as root)" >&2
        exit 1
    fi
    echo "ensure-redis: installing Debian's redis-server" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

dir="${TMPDIR:-/tmp}/podseidon-redis-$port"
mkdir -p "$dir"
echo "ensure-redis: starting redis-server on 127.0.0.1:$port" >&2
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log"

for _ in $(seq 1 50); do
    ping && exit 0
    sleep 0.1
done
echo "ensure-redis: redis-server did not answer at $url; see $dir/redis.log" >&2
exit 1

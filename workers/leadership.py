"""Who leads which controller, readable by the console: one Redis hash per controller key.

The runtime of the leading worker writes ``<prefix>:leader:<controller>`` (only while the lease
is provably its own: the writes ride in the lease scripts), refreshing it every retry period:
holder identity (hostname, pid, Celery worker name), fencing token, since, last renewal, paused,
running, and the controller's last reconcile time and error (from ``context.report``). Nothing
secret goes in: no kubeconfig paths, no URLs with credentials, no tokens other than the fencing
counter.

``read_states()`` is what the console calls; it works from any process that has the Django
settings (``REDIS_URL``, ``PODSEIDON_REDIS_PREFIX``) or from an explicit client and prefix.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from workers.keys import RedisKeys, settings_keys, settings_redis

# The longest error message kept (a reconcile error can embed a whole API response).
MAX_ERROR_CHARS = 1000


@dataclass(frozen=True)
class LeaderState:
    controller: str
    holder: str  # unique id of the holding process run: "<hostname>:<pid>:<nonce>"
    hostname: str
    pid: int
    worker: str  # Celery worker name (e.g. celery@host)
    token: int
    since: datetime  # when this holder acquired the lease
    renewed_at: datetime  # last successful renewal (the leader's heartbeat)
    lease_duration: float
    paused: bool  # the leader is honouring a pause switch
    running: bool  # the controller is running in the leader now
    released: bool  # the holder gave the lease up on a clean shutdown
    last_reconcile_at: datetime | None
    last_reconcile_failed: bool  # the most recent reconcile reported an error
    last_error: str | None  # most recent reconcile error of this term (kept after successes)
    last_error_at: datetime | None

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.renewed_at.timestamp() + self.lease_duration, UTC)

    def is_active(self, now: float | None = None) -> bool:
        """True while the lease is held: not released and renewed within the lease duration."""
        now = time.time() if now is None else now
        return not self.released and self.expires_at.timestamp() > now


def _text(raw: Mapping[bytes, bytes], name: str) -> str:
    value = raw.get(name.encode())
    return value.decode("utf-8", "replace") if value is not None else ""


def _time(raw: Mapping[bytes, bytes], name: str) -> datetime | None:
    text = _text(raw, name)
    return datetime.fromtimestamp(float(text), UTC) if text else None


def parse_state(controller: str, raw: Mapping[bytes, bytes]) -> LeaderState | None:
    if not raw or not _text(raw, "holder"):
        return None
    since = _time(raw, "since") or datetime.fromtimestamp(0, UTC)
    return LeaderState(
        controller=controller,
        holder=_text(raw, "holder"),
        hostname=_text(raw, "hostname"),
        pid=int(_text(raw, "pid") or 0),
        worker=_text(raw, "worker"),
        token=int(_text(raw, "token") or 0),
        since=since,
        renewed_at=_time(raw, "renewed_at") or since,
        lease_duration=float(_text(raw, "lease_duration") or 0),
        paused=_text(raw, "paused") == "1",
        running=_text(raw, "running") == "1",
        released=_text(raw, "released") == "1",
        last_reconcile_at=_time(raw, "last_reconcile_at"),
        last_reconcile_failed=_text(raw, "last_reconcile_failed") == "1",
        last_error=_text(raw, "last_error") or None,
        last_error_at=_time(raw, "last_error_at"),
    )


def read_states(
    controllers: Iterable[str] | None = None,
    *,
    client: Any = None,
    keys: RedisKeys | None = None,
) -> list[LeaderState]:
    """Leader state of ``controllers`` (default: every controller ever led), sorted by key.

    Controllers without state (never led, or not for a day) are left out; check
    ``is_active()`` to tell a live leader from the last one of a controller nobody leads now.
    Redis errors propagate (the console shows "Redis unreachable").
    """
    keys = keys or settings_keys()
    own = client is None
    client = client or settings_redis()
    try:
        if controllers is None:
            names = sorted(m.decode() for m in client.smembers(keys.leaders))
        else:
            names = sorted(set(controllers))
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.leader(name))
        states = [parse_state(name, raw) for name, raw in zip(names, pipe.execute(), strict=True)]
        return [s for s in states if s is not None]
    finally:
        if own:
            client.close()


def status_fields(
    last_reconcile_at: float | None,
    last_reconcile_failed: bool,
    last_error: str | None,
    last_error_at: float | None,
) -> dict[str, str]:
    """Hash fields for a controller's ControllerStatus."""
    return {
        "last_reconcile_at": "" if last_reconcile_at is None else f"{last_reconcile_at:.6f}",
        "last_reconcile_failed": "1" if last_reconcile_failed else "0",
        "last_error": (last_error or "")[:MAX_ERROR_CHARS],
        "last_error_at": "" if last_error_at is None else f"{last_error_at:.6f}",
    }

"""Where the controller runtime keeps things in Redis: one prefix, a handful of key shapes.

Everything the runtime stores lives under one prefix (``PODSEIDON_REDIS_PREFIX``, default
``podseidon``) so several installations, or several test runs, can share one Redis:

- ``<prefix>:lease:<controller>``        the lease: ``"<token> <holder id>"`` with a TTL;
- ``<prefix>:lease-token:<controller>``  the fencing counter, INCR'd on every acquisition;
- ``<prefix>:leader:<controller>``       a hash describing the current/last leader (console);
- ``<prefix>:leaders``                   the set of controller keys that have such a hash;
- ``<prefix>:members``                   live workers (sorted set: holder id -> expiry);
- ``<prefix>:member:<holder id>``       what one live worker may lead (``workers.membership``);
- ``<prefix>:events``                    the pub/sub channel for switch changes, releases,
  membership changes and leaders starting or stopping their controller.

Controller keys are ``generator``, ``aggregator/<cellID>`` and ``monitor``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

DEFAULT_PREFIX = "podseidon"

# "generator", "monitor", "aggregator/<cell ID>" (cell IDs follow CELL_ID_PATTERN of the config).
CONTROLLER_KEY_PATTERN = re.compile(
    r"^(generator|monitor|aggregator/[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)$"
)


# Messages on the events channel: {"type": one of the kinds below, "controller": key}.
SWITCH_EVENT = "switch"  # a switch changed in the database: re-read them now
RELEASED_EVENT = "released"  # a leader released its lease on shutdown: standbys, acquire now
# A leader started or stopped its controller and wrote so in its leader hash: whoever waits on
# that (the console's removal, after pausing the cell's aggregator) reads the hash again now.
STATE_EVENT = "state"
# The membership changed (a worker joined or left): re-plan the balanced leases now. Its
# "controller" field carries the worker's holder id.
MEMBERS_EVENT = "members"


def encode_event(kind: str, controller: str) -> str:
    return json.dumps({"type": kind, "controller": controller})


def decode_event(data: bytes | str) -> tuple[str, str] | None:
    try:
        message = json.loads(data)
        return str(message["type"]), str(message["controller"])
    except (ValueError, KeyError, TypeError):
        return None


def is_controller_key(key: str) -> bool:
    return bool(CONTROLLER_KEY_PATTERN.match(key))


def aggregator_key(cell_id: str) -> str:
    return f"aggregator/{cell_id}"


@dataclass(frozen=True)
class RedisKeys:
    prefix: str = DEFAULT_PREFIX

    def lease(self, controller: str) -> str:
        return f"{self.prefix}:lease:{controller}"

    def token(self, controller: str) -> str:
        return f"{self.prefix}:lease-token:{controller}"

    def leader(self, controller: str) -> str:
        return f"{self.prefix}:leader:{controller}"

    @property
    def leaders(self) -> str:
        return f"{self.prefix}:leaders"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def members(self) -> str:
        return f"{self.prefix}:members"

    def member(self, holder_id: str) -> str:
        return f"{self.prefix}:member:{holder_id}"


def settings_keys() -> RedisKeys:
    """The keys of this site (Django settings ``PODSEIDON_REDIS_PREFIX``)."""
    from django.conf import settings

    return RedisKeys(getattr(settings, "PODSEIDON_REDIS_PREFIX", DEFAULT_PREFIX) or DEFAULT_PREFIX)


def settings_redis(**kwargs):
    """A Redis client for ``settings.REDIS_URL`` (the broker's Redis, shared by the leases)."""
    import redis
    from django.conf import settings

    kwargs.setdefault("socket_connect_timeout", 2)
    kwargs.setdefault("socket_timeout", 2)
    return redis.Redis.from_url(settings.REDIS_URL, **kwargs)

"""Which workers are alive, in Redis: the input of lease balancing (``workers.balance``).

- ``<prefix>:members``            sorted set: holder id -> expiry (Redis clock, milliseconds);
- ``<prefix>:member:<holder id>`` JSON ``{"keys": [...], "worker": ..., "joined": ...}`` with
  the same TTL: the balanced keys the worker may lead (its placement).

A worker beats every retry period (``heartbeat``: refresh both, drop members whose expiry
passed) once it has read the switches, i.e. once it is able to lead; its entry expires
``ttl`` seconds after its last beat, well before its leases (so the others count without it by
the time they can take its leases over), and ``leave`` removes it at once on a clean shutdown.
``read`` returns the live members and the holder of each balanced lease in one round trip.
All three are Lua scripts on Redis's own clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import redis

from workers.balance import Member, View
from workers.keys import RedisKeys
from workers.leases import Holder

__all__ = ["Membership"]

_HEARTBEAT = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[1])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
return redis.call('ZCARD', KEYS[1])
"""

_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""

# KEYS[1] = members; ARGV[1] = member key prefix; KEYS[2..] = the balanced leases.
_READ = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ms, '+inf')
local infos = {}
for i, id in ipairs(ids) do
  infos[i] = redis.call('GET', ARGV[1] .. id) or ''
end
local leases = {}
for i = 2, #KEYS do
  leases[i - 1] = redis.call('GET', KEYS[i]) or ''
end
return {ids, infos, leases}
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Membership:
    """This worker's entry in the membership, and readings of everyone's."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        holder: Holder,
        balanced: Iterable[str],
        ttl: float,
    ) -> None:
        self.client = client
        self.keys = keys
        self.holder = holder
        self.balanced = sorted(balanced)
        self.ttl_ms = max(1, round(ttl * 1000))
        self.joined = time.time()
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._leave = client.register_script(_LEAVE)
        self._read = client.register_script(_READ)

    @property
    def me(self) -> Member:
        return Member(self.holder.id, frozenset(self.balanced))

    def heartbeat(self) -> int:
        """Announce (or keep announcing) this worker; returns how many are alive."""
        info = json.dumps(
            {"keys": self.balanced, "worker": self.holder.worker, "joined": self.joined}
        )
        return int(
            self._heartbeat(
                keys=[self.keys.members, self.keys.member(self.holder.id)],
                args=[self.holder.id, self.ttl_ms, info],
            )
        )

    def leave(self) -> None:
        self._leave(
            keys=[self.keys.members, self.keys.member(self.holder.id)], args=[self.holder.id]
        )

    def read(self) -> View:
        ids, infos, leases = self._read(
            keys=[self.keys.members, *(self.keys.lease(k) for k in self.balanced)],
            args=[self.keys.member("")],
        )
        members = []
        for raw_id, raw_info in zip(ids, infos, strict=True):
            try:
                member_keys = json.loads(_text(raw_info) or "{}").get("keys") or []
            except (ValueError, AttributeError):
                member_keys = []
            members.append(Member(_text(raw_id), frozenset(str(k) for k in member_keys)))
        holders: dict[str, str | None] = {}
        for key, raw in zip(self.balanced, leases, strict=True):
            value = _text(raw)
            holders[key] = value.partition(" ")[2] or None if value else None
        return View(tuple(members), holders)

"""Leases in Redis: one leader per controller key, with a fencing token per term.

A lease is one string key holding ``"<token> <holder id>"`` with a TTL of the lease duration.

- **Acquire** (Lua, atomic): only when the key is absent; INCR the controller's token counter,
  SET the lease with PX, reset the leader-state hash. When the counter itself is missing (first
  use, or Redis lost its data) it restarts from Redis's clock in microseconds, so tokens keep
  growing across a data loss (unless, on average, more than one lease per microsecond was ever
  taken, or Redis's clock went back). Tokens stay below 2^53 until the year 2255.
- **Renew** (Lua): extend the TTL only if the value is still exactly ours (compare-and-extend);
  the leader-state fields ride along in the same script, so a stale holder never overwrites the
  hash of the next one.
- **Release** (Lua): delete only if still ours, so a clean shutdown hands over at once.

``RedisFence`` is the proof a write carries (``workers.controller.Fence``): ``check()`` passes
only while (a) this process renewed the lease less than the renew deadline ago (local, so a
leader cut off from Redis stops by itself) and (b) Redis still holds our exact value (one GET per
write), and the fence has not been revoked by the runtime (stop, pause, loss).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis

from podseidon_site.config import LeaderElectionConfig
from workers.controller import LostLeadership
from workers.keys import RedisKeys

FENCE_HEADER = "X-Podseidon-Fence"
# The leader-state hash outlives its lease so the console can show who led last; a controller
# that no worker runs any more disappears from Redis after a day.
STATE_TTL_MS = 24 * 3600 * 1000

_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then
  return {0, current, redis.call('PTTL', KEYS[1])}
end
if redis.replicate_commands then redis.replicate_commands() end
if redis.call('EXISTS', KEYS[2]) == 0 then
  local now = redis.call('TIME')
  local micros = tonumber(now[1]) * 1000000 + tonumber(now[2])
  redis.call('SET', KEYS[2], string.format('%d', micros))
end
local token = redis.call('INCR', KEYS[2])
local value = string.format('%d', token) .. ' ' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], 'token', string.format('%d', token), unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[4])
return {1, value, tonumber(ARGV[2])}
"""

_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if #ARGV >= 5 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 4))
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if #ARGV >= 3 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 2))
end
return 1
"""


@dataclass(frozen=True)
class Timings:
    """Leader election timings in seconds (design.md §5: 15 / 10 / 2)."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    @classmethod
    def from_config(cls, config: LeaderElectionConfig) -> Timings:
        return cls(
            float(config.lease_duration_seconds),
            float(config.renew_deadline_seconds),
            float(config.retry_period_seconds),
        )

    @property
    def lease_ms(self) -> int:
        return max(1, round(self.lease_duration * 1000))


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: one process run (a restarted process is a new holder)."""

    id: str
    hostname: str
    pid: int
    worker: str

    @classmethod
    def for_this_process(cls, worker: str = "") -> Holder:
        hostname = socket.gethostname()
        pid = os.getpid()
        return cls(f"{hostname}:{pid}:{secrets.token_hex(4)}", hostname, pid, worker or hostname)


@dataclass
class Lease:
    """One term of leadership held by this process."""

    controller: str
    token: int
    value: str
    acquired_at: float  # wall clock, for people
    renewed_mono: float  # monotonic time the last successful acquire/renew was *sent*


@dataclass(frozen=True)
class AcquireResult:
    lease: Lease | None
    current_value: str | None  # the other holder's "<token> <holder id>" when not acquired
    ttl: float  # seconds left on the lease we found (or ours)


def _flatten(fields: Mapping[str, object]) -> list[str]:
    flat: list[str] = []
    for name, value in fields.items():
        flat += [name, "" if value is None else str(value)]
    return flat


class LeaseStore:
    """Lease operations for one holder against one Redis. Thread-safe (redis-py pools)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        holder: Holder,
        timings: Timings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.keys = keys
        self.holder = holder
        self.timings = timings
        self.clock = clock
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def try_acquire(
        self, controller: str, state: Mapping[str, object] | None = None
    ) -> AcquireResult:
        """Take the lease if nobody holds it. Redis errors propagate."""
        sent = self.clock()
        fields = {"controller": controller, **(state or {})}
        ok, value, ttl_ms = self._acquire(
            keys=[
                self.keys.lease(controller),
                self.keys.token(controller),
                self.keys.leader(controller),
                self.keys.leaders,
            ],
            args=[
                self.holder.id,
                self.timings.lease_ms,
                STATE_TTL_MS,
                controller,
                *_flatten(fields),
            ],
        )
        value = value.decode() if isinstance(value, bytes) else str(value)
        if not ok:
            return AcquireResult(None, value, max(int(ttl_ms), 0) / 1000)
        token = int(value.split(" ", 1)[0])
        lease = Lease(controller, token, value, time.time(), sent)
        return AcquireResult(lease, None, self.timings.lease_duration)

    def renew(self, lease: Lease, state: Mapping[str, object] | None = None) -> bool:
        """Extend our lease; False when it is no longer ours. Redis errors propagate."""
        sent = self.clock()
        ok = self._renew(
            keys=[self.keys.lease(lease.controller), self.keys.leader(lease.controller)],
            args=[lease.value, self.timings.lease_ms, STATE_TTL_MS, *_flatten(state or {})],
        )
        if ok:
            lease.renewed_mono = sent
        return bool(ok)

    def update_state(self, lease: Lease, state: Mapping[str, object]) -> bool:
        """Write leader-state fields without extending the lease, only while it is ours."""
        ok = self._renew(
            keys=[self.keys.lease(lease.controller), self.keys.leader(lease.controller)],
            args=[lease.value, 0, STATE_TTL_MS, *_flatten(state)],
        )
        return bool(ok)

    def release(self, lease: Lease, state: Mapping[str, object] | None = None) -> bool:
        """Give the lease up if it is still ours. Redis errors propagate."""
        ok = self._release(
            keys=[self.keys.lease(lease.controller), self.keys.leader(lease.controller)],
            args=[lease.value, *_flatten(state or {})],
        )
        return bool(ok)

    def is_current(self, lease: Lease) -> bool:
        value = self.client.get(self.keys.lease(lease.controller))
        return value is not None and value.decode() == lease.value

    def current(self, controller: str) -> tuple[int, str] | None:
        """(token, holder id) of whoever holds the lease now, or None."""
        value = self.client.get(self.keys.lease(controller))
        if value is None:
            return None
        token, _, holder = value.decode().partition(" ")
        return int(token), holder


class RedisFence:
    """The Fence of one term: valid while renewed in time, still ours in Redis, not revoked."""

    def __init__(
        self,
        store: LeaseStore,
        lease: Lease,
        *,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._lease = lease
        self._revoked = threading.Event()
        self._on_reject = on_reject
        self.header_value = f"{lease.controller}/{lease.token}"

    @property
    def token(self) -> int:
        return self._lease.token

    @property
    def controller(self) -> str:
        return self._lease.controller

    def revoke(self) -> None:
        self._revoked.set()

    @property
    def revoked(self) -> bool:
        return self._revoked.is_set()

    def check(self) -> None:
        if self._revoked.is_set():
            self._reject("this term of leadership has ended")
        since_renew = self._store.clock() - self._lease.renewed_mono
        if since_renew >= self._store.timings.renew_deadline:
            self._reject(f"lease not renewed for {since_renew:.1f}s (past the renew deadline)")
        try:
            current = self._store.is_current(self._lease)
        except redis.RedisError as error:
            self._reject(f"cannot confirm the lease in Redis: {error}")
        if not current:
            self._reject("the lease in Redis is no longer ours")

    def before_write(self) -> dict[str, str]:
        """``KubeClient.fenced`` hook: check, then tag the write with controller/token."""
        self.check()
        return {FENCE_HEADER: self.header_value}

    def _reject(self, why: str) -> None:
        if self._on_reject is not None:
            self._on_reject(why)
        raise LostLeadership(f"{self.header_value}: {why}")

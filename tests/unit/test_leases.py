"""Redis leases: acquire/renew/release, contention, fencing tokens, the fence, leader state.

Real Redis at $REDIS_URL (``make test`` makes sure one answers); every test works under its own
key prefix and deletes it afterwards.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from workers.controller import LostLeadership
from workers.keys import RedisKeys
from workers.leadership import read_states
from workers.leases import FENCE_HEADER, Holder, LeaseStore, RedisFence, Timings

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
FAST = Timings(lease_duration=0.4, renew_deadline=0.3, retry_period=0.05)


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    yield client
    client.close()


@pytest.fixture
def keys(client: redis.Redis) -> Iterator[RedisKeys]:
    keys = RedisKeys(f"test-leases-{uuid.uuid4().hex[:10]}")
    yield keys
    stale = list(client.scan_iter(match=f"{keys.prefix}:*"))
    if stale:
        client.delete(*stale)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store(client, keys, name: str, timings: Timings = FAST, clock=time.monotonic) -> LeaseStore:
    holder = Holder(f"{name}:1:abcd", "host-" + name, 1, f"celery@{name}")
    return LeaseStore(client, keys, holder, timings, clock=clock)


def test_acquire_renew_release(client, keys) -> None:
    a = store(client, keys, "a", Timings(15, 10, 2))
    result = a.try_acquire("generator")
    lease = result.lease
    assert lease is not None and lease.token > 0
    assert a.current("generator") == (lease.token, a.holder.id)
    assert 14_000 < client.pttl(keys.lease("generator")) <= 15_000

    client.pexpire(keys.lease("generator"), 5_000)
    assert a.renew(lease)
    assert client.pttl(keys.lease("generator")) > 14_000

    assert a.release(lease, {"released": "1"})
    assert a.current("generator") is None
    assert not a.renew(lease), "a released lease cannot be renewed"
    assert not a.release(lease)


def test_second_contender_waits_for_expiry(client, keys) -> None:
    a, b = store(client, keys, "a"), store(client, keys, "b")
    first = a.try_acquire("aggregator/cell-a").lease
    assert first is not None

    blocked = b.try_acquire("aggregator/cell-a")
    assert blocked.lease is None
    assert blocked.current_value == first.value
    assert 0 < blocked.ttl <= FAST.lease_duration

    time.sleep(blocked.ttl + 0.05)
    second = b.try_acquire("aggregator/cell-a").lease
    assert second is not None
    assert second.token > first.token
    assert not a.renew(first), "the old holder must not extend someone else's lease"
    assert not a.release(first), "nor delete it"
    assert b.current("aggregator/cell-a") == (second.token, b.holder.id)


def test_renewal_keeps_contenders_out(client, keys) -> None:
    a, b = store(client, keys, "a"), store(client, keys, "b")
    lease = a.try_acquire("monitor").lease
    assert lease is not None
    deadline = time.monotonic() + 3 * FAST.lease_duration
    while time.monotonic() < deadline:
        assert a.renew(lease)
        assert b.try_acquire("monitor").lease is None
        time.sleep(FAST.retry_period)


def test_tokens_grow_even_when_the_counter_is_lost(client, keys) -> None:
    a = store(client, keys, "a")
    tokens = []
    for _ in range(3):
        lease = a.try_acquire("generator").lease
        assert lease is not None
        tokens.append(lease.token)
        assert a.release(lease)
    assert tokens == sorted(tokens) and len(set(tokens)) == 3
    # Redis restarted without persistence: the counter restarts from the clock (microseconds),
    # which is far above anything the counter reached.
    client.delete(keys.token("generator"))
    lease = a.try_acquire("generator").lease
    assert lease is not None
    assert lease.token > tokens[-1]


def test_controllers_have_independent_leases(client, keys) -> None:
    a, b = store(client, keys, "a"), store(client, keys, "b")
    assert a.try_acquire("aggregator/cell-a").lease is not None
    assert b.try_acquire("aggregator/cell-b").lease is not None
    assert b.try_acquire("aggregator/cell-a").lease is None


def test_fence_passes_while_renewed_and_ours(client, keys) -> None:
    a = store(client, keys, "a")
    lease = a.try_acquire("generator").lease
    fence = RedisFence(a, lease)
    fence.check()
    assert fence.token == lease.token
    assert fence.before_write() == {FENCE_HEADER: f"generator/{lease.token}"}


def test_fence_fails_once_the_lease_is_someone_elses(client, keys) -> None:
    a, b = store(client, keys, "a"), store(client, keys, "b")
    lease = a.try_acquire("generator").lease
    rejected: list[str] = []
    fence = RedisFence(a, lease, on_reject=rejected.append)
    client.delete(keys.lease("generator"))  # expired
    with pytest.raises(LostLeadership, match="no longer ours"):
        fence.check()
    assert b.try_acquire("generator").lease is not None
    with pytest.raises(LostLeadership):
        fence.before_write()
    assert len(rejected) == 2


def test_fence_fails_past_the_renew_deadline_even_if_redis_still_says_ours(client, keys) -> None:
    clock = Clock()
    a = store(client, keys, "a", Timings(15, 10, 2), clock=clock)
    lease = a.try_acquire("generator").lease
    fence = RedisFence(a, lease)
    clock.now += 9.9
    fence.check()
    clock.now += 0.2
    with pytest.raises(LostLeadership, match="renew deadline"):
        fence.check()
    assert a.renew(lease)  # a renewal (sent now) makes it valid again
    fence.check()


def test_fence_fails_when_revoked_or_redis_unreachable(client, keys) -> None:
    a = store(client, keys, "a")
    lease = a.try_acquire("generator").lease
    fence = RedisFence(a, lease)
    fence.revoke()
    with pytest.raises(LostLeadership, match="ended"):
        fence.check()

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    cut_off = LeaseStore(dead, keys, a.holder, FAST)
    with pytest.raises(LostLeadership, match="cannot confirm"):
        RedisFence(cut_off, lease).check()


def test_leader_state_follows_the_holder(client, keys) -> None:
    a, b = store(client, keys, "a"), store(client, keys, "b")
    lease = a.try_acquire(
        "generator",
        {"holder": a.holder.id, "hostname": "host-a", "pid": 1, "worker": "celery@a",
         "since": "100.5", "renewed_at": "100.5", "lease_duration": 0.4, "paused": "0",
         "running": "0"},
    ).lease  # fmt: skip
    assert a.renew(lease, {"renewed_at": "101.0", "running": "1", "last_error": "boom",
                           "last_error_at": "100.9", "last_reconcile_at": "100.9",
                           "last_reconcile_failed": "1"})  # fmt: skip
    (state,) = read_states(client=client, keys=keys)
    assert state.controller == "generator"
    assert (state.holder, state.worker, state.token) == (a.holder.id, "celery@a", lease.token)
    assert state.since.timestamp() == 100.5 and state.renewed_at.timestamp() == 101.0
    assert state.running and not state.paused and not state.released
    assert state.last_error == "boom" and state.last_reconcile_failed
    assert not state.is_active(), "renewed long ago (in 1970)"

    client.delete(keys.lease("generator"))
    assert not a.update_state(lease, {"running": "0"}), "a stale holder cannot write state"
    lease_b = b.try_acquire("generator", {"holder": b.holder.id, "since": f"{time.time()}"})
    assert lease_b.lease is not None
    (state,) = read_states(["generator"], client=client, keys=keys)
    assert state.holder == b.holder.id and state.token == lease_b.lease.token
    assert state.last_error is None, "a new term starts with a clean state"
    assert read_states(["monitor"], client=client, keys=keys) == []

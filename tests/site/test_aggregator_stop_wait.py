"""A removal that paused the cell's aggregator waits for its leader to say it stopped: woken by
the leader's announcement on the workers' events channel, with a slow re-read for a lost one.

Real Redis at settings.REDIS_URL under the site tests' key prefix; the "leader" is this test,
writing the leader hash and publishing as ``workers.runtime`` does.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from console import services
from workers.keys import RELEASED_EVENT, STATE_EVENT, RedisKeys, encode_event

KEY = "aggregator/cell-a"


@pytest.fixture
def store(podseidon, settings):
    keys = RedisKeys(settings.PODSEIDON_REDIS_PREFIX)
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.skip(f"needs Redis at {settings.REDIS_URL} (make test starts one): {error}")
    yield client, keys
    stale = list(client.scan_iter(match=f"{keys.prefix}:*"))
    if stale:
        client.delete(*stale)
    client.close()


def lead(client: redis.Redis, keys: RedisKeys, controller: str, running: bool) -> None:
    now = time.time()
    client.sadd(keys.leaders, controller)
    client.hset(
        keys.leader(controller),
        mapping={
            "holder": "w:1:x",
            "hostname": "w",
            "pid": "1",
            "worker": "celery@w",
            "token": "3",
            "since": f"{now - 60}",
            "renewed_at": f"{now}",
            "lease_duration": "60",
            "paused": "1",
            "running": "1" if running else "0",
        },
    )


class Waiting:
    """``_aggregator_stopped`` in a thread, and when it is subscribed to the events channel."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, timeout: float) -> None:
        self.result: list[Any] = []
        self.thread = threading.Thread(
            target=lambda: self.result.append(services._aggregator_stopped("cell-a", timeout)),
            daemon=True,
        )
        self.thread.start()
        deadline = time.monotonic() + 5
        while dict(client.pubsub_numsub(keys.events)).get(keys.events.encode(), 0) < 1:
            assert time.monotonic() < deadline, "the wait never subscribed to the events channel"
            time.sleep(0.01)

    def done_within(self, seconds: float) -> bool:
        self.thread.join(seconds)
        return not self.thread.is_alive()


def waiting_on_a_running_leader(store, monkeypatch, recheck: float) -> Waiting:
    client, keys = store
    monkeypatch.setattr(services, "AGGREGATOR_RECHECK_SECONDS", recheck)
    lead(client, keys, KEY, running=True)
    return Waiting(client, keys, timeout=60)


def test_the_leaders_announcement_ends_the_wait(store, monkeypatch) -> None:
    client, keys = store
    # Only the announcement can end the wait within this test's bounds.
    waiting = waiting_on_a_running_leader(store, monkeypatch, recheck=60.0)

    # Another controller's news does not end it, nor does a change nobody announced yet.
    client.publish(keys.events, encode_event(STATE_EVENT, "aggregator/cell-b"))
    assert not waiting.done_within(0.3)

    lead(client, keys, KEY, running=False)
    client.publish(keys.events, encode_event(STATE_EVENT, KEY))
    assert waiting.done_within(5), "the announcement did not wake the wait"
    assert waiting.result == [True]


def test_a_released_lease_ends_the_wait(store, monkeypatch) -> None:
    client, keys = store
    waiting = waiting_on_a_running_leader(store, monkeypatch, recheck=60.0)
    client.hset(keys.leader(KEY), mapping={"released": "1", "running": "0"})
    client.publish(keys.events, encode_event(RELEASED_EVENT, KEY))
    assert waiting.done_within(5), "the release did not wake the wait"
    assert waiting.result == [True]


def test_a_lost_announcement_is_caught_by_the_re_read(store, monkeypatch) -> None:
    client, keys = store
    waiting = waiting_on_a_running_leader(store, monkeypatch, recheck=0.2)
    lead(client, keys, KEY, running=False)  # nothing published
    assert waiting.done_within(5)
    assert waiting.result == [True]


def test_a_leader_that_keeps_running_is_reported_at_the_deadline(store) -> None:
    client, keys = store
    lead(client, keys, KEY, running=True)
    started = time.monotonic()
    assert services._aggregator_stopped("cell-a", 0.5) is False
    assert time.monotonic() - started >= 0.5


def test_no_leader_running_needs_no_wait(store) -> None:
    client, keys = store
    assert services._aggregator_stopped("cell-a", 5) is True  # nobody ever led it
    lead(client, keys, KEY, running=False)
    assert services._aggregator_stopped("cell-a", 5) is True


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", ""], ids=["unreachable", "unset"])
def test_without_redis_there_is_no_answer(podseidon, settings, url) -> None:
    settings.REDIS_URL = url
    assert services._aggregator_stopped("cell-a", 5) is None

"""Runtime switches: durable in the database, announced on Redis, applied by the runtime."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from django.contrib.auth.models import User

from podseidon_site.config import parse_config
from protectors.kube.client import KubeClient
from workers.keys import SWITCH_EVENT, RedisKeys, decode_event
from workers.leases import Holder, Timings
from workers.models import ControllerSwitch
from workers.runtime import ClusterClients, ControllerManager
from workers.switches import is_paused, list_switches, load_paused, set_paused

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def keys(settings) -> Iterator[RedisKeys]:
    keys = RedisKeys(f"test-switches-{uuid.uuid4().hex[:10]}")
    settings.PODSEIDON_REDIS_PREFIX = keys.prefix
    settings.REDIS_URL = REDIS_URL
    yield keys
    client = redis.Redis.from_url(REDIS_URL)
    stale = list(client.scan_iter(match=f"{keys.prefix}:*"))
    if stale:
        client.delete(*stale)
    client.close()


@pytest.mark.django_db
def test_switches_are_stored_with_who_and_why(keys) -> None:
    assert not is_paused("generator")
    assert load_paused() == {}
    admin = User.objects.create_user("alice")
    switch = set_paused("aggregator/cell-a", True, user=admin, reason="cell drained")
    assert (switch.paused, switch.changed_by, switch.reason) == (True, "alice", "cell drained")
    assert is_paused("aggregator/cell-a")
    assert not is_paused("aggregator/cell-b")

    set_paused("aggregator/cell-a", False, user="bob")
    set_paused("generator", True, user=None)
    assert load_paused() == {"aggregator/cell-a": False, "generator": True}
    assert [s.controller_key for s in list_switches()] == ["aggregator/cell-a", "generator"]
    assert ControllerSwitch.objects.get(controller_key="aggregator/cell-a").changed_by == "bob"


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "aggregator", "aggregator/", "aggregator/a/b", "webhook"])
def test_unknown_controller_keys_are_refused(keys, key: str) -> None:
    with pytest.raises(ValueError, match="not a controller key"):
        set_paused(key, True, user="alice")
    assert not ControllerSwitch.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_change_is_announced_on_redis(keys) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.events)
    try:
        set_paused("monitor", True, user="alice")
        message = None
        deadline = time.monotonic() + 2
        while message is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.1)
        assert message is not None
        assert decode_event(message["data"]) == (SWITCH_EVENT, "monitor")
    finally:
        pubsub.close()
        client.close()


class Recorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.running = False

    def start(self, context) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False


def wait_for(predicate, timeout: float) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "not in time"
        time.sleep(0.01)
    return time.monotonic() - start


@pytest.mark.django_db(transaction=True)
def test_pause_and_resume_reach_a_running_manager_within_two_seconds(keys) -> None:
    config = parse_config(
        {"core": {"kubeconfig": "/x"}, "cells": [{"id": "a", "kubeconfig": "/x"}]}
    )
    generator, aggregator = Recorder("generator"), Recorder("aggregator/a")
    set_paused("aggregator/a", True, user="alice", reason="paused before start")
    manager = ControllerManager(
        config,
        [generator, aggregator],
        client=redis.Redis.from_url(REDIS_URL),
        keys=keys,
        switch_loader=load_paused,
        holder=Holder.for_this_process("celery@test"),
        # A 5 s retry period: the fallback re-read alone could not make the 2 s bounds below,
        # so meeting them proves the Redis message did the work.
        timings=Timings(15, 10, 5),
        clients=ClusterClients(config, factory=lambda access: KubeClient(None)),
    )
    manager.start()
    try:
        wait_for(lambda: generator.running, 6)
        # Both electors take their leases (each in its own thread)...
        wait_for(lambda: set(manager.leading()) == {"generator", "aggregator/a"}, 6)
        # ...but the paused one does not run: a switch stored before start-up is honoured.
        assert not aggregator.running

        set_paused("generator", True, user="alice", reason="incident 42")
        wait_for(lambda: not generator.running, 2)
        set_paused("aggregator/a", False, user="alice")
        wait_for(lambda: aggregator.running, 2)
        set_paused("generator", False, user="alice")
        wait_for(lambda: generator.running, 2)
    finally:
        manager.stop(timeout=5)
        manager.client.close()

"""The controller runtime: one runner per key across managers, handover, pause, Redis loss.

Real Redis at $REDIS_URL under a per-test key prefix; controllers are fakes that record calls,
and a "write" is the fenced client's ``before_write`` (what every real write calls first).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from podseidon_site.config import parse_config
from protectors.kube.client import KubeClient
from workers.controller import ControllerContext, LostLeadership
from workers.keys import STATE_EVENT, SWITCH_EVENT, RedisKeys, decode_event, encode_event
from workers.leadership import read_states
from workers.leases import FENCE_HEADER, Holder, Timings
from workers.runtime import ClusterClients, ControllerManager

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
TIMINGS = Timings(lease_duration=0.6, renew_deadline=0.4, retry_period=0.1)
KEYS = ["generator", "aggregator/cell-a", "aggregator/cell-b", "monitor"]
CONFIG = parse_config(
    {
        "core": {"kubeconfig": "/nonexistent/core"},
        "cells": [
            {"id": "cell-a", "kubeconfig": "/nonexistent/a"},
            {"id": "cell-b", "kubeconfig": "/nonexistent/b"},
        ],
        "leader_election": {
            "lease_duration_seconds": 0.6,
            "renew_deadline_seconds": 0.4,
            "retry_period_seconds": 0.1,
        },
    }
)


class FlakyRedis(redis.Redis):
    """A client whose commands fail while ``down`` is set (pub/sub is left alone)."""

    down = False

    def execute_command(self, *args, **options):
        if self.down:
            raise redis.ConnectionError("Redis is down (test)")
        return super().execute_command(*args, **options)


class FakeController:
    def __init__(self, name: str, fail_starts: int = 0) -> None:
        self.name = name
        self.contexts: list[ControllerContext] = []
        self.running = False
        self.starts = 0
        self.stops = 0
        self.fail_starts = fail_starts

    def start(self, context: ControllerContext) -> None:
        self.starts += 1
        if self.fail_starts:
            self.fail_starts -= 1
            raise RuntimeError("cannot reach the core cluster")
        self.contexts.append(context)
        self.running = True

    def stop(self) -> None:
        self.stops += 1
        self.running = False

    def write(self) -> dict:
        """What a fenced write sends before going out (raises LostLeadership when refused)."""
        return self.contexts[-1].core.before_write()


@pytest.fixture
def keys() -> Iterator[RedisKeys]:
    keys = RedisKeys(f"test-runtime-{uuid.uuid4().hex[:10]}")
    yield keys
    client = redis.Redis.from_url(REDIS_URL)
    stale = list(client.scan_iter(match=f"{keys.prefix}:*"))
    if stale:
        client.delete(*stale)
    client.close()


class Managers:
    def __init__(self, keys: RedisKeys) -> None:
        self.keys = keys
        self.started: list[ControllerManager] = []
        self.paused: dict[str, bool] = {}

    def start(self, name: str, controller_keys=KEYS, **kwargs) -> ControllerManager:
        client = FlakyRedis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        controllers = kwargs.pop("controllers", None) or [
            FakeController(k) for k in controller_keys
        ]
        manager = ControllerManager(
            CONFIG,
            controllers,
            client=client,
            keys=self.keys,
            switch_loader=kwargs.pop("switch_loader", lambda: dict(self.paused)),
            holder=Holder(f"{name}:1:{uuid.uuid4().hex[:4]}", name, 1, f"celery@{name}"),
            timings=kwargs.pop("timings", TIMINGS),
            clients=ClusterClients(CONFIG, factory=lambda access: KubeClient(None)),
            balance=kwargs.pop("balance", None),
        )
        manager.start()
        self.started.append(manager)
        return manager

    def stop_all(self) -> None:
        for manager in self.started:
            if not manager.stopping.is_set():
                manager.stop(timeout=5)
            manager.client.close()


@pytest.fixture
def managers(keys) -> Iterator[Managers]:
    managers = Managers(keys)
    yield managers
    managers.stop_all()


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.01)
    return time.monotonic() - start


def controller(manager: ControllerManager, key: str) -> FakeController:
    return manager.electors[key].controller  # type: ignore[return-value]


def runners(managers: list[ControllerManager], key: str) -> list[ControllerManager]:
    return [m for m in managers if key in m.electors and controller(m, key).running]


def test_each_controller_runs_in_exactly_one_manager(managers) -> None:
    a, b = managers.start("a"), managers.start("b")
    wait_for(lambda: all(len(runners([a, b], k)) == 1 for k in KEYS), 3, "every key runs")
    for _ in range(20):  # and it stays that way through renewals
        assert all(len(runners([a, b], k)) == 1 for k in KEYS)
        time.sleep(TIMINGS.retry_period / 2)
    assert set(a.leading()) | set(b.leading()) == set(KEYS)
    assert not set(a.leading()) & set(b.leading())
    for key in KEYS:
        (leader,) = runners([a, b], key)
        headers = controller(leader, key).write()
        assert headers == {FENCE_HEADER: f"{key}/{leader.leading()[key]}"}
        context = controller(leader, key).contexts[-1]
        assert set(context.cells) == {"cell-a", "cell-b"}
        assert context.fence.token == leader.leading()[key]


def test_clean_stop_hands_over_within_a_retry_period(managers) -> None:
    a = managers.start("a")
    wait_for(lambda: len(a.leading()) == len(KEYS), 3, "a leads everything")
    b = managers.start("b")
    # b takes its share of the aggregators (balancing) and no other held lease.
    wait_for(lambda: len(b.leading()) == 1, 3, "b leads one aggregator")
    time.sleep(3 * TIMINGS.retry_period)
    assert len(b.leading()) == 1 and next(iter(b.leading())).startswith("aggregator/")
    old = {k: controller(a, k) for k in KEYS}
    tokens = dict(a.leading())
    a.stop()
    assert not any(c.running for c in old.values())
    took = wait_for(lambda: len(b.leading()) == len(KEYS), 3, "b takes over")
    assert took < TIMINGS.lease_duration, "released leases are taken at once, not on expiry"
    assert all(b.leading()[k] > tokens[k] for k in tokens)
    with pytest.raises(LostLeadership):
        old["generator"].write()
    states = {s.controller: s for s in read_states(client=b.client, keys=managers.keys)}
    assert all(states[k].holder == b.holder.id for k in KEYS)


def test_a_dead_leader_is_replaced_after_lease_expiry(managers) -> None:
    a = managers.start("a", ["generator"])
    wait_for(lambda: a.leading(), 3, "a leads")
    b = managers.start("b", ["generator"])
    # "kill -9": the process stops renewing and never releases.
    a.client.down = True
    a.stopping.set()
    killed = time.monotonic()
    wait_for(lambda: b.leading(), 3, "b takes over")
    took = time.monotonic() - killed
    assert TIMINGS.lease_duration - TIMINGS.retry_period - 0.05 <= took, "waited for expiry"
    assert took <= TIMINGS.lease_duration + TIMINGS.retry_period + 0.2


def test_pause_stops_within_moments_and_keeps_the_lease(managers) -> None:
    slow = Timings(lease_duration=6, renew_deadline=4, retry_period=2)
    a = managers.start("a", ["generator", "aggregator/cell-a"], timings=slow)
    b = managers.start("b", ["generator", "aggregator/cell-a"], timings=slow)
    wait_for(lambda: len(runners([a, b], "generator")) == 1, 3, "generator runs")
    wait_for(lambda: len(runners([a, b], "aggregator/cell-a")) == 1, 3, "aggregator runs")
    (leader,) = runners([a, b], "generator")
    token = leader.leading()["generator"]
    generator = controller(leader, "generator")
    old_context = generator.contexts[-1]

    managers.paused["generator"] = True
    leader.client.publish(managers.keys.events, encode_event(SWITCH_EVENT, "generator"))
    took = wait_for(lambda: not generator.running, 1, "paused")
    assert took < slow.retry_period / 2, "the event, not the periodic re-read, applied it"
    with pytest.raises(LostLeadership, match="ended"):
        old_context.core.before_write()
    assert len(runners([a, b], "aggregator/cell-a")) == 1, "other controllers go on"
    time.sleep(0.3)
    assert leader.leading()["generator"] == token, "the paused leader keeps its lease"
    assert not runners([a, b], "generator")
    state = read_states(["generator"], client=leader.client, keys=managers.keys)[0]
    assert state.paused and not state.running and state.is_active()

    managers.paused["generator"] = False
    leader.client.publish(managers.keys.events, encode_event(SWITCH_EVENT, "generator"))
    wait_for(lambda: generator.running, 1, "resumed")
    assert generator.write() == {FENCE_HEADER: f"generator/{token}"}


def test_starts_and_stops_are_announced_once_the_state_says_so(managers) -> None:
    listener = redis.Redis.from_url(REDIS_URL, socket_timeout=2).pubsub(
        ignore_subscribe_messages=True
    )
    listener.subscribe(managers.keys.events)

    def next_state_of(key: str) -> object:
        """The leader state as read when the next announcement for ``key`` arrives."""
        deadline = time.monotonic() + 5
        while (left := deadline - time.monotonic()) > 0:
            message = listener.get_message(timeout=left)
            if message and decode_event(message["data"]) == (STATE_EVENT, key):
                return read_states([key], client=a.client, keys=managers.keys)[0]
        raise AssertionError(f"no state announcement for {key} within 5 s")

    try:
        a = managers.start("a", ["monitor"])
        started = next_state_of("monitor")
        assert started.running and not started.paused and controller(a, "monitor").running

        managers.paused["monitor"] = True
        a.client.publish(managers.keys.events, encode_event(SWITCH_EVENT, "monitor"))
        stopped = next_state_of("monitor")
        assert not stopped.running and stopped.paused and stopped.is_active()
        assert not controller(a, "monitor").running
    finally:
        listener.close()


def test_a_lost_switch_message_costs_at_most_a_retry_period(managers) -> None:
    a = managers.start("a", ["monitor"])
    wait_for(lambda: controller(a, "monitor").running, 3, "monitor runs")
    managers.paused["monitor"] = True  # no message published
    took = wait_for(lambda: not controller(a, "monitor").running, 1, "paused by the re-read")
    assert took <= TIMINGS.retry_period + 0.1


def test_nothing_starts_before_the_switches_are_read(managers) -> None:
    calls = []

    def broken():
        calls.append(1)
        raise RuntimeError("database unreachable")

    a = managers.start("a", ["generator"], switch_loader=broken)
    wait_for(lambda: len(calls) >= 3, 2, "switches retried")
    assert not a.leading() and not controller(a, "generator").starts


def test_redis_loss_stops_writes_at_once_and_controllers_by_the_deadline(managers) -> None:
    a = managers.start("a", ["generator"])
    generator = controller(a, "generator")
    wait_for(lambda: generator.running, 3, "generator runs")
    first = a.leading()["generator"]
    a.client.down = True
    down = time.monotonic()
    with pytest.raises(LostLeadership, match="cannot confirm"):
        generator.write()
    wait_for(lambda: not generator.running, 2, "stopped")
    stopped_after = time.monotonic() - down
    assert stopped_after <= TIMINGS.renew_deadline + TIMINGS.retry_period + 0.1
    assert not a.leading()

    a.client.down = False
    wait_for(lambda: generator.running, 3, "resumed with Redis back")
    assert a.leading()["generator"] > first, "a new term, a new token"
    generator.write()


def test_failed_start_is_reported_and_retried(managers) -> None:
    flaky = FakeController("generator", fail_starts=1)
    a = managers.start("a", controllers=[flaky])
    wait_for(lambda: flaky.running, 3, "started on the second try")
    assert flaky.starts == 2
    state = read_states(["generator"], client=a.client, keys=managers.keys)[0]
    wait_for(
        lambda: read_states(["generator"], client=a.client, keys=managers.keys)[0].running,
        1,
        "state says running",
    )
    state = read_states(["generator"], client=a.client, keys=managers.keys)[0]
    assert state.last_error == "start failed: cannot reach the core cluster"


def test_reports_reach_the_leader_state(managers) -> None:
    a = managers.start("a", ["aggregator/cell-a"])
    aggregator = controller(a, "aggregator/cell-a")
    wait_for(lambda: aggregator.running, 3, "runs")
    context = aggregator.contexts[-1]
    context.report("409 Conflict on default/web")
    context.report(None)

    def reported():
        (state,) = read_states(["aggregator/cell-a"], client=a.client, keys=a.keys)
        return state.last_reconcile_at is not None and state.last_error

    wait_for(reported, 1, "report published")
    (state,) = read_states(["aggregator/cell-a"], client=a.client, keys=a.keys)
    assert state.last_error == "409 Conflict on default/web"
    assert not state.last_reconcile_failed
    assert (state.hostname, state.pid, state.worker) == ("a", 1, "celery@a")
    assert state.running and state.is_active()


# -- balancing the aggregators -------------------------------------------------------------

FOUR = [f"aggregator/cell-{c}" for c in "abcd"]


def spread(managers: list[ControllerManager]) -> list[int]:
    return sorted((sum(1 for k in m.leading() if k in FOUR) for m in managers), reverse=True)


def running_once(managers: list[ControllerManager]) -> bool:
    return all(len(runners(managers, k)) == 1 for k in FOUR)


def test_aggregators_spread_over_the_workers_and_move_to_a_new_one(managers) -> None:
    a = managers.start("a", FOUR)
    wait_for(lambda: spread([a]) == [4], 3, "a leads every aggregator")
    b, c = managers.start("b", FOUR), managers.start("c", FOUR)
    wait_for(lambda: spread([a, b, c]) == [2, 1, 1] and running_once([a, b, c]), 3, "2/1/1")
    for _ in range(10):  # and it stays put
        assert spread([a, b, c]) == [2, 1, 1]
        time.sleep(TIMINGS.retry_period / 2)
    assert sum(m.balancer.current.share for m in (a, b, c)) == 4

    # A fourth worker: one lease moves to it, handed over (no expiry wait), no overlap.
    d = managers.start("d", FOUR)
    started = time.monotonic()
    took = wait_for(lambda: spread([a, b, c, d]) == [1, 1, 1, 1], 3, "1/1/1/1")
    assert took <= 2 * TIMINGS.retry_period + 0.1
    assert time.monotonic() - started < TIMINGS.lease_duration
    wait_for(lambda: running_once([a, b, c, d]), 1, "each runs once")


def test_a_stopped_workers_share_goes_to_the_others(managers) -> None:
    a, b, c = (managers.start(n, FOUR) for n in "abc")
    wait_for(lambda: spread([a, b, c]) == [2, 1, 1], 3, "2/1/1")
    a.stop()
    wait_for(lambda: spread([b, c]) == [2, 2] and running_once([b, c]), 2, "2/2")


def test_a_dead_workers_share_is_taken_on_expiry(managers) -> None:
    a, b = managers.start("a", FOUR), managers.start("b", FOUR)
    wait_for(lambda: spread([a, b]) == [2, 2], 3, "2/2")
    held = set(a.leading())
    a.client.down = True  # "kill -9": no renewals, no release, no goodbye
    a.stopping.set()
    killed = time.monotonic()
    wait_for(lambda: set(b.leading()) >= held, 3, "b takes a's share")
    took = time.monotonic() - killed
    assert took <= TIMINGS.lease_duration + 2 * TIMINGS.retry_period + 0.2


def test_a_pinned_worker_leads_its_cell(managers) -> None:
    a, b = managers.start("a", FOUR), managers.start("b", FOUR)
    wait_for(lambda: spread([a, b]) == [2, 2], 3, "2/2")
    pinned = managers.start("p", ["aggregator/cell-d"])
    wait_for(lambda: "aggregator/cell-d" in pinned.leading(), 3, "the pinned worker leads cell-d")
    wait_for(lambda: spread([a, b]) == [2, 1] and running_once([a, b, pinned]), 3, "2/1 + 1")


def test_balancing_off_keeps_first_come(managers) -> None:
    a = managers.start("a", FOUR)
    wait_for(lambda: spread([a]) == [4], 3, "a leads every aggregator")
    b = managers.start("b", FOUR, balance=False)
    time.sleep(4 * TIMINGS.retry_period)
    assert spread([a]) == [4] and not b.leading()

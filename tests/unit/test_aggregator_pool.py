"""The next-event pool."""

from __future__ import annotations

from workers.aggregator.pool import NextEventPool


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_empty_pool():
    pool = NextEventPool(FakeClock())
    assert len(pool) == 0
    assert pool.latency() == 0
    assert pool.drain() == []


def test_latency_is_the_age_of_the_oldest_waiter():
    clock = FakeClock()
    pool = NextEventPool(clock)
    pool.add("ns/a")
    clock.now += 2
    pool.add("ns/b")
    clock.now += 1
    assert len(pool) == 2
    assert pool.latency() == 3
    pool.discard("ns/a")
    assert pool.latency() == 1


def test_adding_again_keeps_the_original_wait():
    clock = FakeClock()
    pool = NextEventPool(clock)
    pool.add("ns/a")
    clock.now += 5
    pool.add("ns/a")
    assert len(pool) == 1
    assert pool.latency() == 5


def test_drain_returns_all_oldest_first_and_empties():
    clock = FakeClock()
    pool = NextEventPool(clock)
    for key in ("ns/c", "ns/a", "ns/b"):
        pool.add(key)
        clock.now += 1
    assert "ns/a" in pool
    assert pool.keys() == ["ns/c", "ns/a", "ns/b"]
    assert pool.drain() == ["ns/c", "ns/a", "ns/b"]
    assert len(pool) == 0
    assert "ns/a" not in pool
    assert pool.latency() == 0


def test_discard_of_a_missing_key_is_harmless():
    pool = NextEventPool(FakeClock())
    pool.discard("ns/none")
    assert len(pool) == 0

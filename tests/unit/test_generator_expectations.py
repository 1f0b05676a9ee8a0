"""Expectations: waiting for the caches to show the generator's own writes."""

from __future__ import annotations

import pytest

from workers.generator.expectations import Expectations


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def obj(uid: str = "u1", rv: str = "5") -> dict:
    return {"metadata": {"uid": uid, "resourceVersion": rv}}


@pytest.mark.parametrize(
    ("cached", "waits"),
    [
        (None, True),  # created, not in the cache yet
        (obj(rv="4"), True),  # the cache still holds the version before our write
        (obj(rv="5"), False),  # our write
        (obj(uid="u2", rv="9"), False),  # replaced by another object of that name
    ],
)
def test_written(cached, waits) -> None:
    expectations = Expectations(ttl=3, clock=Clock())
    expectations.expect_written("k", obj())
    assert (expectations.wait_for("k", cached) > 0) is waits
    assert len(expectations) == (1 if waits else 0)


@pytest.mark.parametrize(
    ("cached", "waits"),
    [(obj(), True), (None, False), (obj(uid="u2"), False)],
)
def test_deleted(cached, waits) -> None:
    expectations = Expectations(ttl=3, clock=Clock())
    expectations.expect_deleted("k", "u1")
    assert (expectations.wait_for("k", cached) > 0) is waits


def test_ttl_bounds_the_wait() -> None:
    clock = Clock()
    expectations = Expectations(ttl=3, clock=clock)
    expectations.expect_written("k", obj())
    assert expectations.wait_for("k", None) == pytest.approx(3)
    clock.now += 2
    assert expectations.wait_for("k", None) == pytest.approx(1)
    clock.now += 1.5
    assert expectations.wait_for("k", None) == 0
    assert len(expectations) == 0


def test_handlers_clear_what_they_see() -> None:
    expectations = Expectations(ttl=3, clock=Clock())
    expectations.expect_written("a", obj(rv="7"))
    expectations.observe("a", obj(rv="6"))
    assert len(expectations) == 1
    expectations.observe("a", obj(rv="7"))
    assert len(expectations) == 0
    # A DELETED event: anything we wrote to the object came before it.
    expectations.expect_written("b", obj())
    expectations.observe_deleted("b")
    assert expectations.wait_for("b", None) == 0
    assert expectations.wait_for("unknown", None) == 0

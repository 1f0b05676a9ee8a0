"""CoreBreaker: silence opens it, one probe at a time while open, any answer closes it."""

from __future__ import annotations

import pytest

from webhook.core_breaker import CoreBreaker, CoreBusy, CoreUnavailable


def _breaker() -> tuple[CoreBreaker, list[float], list[bool]]:
    clock = [100.0]
    changes: list[bool] = []
    breaker = CoreBreaker(1.0, clock=lambda: clock[0], on_change=changes.append)
    return breaker, clock, changes


def test_closed_lets_everything_through() -> None:
    breaker, _, changes = _breaker()
    breaker.check()
    assert breaker.before_write() is False
    breaker.answered(probe=False)
    assert not breaker.is_open and changes == []


def test_silence_opens_then_one_probe_per_interval() -> None:
    breaker, clock, changes = _breaker()
    breaker.silent(3.0, probe=False)
    assert breaker.is_open and changes == [True]
    with pytest.raises(CoreUnavailable, match="did not answer within 3000 ms"):
        breaker.check()
    with pytest.raises(CoreUnavailable):
        breaker.before_write()
    clock[0] += 1.0
    breaker.check()  # a probe is due: reviews may go on to their batch
    assert breaker.before_write() is True  # this write is the probe
    with pytest.raises(CoreUnavailable):
        breaker.before_write()  # only one at a time
    breaker.silent(3.0, probe=True)  # the probe got no answer either
    with pytest.raises(CoreUnavailable, match=r"no answer for 1\.0 s"):
        breaker.check()
    clock[0] += 1.0
    assert breaker.before_write() is True
    breaker.answered(probe=True)
    assert not breaker.is_open and changes == [True, False]
    breaker.check()


def test_a_probe_that_ends_without_news_frees_the_slot() -> None:
    breaker, clock, _ = _breaker()
    breaker.silent(3.0, probe=False)
    clock[0] += 1.0
    assert breaker.before_write() is True
    breaker.abandoned(probe=True)
    assert breaker.is_open
    assert breaker.before_write() is True


def test_waiting_is_bounded() -> None:
    breaker = CoreBreaker(max_waiting=2)
    with breaker.waiting(), breaker.waiting():
        third = breaker.waiting()
        with pytest.raises(CoreBusy, match="2 reviews"):
            third.__enter__()
    with breaker.waiting():  # released on the way out
        pass


def test_unbounded_by_default() -> None:
    breaker = CoreBreaker()
    entered = [breaker.waiting() for _ in range(500)]
    for context in entered:
        context.__enter__()
    for context in entered:
        context.__exit__(None, None, None)

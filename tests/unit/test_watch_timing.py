"""Watch lifetimes and bookmark times: the sandbox's (as kube-apiserver v1.24) and the timeouts
our client asks for (as client-go's reflector)."""

from protectors.kube.client import MIN_WATCH_TIMEOUT, WATCH_READ_TIMEOUT, random_watch_timeout
from sandbox.watch_timing import BOOKMARK_INTERVAL, MIN_REQUEST_TIMEOUT, WatchTiming


def test_the_defaults_are_kube_apiservers() -> None:
    timing = WatchTiming()
    assert (timing.bookmark_interval, timing.min_request_timeout) == (60.0, 1800.0)
    assert (BOOKMARK_INTERVAL, MIN_REQUEST_TIMEOUT) == (60.0, 1800.0)


def test_a_watch_without_timeout_seconds_ends_between_one_and_two_min_request_timeouts() -> None:
    timing = WatchTiming()
    ends = [timing.deadline(1000.0, None) for _ in range(200)] + [timing.deadline(1000.0, 0)]
    assert all(end is not None and 2800.0 <= end < 4600.0 for end in ends)
    assert len(set(ends)) > 100, "randomised, so watchers do not reconnect together"
    assert WatchTiming(min_request_timeout=0).deadline(1000.0, None) is None


def test_timeout_seconds_is_honoured() -> None:
    assert WatchTiming().deadline(1000.0, 7) == 1007.0


def test_bookmarks_every_interval_and_once_two_seconds_before_the_deadline() -> None:
    timing = WatchTiming()
    assert timing.next_bookmark(0.0, 600.0) == 60.0
    assert timing.next_bookmark(0.0, None) == 60.0
    assert timing.next_bookmark(560.0, 600.0) == 598.0
    assert timing.next_bookmark(598.0, 600.0) is None
    assert timing.next_bookmark(0.0, 3.0) == 1.0  # a 3 s watch gets its bookmark at 1 s
    assert timing.next_bookmark(0.0, 1.0) is None


def test_bookmarks_off() -> None:
    assert WatchTiming(bookmark_interval=0).next_bookmark(0.0, 600.0) is None


def test_our_watches_ask_for_a_random_timeout_and_outlast_a_bookmark_interval() -> None:
    timeouts = {random_watch_timeout() for _ in range(200)}
    assert all(MIN_WATCH_TIMEOUT <= t < 2 * MIN_WATCH_TIMEOUT for t in timeouts)
    assert len(timeouts) > 50
    # A quiet but healthy watch gets a bookmark before its read timeout, twice over.
    assert WATCH_READ_TIMEOUT >= 2 * BOOKMARK_INTERVAL

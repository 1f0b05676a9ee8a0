"""RetryBatcher: concurrent submissions for one key share executions; conflicts retry."""

import threading
import time
from collections.abc import Sequence

import pytest

from webhook.batching import BatchTimeout, NeedRetry, RetryBatcher


class SlowDoubler:
    """An executor that takes a while, so concurrent submitters pile up behind it."""

    def __init__(self, delay: float = 0.05, conflicts: int = 0) -> None:
        self.delay = delay
        self.conflicts = conflicts
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()

    def __call__(self, key: object, items: Sequence[int], deadline: float = 0) -> list[int]:
        time.sleep(self.delay)
        with self.lock:
            self.batches.append(list(items))
            if self.conflicts:
                self.conflicts -= 1
                raise NeedRetry
        return [i * 2 for i in items]


def _submit_concurrently(batcher: RetryBatcher, key: str, items: list[int], timeout: float = 5):
    results: dict[int, object] = {}
    barrier = threading.Barrier(len(items))

    def run(item: int) -> None:
        barrier.wait()
        try:
            results[item] = batcher.submit(key, item, time.monotonic() + timeout)
        except Exception as error:
            results[item] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return results


def test_single_submission_runs_alone() -> None:
    executor = SlowDoubler(delay=0)
    batcher = RetryBatcher(executor)
    assert batcher.submit("k", 21, time.monotonic() + 1) == 42
    assert executor.batches == [[21]]


def test_concurrent_submissions_are_coalesced() -> None:
    executor = SlowDoubler(delay=0.05)
    batcher = RetryBatcher(executor)
    results = _submit_concurrently(batcher, "ppr", list(range(20)))
    assert results == {i: i * 2 for i in range(20)}
    # The first batch holds whoever arrived first; everyone else rides the next one or two.
    assert len(executor.batches) < 20
    assert sorted(i for b in executor.batches for i in b) == list(range(20))


def test_different_keys_do_not_share_batches() -> None:
    executor = SlowDoubler(delay=0.01)
    batcher = RetryBatcher(executor)
    assert batcher.submit("a", 1, time.monotonic() + 1) == 2
    assert batcher.submit("b", 2, time.monotonic() + 1) == 4
    assert executor.batches == [[1], [2]]


def test_conflict_retries_the_whole_batch_after_backoff() -> None:
    executor = SlowDoubler(delay=0, conflicts=2)
    sleeps: list[float] = []
    batcher = RetryBatcher(executor, backoff_base=0.1, backoff_jitter=0.1, sleep=sleeps.append)
    assert batcher.submit("k", 5, time.monotonic() + 1) == 10
    assert executor.batches == [[5], [5], [5]]
    assert len(sleeps) == 2
    assert all(0.1 <= s < 0.2 for s in sleeps)


def test_error_fails_every_item_of_the_batch() -> None:
    def broken(key: object, items: Sequence[int], deadline: float) -> list[int]:
        raise RuntimeError("apiserver said 500")

    batcher = RetryBatcher(broken)
    with pytest.raises(RuntimeError, match="apiserver said 500"):
        batcher.submit("k", 1, time.monotonic() + 1)


def test_deadline_bounds_the_wait() -> None:
    executor = SlowDoubler(delay=0, conflicts=1000)
    batcher = RetryBatcher(executor, backoff_base=0.05, backoff_jitter=0)
    started = time.monotonic()
    with pytest.raises(BatchTimeout):
        batcher.submit("k", 1, started + 0.3)
    assert time.monotonic() - started < 1.0


def test_waiter_times_out_behind_a_slow_runner() -> None:
    gate = threading.Event()

    def blocked(key: object, items: Sequence[int], deadline: float) -> list[int]:
        gate.wait(5)
        return list(items)

    batcher = RetryBatcher(blocked)
    runner = threading.Thread(target=batcher.submit, args=("k", 1, time.monotonic() + 5))
    runner.start()
    time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(BatchTimeout):
        batcher.submit("k", 2, started + 0.2)
    assert time.monotonic() - started < 1.0
    gate.set()
    runner.join(5)


def test_wrong_result_count_is_an_error_not_a_wrong_answer() -> None:
    batcher = RetryBatcher(lambda key, items, deadline: [])
    with pytest.raises(RuntimeError, match="0 results for 1"):
        batcher.submit("k", 1, time.monotonic() + 1)


def test_state_is_released_after_use() -> None:
    batcher = RetryBatcher(SlowDoubler(delay=0))
    _submit_concurrently(batcher, "k", [1, 2, 3])
    assert batcher._keys == {}


def test_a_lone_request_is_not_held_for_the_window() -> None:
    executor = SlowDoubler(delay=0)
    sleeps: list[float] = []
    batcher = RetryBatcher(executor, window=0.02, sleep=sleeps.append)
    for i in range(3):  # sequential deletions: one after the other, nobody alongside
        assert batcher.submit("k", i, time.monotonic() + 1) == i * 2
    assert sleeps == []


def test_a_burst_waits_the_window_and_stays_contended_for_a_while() -> None:
    executor = SlowDoubler(delay=0.05)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    clock = [time.monotonic()]
    batcher = RetryBatcher(
        executor, window=0.01, contended_for=1.0, sleep=sleep, clock=lambda: clock[0]
    )
    results = _submit_concurrently(batcher, "k", list(range(6)), timeout=1000)
    assert results == {i: i * 2 for i in range(6)}
    # Batches that found others queued waited the window before running.
    assert slept and all(s == pytest.approx(0.01) for s in slept)
    # A straggler of the same burst, alone now, still waits: more may be on their way.
    slept.clear()
    batcher.submit("k", 7, clock[0] + 1000)
    assert slept == [pytest.approx(0.01)]
    # A second later the burst is over: a lone request goes at once again.
    clock[0] += 1.5
    slept.clear()
    batcher.submit("k", 8, clock[0] + 1000)
    assert slept == []
    batcher.submit("other", 9, clock[0] + 1000)  # contention is per key
    assert slept == []

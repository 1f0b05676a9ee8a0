"""WorkQueue: de-duplication, delays, one worker per key, retry backoff."""

import threading

import pytest

from workers.workqueue import ShutDown, WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_duplicates_collapse() -> None:
    queue = WorkQueue()
    for _ in range(3):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert [queue.get(0), queue.get(0), queue.get(0)] == ["a", "b", None]


def test_delay_and_earliest_schedule_wins() -> None:
    clock = Clock()
    queue = WorkQueue(clock=clock)
    queue.add("late", delay=10)
    queue.add("late", delay=5)
    queue.add("later", delay=20)
    assert queue.get(0) is None
    clock.now += 5
    assert queue.get(0) == "late"
    clock.now += 15
    assert queue.get(0) == "later"


def test_key_in_progress_is_not_handed_out_twice_but_comes_back() -> None:
    queue = WorkQueue()
    queue.add("k")
    assert queue.get(0) == "k"
    queue.add("k")  # changed while being processed
    assert queue.get(0) is None
    queue.done("k")
    assert queue.get(0) == "k"
    queue.done("k")
    assert queue.get(0) is None


@pytest.mark.parametrize(("failures", "delay"), [(1, 0.05), (2, 0.1), (3, 0.2), (12, 30.0)])
def test_retry_backs_off_per_key(failures: int, delay: float) -> None:
    clock = Clock()
    queue = WorkQueue(backoff_initial=0.05, backoff_max=30, clock=clock)
    chosen = [queue.retry("k") for _ in range(failures)]
    assert chosen[-1] == pytest.approx(delay)
    queue.forget("k")
    assert queue.retry("k") == pytest.approx(0.05)


def test_get_wakes_up_for_new_work_and_shutdown() -> None:
    queue = WorkQueue()
    got: list[object] = []

    def worker() -> None:
        try:
            while True:
                got.append(queue.get())
                queue.done(got[-1])
        except ShutDown:
            got.append("stopped")

    thread = threading.Thread(target=worker)
    thread.start()
    queue.add("x")
    for _ in range(100):
        if got:
            break
        threading.Event().wait(0.01)
    queue.shutdown()
    thread.join(2)
    assert got == ["x", "stopped"]

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


def test_waiting_workers_get_delayed_keys_on_time_in_due_order() -> None:
    """Adding a key due later than the earliest does not wake a worker; it is still handed out
    on time, and a key due sooner than the one a worker sleeps for wakes it."""
    import time

    queue = WorkQueue()
    got: list[tuple[object, float]] = []
    start = time.monotonic()

    def worker() -> None:
        try:
            while True:
                key = queue.get(timeout=5)
                if key is None:
                    return
                got.append((key, time.monotonic() - start))
                queue.done(key)
        except ShutDown:
            pass

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    queue.add("late", delay=0.4)
    queue.add("later", delay=0.5)
    queue.add("soon", delay=0.1)
    deadline = time.monotonic() + 3
    while len(got) < 3 and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    queue.shutdown()
    for thread in threads:
        thread.join(5)
    assert [key for key, _ in got] == ["soon", "late", "later"]
    for (key, at), due in zip(got, (0.1, 0.4, 0.5), strict=True):
        assert due <= at < due + 0.25, (key, at)

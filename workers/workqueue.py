"""A keyed work queue for reconcile loops, with delays, de-duplication and retry backoff.

Semantics (as controllers expect them):
- a key is handed to at most one worker at a time;
- adding a key that is already waiting does nothing (or moves it earlier); adding a key that is
  being processed marks it dirty, and it comes back once the worker calls ``done``;
- ``add(key, delay)`` schedules it for later, the earliest schedule wins;
- ``retry(key)`` re-adds with exponential backoff per key; ``forget(key)`` resets it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Hashable


class ShutDown(Exception):
    """The queue was shut down; workers should exit."""


class WorkQueue:
    def __init__(
        self,
        *,
        backoff_initial: float = 0.05,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}
        self._processing: set[Hashable] = set()
        self._dirty: dict[Hashable, float] = {}
        self._failures: dict[Hashable, int] = {}
        self._counter = itertools.count()
        self._shutdown = False

    def add(self, key: Hashable, delay: float = 0.0) -> None:
        with self._cond:
            if self._shutdown:
                return
            due = self._clock() + max(delay, 0.0)
            if key in self._processing:
                previous = self._dirty.get(key)
                self._dirty[key] = due if previous is None else min(previous, due)
                return
            current = self._due.get(key)
            if current is not None and current <= due:
                return
            self._due[key] = due
            # A waiting worker sleeps until the earliest entry at most; wake one only when this
            # key is due sooner than that, not for every key added behind it (a burst of
            # delayed keys would otherwise wake a worker per key for nothing).
            sooner = not self._heap or due < self._heap[0][0]
            heapq.heappush(self._heap, (due, next(self._counter), key))
            if sooner:
                self._cond.notify()

    def get(self, timeout: float | None = None) -> Hashable | None:
        """The next due key (marked as processing), or None after ``timeout`` seconds."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                if self._shutdown:
                    raise ShutDown
                now = self._clock()
                while self._heap:
                    due, _, key = self._heap[0]
                    if self._due.get(key) != due:
                        heapq.heappop(self._heap)  # superseded by an earlier schedule
                        continue
                    if due > now:
                        break
                    heapq.heappop(self._heap)
                    del self._due[key]
                    self._processing.add(key)
                    return key
                wait = self._heap[0][0] - now if self._heap else None
                if deadline is not None:
                    remaining = deadline - now
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._cond.wait(wait)

    def done(self, key: Hashable) -> None:
        with self._cond:
            self._processing.discard(key)
            due = self._dirty.pop(key, None)
        if due is not None:
            self.add(key, max(due - self._clock(), 0.0))

    def retry(self, key: Hashable) -> float:
        """Re-add ``key`` after its next backoff; returns the delay chosen."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = min(self._backoff_initial * (2**failures), self._backoff_max)
        self.add(key, delay)
        return delay

    def forget(self, key: Hashable) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def __len__(self) -> int:
        with self._cond:
            return len(self._due)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

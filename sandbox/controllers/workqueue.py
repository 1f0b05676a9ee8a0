"""A keyed work queue with per-key exponential backoff, like client-go's rate-limited queue.

A key is in the queue at most once, and is never handed to two workers at the same time: a
key added while it is being processed is queued again when its worker calls `done`. Failures
are retried after `initial * 2**failures` seconds (capped at `maximum`) until `forget`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable


class WorkQueue:
    def __init__(self, initial_backoff: float = 0.005, max_backoff: float = 30.0) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._wakeup = asyncio.Event()
        self._shut_down = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: Hashable) -> None:
        if self._shut_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._wakeup.set()

    def add_after(self, key: Hashable, delay: float) -> None:
        """Add `key` in `delay` seconds (an earlier pending add wins)."""
        if self._shut_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending.when() <= when:
                return
            pending.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def backoff(self, key: Hashable) -> float:
        """The delay the next `add_rate_limited(key)` will use."""
        failures = self._failures.get(key, 0)
        return min(self.initial_backoff * (2 ** min(failures, 62)), self.max_backoff)

    def add_rate_limited(self, key: Hashable) -> float:
        """Retry `key` after its backoff, which doubles with every call until `forget`."""
        delay = self.backoff(key)
        self._failures[key] = self._failures.get(key, 0) + 1
        self.add_after(key, delay)
        return delay

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    async def get(self) -> Hashable | None:
        """The next key to process (now owned by the caller until `done`), None once shut
        down."""
        while not self._queue:
            if self._shut_down:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty and not self._shut_down:
            self._queue.append(key)
            self._wakeup.set()

    def shut_down(self) -> None:
        self._shut_down = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._queue.clear()
        self._wakeup.set()

"""The next-event pool: protectors whose cell still holds admission buckets newer than the
cell's sync time. Only a later pod event can move the sync time past them, so they wait here and
are all re-enqueued when one arrives (design.md §4 "Aggregator")."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["NextEventPool"]


class NextEventPool:
    """Waiting protector keys with the moment each started waiting.

    Not thread-safe by itself: the controller guards it with the lock that also guards the sync
    time, so "add to the pool" and "an event drained the pool" cannot interleave.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Insertion order is waiting order: the first entry is the oldest waiter.
        self._waiting: dict[str, float] = {}

    def add(self, key: str) -> None:
        """Start waiting; a key already waiting keeps its original start."""
        self._waiting.setdefault(key, self._clock())

    def discard(self, key: str) -> None:
        self._waiting.pop(key, None)

    def drain(self) -> list[str]:
        """Every waiting key, oldest first; the pool is empty afterwards."""
        keys = list(self._waiting)
        self._waiting.clear()
        return keys

    def keys(self) -> list[str]:
        """Waiting keys, oldest first (the pool is unchanged)."""
        return list(self._waiting)

    def latency(self) -> float:
        """Seconds the oldest waiter has waited (0 when the pool is empty)."""
        for started in self._waiting.values():
            return max(self._clock() - started, 0.0)
        return 0.0

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, key: object) -> bool:
        return key in self._waiting

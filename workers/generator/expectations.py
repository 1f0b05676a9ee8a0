"""Writes the generator made that its informer caches have not shown yet.

Right after the generator creates a protector or adds a finalizer, the watch event that updates
its cache is still in flight; a reconcile of the same key in that window would decide on the
old state and collide with its own write (409 AlreadyExists / Conflict). So after each write the
controller records what the cache must show (the written resourceVersion, or the absence of the
deleted UID), and a reconcile of the key waits until the cache shows it — or until ``ttl``
passes (a broken watch must not stall the generator; the write then simply conflicts).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Expectations"]


@dataclass(frozen=True)
class _Expected:
    uid: str | None
    # None: the object with ``uid`` must be gone.
    resource_version: str | None
    deadline: float

    def met_by(self, cached: Mapping[str, Any] | None) -> bool:
        if cached is None:
            return self.resource_version is None
        metadata = cached.get("metadata") or {}
        if self.uid and metadata.get("uid") != self.uid:
            return True  # another object of that name: ours is gone or replaced
        if self.resource_version is None:
            return False
        return metadata.get("resourceVersion") == self.resource_version


class Expectations:
    def __init__(self, ttl: float = 3.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._expected: dict[Hashable, _Expected] = {}

    def expect_written(self, key: Hashable, written: Mapping[str, Any]) -> None:
        metadata = written.get("metadata") or {}
        self._set(key, _Expected(metadata.get("uid"), metadata.get("resourceVersion"), 0))

    def expect_deleted(self, key: Hashable, uid: str | None) -> None:
        self._set(key, _Expected(uid, None, 0))

    def _set(self, key: Hashable, expected: _Expected) -> None:
        with self._lock:
            self._expected[key] = _Expected(
                expected.uid, expected.resource_version, self._clock() + self._ttl
            )

    def observe(self, key: Hashable, cached: Mapping[str, Any] | None) -> None:
        """From an informer handler: the cache now holds ``cached`` (None: nothing) for key."""
        with self._lock:
            expected = self._expected.get(key)
            if expected is not None and expected.met_by(cached):
                del self._expected[key]

    def observe_deleted(self, key: Hashable) -> None:
        """From an informer handler: the object is gone from the cache. Whatever we wrote to it
        came before (events arrive in order), so nothing is pending any more."""
        with self._lock:
            self._expected.pop(key, None)

    def wait_for(self, key: Hashable, cached: Mapping[str, Any] | None) -> float:
        """Seconds still to wait before reconciling on ``cached``; 0 when it is current."""
        with self._lock:
            expected = self._expected.get(key)
            if expected is None:
                return 0.0
            remaining = expected.deadline - self._clock()
            if remaining <= 0 or expected.met_by(cached):
                del self._expected[key]
                return 0.0
            return remaining

    def clear(self) -> None:
        with self._lock:
            self._expected.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._expected)

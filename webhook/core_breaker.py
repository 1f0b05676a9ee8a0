"""Fail protected reviews fast while the core cluster does not answer status writes.

Each review that must record a bucket holds a server thread until its status write returns. With
the core cluster hung, every such write runs out its whole budget; a burst of protected deletions
would then hold every thread of every worker, and deletions nobody protects (which need no write
at all) would queue behind them. So once one write got no answer, the breaker opens: protected
reviews are refused at once (the same fail-closed 500 they would get after the wait), except one
**probe** per ``probe_interval`` that tries a real write with the full budget. The first write that
gets any answer from the core, even an error, closes it again.

Only silence opens it: a write the core answered with an error (409, 422, 500, 429) is a
decision of a live server and is handled as before. A timeout whose budget had been cut short by
the review's own deadline proves nothing about the core and does not open it either.

The breaker opens only after a write has used up its budget; until then, protected reviews that
arrive keep waiting for writes that will not be answered. ``max_waiting`` bounds how many server
threads they may hold at once: a review beyond it is refused at once, so the threads above the
bound always remain for reviews that need no write. Set it a little below the process's thread
count; a healthy core never gets near it (each review waits for one write, milliseconds).

One breaker per webhook process; it needs no lock-free cleverness, reviews take its lock twice
at most, for a few microseconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class CoreUnavailable(Exception):
    """The breaker is open: the core cluster did not answer a recent status write."""

    def __init__(self, budget: float, silent_for: float) -> None:
        self.budget = budget
        self.silent_for = silent_for
        super().__init__(
            f"core cluster did not answer within {budget * 1000:.0f} ms (no answer for "
            f"{silent_for:.1f} s; failing fast until a status write succeeds)"
        )


class CoreBusy(Exception):
    """Too many reviews of this process already wait for status writes to the core cluster."""

    def __init__(self, waiting: int) -> None:
        self.waiting = waiting
        super().__init__(
            f"{waiting} reviews in this webhook process are already waiting for the core "
            "cluster to answer their status writes"
        )


class CoreBreaker:
    def __init__(
        self,
        probe_interval: float = 1.0,
        *,
        max_waiting: int = 0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._probe_interval = probe_interval
        self._max_waiting = max_waiting
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._open_since: float | None = None
        self._budget = 0.0
        self._next_probe = 0.0
        self._probing = False
        self._waiting = 0

    @property
    def is_open(self) -> bool:
        return self._open_since is not None

    def check(self) -> None:
        """Raise CoreUnavailable when open and no probe is due (reviews call this first)."""
        if self._open_since is None:
            return
        with self._lock:
            if self._open_since is None:
                return
            now = self._clock()
            if self._probing or now < self._next_probe:
                raise CoreUnavailable(self._budget, now - self._open_since)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a review's wait for its status write: CoreUnavailable when open and no probe
        is due, CoreBusy when ``max_waiting`` reviews already wait."""
        self.check()
        with self._lock:
            if self._max_waiting and self._waiting >= self._max_waiting:
                raise CoreBusy(self._waiting)
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1

    def before_write(self) -> bool:
        """Raise CoreUnavailable, or return whether this write is the probe (the writer calls
        this right before a status write; one probe at a time)."""
        if self._open_since is None:
            return False
        with self._lock:
            if self._open_since is None:
                return False
            now = self._clock()
            if self._probing or now < self._next_probe:
                raise CoreUnavailable(self._budget, now - self._open_since)
            self._probing = True
            return True

    def answered(self, probe: bool) -> None:
        """The core answered a write (any HTTP status)."""
        if self._open_since is None and not probe:
            return
        with self._lock:
            was_open = self._open_since is not None
            self._open_since = None
            self._probing = False
        if was_open and self._on_change:
            self._on_change(False)

    def silent(self, budget: float, probe: bool) -> None:
        """A write got no answer within ``budget`` (a full one: see the module docstring)."""
        with self._lock:
            now = self._clock()
            was_open = self._open_since is not None
            if not was_open:
                self._open_since = now
            self._budget = budget
            self._next_probe = now + self._probe_interval
            if probe:
                self._probing = False
        if not was_open and self._on_change:
            self._on_change(True)

    def abandoned(self, probe: bool) -> None:
        """A write ended without telling us anything about the core (e.g. a short budget)."""
        if probe:
            with self._lock:
                self._probing = False

"""Coalescing concurrent work per key into batches, with retry after conflicts.

Every request thread that wants a decision for PodProtector K submits an item and waits. While a
batch for K is executing, new items for K queue up; when it finishes, the next batch takes all of
them at once. So N concurrent deletions against one protector cost one status write (or a few),
not N writes racing each other into 409 Conflicts. Requests from other processes are arbitrated
by the apiserver through resourceVersion: the executor sees a conflict, waits a jittered backoff
and runs the whole batch again against fresh state.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, Protocol, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class NeedRetry(Exception):
    """Raised by an executor when the batch must run again after a backoff (e.g. 409)."""


class BatchTimeout(Exception):
    """The caller's deadline passed before its batch finished."""


class BatchObserver(Protocol):
    def batch_executed(self, key: Hashable, size: int) -> None: ...

    def batch_retry(self, key: Hashable, size: int, delay: float) -> None: ...

    def batch_waited(self, key: Hashable, seconds: float) -> None: ...


class _Outcome(Generic[Result]):
    """A submission's result or error. Waiters wait on their key's condition, not on this: a
    concurrent.futures.Future would bring a lock and a condition of its own per submission."""

    __slots__ = ("_error", "_set", "_value")

    def __init__(self) -> None:
        self._set = False
        self._value: Result | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._set

    def set_result(self, value: Result) -> None:
        self._value, self._set = value, True

    def set_exception(self, error: BaseException) -> None:
        self._error, self._set = error, True

    def result(self) -> Result:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class _Pending(Generic[Item, Result]):
    __slots__ = ("deadline", "future", "item", "submitted")

    def __init__(self, item: Item, deadline: float, submitted: float) -> None:
        self.item = item
        self.future: _Outcome[Result] = _Outcome()
        self.deadline = deadline
        self.submitted = submitted


class _KeyState(Generic[Item, Result]):
    __slots__ = ("changed", "pending", "running", "waiters")

    def __init__(self, lock: threading.Lock) -> None:
        self.pending: list[_Pending[Item, Result]] = []
        self.running = False
        self.waiters = 0
        self.changed = threading.Condition(lock)


class RetryBatcher(Generic[Item, Result]):
    """Run ``execute(key, items, deadline) -> results`` for concurrent submissions sharing a key.

    ``deadline`` is the running thread's own: the executor must return by then, because that
    thread's answer is due (the other waiters give up at their own deadlines by themselves).
    """

    def __init__(
        self,
        execute: Callable[[Hashable, Sequence[Item], float], Sequence[Result]],
        *,
        backoff_base: float = 0.1,
        backoff_jitter: float = 0.1,
        window: float = 0.0,
        contended_for: float = 1.0,
        observer: BatchObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self._execute = execute
        self._backoff_base = backoff_base
        self._backoff_jitter = backoff_jitter
        self._window = window
        self._contended_for = contended_for
        # Keys that recently had a request arrive while one of their batches ran, and until
        # when they count as contended.
        self._contended: dict[Hashable, float] = {}
        self._observer = observer
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._keys: dict[Hashable, _KeyState[Item, Result]] = {}

    def submit(self, key: Hashable, item: Item, deadline: float) -> Result:
        """Block until ``item``'s batch is decided; raise BatchTimeout past ``deadline``.

        No background threads: a waiting request thread becomes the runner when the key is
        idle, runs one batch (everything pending, retries included) and hands over, so nobody
        keeps executing other requests' batches after its own answer is ready.
        """
        pending: _Pending[Item, Result] = _Pending(item, deadline, self._clock())
        with self._lock:
            state = self._keys.get(key)
            if state is None:
                state = self._keys[key] = _KeyState(self._lock)
            if state.running:
                self._contended[key] = pending.submitted + self._contended_for
            state.pending.append(pending)
            state.waiters += 1
        try:
            while True:
                with self._lock:
                    while state.running and not pending.future.done():
                        remaining = deadline - self._clock()
                        if remaining <= 0:
                            break
                        state.changed.wait(remaining)
                    if pending.future.done():
                        break
                    if state.running:
                        # Deadline passed while another thread runs our batch or a later one.
                        if pending in state.pending:
                            state.pending.remove(pending)
                        raise BatchTimeout(f"no decision for {key} before the deadline")
                    state.running = True
                try:
                    if self._window > 0 and self._burst_on(key, state):
                        # Let the requests of the burst still on their way join this batch.
                        self._sleep(min(self._window, max(deadline - self._clock(), 0)))
                    with self._lock:
                        batch = state.pending
                        state.pending = []
                    self._run(key, state, batch, pending)
                finally:
                    with self._lock:
                        state.running = False
                        state.changed.notify_all()
        finally:
            with self._lock:
                state.waiters -= 1
                if state.waiters == 0 and not state.pending and self._keys.get(key) is state:
                    del self._keys[key]
        return pending.future.result()

    def _burst_on(self, key: Hashable, state: _KeyState[Item, Result]) -> bool:
        """Whether a batch about to run should wait ``window`` for more requests: others
        queued behind the previous batch, or did so less than ``contended_for`` ago (a burst
        whose requests trickle in). A sequential deletion's request finds neither: it is
        written at once, because nobody is coming to share its write."""
        if len(state.pending) > 1:
            return True
        with self._lock:
            until = self._contended.get(key)
            if until is None:
                return False
            if until > self._clock():
                return True
            del self._contended[key]
            return False

    def _run(
        self,
        key: Hashable,
        state: _KeyState[Item, Result],
        batch: list[_Pending[Item, Result]],
        own: _Pending[Item, Result],
    ) -> None:
        while batch:
            now = self._clock()
            for p in batch:
                if p.deadline <= now:
                    p.future.set_exception(
                        BatchTimeout(f"no decision for {key} before the deadline")
                    )
            batch = [p for p in batch if not p.future.done()]
            if not batch:
                return
            if own.future.done():
                # Our own answer is due now; another waiter takes over the rest.
                with self._lock:
                    state.pending = batch + state.pending
                return
            started = self._clock()
            try:
                results = self._execute(key, [p.item for p in batch], own.deadline)
            except NeedRetry:
                delay = self._backoff_base + random.uniform(0, self._backoff_jitter)
                if self._observer:
                    self._observer.batch_retry(key, len(batch), delay)
                self._sleep(delay)
                # Items that arrived meanwhile join the retry: one write serves them all.
                with self._lock:
                    batch += state.pending
                    state.pending = []
                continue
            except Exception as error:
                for p in batch:
                    p.future.set_exception(error)
                return
            if self._observer:
                self._observer.batch_executed(key, len(batch))
                for p in batch:
                    self._observer.batch_waited(key, started - p.submitted)
            if len(results) != len(batch):
                error = RuntimeError(f"executor returned {len(results)} results for {len(batch)}")
                for p in batch:
                    p.future.set_exception(error)
                return
            for p, result in zip(batch, results, strict=True):
                p.future.set_result(result)
            return

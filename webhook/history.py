"""Admission history for the console, kept in Redis and written off the webhook's request path.

The request path only puts a small tuple on a bounded in-memory queue (``put_nowait``: a full
queue drops the event and counts it); one daemon thread per process drains the queue and writes
to Redis in pipelined batches. Redis being slow or down costs history, never a decision or a
millisecond of an answer: the thread drops what it cannot write, logs once a minute at most and
backs off.

What is kept (bounded in size and age, so Redis never grows with traffic):

- per cell and UTC minute, a hash ``{admitted, refused}`` under
  ``<prefix>:history:cell:<cell>:<minute epoch>`` (prefix: ``PODSEIDON_REDIS_PREFIX``),
  expiring after ``BUCKET_TTL_SECONDS`` (the console draws the last hour);
- per PodProtector, the last ``REFUSALS_KEPT`` refusals (JSON: when, cell, pod, operation, code,
  who asked) in the list ``<prefix>:history:refusals:<namespace>/<name>``, expiring
  ``REFUSALS_TTL_SECONDS`` after the newest one;
- the set ``<prefix>:history:cells`` of cells seen, so the console lists a cell it is not
  configured with.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from webhook.decision import AUDIT_KEY_REJECT_BY
from webhook.review import ReviewRequest, Verdict

logger = logging.getLogger("podseidon.webhook.history")

DEFAULT_PREFIX = "podseidon"
BUCKET_TTL_SECONDS = 2 * 60 * 60
REFUSALS_KEPT = 100
REFUSALS_TTL_SECONDS = 24 * 60 * 60
QUEUE_SIZE = 10_000
BATCH_MAX = 1_000


def cells_key(prefix: str) -> str:
    return f"{prefix}:history:cells"


def bucket_key(prefix: str, cell_id: str, minute: int) -> str:
    return f"{prefix}:history:cell:{cell_id}:{minute}"


def refusals_key(prefix: str, namespace: str, name: str) -> str:
    return f"{prefix}:history:refusals:{namespace}/{name}"


def site_prefix() -> str:
    """The site's Redis prefix (settings ``PODSEIDON_REDIS_PREFIX``, as workers/keys.py)."""
    from django.conf import settings

    return getattr(settings, "PODSEIDON_REDIS_PREFIX", DEFAULT_PREFIX) or DEFAULT_PREFIX


def _rejected_by(verdict: Verdict) -> str | None:
    value = verdict.audit_annotations.get(AUDIT_KEY_REJECT_BY)
    return value if value and "/" in value else None


def _pod_name(review: ReviewRequest) -> str:
    if review.name:
        return review.name
    metadata = (review.old_object or {}).get("metadata") or {}
    name = metadata.get("name")
    return name if isinstance(name, str) else ""


class HistoryWriter:
    """The bounded queue and the thread draining it into Redis."""

    def __init__(
        self,
        client_factory: Callable[[], Any],
        *,
        prefix: str = DEFAULT_PREFIX,
        queue_size: int = QUEUE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client_factory = client_factory
        self.prefix = prefix
        self._client: Any = None
        self._queue: queue.Queue[tuple] = queue.Queue(maxsize=queue_size)
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._last_error_log = 0.0
        self.dropped = 0  # events lost to a full queue or a failed write
        self.written = 0

    # -- the request path: never blocks ----------------------------------------------------------

    def record(self, cell_id: str, review: ReviewRequest, verdict: Verdict) -> None:
        if self._thread is None:
            self._start()
        refusal = None
        if not verdict.allowed:
            refusal = (
                _rejected_by(verdict),
                review.namespace,
                _pod_name(review),
                "eviction" if review.is_pod_eviction else "delete",
                verdict.code,
                review.username,
            )
        try:
            self._queue.put_nowait((self._clock(), cell_id, verdict.allowed, refusal))
        except queue.Full:
            self.dropped += 1

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._loop, name="webhook-history-writer", daemon=True
                )
                thread.start()
                self._thread = thread

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the writer thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < BATCH_MAX:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if self.write(batch):
                backoff = 0.0
            else:
                backoff = min(30.0, max(1.0, backoff * 2))
                self._stop.wait(backoff)

    def write(self, batch: list[tuple]) -> bool:
        """Write one batch; False (and the batch dropped) when Redis did not take it."""
        counts: dict[tuple[str, int, str], int] = {}
        refusals: dict[str, list[str]] = {}
        for at, cell_id, allowed, refusal in batch:
            field = "admitted" if allowed else "refused"
            key = (cell_id, int(at // 60) * 60, field)
            counts[key] = counts.get(key, 0) + 1
            if refusal is not None and refusal[0]:
                protector, namespace, pod, operation, code, user = refusal
                entry = {
                    "at": round(at, 3),
                    "cell": cell_id,
                    "namespace": namespace,
                    "pod": pod,
                    "operation": operation,
                    "code": code,
                    "user": user or None,
                }
                refusals.setdefault(protector, []).append(json.dumps(entry, sort_keys=True))
        try:
            if self._client is None:
                self._client = self._client_factory()
            pipe = self._client.pipeline(transaction=False)
            for (cell_id, minute, field), n in counts.items():
                key = bucket_key(self.prefix, cell_id, minute)
                pipe.hincrby(key, field, n)
                pipe.expire(key, BUCKET_TTL_SECONDS)
            cells = {cell_id for cell_id, _m, _f in counts}
            if cells:
                pipe.sadd(cells_key(self.prefix), *sorted(cells))
                pipe.expire(cells_key(self.prefix), BUCKET_TTL_SECONDS)
            for protector, entries in refusals.items():
                namespace, _, name = protector.partition("/")
                key = refusals_key(self.prefix, namespace, name)
                pipe.lpush(key, *entries)
                pipe.ltrim(key, 0, REFUSALS_KEPT - 1)
                pipe.expire(key, REFUSALS_TTL_SECONDS)
            pipe.execute()
        except Exception as error:  # any failure of Redis: the history loses this batch
            self.dropped += len(batch)
            self._client = None
            now = time.monotonic()
            if now - self._last_error_log > 60:
                self._last_error_log = now
                logger.warning(
                    "admission history not written to Redis (%d events dropped so far): %s",
                    self.dropped,
                    error,
                )
            return False
        self.written += len(batch)
        return True


def redis_factory(url: str) -> Callable[[], Any]:
    def connect() -> Any:
        import redis

        # Short deadlines: a dead Redis must free the thread quickly to drop and move on.
        return redis.Redis.from_url(
            url, socket_connect_timeout=1.0, socket_timeout=2.0, health_check_interval=0
        )

    return connect


_writer: HistoryWriter | None = None
_writer_lock = threading.Lock()


def writer() -> HistoryWriter | None:
    """The process's writer, from the site's REDIS_URL; None outside a configured site."""
    global _writer
    if _writer is None:
        with _writer_lock:
            if _writer is None:
                try:
                    from django.conf import settings

                    url = getattr(settings, "REDIS_URL", None)
                    prefix = site_prefix()
                except Exception:  # settings not configured: pure unit tests
                    return None
                if not url:
                    return None
                _writer = HistoryWriter(redis_factory(url), prefix=prefix)
    return _writer


def record(cell_id: str, review: ReviewRequest, verdict: Verdict) -> None:
    """Hand one answered review to the history (called on the request path: O(1), no I/O)."""
    w = writer()
    if w is not None:
        w.record(cell_id, review, verdict)

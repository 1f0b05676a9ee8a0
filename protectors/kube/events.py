"""Kubernetes Events about the objects Podseidon changes, written off the hot path.

``kubectl describe ppr NAME`` should tell the story the console tells (a cell removed, a
``remove-cell-once`` processed, the webhook restored), so controllers and console actions
record core/v1 Events on the objects they change. Writing one must never slow down or fail the
work it describes, so ``EventRecorder.event`` only puts the event on a bounded queue (dropping
it when the queue is full) and one background thread per recorder writes them.

What the thread does follows client-go's recorder, simplified:
- **aggregation**: an event identical to one written before (same object, type, reason and
  message) bumps that Event's ``count`` and ``lastTimestamp`` with a merge patch instead of
  creating another object; if that Event has expired meanwhile (404) a new one is created;
- **rate limiting**: per involved object and reason a token bucket (burst 25, one more token
  every 5 minutes, as client-go's spam filter) drops the excess, so a loop that keeps failing
  on one object cannot flood the API server;
- failures are counted and logged (the first of a run of failures at WARNING), never raised.

``Correlator`` holds those rules as plain code over time and events, so they are unit-tested
without a cluster or a thread. The recorder's client may be fenced (controllers): an event
written after the lease was lost is refused by the fence like any other write, and dropped.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from protectors.kube.client import KubeClient, KubeError, Resource

__all__ = [
    "EVENTS",
    "Correlator",
    "EventRecorder",
    "ObjectReference",
    "event_name",
]

logger = logging.getLogger("podseidon.events")

EVENTS = Resource("", "v1", "events")

NORMAL = "Normal"
WARNING = "Warning"
# Cluster-scoped objects (a ValidatingWebhookConfiguration) get their events here, as
# client-go's recorder does.
DEFAULT_NAMESPACE = "default"
MAX_MESSAGE_CHARS = 1024
QUEUE_SIZE = 1000
SPAM_BURST = 25
SPAM_REFILL_SECONDS = 300.0
# Identical events remembered for aggregation (least recently used beyond this are forgotten).
CACHE_SIZE = 4096
# An aggregated Event is bumped only while it is younger than this; after it a new one is made
# (kube-apiserver's default event TTL is one hour).
AGGREGATE_SECONDS = 600.0

WRITES = Counter(
    "kube_events",
    "Kubernetes Events recorded by this process, by component and result (created, "
    "aggregated, rate_limited, dropped, failed).",
    ["component", "result"],
)


@dataclass(frozen=True)
class ObjectReference:
    """The ``involvedObject`` of an Event."""

    api_version: str
    kind: str
    name: str
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectReference:
        metadata = obj.get("metadata") or {}
        return cls(
            api_version=str(obj.get("apiVersion") or ""),
            kind=str(obj.get("kind") or ""),
            name=str(metadata.get("name") or ""),
            namespace=str(metadata.get("namespace") or ""),
            uid=str(metadata.get("uid") or ""),
            resource_version=str(metadata.get("resourceVersion") or ""),
        )

    def as_dict(self) -> dict[str, str]:
        out = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.uid:
            out["uid"] = self.uid
        if self.resource_version:
            out["resourceVersion"] = self.resource_version
        return out

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        # Not the resourceVersion: every write changes it, and the object is the same one.
        return (self.api_version, self.kind, self.namespace, self.name, self.uid)


def event_name(ref: ObjectReference, now: float) -> str:
    """``<object name>.<nanoseconds in hex>``, unique per object and instant (client-go)."""
    return f"{ref.name}.{int(now * 1e9):x}"


def _timestamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Create:
    namespace: str
    body: dict[str, Any]
    key: tuple


@dataclass(frozen=True)
class Bump:
    namespace: str
    name: str
    patch: dict[str, Any]
    key: tuple


@dataclass(frozen=True)
class Drop:
    why: str


@dataclass
class _Seen:
    namespace: str
    name: str
    count: int
    first_seen: float


class Correlator:
    """Decides, for each event in turn, whether to create an Event, bump one, or drop it.

    Not thread-safe: the recorder's one writer thread owns it.
    """

    def __init__(
        self,
        component: str,
        host: str = "",
        *,
        burst: int = SPAM_BURST,
        refill_seconds: float = SPAM_REFILL_SECONDS,
        cache_size: int = CACHE_SIZE,
        aggregate_seconds: float = AGGREGATE_SECONDS,
    ) -> None:
        self.component = component
        self.host = host
        self.burst = burst
        self.refill_seconds = refill_seconds
        self.cache_size = cache_size
        self.aggregate_seconds = aggregate_seconds
        self._seen: collections.OrderedDict[tuple, _Seen] = collections.OrderedDict()
        self._buckets: collections.OrderedDict[tuple, tuple[float, float]] = (
            collections.OrderedDict()
        )

    def decide(
        self, ref: ObjectReference, event_type: str, reason: str, message: str, now: float
    ) -> Create | Bump | Drop:
        message = message[:MAX_MESSAGE_CHARS]
        if not self._take_token((*ref.identity, reason), now):
            return Drop("rate_limited")
        key = (*ref.identity, event_type, reason, message)
        seen = self._seen.get(key)
        if seen is not None and now - seen.first_seen < self.aggregate_seconds:
            self._seen.move_to_end(key)
            patch = {"count": seen.count + 1, "lastTimestamp": _timestamp(now)}
            return Bump(seen.namespace, seen.name, patch, key)
        return self.create(ref, event_type, reason, message, now)

    def create(
        self, ref: ObjectReference, event_type: str, reason: str, message: str, now: float
    ) -> Create:
        """A new Event (no rate limit: for one whose aggregated Event has expired)."""
        message = message[:MAX_MESSAGE_CHARS]
        key = (*ref.identity, event_type, reason, message)
        namespace = ref.namespace or DEFAULT_NAMESPACE
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name(ref, now), "namespace": namespace},
            "involvedObject": ref.as_dict(),
            "reason": reason,
            "message": message,
            "type": event_type,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "firstTimestamp": _timestamp(now),
            "lastTimestamp": _timestamp(now),
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }
        return Create(namespace, body, key)

    def written(self, decision: Create | Bump, now: float) -> None:
        """The write of ``decision`` succeeded: remember it for aggregation."""
        if isinstance(decision, Create):
            metadata = decision.body["metadata"]
            self._seen[decision.key] = _Seen(metadata["namespace"], metadata["name"], 1, now)
        else:
            seen = self._seen.get(decision.key)
            if seen is None:
                return
            seen.count = int(decision.patch["count"])
        self._seen.move_to_end(decision.key)
        while len(self._seen) > self.cache_size:
            self._seen.popitem(last=False)

    def forget(self, key: tuple) -> None:
        """The aggregated Event is gone (expired): the next identical event creates a new one."""
        self._seen.pop(key, None)

    def _take_token(self, key: tuple, now: float) -> bool:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        if self.refill_seconds > 0:
            tokens = min(float(self.burst), tokens + (now - at) / self.refill_seconds)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            self._buckets.move_to_end(key)
            return False
        self._buckets[key] = (tokens - 1, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.cache_size:
            self._buckets.popitem(last=False)
        return True


@dataclass(frozen=True)
class _Pending:
    ref: ObjectReference
    event_type: str
    reason: str
    message: str
    at: float


_STOP = object()


class EventRecorder:
    """Records Events through ``client`` from a background thread; ``event`` never blocks.

    The thread starts with the first event; ``stop`` ends it (events still queued then are
    dropped, which is what client-go does too on shutdown).
    """

    def __init__(
        self,
        client: KubeClient,
        component: str,
        *,
        host: str | None = None,
        queue_size: int = QUEUE_SIZE,
        clock: Callable[[], float] = time.time,
        correlator: Correlator | None = None,
    ) -> None:
        self.client = client
        self.component = component
        self.clock = clock
        self.correlator = correlator or Correlator(
            component, socket.gethostname() if host is None else host
        )
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._failing = False

    # -- producers (any thread) -----------------------------------------------------------

    def event(
        self,
        obj: Mapping[str, Any] | ObjectReference,
        event_type: str,
        reason: str,
        message: str,
    ) -> None:
        """Queue an Event about ``obj`` (an object as the API returns it, or a reference)."""
        ref = obj if isinstance(obj, ObjectReference) else ObjectReference.of(obj)
        if self._stopped or not ref.name:
            return
        self._ensure_thread()
        try:
            self._queue.put_nowait(_Pending(ref, event_type, reason, message, self.clock()))
        except queue.Full:
            WRITES.labels(self.component, "dropped").inc()

    def normal(self, obj: Mapping[str, Any] | ObjectReference, reason: str, message: str) -> None:
        self.event(obj, NORMAL, reason, message)

    def warning(self, obj: Mapping[str, Any] | ObjectReference, reason: str, message: str) -> None:
        self.event(obj, WARNING, reason, message)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event has been handled; False on timeout (tests, scripts)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self, timeout: float = 1.0) -> None:
        with self._lock:
            self._stopped = True
            thread, self._thread = self._thread, None
        if thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_STOP)
        thread.join(timeout)

    # -- the writer thread ------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=self._run, name=f"events:{self.component}", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP or self._stopped:
                    return
                self._write(item)
            except Exception:  # a bug here must not end the thread
                logger.exception("recording an event failed unexpectedly")
            finally:
                self._queue.task_done()

    def _write(self, pending: _Pending) -> None:
        correlator = self.correlator
        decision = correlator.decide(
            pending.ref, pending.event_type, pending.reason, pending.message, pending.at
        )
        if isinstance(decision, Drop):
            WRITES.labels(self.component, decision.why).inc()
            return
        try:
            if isinstance(decision, Bump):
                try:
                    self.client.patch(EVENTS, decision.namespace, decision.name, decision.patch)
                    result = "aggregated"
                except KubeError as error:
                    if not error.is_not_found:
                        raise
                    # Expired since: start a new one.
                    correlator.forget(decision.key)
                    decision = correlator.create(
                        pending.ref,
                        pending.event_type,
                        pending.reason,
                        pending.message,
                        pending.at,
                    )
            if isinstance(decision, Create):
                self.client.create(EVENTS, decision.namespace, decision.body)
                result = "created"
        except Exception as error:  # KubeError, or the fence refusing the write
            WRITES.labels(self.component, "failed").inc()
            if not self._failing:
                logger.warning(
                    "%s: could not record event %s on %s %s/%s: %s",
                    self.component,
                    pending.reason,
                    pending.ref.kind,
                    pending.ref.namespace,
                    pending.ref.name,
                    error,
                )
            self._failing = True
            return
        if self._failing:
            logger.info("%s: recording events again", self.component)
        self._failing = False
        correlator.written(decision, pending.at)
        WRITES.labels(self.component, result).inc()

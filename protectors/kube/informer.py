"""A watch-based cache of one resource: list once, then watch from the list's resourceVersion.

This is the only list+watch implementation in the project: the webhook's PodProtector cache and
every controller's caches are Informers. Semantics follow client-go's reflector:
- resume each new watch from the last resourceVersion seen (events or bookmarks);
- on 410 Gone (as an ERROR event or a failed watch request) relist and diff against the cache, so
  handlers see the deletions that happened while we were away;
- on any other failure back off exponentially with jitter, then resume;
- ask each watch for a randomised timeoutSeconds and resume when the server ends it; a watch
  that receives nothing (no event, no bookmark) within the client's read timeout is ended and
  resumed the same way, so a dead peer is noticed;
- ``stop`` is prompt however quiet the watch: it shuts the watch's socket down under the
  reading thread (protectors/kube/client.py WatchStream).
Handlers run on the informer's own thread after the cache has been updated; they must be quick
(enqueue work, do not call the API).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from protectors.kube.client import (
    WATCH_READ_TIMEOUT,
    KubeClient,
    KubeError,
    Resource,
    WatchStream,
)

logger = logging.getLogger(__name__)
# A watch that ends sooner than this without an event counts as a failure (with backoff).
_SHORT_WATCH = 1.0

IndexFunc = Callable[[dict], Iterable[str]]


def object_key(obj: dict) -> str:
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    name = metadata.get("name", "")
    return f"{namespace}/{name}" if namespace else name


def namespace_index(obj: dict) -> Iterable[str]:
    return [(obj.get("metadata") or {}).get("namespace", "")]


class EventHandler(Protocol):
    def on_add(self, obj: dict) -> None: ...

    def on_update(self, old: dict, new: dict) -> None: ...

    def on_delete(self, obj: dict) -> None: ...


@dataclass
class FunctionHandler:
    """An EventHandler from plain callables; any of them may be omitted."""

    add: Callable[[dict], None] | None = None
    update: Callable[[dict, dict], None] | None = None
    delete: Callable[[dict], None] | None = None

    def on_add(self, obj: dict) -> None:
        if self.add:
            self.add(obj)

    def on_update(self, old: dict, new: dict) -> None:
        if self.update:
            self.update(old, new)

    def on_delete(self, obj: dict) -> None:
        if self.delete:
            self.delete(obj)


class InformerObserver(Protocol):
    """What an informer reports; components plug in their own logging/metrics observer."""

    def listed(self, informer: str, count: int, resource_version: str) -> None: ...

    def watch_failed(self, informer: str, error: Exception, retry_in: float) -> None: ...

    def relist_needed(self, informer: str, reason: str) -> None: ...

    def event(self, informer: str, event_type: str) -> None: ...


class LoggingInformerObserver:
    def listed(self, informer: str, count: int, resource_version: str) -> None:
        logger.info(
            "informer %s listed %d objects at resourceVersion %s", informer, count, resource_version
        )

    def watch_failed(self, informer: str, error: Exception, retry_in: float) -> None:
        logger.warning(
            "informer %s watch failed (%s); retrying in %.1fs", informer, error, retry_in
        )

    def relist_needed(self, informer: str, reason: str) -> None:
        logger.info("informer %s relisting: %s", informer, reason)

    def event(self, informer: str, event_type: str) -> None:
        pass


@dataclass
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    _current: float = field(default=0.0, init=False)

    def next(self) -> float:
        self._current = self.initial if self._current == 0 else min(self._current * 2, self.maximum)
        # Full jitter keeps a fleet of replicas from reconnecting in lockstep after an outage.
        return random.uniform(self._current / 2, self._current)

    def reset(self) -> None:
        self._current = 0.0


class Informer:
    """Cache of one resource kept current by a watch, with secondary indexes and handlers."""

    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        *,
        name: str | None = None,
        namespace: str | None = None,
        label_selector: str | None = None,
        transform: Callable[[dict], dict] | None = None,
        observer: InformerObserver | None = None,
        watch_timeout_seconds: int | None = None,
        watch_read_timeout: float = WATCH_READ_TIMEOUT,
        backoff: Backoff | None = None,
    ) -> None:
        self.client = client
        self.resource = resource
        self.name = name or resource.plural
        self.namespace = namespace or None
        self.label_selector = label_selector or None
        self._transform = transform
        self._observer: InformerObserver = observer or LoggingInformerObserver()
        # None: a random timeoutSeconds per watch, as client-go's reflector asks.
        self._watch_timeout = watch_timeout_seconds
        self._watch_read_timeout = watch_read_timeout
        self._backoff = backoff or Backoff()

        self._lock = threading.RLock()
        self._store: dict[str, dict] = {}
        self._index_funcs: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self._handlers: list[EventHandler] = []
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # Guards handing the open stream between the watch thread and ``stop``.
        self._stream_lock = threading.Lock()
        self._stream: WatchStream | None = None
        self.resource_version: str | None = None
        self.last_event_at: float | None = None

    # -- configuration (before start) -------------------------------------------------------

    def add_index(self, name: str, func: IndexFunc) -> None:
        with self._lock:
            if name in self._index_funcs:
                raise ValueError(f"index {name!r} already registered on informer {self.name}")
            self._index_funcs[name] = func
            index: dict[str, set[str]] = {}
            for key, obj in self._store.items():
                for value in func(obj):
                    index.setdefault(value, set()).add(key)
            self._indices[name] = index

    def add_handler(self, handler: EventHandler) -> None:
        with self._lock:
            self._handlers.append(handler)
            existing = list(self._store.values())
        for obj in existing:
            handler.on_add(obj)

    def remove_handler(self, handler: EventHandler) -> None:
        """Stop delivering events to ``handler``. An event being delivered as this is called
        may still reach it (handlers are called outside the lock)."""
        with self._lock:
            self._handlers = [h for h in self._handlers if h is not handler]

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> threading.Thread:
        """Start (or restart after ``stop``) the list+watch thread.

        A restart keeps the cache and resumes from the last resourceVersion, so a standby that
        regains leadership catches up with a watch, or with a relist if it has been gone too long.
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"informer {self.name} already running")
        self._stopping.clear()
        self._thread = threading.Thread(target=self.run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = 5) -> None:
        """Stop the thread; returns once it has ended or after ``timeout`` seconds.

        An open watch ends at once, whatever arrives on it. A list in flight runs to its end
        (at most the client's request timeout) before the thread notices.
        """
        self._stopping.set()
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.close()  # never blocks: it shuts the socket down under the reader
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        """The list+watch thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def watching(self) -> bool:
        """A watch is open (its thread reads the stream or waits on it)."""
        return self._stream is not None

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.resource_version is None:
                    self._relist()
                self._watch_once()
                self._backoff.reset()
            except KubeError as error:
                if self._stopping.is_set():
                    break
                if error.is_watch_timeout:
                    # Quiet past the read timeout: the next watch finds out if the server is
                    # there (if not, that attempt fails and backs off).
                    logger.info("informer %s: %s; watching again", self.name, error.message)
                    continue
                if error.is_gone:
                    self._observer.relist_needed(self.name, error.message)
                    self.resource_version = None
                    continue
                delay = self._backoff.next()
                self._observer.watch_failed(self.name, error, delay)
                self._stopping.wait(delay)
            except Exception as error:  # a bug or a malformed object must not kill the cache
                if self._stopping.is_set():
                    break
                delay = self._backoff.next()
                logger.exception("informer %s failed unexpectedly", self.name)
                self._observer.watch_failed(self.name, error, delay)
                self.resource_version = None
                self._stopping.wait(delay)

    # -- reading -----------------------------------------------------------------------------

    def get(self, key: str) -> dict | None:
        with self._lock:
            return self._store.get(key)

    def get_by_name(self, namespace: str | None, name: str) -> dict | None:
        return self.get(f"{namespace}/{name}" if namespace else name)

    def items(self) -> list[dict]:
        with self._lock:
            return list(self._store.values())

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._store)

    def __len__(self) -> int:
        return len(self._store)

    def by_index(self, index: str, value: str) -> list[dict]:
        with self._lock:
            keys = self._indices[index].get(value, ())
            return [self._store[k] for k in keys]

    def index_keys(self, index: str, value: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._indices[index].get(value, ()))

    # -- internals ---------------------------------------------------------------------------

    def _relist(self) -> None:
        listing = self.client.list_all(
            self.resource,
            self.namespace,
            label_selector=self.label_selector,
            transform=self._transform,
        )
        items = listing.get("items") or []
        fresh = {object_key(obj): obj for obj in items}
        with self._lock:
            old_store = self._store
            added = [obj for key, obj in fresh.items() if key not in old_store]
            updated = [
                (old_store[key], obj)
                for key, obj in fresh.items()
                if key in old_store and _rv(old_store[key]) != _rv(obj)
            ]
            deleted = [obj for key, obj in old_store.items() if key not in fresh]
            for obj in deleted:
                self._remove(object_key(obj))
            for obj in items:
                self._put(obj)
            handlers = list(self._handlers)
            self.resource_version = (listing.get("metadata") or {}).get("resourceVersion")
        self._observer.listed(self.name, len(items), self.resource_version or "")
        self.last_event_at = time.time()
        for handler in handlers:
            for obj in deleted:
                handler.on_delete(obj)
            for obj in added:
                handler.on_add(obj)
            for old, new in updated:
                handler.on_update(old, new)
        self._synced.set()

    def _watch_once(self) -> None:
        opened = time.monotonic()
        stream = self.client.watch(
            self.resource,
            self.namespace,
            resource_version=self.resource_version,
            label_selector=self.label_selector,
            timeout_seconds=self._watch_timeout,
            read_timeout=self._watch_read_timeout,
        )
        with self._stream_lock:
            # ``stop`` either sees this stream and closes it, or has already set the flag.
            if self._stopping.is_set():
                stream.close()
                return
            self._stream = stream
        received = 0
        try:
            for event in stream:
                if self._stopping.is_set():
                    return
                received += 1
                self._apply(event)
        finally:
            with self._stream_lock:
                self._stream = None
            stream.close()
        short = time.monotonic() - opened < _SHORT_WATCH
        if short and not received and not self._stopping.is_set():
            # As client-go: a watch the server ends at once, again and again, must not spin.
            raise KubeError(0, "ShortWatch", "the server ended the watch at once, with no event")

    def _apply(self, event: dict[str, Any]) -> None:
        event_type = event.get("type")
        obj = event.get("object") or {}
        self.last_event_at = time.time()
        self._observer.event(self.name, str(event_type))
        if event_type == "ERROR":
            raise KubeError.from_watch_error(obj)
        new_rv = _rv(obj)
        if event_type == "BOOKMARK":
            self.resource_version = new_rv or self.resource_version
            return
        obj = self._prepare(obj)
        key = object_key(obj)
        with self._lock:
            old = self._store.get(key)
            if event_type == "DELETED":
                self._remove(key)
            else:
                self._put(obj)
            self.resource_version = new_rv or self.resource_version
            handlers = list(self._handlers)
        for handler in handlers:
            if event_type == "DELETED":
                handler.on_delete(old or obj)
            elif old is None:
                handler.on_add(obj)
            else:
                handler.on_update(old, obj)

    def _prepare(self, obj: dict) -> dict:
        return self._transform(obj) if self._transform else obj

    def _put(self, obj: dict) -> None:
        key = object_key(obj)
        if key in self._store:
            self._remove(key)
        self._store[key] = obj
        for name, func in self._index_funcs.items():
            index = self._indices[name]
            for value in func(obj):
                index.setdefault(value, set()).add(key)

    def _remove(self, key: str) -> None:
        obj = self._store.pop(key, None)
        if obj is None:
            return
        for name, func in self._index_funcs.items():
            index = self._indices[name]
            for value in func(obj):
                members = index.get(value)
                if members is not None:
                    members.discard(key)
                    if not members:
                        del index[value]


def _rv(obj: dict) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


def keep_metadata_and_status(obj: dict) -> dict:
    """Transform for pod caches: the aggregator needs labels, timestamps and status only."""
    kept = {"metadata": obj.get("metadata") or {}, "status": obj.get("status") or {}}
    node = (obj.get("spec") or {}).get("nodeName")
    if node:
        kept["spec"] = {"nodeName": node}
    return kept

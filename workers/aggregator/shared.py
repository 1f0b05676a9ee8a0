"""One PodProtector informer per core cluster and namespace, shared by the aggregators of one
process (design.md §4 "Aggregator").

Every cell's aggregator watches the same PodProtectors in the core cluster. Each keeping its own
informer meant one list+watch stream per cell of the same objects, every stream decoding every
status write every other cell's aggregator makes; with the cells of a fleet in one worker
process that decoding competes with the reconciles for the same interpreter. The first
aggregator to start opens the informer, the others join it (each with its own handler), and the
last one to stop closes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from protectors.kube.client import PODPROTECTORS, KubeClient
from protectors.kube.informer import EventHandler, Informer, LoggingInformerObserver
from workers.aggregator.index import ProtectorLookup
from workers.aggregator.podcache import slim_protector

__all__ = ["SharedProtectors", "acquire_protectors"]


class _FanOutObserver(LoggingInformerObserver):
    """Logs once, and tells every subscribed aggregator of a failing watch (each reports it to
    its own runtime) — the calls are made outside the registry lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._on_failure: list[Callable[[str], None]] = []

    def subscribe(self, on_failure: Callable[[str], None]) -> None:
        with self._lock:
            self._on_failure.append(on_failure)

    def unsubscribe(self, on_failure: Callable[[str], None]) -> None:
        with self._lock:
            self._on_failure = [f for f in self._on_failure if f is not on_failure]

    def watch_failed(self, informer: str, error: Exception, retry_in: float) -> None:
        super().watch_failed(informer, error, retry_in)
        with self._lock:
            callbacks = list(self._on_failure)
        for callback in callbacks:
            callback(f"{informer}: {error}")


class SharedProtectors:
    """A subscription to the shared PodProtector informer: the cache, its selector lookup and
    this aggregator's handler. ``release`` once; the informer stops with its last user."""

    def __init__(
        self,
        entry: _Entry,
        handler: EventHandler,
        on_failure: Callable[[str], None],
    ) -> None:
        self._entry = entry
        self._handler = handler
        self._on_failure = on_failure
        self.informer = entry.informer
        self.lookup = entry.lookup
        self._released = False

    def release(self, timeout: float) -> bool:
        """Leave the informer; True when this was its last user (it is then stopping)."""
        if self._released:
            return False
        self._released = True
        entry = self._entry
        self.informer.remove_handler(self._handler)
        entry.observer.unsubscribe(self._on_failure)
        with _REGISTRY_LOCK:
            entry.users -= 1
            last = entry.users == 0
            if last and _REGISTRY.get(entry.key) is entry:
                del _REGISTRY[entry.key]
        if last:
            self.informer.stop(timeout=timeout)
        return last


class _Entry:
    def __init__(
        self, key: tuple[Any, ...], pool: Any, informer: Informer, observer: _FanOutObserver
    ) -> None:
        self.key = key
        # Keeps the pool alive (so its id stays unique) while the entry exists.
        self.pool = pool
        self.informer = informer
        self.observer = observer
        self.lookup = ProtectorLookup(informer)
        self.users = 0


_REGISTRY_LOCK = threading.Lock()
_REGISTRY: dict[tuple[Any, ...], _Entry] = {}


def acquire_protectors(
    client: KubeClient,
    namespace: str | None,
    handler: EventHandler,
    on_failure: Callable[[str], None],
) -> SharedProtectors:
    """Join (or open) the PodProtector informer of ``client``'s cluster and ``namespace``.

    Clients are the same cluster when they share a connection pool (``KubeClient.fenced``
    copies share it; the runtime holds one per cluster per process). The informer only reads,
    so the fence of the client that opened it never matters. ``handler`` first receives every
    object already cached, as an add."""
    pool = getattr(client, "api_client", None)
    key = (id(pool) if pool is not None else id(client), namespace or None)
    with _REGISTRY_LOCK:
        entry = _REGISTRY.get(key)
        fresh = entry is None
        if entry is None:
            observer = _FanOutObserver()
            informer = Informer(
                client,
                PODPROTECTORS,
                name="aggregator/podprotectors",
                namespace=namespace or None,
                transform=slim_protector,
                observer=observer,
            )
            entry = _Entry(key, pool if pool is not None else client, informer, observer)
            _REGISTRY[key] = entry
        entry.users += 1
    entry.observer.subscribe(on_failure)
    entry.informer.add_handler(handler)
    if fresh:
        entry.informer.start()
    return SharedProtectors(entry, handler, on_failure)

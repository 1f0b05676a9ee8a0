"""Object storage of one sandbox cluster: objects, resourceVersions, event history, watchers.

This is the etcd + watch cache of the sandbox. It knows nothing about HTTP or API semantics
beyond resourceVersions: `cluster.py` decides *what* to write, this module makes the write
visible (indexes, history, watchers, persistence) in O(watchers) time.

Stored objects are never mutated after they are stored: writers build a new dict and replace
the old one. That lets lists, watch events and history share references instead of copying.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

ResourceKey = tuple[str, str]  # (group, plural)
Predicate = Callable[[dict[str, Any]], bool]

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


@dataclass(slots=True, eq=False)
class StoreEvent:
    """One committed change. `old` is the object before the change (None for ADDED)."""

    type: str
    rv: int
    key: ResourceKey
    obj: dict[str, Any]
    old: dict[str, Any] | None
    # Encoded forms shared by all watchers asking for the same representation.
    cache: dict[Any, bytes] = field(default_factory=dict)


class Watcher:
    """A per-watch queue. Filtering happens on offer so slow consumers cost only memory."""

    def __init__(self, key: ResourceKey, predicate: Predicate | None, max_queue: int) -> None:
        self.key = key
        self.predicate = predicate
        self.max_queue = max_queue
        self.items: deque[tuple[str, Any]] = deque()
        self.closed = False
        self.overflowed = False
        self._wakeup = asyncio.Event()
        self._detach: Callable[[], None] | None = None

    def offer(self, event: StoreEvent) -> None:
        if self.closed:
            return
        kind = self._visible_type(event)
        if kind is None:
            return
        if len(self.items) >= self.max_queue:
            # A consumer this far behind would never catch up; end its watch like the
            # apiserver does, and let it relist.
            self.overflowed = True
            self.close()
            return
        self.items.append((kind, event))
        self._wakeup.set()

    def _visible_type(self, event: StoreEvent) -> str | None:
        # An object moving in or out of a filtered watch shows up as ADDED / DELETED,
        # as the apiserver's watch cache reports it.
        pred = self.predicate
        if pred is None:
            return event.type
        now = pred(event.obj)
        if event.type == MODIFIED:
            before = event.old is not None and pred(event.old)
            if now and before:
                return MODIFIED
            if now:
                return ADDED
            if before:
                return DELETED
            return None
        return event.type if now else None

    def push(self, kind: str, payload: Any) -> None:
        """Queue a non-store item (BOOKMARK, ERROR)."""
        if not self.closed:
            self.items.append((kind, payload))
            self._wakeup.set()

    async def next(self, timeout: float | None = None) -> tuple[str, Any] | None:
        """The next item, or None when closed or when `timeout` passed without one."""
        while not self.items:
            if self.closed:
                return None
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                return None
        return self.items.popleft()

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> tuple[str, dict[str, Any]]:
        """(event type, object) until the watch is closed; for in-process consumers."""
        item = await self.next()
        if item is None:
            raise StopAsyncIteration
        kind, payload = item
        return kind, payload.obj if isinstance(payload, StoreEvent) else payload

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.items.clear()
        self._wakeup.set()
        if self._detach is not None:
            self._detach()
            self._detach = None


class SqlitePersistence:
    """Write-behind persistence: changes are batched and committed by `flush()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(str(path))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS objects (rgroup TEXT, plural TEXT, ns TEXT, name TEXT, "
            "data BLOB, PRIMARY KEY (rgroup, plural, ns, name))"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        self.db.commit()
        self.dirty: dict[tuple[str, str, str, str], dict[str, Any] | None] = {}
        self.rv = 0

    def load(self) -> tuple[int, list[tuple[ResourceKey, dict[str, Any]]]]:
        row = self.db.execute("SELECT v FROM meta WHERE k='rv'").fetchone()
        rv = int(row[0]) if row else 0
        objs = [
            ((g, p), orjson.loads(data))
            for g, p, data in self.db.execute("SELECT rgroup, plural, data FROM objects")
        ]
        return rv, objs

    def record(
        self, key: ResourceKey, ns: str, name: str, obj: dict[str, Any] | None, rv: int
    ) -> None:
        self.dirty[(key[0], key[1], ns, name)] = obj
        self.rv = rv

    def flush(self) -> None:
        if not self.dirty:
            return
        dirty, self.dirty = self.dirty, {}
        with self.db:
            for (g, p, ns, name), obj in dirty.items():
                if obj is None:
                    self.db.execute(
                        "DELETE FROM objects WHERE rgroup=? AND plural=? AND ns=? AND name=?",
                        (g, p, ns, name),
                    )
                else:
                    self.db.execute(
                        "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)",
                        (g, p, ns, name, orjson.dumps(obj)),
                    )
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('rv', ?)", (str(self.rv),))

    def close(self) -> None:
        self.flush()
        self.db.close()


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["metadata"]


class Store:
    """Objects of one cluster keyed by (group, plural) → namespace → name."""

    def __init__(
        self,
        history_window: int = 10000,
        max_watch_queue: int = 100000,
        persistence: SqlitePersistence | None = None,
    ) -> None:
        self.rv = 0
        # Every event with rv <= compacted_rv has left the history window.
        self.compacted_rv = 0
        self.history_window = history_window
        self.max_watch_queue = max_watch_queue
        self._objects: dict[ResourceKey, dict[str, dict[str, dict[str, Any]]]] = {}
        self._history: deque[StoreEvent] = deque()
        self._watchers: dict[ResourceKey, set[Watcher]] = {}
        self._sorted: dict[tuple[ResourceKey, str | None], list[tuple[str, str]]] = {}
        self._listeners: list[Callable[[StoreEvent], None]] = []
        self.persistence = persistence
        if persistence is not None:
            rv, objs = persistence.load()
            for key, obj in objs:
                m = _meta(obj)
                self._objects.setdefault(key, {}).setdefault(m.get("namespace", ""), {})[
                    m["name"]
                ] = obj
            self.rv = rv
            # History is not persisted: anything before a restart is too old to resume from.
            self.compacted_rv = rv

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: ResourceKey, ns: str, name: str) -> dict[str, Any] | None:
        bucket = self._objects.get(key)
        if bucket is None:
            return None
        names = bucket.get(ns)
        return names.get(name) if names is not None else None

    def count(self, key: ResourceKey, ns: str | None = None) -> int:
        bucket = self._objects.get(key, {})
        if ns is not None:
            return len(bucket.get(ns, {}))
        return sum(len(v) for v in bucket.values())

    def sorted_keys(self, key: ResourceKey, ns: str | None = None) -> list[tuple[str, str]]:
        """(namespace, name) pairs in etcd key order; cached until the next create/delete."""
        cache_key = (key, ns)
        cached = self._sorted.get(cache_key)
        if cached is not None:
            return cached
        bucket = self._objects.get(key, {})
        if ns is not None:
            pairs = [(ns, n) for n in sorted(bucket.get(ns, {}))]
        else:
            pairs = sorted((n_s, n) for n_s, names in bucket.items() for n in names)
        self._sorted[cache_key] = pairs
        return pairs

    def iter(self, key: ResourceKey, ns: str | None = None) -> Iterator[dict[str, Any]]:
        bucket = self._objects.get(key, {})
        for n_s, name in self.sorted_keys(key, ns):
            obj = bucket.get(n_s, {}).get(name)
            if obj is not None:
                yield obj

    def namespaces_with_objects(self, ns: str) -> list[ResourceKey]:
        return [k for k, bucket in self._objects.items() if bucket.get(ns)]

    def snapshot_at(self, key: ResourceKey, ns: str | None, rv: int) -> list[dict[str, Any]]:
        """The objects as they were at `rv`, rebuilt by undoing newer history events.

        The caller must have checked rv >= compacted_rv.
        """
        state: dict[tuple[str, str], dict[str, Any] | None] = {}
        for event in reversed(self._history):
            if event.rv <= rv:
                break
            if event.key != key:
                continue
            m = _meta(event.obj)
            state[(m.get("namespace", ""), m["name"])] = event.old
        current = {(_meta(o).get("namespace", ""), _meta(o)["name"]): o for o in self.iter(key, ns)}
        for (n_s, name), old in state.items():
            if ns is not None and n_s != ns:
                continue
            if old is None:
                current.pop((n_s, name), None)
            else:
                current[(n_s, name)] = old
        return [current[k] for k in sorted(current)]

    # -- writes ------------------------------------------------------------------------------

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, key: ResourceKey, obj: dict[str, Any]) -> StoreEvent:
        """Create or replace `obj`; assigns and writes its resourceVersion."""
        rv = self.next_rv()
        m = _meta(obj)
        m["resourceVersion"] = str(rv)
        ns, name = m.get("namespace", ""), m["name"]
        names = self._objects.setdefault(key, {}).setdefault(ns, {})
        old = names.get(name)
        names[name] = obj
        if old is None:
            self._invalidate(key, ns)
        return self._commit(
            StoreEvent(ADDED if old is None else MODIFIED, rv, key, obj, old), ns, name, obj
        )

    def remove(self, key: ResourceKey, ns: str, name: str) -> StoreEvent | None:
        """Delete an object; the DELETED event carries it with a fresh resourceVersion."""
        names = self._objects.get(key, {}).get(ns)
        if names is None or name not in names:
            return None
        old = names.pop(name)
        if not names:
            del self._objects[key][ns]
        self._invalidate(key, ns)
        rv = self.next_rv()
        final = {**old, "metadata": {**old["metadata"], "resourceVersion": str(rv)}}
        return self._commit(StoreEvent(DELETED, rv, key, final, old), ns, name, None)

    def drop_resource(self, key: ResourceKey) -> None:
        """Forget every object of a type without events (its CRD is gone)."""
        for ns, names in list(self._objects.pop(key, {}).items()):
            for name in names:
                if self.persistence is not None:
                    self.persistence.record(key, ns, name, None, self.rv)
        for cache_key in [k for k in self._sorted if k[0] == key]:
            del self._sorted[cache_key]
        for watcher in list(self._watchers.pop(key, ())):
            watcher.close()

    def _invalidate(self, key: ResourceKey, ns: str) -> None:
        self._sorted.pop((key, ns), None)
        self._sorted.pop((key, None), None)

    def _commit(
        self, event: StoreEvent, ns: str, name: str, stored: dict[str, Any] | None
    ) -> StoreEvent:
        history = self._history
        history.append(event)
        while len(history) > self.history_window:
            self.compacted_rv = history.popleft().rv
        if self.persistence is not None:
            self.persistence.record(event.key, ns, name, stored, event.rv)
        for watcher in tuple(self._watchers.get(event.key, ())):
            watcher.offer(event)
        for listener in self._listeners:
            listener(event)
        return event

    # -- watches -----------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[StoreEvent], None]) -> Callable[[], None]:
        """Call `listener` synchronously for every committed event; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def history_since(self, key: ResourceKey, rv: int) -> list[StoreEvent]:
        """Events of `key` with resourceVersion > rv (caller checked rv >= compacted_rv)."""
        out: list[StoreEvent] = []
        for event in reversed(self._history):
            if event.rv <= rv:
                break
            if event.key == key:
                out.append(event)
        out.reverse()
        return out

    def watch(self, key: ResourceKey, predicate: Predicate | None, since_rv: int | None) -> Watcher:
        """A registered watcher primed with history after `since_rv`, or with synthetic
        ADDED events for the current state when `since_rv` is None.

        Priming and registration happen without an await in between, so no event is lost
        or duplicated. Raises ValueError when `since_rv` has left the history window.
        """
        if since_rv is not None and since_rv < self.compacted_rv:
            raise ValueError(f"too old resource version: {since_rv} ({self.compacted_rv + 1})")
        watcher = Watcher(key, predicate, self.max_watch_queue)
        if since_rv is None:
            for obj in self.iter(key):
                if predicate is None or predicate(obj):
                    watcher.items.append((ADDED, StoreEvent(ADDED, 0, key, obj, None)))
        else:
            for event in self.history_since(key, since_rv):
                watcher.offer(event)
        watchers = self._watchers.setdefault(key, set())
        watchers.add(watcher)
        watcher._detach = lambda: watchers.discard(watcher)
        if watcher.items:
            watcher._wakeup.set()
        return watcher

    def close_watchers(self) -> None:
        for watchers in list(self._watchers.values()):
            for watcher in list(watchers):
                watcher.close()

    def flush(self) -> None:
        if self.persistence is not None:
            self.persistence.flush()

    def close(self) -> None:
        self.close_watchers()
        if self.persistence is not None:
            self.persistence.close()

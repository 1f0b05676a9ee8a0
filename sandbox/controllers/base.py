"""What every sandbox controller shares: the event-driven reconcile loop and object helpers.

A controller subscribes to the cluster's store events (synchronous, in commit order), maps
each event to the keys it affects and puts them on its `WorkQueue`; workers call `reconcile`
for one key at a time. A reconcile reads the current state from the cluster (never from the
event), writes through the normal API paths (so admission applies) and either returns, asks
to be called again after some seconds, or raises to be retried with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sandbox.cluster import Cluster
from sandbox.controllers.workqueue import WorkQueue
from sandbox.errors import ApiError
from sandbox.store import DELETED, StoreEvent

if TYPE_CHECKING:
    from sandbox.controllers import ControllerOptions

log = logging.getLogger("sandbox.controllers")

ResourceKey = tuple[str, str]
ObjectKey = tuple[ResourceKey, str, str]  # (resource key, namespace, name)

POD_KEY: ResourceKey = ("", "pods")
NODE_KEY: ResourceKey = ("", "nodes")
DEPLOYMENT_KEY: ResourceKey = ("apps", "deployments")
REPLICASET_KEY: ResourceKey = ("apps", "replicasets")
STATEFULSET_KEY: ResourceKey = ("apps", "statefulsets")


# --- object helpers -------------------------------------------------------------------------


def meta_of(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["metadata"]


def object_key(key: ResourceKey, obj: dict[str, Any]) -> ObjectKey:
    meta = obj["metadata"]
    return (key, meta.get("namespace", ""), meta["name"])


def owner_refs(obj: dict[str, Any] | None) -> list[dict[str, Any]]:
    if obj is None:
        return []
    refs = obj["metadata"].get("ownerReferences") or []
    return [r for r in refs if isinstance(r, dict) and r.get("uid")]


def controller_ref(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    return next((r for r in owner_refs(obj) if r.get("controller")), None)


def is_controlled_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == owner["metadata"].get("uid")


def owner_reference(api_version: str, kind: str, owner: dict[str, Any]) -> dict[str, Any]:
    """A controller reference to `owner`, as the workload controllers write it."""
    meta = owner["metadata"]
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_deleting(obj: dict[str, Any]) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def rfc3339(t: datetime | None = None) -> str:
    return (t or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if isinstance(c, dict) and c.get("type") == kind), None)


def pod_is_ready(pod: dict[str, Any]) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def pod_is_active(pod: dict[str, Any]) -> bool:
    """Counted by workload controllers: not terminating and not finished."""
    phase = (pod.get("status") or {}).get("phase")
    return not is_deleting(pod) and phase not in ("Succeeded", "Failed")


def pod_available_in(pod: dict[str, Any], min_ready_seconds: int, now: datetime) -> float | None:
    """0 when the pod is available (ready for min_ready_seconds), the seconds until it will
    be when it is ready but not yet long enough, None when it is not ready."""
    if not pod_is_ready(pod):
        return None
    if min_ready_seconds <= 0:
        return 0.0
    since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    if since is None:
        return 0.0
    left = min_ready_seconds - (now - since).total_seconds()
    return max(left, 0.0)


def set_condition(
    conditions: list[dict[str, Any]],
    kind: str,
    status: str,
    reason: str | None = None,
    message: str | None = None,
    *,
    with_update_time: bool = False,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """`conditions` with `kind` set; timestamps move only when something changed."""
    now = rfc3339()
    old = next((c for c in conditions if c.get("type") == kind), None)
    new: dict[str, Any] = {"type": kind, "status": status, **(extra or {})}
    if with_update_time:
        new["lastUpdateTime"] = now
    new["lastTransitionTime"] = now
    if reason is not None:
        new["reason"] = reason
    if message is not None:
        new["message"] = message
    if old is not None:
        if old.get("status") == status:
            new["lastTransitionTime"] = old.get("lastTransitionTime", now)
            if with_update_time and old.get("reason") == reason and old.get("message") == message:
                new["lastUpdateTime"] = old.get("lastUpdateTime", now)
        return [new if c is old else c for c in conditions]
    return [*conditions, new]


# --- the owner index ------------------------------------------------------------------------


class OwnerIndex:
    """owner uid → dependents (object key → the ownerReference), kept current by a store
    listener; shared by the controllers of one cluster."""

    def __init__(self) -> None:
        self._by_owner: dict[str, dict[ObjectKey, dict[str, Any]]] = {}

    def rebuild(self, cluster: Cluster) -> None:
        self._by_owner.clear()
        for rt in cluster.registry.all():
            for obj in cluster.store.iter(rt.key):
                self._add(object_key(rt.key, obj), obj)

    def _add(self, okey: ObjectKey, obj: dict[str, Any]) -> None:
        for ref in owner_refs(obj):
            self._by_owner.setdefault(ref["uid"], {})[okey] = ref

    def _remove(self, okey: ObjectKey, obj: dict[str, Any] | None) -> None:
        for ref in owner_refs(obj):
            deps = self._by_owner.get(ref["uid"])
            if deps is not None:
                deps.pop(okey, None)
                if not deps:
                    del self._by_owner[ref["uid"]]

    def on_event(self, event: StoreEvent) -> None:
        try:
            self._on_event(event)
        except Exception:  # a listener must never break the writer that committed the event
            log.exception("owner index: cannot handle %s event", event.type)

    def _on_event(self, event: StoreEvent) -> None:
        old, new = event.old, event.obj
        if (
            event.type != DELETED
            and old is not None
            and old["metadata"].get("ownerReferences") == new["metadata"].get("ownerReferences")
        ):
            return
        okey = object_key(event.key, new)
        self._remove(okey, old)
        if event.type != DELETED:
            self._add(okey, new)

    def dependents(
        self, uid: str, key: ResourceKey | None = None
    ) -> list[tuple[ObjectKey, dict[str, Any]]]:
        deps = self._by_owner.get(uid) or {}
        return [(k, ref) for k, ref in deps.items() if key is None or k[0] == key]

    def has_dependents(self, uid: str) -> bool:
        return bool(self._by_owner.get(uid))


# --- the controller loop --------------------------------------------------------------------


class Controller:
    """One reconcile loop. Subclasses set `name` and `keys` and implement `enqueue_for`,
    `all_keys` and `reconcile`."""

    name = "controller"
    # Resource types whose events this controller wants (empty: every type).
    keys: frozenset[ResourceKey] = frozenset()
    workers = 2

    def __init__(
        self,
        cluster: Cluster,
        index: OwnerIndex,
        options: ControllerOptions,
        *,
        initial_backoff: float | None = None,
        max_backoff: float | None = None,
    ) -> None:
        self.cluster = cluster
        self.index = index
        self.options = options
        self.queue = WorkQueue(
            options.backoff_initial if initial_backoff is None else initial_backoff,
            options.backoff_max if max_backoff is None else max_backoff,
        )
        self.log = log.getChild(self.name)
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: Any = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def setup(self) -> None:
        """Async preparation before events flow (the kubelet registers its nodes here)."""

    def start(self) -> None:
        # Subscribing and listing happen without an await in between: no event is missed.
        self._unsubscribe = self.cluster.store.add_listener(self._on_event)
        for key in self.all_keys():
            self.queue.add(key)
        loop = asyncio.get_running_loop()
        for i in range(self.workers):
            self._tasks.append(loop.create_task(self._work(), name=f"{self.name}-worker-{i}"))
        if self.options.resync_interval > 0:
            self._tasks.append(loop.create_task(self._resync(), name=f"{self.name}-resync"))

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.queue.shut_down()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # -- events ------------------------------------------------------------------------------

    def _on_event(self, event: StoreEvent) -> None:
        if self.keys and event.key not in self.keys:
            return
        try:
            for key in self.enqueue_for(event):
                self.queue.add(key)
        except Exception:  # a listener must never break the writer that committed the event
            self.log.exception("%s: cannot handle %s event", self.name, event.type)

    def enqueue_for(self, event: StoreEvent) -> Iterable[Hashable]:
        return ()

    def all_keys(self) -> Iterator[Hashable]:
        return iter(())

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.options.resync_interval)
            for key in self.all_keys():
                self.queue.add(key)

    # -- work --------------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            if key is None:
                return
            try:
                again = await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                delay = self.queue.add_rate_limited(key)
                self.log.info(
                    "%s %s: %s %s (retry in %.3fs)",
                    self.name,
                    key,
                    exc.code,
                    exc.body.get("message", ""),
                    delay,
                )
            except Exception:
                delay = self.queue.add_rate_limited(key)
                self.log.exception("%s %s failed (retry in %.3fs)", self.name, key, delay)
            else:
                self.queue.forget(key)
                if again is not None:
                    self.queue.add_after(key, again)
            finally:
                self.queue.done(key)

    async def reconcile(self, key: Hashable) -> float | None:
        raise NotImplementedError

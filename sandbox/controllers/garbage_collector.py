"""The garbage collector: cascading deletion through ownerReferences.

- Background: when an owner is gone (no object with its name and uid), each dependent is
  deleted with propagationPolicy Background and a uid precondition, as kube-controller-manager
  does (recorded in gc-cascade-deployment-delete.json). Dependents whose owners still exist but
  carry dangling references only lose those references.
- Foreground: an owner marked with the `foregroundDeletion` finalizer has its dependents
  deleted (in foreground themselves when they have dependents); the finalizer is removed, and
  the owner goes, once no dependent with blockOwnerDeletion is left.
- Orphan: an owner marked with the `orphan` finalizer has its references removed from every
  dependent, then the finalizer is removed.

A rejected deletion (admission denial, conflict, anything but 404) is retried per dependent
with exponential backoff, so a dependent protected by a webhook survives for as long as it is
denied and goes as soon as it is allowed.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Any

from sandbox.cluster import (
    FOREGROUND_FINALIZER,
    ORPHAN_FINALIZER,
    Cluster,
    DeleteOptions,
)
from sandbox.controllers.base import (
    Controller,
    ObjectKey,
    OwnerIndex,
    ResourceKey,
    is_deleting,
    object_key,
    owner_refs,
)
from sandbox.errors import ApiError
from sandbox.patch import MERGE_PATCH
from sandbox.resources import ResourceType
from sandbox.store import DELETED, StoreEvent

SOLID, DANGLING, WAITING = "solid", "dangling", "waiting"
_GC_FINALIZERS = (ORPHAN_FINALIZER, FOREGROUND_FINALIZER)


def _finalizers(obj: dict[str, Any]) -> list[str]:
    return list(obj["metadata"].get("finalizers") or [])


class GarbageCollector(Controller):
    name = "garbagecollector"
    workers = 8

    def __init__(self, cluster: Cluster, index: OwnerIndex, options: Any) -> None:
        super().__init__(
            cluster,
            index,
            options,
            initial_backoff=options.gc_backoff_initial,
            max_backoff=options.gc_backoff_max,
        )

    # -- events ------------------------------------------------------------------------------

    def enqueue_for(self, event: StoreEvent) -> Iterable[Hashable]:
        obj = event.obj
        okey = object_key(event.key, obj)
        if event.type == DELETED:
            # Its dependents may have lost their last owner; owners waiting in foreground
            # deletion may have lost their last blocking dependent.
            for dep_key, _ in self.index.dependents(obj["metadata"].get("uid", "")):
                yield ("dependent", dep_key)
            yield from self._waiting_owners(event.key, obj)
            return
        refs, old_refs = owner_refs(obj), owner_refs(event.old)
        if refs and (event.old is None or refs != old_refs):
            yield ("dependent", okey)
        if old_refs and refs != old_refs:
            yield from self._waiting_owners(event.key, event.old)
        if is_deleting(obj) and any(f in _GC_FINALIZERS for f in _finalizers(obj)):
            yield ("owner", okey)

    def all_keys(self) -> Iterator[Hashable]:
        for rt in self.cluster.registry.all():
            for obj in self.cluster.store.iter(rt.key):
                if owner_refs(obj):
                    yield ("dependent", object_key(rt.key, obj))
                if is_deleting(obj) and any(f in _GC_FINALIZERS for f in _finalizers(obj)):
                    yield ("owner", object_key(rt.key, obj))

    def _waiting_owners(self, key: ResourceKey, obj: dict[str, Any] | None) -> Iterator[ObjectKey]:
        dep_rt = self.cluster.registry.get(*key)
        if dep_rt is None or obj is None:
            return
        ns = obj["metadata"].get("namespace", "")
        for ref in owner_refs(obj):
            found = self._owner(dep_rt, ns, ref)
            if found is None:
                continue
            owner_rt, owner = found
            if is_deleting(owner) and FOREGROUND_FINALIZER in _finalizers(owner):
                yield ("owner", object_key(owner_rt.key, owner))

    # -- owners ------------------------------------------------------------------------------

    def _owner_type(self, ref: dict[str, Any]) -> ResourceType | None:
        api_version = str(ref.get("apiVersion") or "")
        group = api_version.split("/", 1)[0] if "/" in api_version else ""
        return self.cluster.registry.by_kind(group, str(ref.get("kind") or ""))

    def _owner(
        self, dep_rt: ResourceType, ns: str, ref: dict[str, Any]
    ) -> tuple[ResourceType, dict[str, Any]] | None:
        """The owner `ref` points at (same uid), or None when it does not exist."""
        owner_rt = self._owner_type(ref)
        if owner_rt is None:
            return None
        owner = self.cluster.store.get(
            owner_rt.key, ns if owner_rt.namespaced else "", str(ref.get("name") or "")
        )
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            return None
        return owner_rt, owner

    def _owner_state(self, dep_rt: ResourceType, ns: str, ref: dict[str, Any]) -> str:
        owner_rt = self._owner_type(ref)
        if owner_rt is None or (owner_rt.namespaced and not dep_rt.namespaced):
            # An owner of a type we cannot resolve: never collect on its account.
            return SOLID
        found = self._owner(dep_rt, ns, ref)
        if found is None:
            return DANGLING
        owner = found[1]
        if is_deleting(owner) and FOREGROUND_FINALIZER in _finalizers(owner):
            return WAITING
        return SOLID

    # -- work --------------------------------------------------------------------------------

    async def reconcile(self, key: Hashable) -> float | None:
        kind, (rkey, ns, name) = key  # type: ignore[misc]
        rt = self.cluster.registry.get(*rkey)
        if rt is None:
            return None
        obj = self.cluster.find(rt, ns, name)
        if obj is None:
            return None
        if kind == "owner":
            await self._process_deleting_owner(rt, obj)
        else:
            await self._attempt_to_delete(rt, obj)
        return None

    async def _attempt_to_delete(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        refs = owner_refs(obj)
        if not refs or is_deleting(obj):
            return
        ns = meta.get("namespace", "")
        states = [(ref, self._owner_state(rt, ns, ref)) for ref in refs]
        solid = [r for r, s in states if s == SOLID]
        gone = {r["uid"] for r, s in states if s != SOLID}
        if solid:
            if gone:
                await self._set_owner_refs(rt, obj, [r for r in refs if r["uid"] not in gone])
            return
        waiting = any(s == WAITING for _, s in states)
        finalizers = _finalizers(obj)
        if (waiting and self.index.has_dependents(meta["uid"])) or (
            FOREGROUND_FINALIZER in finalizers
        ):
            policy = "Foreground"
        elif ORPHAN_FINALIZER in finalizers:
            policy = "Orphan"
        else:
            policy = "Background"
        self.log.debug("deleting %s %s/%s (%s)", rt.kind, ns, meta["name"], policy)
        try:
            await self.cluster.delete(
                rt,
                ns,
                meta["name"],
                DeleteOptions(propagation_policy=policy, precondition_uid=meta["uid"]),
            )
        except ApiError as exc:
            if exc.code == 404:
                return
            current = self.cluster.find(rt, ns, meta["name"])
            if current is None or current["metadata"].get("uid") != meta["uid"]:
                return  # gone or replaced meanwhile: a new object has its own events
            raise

    async def _process_deleting_owner(self, rt: ResourceType, owner: dict[str, Any]) -> None:
        if not is_deleting(owner):
            return
        finalizers = _finalizers(owner)
        uid = owner["metadata"]["uid"]
        if ORPHAN_FINALIZER in finalizers:
            for (dep_key, dep_ns, dep_name), _ in self.index.dependents(uid):
                dep_rt = self.cluster.registry.get(*dep_key)
                dep = self.cluster.find(dep_rt, dep_ns, dep_name) if dep_rt else None
                if dep_rt is None or dep is None:
                    continue
                refs = owner_refs(dep)
                kept = [r for r in refs if r["uid"] != uid]
                if len(kept) != len(refs):
                    await self._set_owner_refs(dep_rt, dep, kept)
            await self._remove_finalizer(rt, owner, ORPHAN_FINALIZER)
            return
        if FOREGROUND_FINALIZER not in finalizers:
            return
        blocking = False
        for dep_okey, ref in self.index.dependents(uid):
            dep_rt = self.cluster.registry.get(*dep_okey[0])
            dep = self.cluster.find(dep_rt, dep_okey[1], dep_okey[2]) if dep_rt else None
            if dep is None:
                continue
            if ref.get("blockOwnerDeletion"):
                blocking = True
            if not is_deleting(dep):
                self.queue.add(("dependent", dep_okey))
        if not blocking:
            await self._remove_finalizer(rt, owner, FOREGROUND_FINALIZER)

    # -- writes ------------------------------------------------------------------------------

    async def _set_owner_refs(
        self, rt: ResourceType, obj: dict[str, Any], refs: list[dict[str, Any]]
    ) -> None:
        meta = obj["metadata"]
        await self.cluster.patch(
            rt,
            meta.get("namespace", ""),
            meta["name"],
            MERGE_PATCH,
            {
                "metadata": {
                    "resourceVersion": meta["resourceVersion"],
                    "ownerReferences": refs or None,
                }
            },
        )

    async def _remove_finalizer(self, rt: ResourceType, obj: dict[str, Any], name: str) -> None:
        meta = obj["metadata"]
        kept = [f for f in _finalizers(obj) if f != name]
        await self.cluster.patch(
            rt,
            meta.get("namespace", ""),
            meta["name"],
            MERGE_PATCH,
            {"metadata": {"resourceVersion": meta["resourceVersion"], "finalizers": kept or None}},
        )

"""The deployment controller: one ReplicaSet per pod template, rolled by strategy.

The ReplicaSet of the current template is `<deployment>-<pod-template-hash>`, controlled by
the Deployment (controller=true, blockOwnerDeletion=true), with the hash in its labels,
selector and template labels. A template change creates a new ReplicaSet; RollingUpdate
scales it up and the old ones down within maxSurge / maxUnavailable, Recreate scales the old
ones to zero and starts the new one once their pods are gone. Old ReplicaSets beyond
revisionHistoryLimit are deleted. Status (replicas, updated/ready/available/unavailable,
observedGeneration, conditions Available and Progressing) sums up the ReplicaSets.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Any

from sandbox.cluster import DeleteOptions
from sandbox.controllers.base import (
    DEPLOYMENT_KEY,
    POD_KEY,
    REPLICASET_KEY,
    Controller,
    controller_ref,
    is_deleting,
    owner_reference,
    set_condition,
)
from sandbox.controllers.workloads import (
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    POD_TEMPLATE_HASH,
    REVISION_ANNOTATION,
    surge_and_unavailable,
    template_hash,
    templates_equal,
)
from sandbox.errors import ApiError
from sandbox.patch import MERGE_PATCH
from sandbox.store import DELETED, StoreEvent

# Deployment annotations not copied to its ReplicaSets.
_NOT_COPIED = ("kubectl.kubernetes.io/last-applied-configuration", REVISION_ANNOTATION)


def _replicas(obj: dict[str, Any], where: str = "spec") -> int:
    return int((obj.get(where) or {}).get("replicas") or 0)


def _available(rs: dict[str, Any]) -> int:
    return int((rs.get("status") or {}).get("availableReplicas") or 0)


def _revision(rs: dict[str, Any]) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, 0))
    except ValueError:
        return 0


class DeploymentController(Controller):
    name = "deployment"
    keys = frozenset({DEPLOYMENT_KEY, REPLICASET_KEY, POD_KEY})

    def enqueue_for(self, event: StoreEvent) -> Iterable[Hashable]:
        if event.key == DEPLOYMENT_KEY:
            if event.type != DELETED:
                meta = event.obj["metadata"]
                yield (meta.get("namespace", ""), meta["name"])
            return
        if event.key == REPLICASET_KEY:
            for obj in (event.old, event.obj):
                ref = controller_ref(obj)
                if ref is not None and ref.get("kind") == "Deployment":
                    yield (obj["metadata"].get("namespace", ""), ref.get("name", ""))  # type: ignore[index]
            return
        # Pods: only their disappearance matters (Recreate waits for the old ones to go).
        if event.type == DELETED:
            ref = controller_ref(event.obj)
            if ref is not None and ref.get("kind") == "ReplicaSet":
                ns = event.obj["metadata"].get("namespace", "")
                rs = self.cluster.store.get(REPLICASET_KEY, ns, ref.get("name", ""))
                owner = controller_ref(rs)
                if owner is not None and owner.get("kind") == "Deployment":
                    yield (ns, owner.get("name", ""))

    def all_keys(self) -> Iterator[Hashable]:
        for d in self.cluster.store.iter(DEPLOYMENT_KEY):
            meta = d["metadata"]
            yield (meta.get("namespace", ""), meta["name"])

    def _owned_replicasets(self, d: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for (_, ns, name), ref in self.index.dependents(d["metadata"]["uid"], REPLICASET_KEY):
            rs = self.cluster.store.get(REPLICASET_KEY, ns, name)
            if rs is not None and ref.get("controller"):
                out.append(rs)
        out.sort(key=lambda rs: (rs["metadata"].get("creationTimestamp") or "", _revision(rs)))
        return out

    # -- reconcile ---------------------------------------------------------------------------

    async def reconcile(self, key: Hashable) -> float | None:
        ns, name = key  # type: ignore[misc]
        rt = self.cluster.resource(*DEPLOYMENT_KEY)
        d = self.cluster.find(rt, ns, name)
        if d is None or is_deleting(d):
            return None
        spec = d.get("spec") or {}
        all_rs = self._owned_replicasets(d)
        new_rs = next(
            (
                rs
                for rs in all_rs
                if templates_equal((rs.get("spec") or {}).get("template"), spec.get("template"))
            ),
            None,
        )
        created = False
        if not spec.get("paused"):
            if new_rs is None:
                new_rs = await self._create_replicaset(d, all_rs)
                created = True
                all_rs = self._owned_replicasets(d)
            else:
                await self._sync_revision(d, new_rs, all_rs)
            old_rs = [rs for rs in all_rs if rs["metadata"]["uid"] != new_rs["metadata"]["uid"]]
            strategy = (spec.get("strategy") or {}).get("type") or "RollingUpdate"
            if strategy == "Recreate":
                await self._recreate(d, new_rs, old_rs)
            else:
                await self._rolling_update(d, new_rs, old_rs)
            await self._cleanup(d, new_rs)
        await self._update_status(ns, name, new_rs, created)
        return None

    async def _create_replicaset(
        self, d: dict[str, Any], existing: list[dict[str, Any]]
    ) -> dict[str, Any]:
        meta, spec = d["metadata"], d.get("spec") or {}
        ns = meta.get("namespace", "")
        collisions = int((d.get("status") or {}).get("collisionCount") or 0)
        hash_ = template_hash(spec.get("template"), collisions)
        template = dict(spec.get("template") or {})
        tmeta = dict(template.get("metadata") or {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), POD_TEMPLATE_HASH: hash_}
        template["metadata"] = tmeta
        selector = dict(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), POD_TEMPLATE_HASH: hash_}
        replicas = _replicas(d)
        surge, _ = surge_and_unavailable(spec)
        strategy = (spec.get("strategy") or {}).get("type") or "RollingUpdate"
        old_total = sum(_replicas(rs) for rs in existing)
        if old_total == 0:
            initial = replicas
        elif strategy == "Recreate":
            initial = 0
        else:
            initial = max(0, min(replicas, replicas + surge - old_total))
        annotations = {
            k: v for k, v in (meta.get("annotations") or {}).items() if k not in _NOT_COPIED
        }
        annotations[DESIRED_REPLICAS_ANNOTATION] = str(replicas)
        annotations[MAX_REPLICAS_ANNOTATION] = str(replicas + surge)
        revision = max((_revision(rs) for rs in existing), default=0) + 1
        annotations[REVISION_ANNOTATION] = str(revision)
        rs_spec: dict[str, Any] = {"replicas": initial}
        if spec.get("minReadySeconds"):
            rs_spec["minReadySeconds"] = spec["minReadySeconds"]
        rs_spec["selector"] = selector
        rs_spec["template"] = template
        body = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{hash_}",
                "namespace": ns,
                "labels": dict(tmeta["labels"]),
                "annotations": annotations,
                "ownerReferences": [owner_reference("apps/v1", "Deployment", d)],
            },
            "spec": rs_spec,
        }
        rs_rt = self.cluster.resource(*REPLICASET_KEY)
        try:
            rs = await self.cluster.create(rs_rt, ns, body)
        except ApiError as exc:
            if exc.code != 409:
                raise
            found = self.cluster.find(rs_rt, ns, body["metadata"]["name"])
            owner = controller_ref(found)
            if (
                found is not None
                and (owner is None or owner.get("uid") == meta.get("uid"))
                and templates_equal((found.get("spec") or {}).get("template"), spec.get("template"))
            ):
                return found
            # A different ReplicaSet holds the name: hash again with a bumped collisionCount.
            status = {**(d.get("status") or {}), "collisionCount": collisions + 1}
            await self.cluster.update(
                self.cluster.resource(*DEPLOYMENT_KEY),
                ns,
                meta["name"],
                {"metadata": {"name": meta["name"]}, "status": status},
                subresource="status",
            )
            raise
        await self._set_deployment_revision(d, annotations[REVISION_ANNOTATION])
        return rs

    async def _sync_revision(
        self, d: dict[str, Any], new_rs: dict[str, Any], all_rs: list[dict[str, Any]]
    ) -> None:
        """A rolled-back-to ReplicaSet becomes the newest revision again."""
        newest = max((_revision(rs) for rs in all_rs), default=0)
        revision = _revision(new_rs)
        if revision < newest or revision == 0:
            revision = newest + 1
            await self._patch_rs(new_rs, annotations={REVISION_ANNOTATION: str(revision)})
        await self._set_deployment_revision(d, str(revision))

    async def _set_deployment_revision(self, d: dict[str, Any], revision: str) -> None:
        meta = d["metadata"]
        if (meta.get("annotations") or {}).get(REVISION_ANNOTATION) == revision:
            return
        await self.cluster.patch(
            self.cluster.resource(*DEPLOYMENT_KEY),
            meta.get("namespace", ""),
            meta["name"],
            MERGE_PATCH,
            {"metadata": {"annotations": {REVISION_ANNOTATION: revision}}},
        )

    async def _patch_rs(
        self,
        rs: dict[str, Any],
        *,
        replicas: int | None = None,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if annotations:
            body["metadata"] = {"annotations": annotations}
        if replicas is not None:
            body["spec"] = {"replicas": replicas}
        meta = rs["metadata"]
        return await self.cluster.patch(
            self.cluster.resource(*REPLICASET_KEY),
            meta.get("namespace", ""),
            meta["name"],
            MERGE_PATCH,
            body,
        )

    async def _scale(self, d: dict[str, Any], rs: dict[str, Any], replicas: int) -> dict[str, Any]:
        if _replicas(rs) == replicas:
            return rs
        spec = d.get("spec") or {}
        surge, _ = surge_and_unavailable(spec)
        wanted = _replicas(d)
        self.log.info(
            "deployment %s/%s: scaling replica set %s from %d to %d",
            d["metadata"].get("namespace"),
            d["metadata"]["name"],
            rs["metadata"]["name"],
            _replicas(rs),
            replicas,
        )
        return await self._patch_rs(
            rs,
            replicas=replicas,
            annotations={
                DESIRED_REPLICAS_ANNOTATION: str(wanted),
                MAX_REPLICAS_ANNOTATION: str(wanted + surge),
            },
        )

    async def _recreate(
        self, d: dict[str, Any], new_rs: dict[str, Any], old_rs: list[dict[str, Any]]
    ) -> None:
        for rs in old_rs:
            if _replicas(rs):
                await self._scale(d, rs, 0)
        # The new pods start once every old pod is gone.
        for rs in old_rs:
            if self.index.dependents(rs["metadata"]["uid"], POD_KEY):
                return
        await self._scale(d, new_rs, _replicas(d))

    async def _rolling_update(
        self, d: dict[str, Any], new_rs: dict[str, Any], old_rs: list[dict[str, Any]]
    ) -> None:
        spec = d.get("spec") or {}
        replicas = _replicas(d)
        surge, max_unavailable = surge_and_unavailable(spec)
        old_active = [rs for rs in old_rs if _replicas(rs) > 0]
        # Scale the new ReplicaSet up (within maxSurge) or down to the wanted count.
        current = _replicas(new_rs)
        if current > replicas or not old_active:
            target = replicas
        else:
            total = current + sum(_replicas(rs) for rs in old_active)
            target = min(replicas, current + max(0, replicas + surge - total))
        new_rs = await self._scale(d, new_rs, target)
        if not old_active:
            return
        # Scale old ReplicaSets down while keeping replicas - maxUnavailable available.
        min_available = replicas - max_unavailable
        new_unavailable = max(0, _replicas(new_rs) - _available(new_rs))
        all_pods = _replicas(new_rs) + sum(_replicas(rs) for rs in old_active)
        budget = all_pods - min_available - new_unavailable
        if budget <= 0:
            return
        sizes = {rs["metadata"]["uid"]: _replicas(rs) for rs in old_active}
        # First the old pods that are not available anyway...
        for rs in old_active:
            unhealthy = sizes[rs["metadata"]["uid"]] - _available(rs)
            down = min(max(unhealthy, 0), budget)
            if down > 0:
                sizes[rs["metadata"]["uid"]] -= down
                budget -= down
        # ...then available ones, never below minAvailable.
        available = _available(new_rs) + sum(_available(rs) for rs in old_active)
        allowed = min(budget, available - min_available)
        for rs in old_active:
            if allowed <= 0:
                break
            down = min(sizes[rs["metadata"]["uid"]], allowed)
            sizes[rs["metadata"]["uid"]] -= down
            allowed -= down
        for rs in old_active:
            await self._scale(d, rs, sizes[rs["metadata"]["uid"]])

    async def _cleanup(self, d: dict[str, Any], new_rs: dict[str, Any]) -> None:
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        old = [
            rs
            for rs in self._owned_replicasets(d)
            if rs["metadata"]["uid"] != new_rs["metadata"]["uid"]
            and not is_deleting(rs)
            and _replicas(rs) == 0
            and _replicas(rs, "status") == 0
        ]
        old.sort(key=_revision)
        rs_rt = self.cluster.resource(*REPLICASET_KEY)
        for rs in old[: max(0, len(old) - int(limit))]:
            meta = rs["metadata"]
            try:
                await self.cluster.delete(
                    rs_rt, meta.get("namespace", ""), meta["name"], DeleteOptions()
                )
            except ApiError as exc:
                if exc.code != 404:
                    raise

    # -- status ------------------------------------------------------------------------------

    async def _update_status(
        self, ns: str, name: str, new_rs: dict[str, Any] | None, created: bool
    ) -> None:
        rt = self.cluster.resource(*DEPLOYMENT_KEY)
        d = self.cluster.find(rt, ns, name)
        if d is None:
            return
        spec = d.get("spec") or {}
        all_rs = self._owned_replicasets(d)
        if new_rs is not None:
            new_rs = next(
                (rs for rs in all_rs if rs["metadata"]["uid"] == new_rs["metadata"]["uid"]), None
            )

        def total(field: str) -> int:
            return sum(int((rs.get("status") or {}).get(field) or 0) for rs in all_rs)

        wanted = _replicas(d)
        replicas = total("replicas")
        updated = int(((new_rs or {}).get("status") or {}).get("replicas") or 0)
        available = total("availableReplicas")
        _, max_unavailable = surge_and_unavailable(spec)
        old = d.get("status") or {}
        counts = {
            "observedGeneration": int(d["metadata"].get("generation") or 0),
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": total("readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": max(0, sum(_replicas(rs) for rs in all_rs) - available),
        }
        status: dict[str, Any] = {k: v for k, v in counts.items() if v}
        conditions = list(old.get("conditions") or [])
        if available >= wanted - max_unavailable:
            conditions = set_condition(
                conditions,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                with_update_time=True,
            )
        else:
            conditions = set_condition(
                conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                with_update_time=True,
            )
        if new_rs is not None:
            rs_name = new_rs["metadata"]["name"]
            complete = (
                updated == wanted
                and replicas == wanted
                and available == wanted
                and _replicas(new_rs) == wanted
            )
            if complete:
                reason, message = (
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{rs_name}" has successfully progressed.',
                )
            elif created:
                reason, message = "NewReplicaSetCreated", f'Created new replica set "{rs_name}"'
            else:
                reason, message = "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.'
            progressing = next((c for c in conditions if c.get("type") == "Progressing"), None)
            # Once complete, a rollout stays complete until the template or scale changes.
            if not (
                progressing is not None
                and progressing.get("reason") == "NewReplicaSetAvailable"
                and reason == "ReplicaSetUpdated"
                and updated == wanted
            ):
                conditions = set_condition(
                    conditions, "Progressing", "True", reason, message, with_update_time=True
                )
        status["conditions"] = conditions
        if old.get("collisionCount"):
            status["collisionCount"] = old["collisionCount"]
        if status != old:
            await self.cluster.update(
                rt,
                ns,
                name,
                {"metadata": {"name": name}, "status": status},
                subresource="status",
            )

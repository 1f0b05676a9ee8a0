"""The replicaset controller: keeps `spec.replicas` active pods per ReplicaSet.

Pods are created from the template as `<rs>-<5 random chars>` with a controller reference to
the ReplicaSet, and deleted through the normal DELETE path (admission applies; a scheduled pod
terminates gracefully and is finished by the kubelet). A failed create or delete makes the
whole ReplicaSet sync fail and be retried with backoff, recomputing what is missing. A
ReplicaSet that is being deleted only has its status kept current.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from sandbox.cluster import DeleteOptions
from sandbox.controllers.base import (
    POD_KEY,
    REPLICASET_KEY,
    Controller,
    controller_ref,
    is_deleting,
    pod_is_active,
    pod_is_ready,
)
from sandbox.controllers.workloads import count_available, deletion_order_key, pod_from_template
from sandbox.errors import ApiError
from sandbox.store import DELETED, StoreEvent


def _labels_match(pod: dict[str, Any], labels: dict[str, str]) -> bool:
    have = pod["metadata"].get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


class ReplicaSetController(Controller):
    name = "replicaset"
    keys = frozenset({REPLICASET_KEY, POD_KEY})

    def enqueue_for(self, event: StoreEvent) -> Iterable[Hashable]:
        if event.key == REPLICASET_KEY:
            if event.type != DELETED:
                meta = event.obj["metadata"]
                yield (meta.get("namespace", ""), meta["name"])
            return
        for obj in (event.old, event.obj):
            ref = controller_ref(obj)
            if ref is not None and ref.get("kind") == "ReplicaSet":
                yield (obj["metadata"].get("namespace", ""), ref.get("name", ""))  # type: ignore[index]

    def all_keys(self) -> Iterator[Hashable]:
        for rs in self.cluster.store.iter(REPLICASET_KEY):
            meta = rs["metadata"]
            yield (meta.get("namespace", ""), meta["name"])

    def owned_pods(self, rs: dict[str, Any]) -> list[dict[str, Any]]:
        pods = []
        for (_, ns, name), ref in self.index.dependents(rs["metadata"]["uid"], POD_KEY):
            if not ref.get("controller"):
                continue
            pod = self.cluster.store.get(POD_KEY, ns, name)
            if pod is not None:
                pods.append(pod)
        return pods

    async def reconcile(self, key: Hashable) -> float | None:
        ns, name = key  # type: ignore[misc]
        rt = self.cluster.resource(*REPLICASET_KEY)
        rs = self.cluster.find(rt, ns, name)
        if rs is None:
            return None
        failure: ApiError | None = None
        if not is_deleting(rs):
            try:
                await self._manage_replicas(rs)
            except ApiError as exc:
                failure = exc
            rs = self.cluster.find(rt, ns, name)
            if rs is None:
                return None
        again = await self._update_status(rs)
        if failure is not None:
            raise failure
        return again

    async def _manage_replicas(self, rs: dict[str, Any]) -> None:
        meta, spec = rs["metadata"], rs.get("spec") or {}
        ns = meta.get("namespace", "")
        wanted = int(spec.get("replicas", 1))
        active = [p for p in self.owned_pods(rs) if pod_is_active(p)]
        diff = len(active) - wanted
        pod_rt = self.cluster.resource(*POD_KEY)
        if diff < 0:
            ref = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
            prefix = f"{meta['name']}-"
            for _ in range(-diff):
                body = pod_from_template(spec.get("template"), ref, generate_name=prefix)
                await self.cluster.create(pod_rt, ns, body)
        elif diff > 0:
            first_error: ApiError | None = None
            for pod in sorted(active, key=deletion_order_key)[:diff]:
                pmeta = pod["metadata"]
                try:
                    await self.cluster.delete(
                        pod_rt, ns, pmeta["name"], DeleteOptions(precondition_uid=pmeta["uid"])
                    )
                except ApiError as exc:
                    if exc.code != 404 and first_error is None:
                        first_error = exc
            if first_error is not None:
                raise first_error

    async def _update_status(self, rs: dict[str, Any]) -> float | None:
        meta, spec = rs["metadata"], rs.get("spec") or {}
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        active = [p for p in self.owned_pods(rs) if pod_is_active(p)]
        available, soonest = count_available(
            active, int(spec.get("minReadySeconds") or 0), datetime.now(UTC)
        )
        status: dict[str, Any] = {"replicas": len(active)}
        counts = {
            "fullyLabeledReplicas": sum(1 for p in active if _labels_match(p, template_labels)),
            "readyReplicas": sum(1 for p in active if pod_is_ready(p)),
            "availableReplicas": available,
            "observedGeneration": int(meta.get("generation") or 0),
        }
        # Zero counts are omitted, as the Go types' omitempty does.
        status.update({k: v for k, v in counts.items() if v})
        old = rs.get("status") or {}
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        if status != old:
            rt = self.cluster.resource(*REPLICASET_KEY)
            await self.cluster.update(
                rt,
                meta.get("namespace", ""),
                meta["name"],
                {"metadata": {"name": meta["name"]}, "status": status},
                subresource="status",
            )
        return None if soonest == float("inf") else soonest + 0.05

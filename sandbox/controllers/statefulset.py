"""The statefulset controller (simple): pods `<sts>-0 .. <sts>-(N-1)`.

OrderedReady (the default) creates pod i only once pods 0..i-1 are Running and Ready and
removes surplus pods from the highest ordinal down, one at a time; Parallel does both at once.
A template change rolls pods (highest ordinal first, one at a time, once all are ready) under
the RollingUpdate strategy, honouring `partition`. No ControllerRevisions, no volume claims.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Any

from sandbox.cluster import DeleteOptions
from sandbox.controllers.base import (
    POD_KEY,
    STATEFULSET_KEY,
    Controller,
    controller_ref,
    is_deleting,
    owner_reference,
    pod_is_active,
    pod_is_ready,
)
from sandbox.controllers.workloads import pod_from_template, template_hash
from sandbox.errors import ApiError
from sandbox.store import DELETED, StoreEvent

REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"


def _running_and_ready(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and pod_is_ready(pod)


class StatefulSetController(Controller):
    name = "statefulset"
    keys = frozenset({STATEFULSET_KEY, POD_KEY})

    def enqueue_for(self, event: StoreEvent) -> Iterable[Hashable]:
        if event.key == STATEFULSET_KEY:
            if event.type != DELETED:
                meta = event.obj["metadata"]
                yield (meta.get("namespace", ""), meta["name"])
            return
        for obj in (event.old, event.obj):
            ref = controller_ref(obj)
            if ref is not None and ref.get("kind") == "StatefulSet":
                yield (obj["metadata"].get("namespace", ""), ref.get("name", ""))  # type: ignore[index]

    def all_keys(self) -> Iterator[Hashable]:
        for sts in self.cluster.store.iter(STATEFULSET_KEY):
            meta = sts["metadata"]
            yield (meta.get("namespace", ""), meta["name"])

    def _pods(self, sts: dict[str, Any]) -> dict[int, dict[str, Any]]:
        """Owned pods by ordinal."""
        prefix = sts["metadata"]["name"] + "-"
        out: dict[int, dict[str, Any]] = {}
        for (_, ns, name), ref in self.index.dependents(sts["metadata"]["uid"], POD_KEY):
            if not ref.get("controller") or not name.startswith(prefix):
                continue
            suffix = name[len(prefix) :]
            pod = self.cluster.store.get(POD_KEY, ns, name)
            if suffix.isdigit() and pod is not None:
                out[int(suffix)] = pod
        return out

    async def reconcile(self, key: Hashable) -> float | None:
        ns, name = key  # type: ignore[misc]
        rt = self.cluster.resource(*STATEFULSET_KEY)
        sts = self.cluster.find(rt, ns, name)
        if sts is None:
            return None
        revision = f"{name}-{template_hash((sts.get('spec') or {}).get('template'))}"
        failure: ApiError | None = None
        if not is_deleting(sts):
            try:
                await self._manage_pods(sts, revision)
            except ApiError as exc:
                failure = exc
            sts = self.cluster.find(rt, ns, name)
            if sts is None:
                return None
        await self._update_status(sts, revision)
        if failure is not None:
            raise failure
        return None

    async def _manage_pods(self, sts: dict[str, Any], revision: str) -> None:
        meta, spec = sts["metadata"], sts.get("spec") or {}
        ns, name = meta.get("namespace", ""), meta["name"]
        replicas = int(spec.get("replicas", 1))
        parallel = spec.get("podManagementPolicy") == "Parallel"
        pods = self._pods(sts)
        pod_rt = self.cluster.resource(*POD_KEY)
        ref = owner_reference("apps/v1", "StatefulSet", sts)
        for i in range(replicas):
            pod = pods.get(i)
            if pod is None:
                pod_name = f"{name}-{i}"
                if self.cluster.find(pod_rt, ns, pod_name) is not None:
                    return  # someone else's pod holds the name
                body = pod_from_template(
                    spec.get("template"),
                    ref,
                    name=pod_name,
                    extra_labels={REVISION_LABEL: revision, POD_NAME_LABEL: pod_name},
                )
                body["spec"]["hostname"] = pod_name
                if spec.get("serviceName"):
                    body["spec"]["subdomain"] = spec["serviceName"]
                await self.cluster.create(pod_rt, ns, body)
                if not parallel:
                    return
            elif not parallel and not (pod_is_active(pod) and _running_and_ready(pod)):
                return
        for i in sorted((i for i in pods if i >= replicas), reverse=True):
            pod = pods[i]
            if not is_deleting(pod):
                await self._delete(pod)
            if not parallel:
                return
        strategy = spec.get("updateStrategy") or {}
        if (strategy.get("type") or "RollingUpdate") != "RollingUpdate":
            return
        if not all(i in pods and _running_and_ready(pods[i]) for i in range(replicas)):
            return
        if any(is_deleting(p) for p in pods.values()):
            return
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        for i in range(replicas - 1, partition - 1, -1):
            pod = pods[i]
            if (pod["metadata"].get("labels") or {}).get(REVISION_LABEL) != revision:
                await self._delete(pod)
                return

    async def _delete(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        try:
            await self.cluster.delete(
                self.cluster.resource(*POD_KEY),
                meta.get("namespace", ""),
                meta["name"],
                DeleteOptions(precondition_uid=meta["uid"]),
            )
        except ApiError as exc:
            if exc.code != 404:
                raise

    async def _update_status(self, sts: dict[str, Any], revision: str) -> None:
        meta = sts["metadata"]
        old = sts.get("status") or {}
        active = [p for p in self._pods(sts).values() if pod_is_active(p)]
        updated = sum(
            1 for p in active if (p["metadata"].get("labels") or {}).get(REVISION_LABEL) == revision
        )
        replicas = int((sts.get("spec") or {}).get("replicas", 1))
        current_revision = old.get("currentRevision") or revision
        if updated == len(active) == replicas:
            current_revision = revision
        current = sum(
            1
            for p in active
            if (p["metadata"].get("labels") or {}).get(REVISION_LABEL) == current_revision
        )
        ready = sum(1 for p in active if pod_is_ready(p))
        status: dict[str, Any] = {
            "observedGeneration": int(meta.get("generation") or 0),
            "replicas": len(active),
        }
        for k, v in (("readyReplicas", ready), ("currentReplicas", current)):
            if v:
                status[k] = v
        if updated:
            status["updatedReplicas"] = updated
        status["currentRevision"] = current_revision
        status["updateRevision"] = revision
        status["collisionCount"] = 0
        status["availableReplicas"] = ready
        if status != old:
            await self.cluster.update(
                self.cluster.resource(*STATEFULSET_KEY),
                meta.get("namespace", ""),
                meta["name"],
                {"metadata": {"name": meta["name"]}, "status": status},
                subresource="status",
            )

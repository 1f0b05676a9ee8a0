"""Nodes, a scheduler and the kubelets of those nodes, in one controller.

- Nodes: `sandbox-node-0 .. N-1` are registered at start when missing (a node a user deleted
  later is not brought back) and reported Ready, without the not-ready taint.
- Scheduler: a pending pod (no spec.nodeName, default scheduler) is bound to the Ready,
  schedulable (not cordoned) node whose taints it tolerates and whose labels match its
  nodeSelector, least loaded first; with no such node it gets PodScheduled False
  (Unschedulable) and is retried when nodes change.
- Kubelet, for pods bound to our nodes: Pending with ContainerCreating at once, then after
  `kubelet_ready_delay` Running with container statuses, IPs and conditions Initialized /
  ContainersReady / Ready True. The annotation `sandbox.podseidon.io/ready: "false"` keeps
  (or makes) a pod unready. A terminating pod is deleted with grace 0 (through admission, as
  a real kubelet's final DELETE) after min(its grace period, `kubelet_grace_cap`); finalizers
  then hold it until they are removed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator
from typing import Any

from sandbox.cluster import Cluster, DeleteOptions
from sandbox.controllers.base import (
    NODE_KEY,
    POD_KEY,
    Controller,
    OwnerIndex,
    condition,
    is_deleting,
    rfc3339,
    set_condition,
)
from sandbox.errors import ApiError
from sandbox.patch import MERGE_PATCH
from sandbox.store import DELETED, StoreEvent

READY_ANNOTATION = "sandbox.podseidon.io/ready"
NODE_PREFIX = "sandbox-node-"
KUBELET_VERSION = "v1.24.17"
SCHEDULER_USER = {
    "username": "system:kube-scheduler",
    "groups": ["system:authenticated"],
}
_CONDITION_ORDER = ("Initialized", "Ready", "ContainersReady", "PodScheduled")


def node_user(node: str) -> dict[str, Any]:
    return {"username": f"system:node:{node}", "groups": ["system:nodes", "system:authenticated"]}


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        operator = t.get("operator") or "Equal"
        if not t.get("key"):
            if operator == "Exists":
                return True
            continue
        if t.get("key") != taint.get("key"):
            continue
        if operator == "Exists" or (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def unfit_reason(node: dict[str, Any], pod: dict[str, Any]) -> str | None:
    """Why `pod` cannot go to `node` (in the scheduler's words), None when it can."""
    spec = node.get("spec") or {}
    pod_spec = pod.get("spec") or {}
    if spec.get("unschedulable"):
        return "node(s) were unschedulable"
    labels = node["metadata"].get("labels") or {}
    selector = pod_spec.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return "node(s) didn't match Pod's node affinity/selector"
    tolerations = pod_spec.get("tolerations") or []
    for taint in spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
    ready = condition(node, "Ready")
    if ready is None or ready.get("status") != "True":
        return "node(s) were not ready"
    return None


def _ordered_conditions(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def rank(c: dict[str, Any]) -> int:
        kind = c.get("type")
        return _CONDITION_ORDER.index(kind) if kind in _CONDITION_ORDER else len(_CONDITION_ORDER)

    return sorted(conditions, key=rank)


def _container_id(uid: str, name: str) -> str:
    return "containerd://" + hashlib.sha256(f"{uid}/{name}".encode()).hexdigest()


def _image_id(image: str) -> str:
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    if "/" not in repo:
        repo = f"docker.io/library/{repo}"
    return f"{repo}@sha256:" + hashlib.sha256(image.encode()).hexdigest()


class Kubelet(Controller):
    name = "kubelet"
    keys = frozenset({POD_KEY, NODE_KEY})
    workers = 4

    def __init__(self, cluster: Cluster, index: OwnerIndex, options: Any) -> None:
        super().__init__(cluster, index, options)
        # Nodes this kubelet runs: name → index (for addresses and pod CIDRs).
        self.nodes: dict[str, int] = {
            f"{NODE_PREFIX}{i}": i for i in range(max(0, int(options.nodes)))
        }
        self._pods_on_node: dict[str, set[tuple[str, str]]] = {}
        self._unschedulable: set[tuple[str, str]] = set()
        self._start_at: dict[str, float] = {}
        self._terminating_since: dict[str, float] = {}
        self._next_ip: Counter[str] = Counter()
        self._registered: set[str] = set()

    # -- nodes -------------------------------------------------------------------------------

    async def setup(self) -> None:
        for name in self.nodes:
            try:
                await self._register_node(name)
            except ApiError as exc:  # e.g. a webhook rejecting it: retried once running
                self.log.warning("cannot register node %s: %s", name, exc)

    def start(self) -> None:
        self._pods_on_node.clear()
        for pod in self.cluster.store.iter(POD_KEY):
            self._track(None, pod)
        super().start()
        for name in self.nodes:
            if name not in self._registered:
                self.queue.add_rate_limited(("node", name))

    async def _register_node(self, name: str) -> None:
        """Create our node unless registered before (a node a user deleted stays deleted),
        and report it Ready."""
        rt = self.cluster.resource(*NODE_KEY)
        if name not in self._registered and self.cluster.find(rt, "", name) is None:
            await self.cluster.create(
                rt, "", self._node_body(name, self.nodes[name]), user=node_user(name)
            )
        self._registered.add(name)
        await self._report_node_ready(name)

    def _node_body(self, name: str, i: int) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "beta.kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                },
                "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                },
            },
            "spec": {"podCIDR": f"10.244.{i}.0/24", "podCIDRs": [f"10.244.{i}.0/24"]},
        }

    def _node_ip(self, name: str) -> str:
        return f"172.18.0.{2 + self.nodes.get(name, 0) % 250}"

    async def _report_node_ready(self, name: str) -> None:
        rt = self.cluster.resource(*NODE_KEY)
        node = self.cluster.find(rt, "", name)
        if node is None:
            return
        old = node.get("status") or {}
        conditions = list(old.get("conditions") or [])
        for kind, status, reason, message in (
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            (
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ):
            conditions = set_condition(conditions, kind, status, reason, message)
        conditions = [
            {
                "type": c["type"],
                "status": c["status"],
                "lastHeartbeatTime": c.get("lastHeartbeatTime") or c.get("lastTransitionTime"),
                **c,
            }
            for c in conditions
        ]
        resources = {"cpu": "8", "ephemeral-storage": "100Gi", "memory": "32Gi", "pods": "110"}
        status = {
            **old,
            "capacity": resources,
            "allocatable": resources,
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": self._node_ip(name)},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": hashlib.md5(name.encode()).hexdigest(),
                "systemUUID": hashlib.md5(name.encode()).hexdigest(),
                "bootID": hashlib.md5(f"boot-{name}".encode()).hexdigest(),
                "kernelVersion": "5.15.0-sandbox",
                "osImage": "Podseidon sandbox",
                "containerRuntimeVersion": "containerd://1.6.21",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
        if status != old:
            await self.cluster.update(
                rt,
                "",
                name,
                {"metadata": {"name": name}, "status": status},
                subresource="status",
                user=node_user(name),
            )
        # The node lifecycle controller lifts the not-ready taint of a Ready node.
        taints = (node.get("spec") or {}).get("taints") or []
        kept = [t for t in taints if t.get("key") != "node.kubernetes.io/not-ready"]
        if len(kept) != len(taints):
            await self.cluster.patch(rt, "", name, MERGE_PATCH, {"spec": {"taints": kept or None}})

    # -- events ------------------------------------------------------------------------------

    def _track(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Keep the per-node pod sets (the scheduler's load figure) current."""
        for obj, add in ((old, False), (new, True)):
            if obj is None:
                continue
            node = (obj.get("spec") or {}).get("nodeName")
            if not node:
                continue
            key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            if add:
                self._pods_on_node.setdefault(node, set()).add(key)
            else:
                self._pods_on_node.get(node, set()).discard(key)

    def enqueue_for(self, event: StoreEvent) -> Iterable[Hashable]:
        obj = event.obj
        if event.key == NODE_KEY:
            if event.type != DELETED:
                # A node appeared, became ready or was uncordoned: pending pods may fit now.
                yield from (("pod", ns, name) for ns, name in self._unschedulable)
            return
        meta = obj["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        if event.type == DELETED:
            self._track(event.old, None)
            self._unschedulable.discard((ns, name))
            uid = meta.get("uid", "")
            self._start_at.pop(uid, None)
            self._terminating_since.pop(uid, None)
            return
        self._track(event.old, obj)
        node = (obj.get("spec") or {}).get("nodeName")
        if not node:
            if not is_deleting(obj):
                yield ("pod", ns, name)
        elif node in self.nodes:
            yield ("pod", ns, name)

    def all_keys(self) -> Iterator[Hashable]:
        for pod in self.cluster.store.iter(POD_KEY):
            node = (pod.get("spec") or {}).get("nodeName")
            if not node or node in self.nodes:
                yield ("pod", pod["metadata"].get("namespace", ""), pod["metadata"]["name"])

    # -- pods --------------------------------------------------------------------------------

    async def reconcile(self, key: Hashable) -> float | None:
        if key[0] == "node":  # type: ignore[index]
            await self._register_node(key[1])  # type: ignore[index]
            return None
        _, ns, name = key  # type: ignore[misc]
        pod = self.cluster.store.get(POD_KEY, ns, name)
        if pod is None:
            return None
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        if not node:
            if is_deleting(pod):
                return None
            if (spec.get("schedulerName") or "default-scheduler") != "default-scheduler":
                return None
            await self._schedule(pod)
            return None
        if node not in self.nodes or self.cluster.store.get(NODE_KEY, "", node) is None:
            return None
        if is_deleting(pod):
            return await self._terminate(pod)
        return await self._run(pod)

    async def _schedule(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        nodes = list(self.cluster.store.iter(NODE_KEY))
        reasons: Counter[str] = Counter()
        fits = []
        for node in nodes:
            why = unfit_reason(node, pod)
            if why is None:
                fits.append(node["metadata"]["name"])
            else:
                reasons[why] += 1
        pod_rt = self.cluster.resource(*POD_KEY)
        if not fits:
            self._unschedulable.add((ns, name))
            detail = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
            message = f"0/{len(nodes)} nodes are available" + (f": {detail}." if detail else ".")
            old = pod.get("status") or {}
            conditions = set_condition(
                list(old.get("conditions") or []), "PodScheduled", "False", "Unschedulable", message
            )
            status = {**old, "conditions": conditions}
            if status != old:
                await self._write_status(pod, status, SCHEDULER_USER)
            return
        self._unschedulable.discard((ns, name))
        target = min(fits, key=lambda n: (len(self._pods_on_node.get(n, ())), n))
        bound = await self.cluster.patch(
            pod_rt,
            ns,
            name,
            MERGE_PATCH,
            {
                "metadata": {"resourceVersion": meta["resourceVersion"]},
                "spec": {"nodeName": target},
            },
            user=SCHEDULER_USER,
        )
        old = bound.get("status") or {}
        conditions = set_condition(list(old.get("conditions") or []), "PodScheduled", "True")
        await self._write_status(bound, {**old, "conditions": conditions}, SCHEDULER_USER)

    async def _write_status(
        self, pod: dict[str, Any], status: dict[str, Any], user: dict[str, Any]
    ) -> None:
        meta = pod["metadata"]
        await self.cluster.update(
            self.cluster.resource(*POD_KEY),
            meta.get("namespace", ""),
            meta["name"],
            {
                "metadata": {"name": meta["name"], "resourceVersion": meta["resourceVersion"]},
                "status": status,
            },
            subresource="status",
            user=user,
        )

    async def _run(self, pod: dict[str, Any]) -> float | None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        old = pod.get("status") or {}
        if old.get("phase") in ("Succeeded", "Failed"):
            return None
        loop = asyncio.get_running_loop()
        now = loop.time()
        start_at = self._start_at.setdefault(meta["uid"], now + self.options.kubelet_ready_delay)
        running = old.get("phase") == "Running" or now >= start_at
        status = self._pod_status(pod, running)
        if status != old:
            await self._write_status(pod, status, node_user(spec["nodeName"]))
        return None if running else max(start_at - now, 0.001)

    def _pod_status(self, pod: dict[str, Any], running: bool) -> dict[str, Any]:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        old = pod.get("status") or {}
        node = spec["nodeName"]
        now = rfc3339()
        ready = running and (meta.get("annotations") or {}).get(READY_ANNOTATION) != "false"
        containers = spec.get("containers") or []
        old_statuses = {c.get("name"): c for c in old.get("containerStatuses") or []}
        statuses = []
        for c in containers:
            prev = old_statuses.get(c.get("name")) or {}
            image = str(c.get("image") or "")
            entry: dict[str, Any] = {"name": c.get("name")}
            if running:
                started = ((prev.get("state") or {}).get("running") or {}).get("startedAt") or now
                entry["state"] = {"running": {"startedAt": started}}
            else:
                entry["state"] = {"waiting": {"reason": "ContainerCreating"}}
            entry["lastState"] = {}
            entry["ready"] = ready
            entry["restartCount"] = 0
            entry["image"] = image
            entry["imageID"] = _image_id(image) if running else ""
            if running:
                entry["containerID"] = _container_id(meta["uid"], str(c.get("name")))
            entry["started"] = running
            statuses.append(entry)
        unready = [str(c.get("name")) for c in containers] if not ready else []
        conditions = list(old.get("conditions") or [])
        conditions = set_condition(conditions, "Initialized", "True")
        why = ("ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]")
        for kind in ("Ready", "ContainersReady"):
            # set_condition keeps only the reason/message given: none once ready.
            conditions = set_condition(
                conditions, kind, "True" if ready else "False", *((None, None) if ready else why)
            )
        conditions = set_condition(conditions, "PodScheduled", "True")
        status: dict[str, Any] = {
            "phase": "Running" if running else "Pending",
            "conditions": _ordered_conditions(conditions),
            "hostIP": self._node_ip(node),
        }
        if running:
            ip = old.get("podIP") or self._allocate_ip(node)
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        status["startTime"] = old.get("startTime") or now
        if spec.get("initContainers"):
            status["initContainerStatuses"] = [
                {
                    "name": c.get("name"),
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                    "lastState": {},
                    "ready": True,
                    "restartCount": 0,
                    "image": c.get("image"),
                    "imageID": _image_id(str(c.get("image") or "")),
                }
                for c in spec["initContainers"]
            ]
        status["containerStatuses"] = statuses
        status["qosClass"] = old.get("qosClass") or "BestEffort"
        return status

    def _allocate_ip(self, node: str) -> str:
        n = self._next_ip[node]
        self._next_ip[node] += 1
        return f"10.244.{self.nodes.get(node, 0) % 256}.{2 + n % 250}"

    async def _terminate(self, pod: dict[str, Any]) -> float | None:
        meta = pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if not grace:
            return None  # already confirmed; finalizers (if any) hold the object
        now = asyncio.get_running_loop().time()
        since = self._terminating_since.setdefault(meta["uid"], now)
        left = min(float(grace), self.options.kubelet_grace_cap) - (now - since)
        if left > 0:
            return left
        try:
            await self.cluster.delete(
                self.cluster.resource(*POD_KEY),
                meta.get("namespace", ""),
                meta["name"],
                DeleteOptions(grace_period_seconds=0, precondition_uid=meta["uid"]),
                user=node_user(pod["spec"]["nodeName"]),
            )
        except ApiError as exc:
            if exc.code == 404:
                return None
            current = self.cluster.store.get(POD_KEY, meta.get("namespace", ""), meta["name"])
            if current is None or current["metadata"].get("uid") != meta["uid"]:
                return None
            raise
        return None

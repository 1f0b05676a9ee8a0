"""The sandbox's built-in controllers through the `kubernetes` client: deployments,
replicasets, statefulsets, the kubelet (nodes, scheduling, readiness, graceful deletion) and the
garbage collector, including the recorded case of a Deployment deleted while its pods'
deletions are denied (gc-cascade-deployment-delete.json).

They run against a second sandbox process with the controllers on (`controller_clusters`,
cluster `ctl`: 2 nodes, pods Ready 0.1 s after scheduling, graceful deletions finished after
0.2 s, GC backoff 5 ms doubling up to 0.5 s). Pod deletions are switched off per namespace
with the ConfigMap of tests/integration/sandbox_test_plugins.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client

from sandbox.controllers import ControllerOptions
from sandbox.controllers.workqueue import WorkQueue

from .capture_webhook import ALLOW, CaptureWebhook, deny
from .conftest import REPO, Clusters
from .sandbox_test_plugins import AT_ANNOTATION, DENIED_REASON, SWITCH_NAME

pytestmark = pytest.mark.integration

RECORDINGS = REPO / "tests" / "fixtures" / "kube-apiserver-v1.24"

T = TypeVar("T")
NODES = ("sandbox-node-0", "sandbox-node-1")
READY_ANNOTATION = "sandbox.podseidon.io/ready"


# --- helpers --------------------------------------------------------------------------------


def wait_for(fn: Callable[[], T], what: str, timeout: float = 10.0, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def raw(call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The JSON body of a client call, as a dict."""
    return json.loads(call(*args, _preload_content=False, **kwargs).data)


def deployment(
    name: str,
    replicas: int = 3,
    image: str = "nginx",
    strategy: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    template_meta: dict[str, Any] = {"labels": {"app": name}}
    if annotations:
        template_meta["annotations"] = annotations
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": template_meta,
            "spec": {"containers": [{"name": "c", "image": image}]},
        },
    }
    if strategy:
        spec["strategy"] = strategy
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}


def bare_pod(name: str, finalizers: list[str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app": name}}
    if finalizers:
        meta["finalizers"] = finalizers
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def is_running_ready(pod: dict[str, Any]) -> bool:
    c = conditions(pod)
    return (
        pod["status"].get("phase") == "Running"
        and c.get("Ready", {}).get("status") == "True"
        and not pod["metadata"].get("deletionTimestamp")
    )


class Ctl:
    """Clients of the `ctl` cluster and a fresh namespace in it."""

    def __init__(self, clusters: Clusters, ns: str) -> None:
        api = clusters.api("ctl")
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.ns = ns

    def pods(self, selector: str | None = None) -> list[dict[str, Any]]:
        return raw(self.core.list_namespaced_pod, self.ns, label_selector=selector)["items"]

    def replicasets(self, selector: str | None = None) -> list[dict[str, Any]]:
        return raw(self.apps.list_namespaced_replica_set, self.ns, label_selector=selector)["items"]

    def deployment(self, name: str) -> dict[str, Any] | None:
        try:
            return raw(self.apps.read_namespaced_deployment, name, self.ns)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pod(self, name: str) -> dict[str, Any] | None:
        try:
            return raw(self.core.read_namespaced_pod, name, self.ns)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create_deployment(self, body: dict[str, Any], ready: bool = True) -> dict[str, Any]:
        self.apps.create_namespaced_deployment(self.ns, body)
        name = body["metadata"]["name"]
        if ready:
            self.wait_rolled_out(name)
        return raw(self.apps.read_namespaced_deployment, name, self.ns)

    def wait_rolled_out(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            d = self.deployment(name)
            if d is None:
                return None
            s, want = d.get("status") or {}, d["spec"]["replicas"]
            ok = (
                s.get("observedGeneration") == d["metadata"]["generation"]
                and s.get("updatedReplicas", 0) == want
                and s.get("replicas", 0) == want
                and s.get("availableReplicas", 0) == want
            )
            return d if ok else None

        return wait_for(done, f"deployment {name} rolled out", timeout)

    def deny_pod_deletes(self, deny: bool = True) -> None:
        body = {"metadata": {"name": SWITCH_NAME}, "data": {"deny": str(deny).lower()}}
        try:
            self.core.create_namespaced_config_map(self.ns, body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            self.core.patch_namespaced_config_map(SWITCH_NAME, self.ns, body)

    def denied_attempts(self) -> dict[str, list[tuple[float, str]]]:
        """pod name → [(wall time, message)] of rejected DELETEs, oldest first."""
        out: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for ev in raw(self.core.list_namespaced_event, self.ns)["items"]:
            if ev.get("reason") == DENIED_REASON:
                at = float(ev["metadata"]["annotations"][AT_ANNOTATION])
                out[ev["involvedObject"]["name"]].append((at, ev.get("message", "")))
        for attempts in out.values():
            attempts.sort()
        return dict(out)


@pytest.fixture
def ctl(controller_clusters: Clusters) -> Iterator[Ctl]:
    core = client.CoreV1Api(controller_clusters.api("ctl"))
    name = f"ctl-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    ctl = Ctl(controller_clusters, name)
    yield ctl
    with contextlib.suppress(client.ApiException):
        # Let whatever a failed test left behind go, then drop the namespace.
        core.delete_namespaced_config_map(SWITCH_NAME, name)
    core.delete_namespace(name)


# --- deployment and replicaset controllers ---------------------------------------------------


def test_deployment_creates_replicaset_and_ready_pods(ctl: Ctl) -> None:
    d = ctl.create_deployment(deployment("web", replicas=3))
    (rs,) = ctl.replicasets("app=web")
    hash_ = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{hash_}"
    assert len(hash_) >= 8 and hash_.isalnum()
    assert rs["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": d["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": hash_}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == hash_
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert rs["status"] == {
        "replicas": 3,
        "fullyLabeledReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "observedGeneration": 1,
    }

    pods = ctl.pods("app=web")
    assert len(pods) == 3
    for pod in pods:
        meta, status = pod["metadata"], pod["status"]
        assert meta["name"].startswith(f"web-{hash_}-")
        assert len(meta["name"]) == len(f"web-{hash_}-") + 5
        assert meta["labels"] == {"app": "web", "pod-template-hash": hash_}
        (ref,) = meta["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"]) == (
            "ReplicaSet",
            rs["metadata"]["name"],
            rs["metadata"]["uid"],
        )
        assert ref["controller"] and ref["blockOwnerDeletion"]
        assert pod["spec"]["nodeName"] in NODES
        assert status["phase"] == "Running"
        conds = conditions(pod)
        for kind in ("Initialized", "Ready", "ContainersReady", "PodScheduled"):
            assert conds[kind]["status"] == "True", kind
            assert conds[kind]["lastTransitionTime"]
        assert status["podIP"].startswith("10.244.")
        assert status["podIPs"] == [{"ip": status["podIP"]}]
        assert status["hostIP"].startswith("172.18.0.")
        assert status["startTime"]
        (cs,) = status["containerStatuses"]
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
        assert "running" in cs["state"] and cs["containerID"].startswith("containerd://")

    status = d["status"]
    assert {k: status.get(k) for k in ("replicas", "updatedReplicas", "readyReplicas")} == {
        "replicas": 3,
        "updatedReplicas": 3,
        "readyReplicas": 3,
    }
    assert status["availableReplicas"] == 3 and "unavailableReplicas" not in status
    assert status["observedGeneration"] == d["metadata"]["generation"]
    conds = conditions(d)
    assert conds["Available"]["status"] == "True"
    assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conds["Progressing"]["status"] == "True"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert (
        conds["Progressing"]["message"] == f'ReplicaSet "web-{hash_}" has successfully progressed.'
    )
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"


def test_scale_subresource_up_and_down(ctl: Ctl) -> None:
    ctl.create_deployment(deployment("scaled", replicas=2))
    scale = ctl.apps.patch_namespaced_deployment_scale("scaled", ctl.ns, {"spec": {"replicas": 5}})
    assert scale.spec.replicas == 5
    ctl.wait_rolled_out("scaled")
    assert sum(is_running_ready(p) for p in ctl.pods("app=scaled")) == 5

    ctl.apps.patch_namespaced_deployment_scale("scaled", ctl.ns, {"spec": {"replicas": 1}})
    d = ctl.wait_rolled_out("scaled")
    assert d["status"]["replicas"] == 1
    # The four surplus pods terminate gracefully and the kubelet finishes them.
    pods = wait_for(lambda: len(ctl.pods("app=scaled")) == 1 and ctl.pods("app=scaled"), "1 pod")
    assert is_running_ready(pods[0])
    (rs,) = ctl.replicasets("app=scaled")
    assert rs["spec"]["replicas"] == 1 and rs["status"]["replicas"] == 1


def test_template_change_rolls_to_a_new_replicaset(ctl: Ctl) -> None:
    ctl.create_deployment(deployment("roll", replicas=4))
    (old_rs,) = ctl.replicasets("app=roll")
    ctl.apps.patch_namespaced_deployment(
        "roll",
        ctl.ns,
        {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}}},
    )
    # maxSurge 25% of 4 = 1, maxUnavailable 25% = 1: never fewer than 3 available pods.
    min_seen = 4
    deadline = time.monotonic() + 10
    while True:
        d = ctl.deployment("roll")
        assert d is not None
        s = d.get("status") or {}
        if s.get("observedGeneration") == 2:
            min_seen = min(min_seen, s.get("availableReplicas", 0))
        if (
            s.get("observedGeneration") == 2
            and s.get("updatedReplicas") == 4
            and s.get("replicas") == 4
            and s.get("availableReplicas") == 4
        ):
            break
        assert time.monotonic() < deadline, f"rollout did not finish: {s}"
        time.sleep(0.02)
    assert min_seen >= 3
    rss = {rs["metadata"]["name"]: rs for rs in ctl.replicasets("app=roll")}
    assert len(rss) == 2
    new_rs = next(rs for n, rs in rss.items() if n != old_rs["metadata"]["name"])
    assert rss[old_rs["metadata"]["name"]]["spec"]["replicas"] == 0
    assert new_rs["spec"]["replicas"] == 4
    assert new_rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert conditions(d)["Progressing"]["reason"] == "NewReplicaSetAvailable"
    new_hash = new_rs["metadata"]["labels"]["pod-template-hash"]
    wait_for(
        lambda: all(
            p["metadata"]["labels"]["pod-template-hash"] == new_hash for p in ctl.pods("app=roll")
        ),
        "old pods gone",
    )
    assert all(p["spec"]["containers"][0]["image"] == "nginx:1.25" for p in ctl.pods("app=roll"))


def test_recreate_stops_old_pods_before_starting_new_ones(ctl: Ctl) -> None:
    ctl.create_deployment(deployment("recreate", replicas=2, strategy={"type": "Recreate"}))
    (old_rs,) = ctl.replicasets("app=recreate")
    old_hash = old_rs["metadata"]["labels"]["pod-template-hash"]
    ctl.apps.patch_namespaced_deployment(
        "recreate",
        ctl.ns,
        {"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}},
    )
    deadline = time.monotonic() + 10
    while True:
        pods = ctl.pods("app=recreate")
        old = [p for p in pods if p["metadata"]["labels"]["pod-template-hash"] == old_hash]
        new = [p for p in pods if p not in old]
        assert not (old and new), "old and new pods at the same time"
        if len(new) == 2 and all(is_running_ready(p) for p in new):
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    ctl.wait_rolled_out("recreate")


def test_readiness_annotation_keeps_pods_unready(ctl: Ctl) -> None:
    ctl.create_deployment(
        deployment("unready", replicas=2, annotations={READY_ANNOTATION: "false"}), ready=False
    )
    pods = wait_for(
        lambda: len(pods := ctl.pods("app=unready")) == 2
        and all(p["status"].get("phase") == "Running" for p in pods)
        and pods,
        "both pods running",
    )
    for pod in pods:
        ready = conditions(pod)["Ready"]
        assert ready["status"] == "False"
        assert ready["reason"] == "ContainersNotReady"
        assert pod["status"]["containerStatuses"][0]["ready"] is False
    d = wait_for(
        lambda: (d := ctl.deployment("unready"))
        and conditions(d).get("Available", {}).get("status") == "False"
        and d,
        "deployment unavailable",
    )
    assert d["status"].get("availableReplicas", 0) == 0
    assert d["status"]["unavailableReplicas"] == 2
    # Flipping the knob on one pod makes it ready.
    name = pods[0]["metadata"]["name"]
    ctl.core.patch_namespaced_pod(
        name, ctl.ns, {"metadata": {"annotations": {READY_ANNOTATION: "true"}}}
    )
    wait_for(lambda: is_running_ready(ctl.pod(name) or {"status": {}}), "pod ready")
    wait_for(
        lambda: (ctl.deployment("unready") or {}).get("status", {}).get("readyReplicas") == 1,
        "readyReplicas 1",
    )


def test_denied_scale_down_is_retried_until_allowed(ctl: Ctl) -> None:
    ctl.create_deployment(deployment("held", replicas=3))
    ctl.deny_pod_deletes()
    ctl.apps.patch_namespaced_deployment_scale("held", ctl.ns, {"spec": {"replicas": 1}})
    wait_for(lambda: sum(len(a) for a in ctl.denied_attempts().values()) >= 6, "retries")
    pods = ctl.pods("app=held")
    assert len(pods) == 3 and all(is_running_ready(p) for p in pods)
    ctl.deny_pod_deletes(False)
    wait_for(lambda: len(ctl.pods("app=held")) == 1, "scaled down to 1", timeout=10)
    ctl.wait_rolled_out("held")


# --- statefulset controller -------------------------------------------------------------------


def test_statefulset_creates_ordered_pods(ctl: Ctl) -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "c", "image": "postgres"}]},
            },
        },
    }
    ctl.apps.create_namespaced_stateful_set(ctl.ns, body)
    deadline = time.monotonic() + 10
    while True:
        pods = {p["metadata"]["name"]: p for p in ctl.pods("app=db")}
        # OrderedReady: pod i exists only once pods 0..i-1 are running and ready.
        for i in (1, 2):
            if f"db-{i}" in pods:
                assert all(is_running_ready(pods[f"db-{j}"]) for j in range(i) if f"db-{j}" in pods)
                assert all(f"db-{j}" in pods for j in range(i))
        if len(pods) == 3 and all(is_running_ready(p) for p in pods.values()):
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pod = pods["db-1"]
    assert pod["spec"]["hostname"] == "db-1" and pod["spec"]["subdomain"] == "db"
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-1"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    sts = wait_for(
        lambda: (s := raw(ctl.apps.read_namespaced_stateful_set, "db", ctl.ns))["status"].get(
            "readyReplicas"
        )
        == 3
        and s,
        "sts status",
    )
    assert sts["status"]["replicas"] == 3
    assert sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
    ctl.apps.patch_namespaced_stateful_set_scale("db", ctl.ns, {"spec": {"replicas": 1}})
    wait_for(
        lambda: [p["metadata"]["name"] for p in ctl.pods("app=db")] == ["db-0"], "scaled to db-0"
    )


# --- kubelet ----------------------------------------------------------------------------------


def test_nodes_are_registered_ready(controller_clusters: Clusters) -> None:
    core = client.CoreV1Api(controller_clusters.api("ctl"))
    nodes = {n["metadata"]["name"]: n for n in raw(core.list_node)["items"]}
    assert set(NODES) <= set(nodes)
    for name in NODES:
        node = nodes[name]
        assert conditions(node)["Ready"]["status"] == "True"
        assert not any(
            t["key"] == "node.kubernetes.io/not-ready" for t in node["spec"].get("taints") or []
        )
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == name
        assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.24")


def _set_cordon(core: client.CoreV1Api, node: str, cordoned: bool) -> None:
    core.patch_node(node, {"spec": {"unschedulable": cordoned or None}})


def test_scheduling_respects_cordon(ctl: Ctl) -> None:
    _set_cordon(ctl.core, NODES[1], True)
    try:
        for i in range(3):
            ctl.core.create_namespaced_pod(ctl.ns, bare_pod(f"p{i}"))
        pods = wait_for(
            lambda: all(is_running_ready(p) for p in ctl.pods()) and ctl.pods(), "pods running"
        )
        assert {p["spec"]["nodeName"] for p in pods} == {NODES[0]}

        _set_cordon(ctl.core, NODES[0], True)
        ctl.core.create_namespaced_pod(ctl.ns, bare_pod("waiting"))
        pod = wait_for(
            lambda: (p := ctl.pod("waiting"))
            and conditions(p).get("PodScheduled", {}).get("status") == "False"
            and p,
            "PodScheduled False",
        )
        scheduled = conditions(pod)["PodScheduled"]
        assert scheduled["reason"] == "Unschedulable"
        assert "2 node(s) were unschedulable" in scheduled["message"]
        assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")

        # Uncordoning a node gets the pending pod scheduled.
        _set_cordon(ctl.core, NODES[1], False)
        pod = wait_for(lambda: is_running_ready(p := ctl.pod("waiting")) and p, "pod scheduled")
        assert pod["spec"]["nodeName"] == NODES[1]
        assert conditions(pod)["PodScheduled"]["status"] == "True"
    finally:
        _set_cordon(ctl.core, NODES[0], False)
        _set_cordon(ctl.core, NODES[1], False)


def test_graceful_deletion_is_finished_by_the_kubelet(ctl: Ctl) -> None:
    ctl.core.create_namespaced_pod(ctl.ns, bare_pod("graceful"))
    wait_for(lambda: is_running_ready(ctl.pod("graceful") or {"status": {}}), "running")
    marked = raw(ctl.core.delete_namespaced_pod, "graceful", ctl.ns)
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert marked["metadata"]["deletionTimestamp"]
    assert ctl.pod("graceful") is not None  # terminating, not gone
    started = time.monotonic()
    wait_for(lambda: ctl.pod("graceful") is None, "pod gone", timeout=5)
    assert time.monotonic() - started < 3  # the test sandbox caps grace at 0.2 s


def test_finalizers_hold_a_deleted_pod(ctl: Ctl) -> None:
    ctl.core.create_namespaced_pod(ctl.ns, bare_pod("held", finalizers=["example.com/hold"]))
    wait_for(lambda: is_running_ready(ctl.pod("held") or {"status": {}}), "running")
    ctl.core.delete_namespaced_pod("held", ctl.ns)
    # The kubelet confirms the deletion (grace 0), the finalizer keeps the object.
    pod = wait_for(
        lambda: (p := ctl.pod("held"))
        and p["metadata"].get("deletionGracePeriodSeconds") == 0
        and p,
        "kubelet confirmed",
    )
    time.sleep(0.3)
    assert ctl.pod("held") is not None
    assert pod["metadata"]["finalizers"] == ["example.com/hold"]
    ctl.core.patch_namespaced_pod("held", ctl.ns, {"metadata": {"finalizers": None}})
    wait_for(lambda: ctl.pod("held") is None, "pod gone once the finalizer is removed")


# --- garbage collector ------------------------------------------------------------------------


def test_background_cascade(ctl: Ctl) -> None:
    ctl.create_deployment(deployment("bg", replicas=2))
    ctl.apps.delete_namespaced_deployment("bg", ctl.ns)
    assert ctl.deployment("bg") is None  # gone at once: background propagation
    wait_for(lambda: not ctl.replicasets("app=bg"), "replicaset gone", timeout=5)
    wait_for(lambda: not ctl.pods("app=bg"), "pods gone", timeout=5)


def test_foreground_cascade(ctl: Ctl) -> None:
    ctl.create_deployment(deployment("fg", replicas=2))
    ctl.apps.delete_namespaced_deployment("fg", ctl.ns, propagation_policy="Foreground")
    d = ctl.deployment("fg")
    assert d is not None
    assert d["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in d["metadata"]["finalizers"]
    # The owner stays until its dependents are gone.
    deadline = time.monotonic() + 10
    while ctl.deployment("fg") is not None:
        assert time.monotonic() < deadline, "deployment not deleted"
        time.sleep(0.02)
    assert not ctl.replicasets("app=fg")
    assert not ctl.pods("app=fg")


def test_orphan_keeps_dependents(ctl: Ctl) -> None:
    ctl.create_deployment(deployment("orphan", replicas=2))
    pods_before = {p["metadata"]["name"] for p in ctl.pods("app=orphan")}
    ctl.apps.delete_namespaced_deployment("orphan", ctl.ns, propagation_policy="Orphan")
    wait_for(lambda: ctl.deployment("orphan") is None, "deployment gone")
    (rs,) = ctl.replicasets("app=orphan")
    assert not rs["metadata"].get("ownerReferences")
    time.sleep(0.3)
    assert {p["metadata"]["name"] for p in ctl.pods("app=orphan")} == pods_before
    # The orphaned ReplicaSet is still managed; deleting it takes its pods along.
    ctl.apps.delete_namespaced_replica_set(rs["metadata"]["name"], ctl.ns)
    wait_for(lambda: not ctl.pods("app=orphan"), "pods gone with their replicaset")


def test_dependents_of_missing_owners_are_collected(ctl: Ctl) -> None:
    owner = ctl.core.create_namespaced_config_map(ctl.ns, {"metadata": {"name": "owner"}})

    def ref(name: str, uid: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid}

    ghost = ref("ghost", str(uuid.uuid4()))
    live = ref("owner", owner.metadata.uid)
    ctl.core.create_namespaced_config_map(
        ctl.ns, {"metadata": {"name": "orphaned", "ownerReferences": [ghost]}}
    )
    ctl.core.create_namespaced_config_map(
        ctl.ns, {"metadata": {"name": "half", "ownerReferences": [ghost, live]}}
    )

    def names() -> set[str]:
        return {
            c["metadata"]["name"] for c in raw(ctl.core.list_namespaced_config_map, ctl.ns)["items"]
        }

    wait_for(lambda: "orphaned" not in names(), "dependent of a missing owner collected")
    half = wait_for(
        lambda: len(
            (c := raw(ctl.core.read_namespaced_config_map, "half", ctl.ns))["metadata"][
                "ownerReferences"
            ]
        )
        == 1
        and c,
        "dangling reference removed",
    )
    assert half["metadata"]["ownerReferences"][0]["uid"] == owner.metadata.uid
    ctl.core.delete_namespaced_config_map("owner", ctl.ns)
    wait_for(lambda: "half" not in names(), "dependent collected with its owner")


def test_deployment_delete_while_pod_deletions_are_denied(ctl: Ctl) -> None:
    """The recorded case: the ReplicaSet goes at once, each denied pod DELETE is retried with
    backoff, the pods survive while denied and go once allowed."""
    ctl.create_deployment(deployment("gc", replicas=3))
    pods = {p["metadata"]["name"] for p in ctl.pods("app=gc")}
    ctl.deny_pod_deletes()
    deleted_at = time.time()
    ctl.apps.delete_namespaced_deployment("gc", ctl.ns)
    wait_for(lambda: not ctl.replicasets("app=gc"), "replicaset deleted at once", timeout=2)
    assert time.time() - deleted_at < 1.0

    time.sleep(1.5)
    survivors = ctl.pods("app=gc")
    assert {p["metadata"]["name"] for p in survivors} == pods
    assert all(is_running_ready(p) for p in survivors)
    attempts = ctl.denied_attempts()
    assert set(attempts) == pods
    for name, tries in attempts.items():
        times = [t for t, _ in tries]
        # 5 ms doubling up to 0.5 s gives about 9 attempts in 1.5 s; without backoff there
        # would be hundreds, without retries one.
        assert 5 <= len(times) <= 20, (name, len(times))
        assert times[0] - deleted_at < 1.0
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps[-1] > 4 * gaps[0] and gaps[-1] > 0.2, gaps  # backing off
        assert all(msg.startswith("admin:") for _, msg in tries)  # the GC's identity, as recorded

    ctl.deny_pod_deletes(False)
    wait_for(lambda: not ctl.pods("app=gc"), "pods deleted once allowed", timeout=5)


def test_gc_deletions_reach_a_real_webhook_as_recorded(ctl: Ctl, tmp_path: Path) -> None:
    """The same through a ValidatingWebhookConfiguration and an HTTPS webhook, with pods
    that cannot be scheduled like the recording's: the reviews are the recorded ones."""
    recording = json.loads((RECORDINGS / "gc-cascade-deployment-delete.json").read_text())
    recorded = recording["first_review"]["request"]
    admission = client.AdmissionregistrationV1Api(ctl.core.api_client)
    with CaptureWebhook(tmp_path / "webhook").start() as hook:
        hook.answer_with(deny("PodProtector gc/protector reports too few replicas", code=429))
        config = f"gc-{uuid.uuid4().hex[:8]}"
        admission.create_validating_webhook_configuration(
            {
                "metadata": {"name": config},
                "webhooks": [
                    {
                        "name": "podseidon.kubewharf.io",
                        "admissionReviewVersions": ["v1"],
                        "clientConfig": {"url": hook.url("/gc"), "caBundle": hook.ca_bundle},
                        "rules": [
                            {
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "operations": ["DELETE"],
                                "resources": ["pods"],
                            }
                        ],
                        "sideEffects": "None",
                        "timeoutSeconds": 5,
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": ctl.ns}
                        },
                    }
                ],
            }
        )
        try:
            body = deployment("gc", replicas=3)
            # No node matches: the pods stay Pending and unscheduled, as in the recording.
            body["spec"]["template"]["spec"]["nodeSelector"] = {"sandbox.test/none": "x"}
            ctl.create_deployment(body, ready=False)
            pods = wait_for(lambda: len(p := ctl.pods("app=gc")) == 3 and p, "3 pods")
            (rs,) = ctl.replicasets("app=gc")
            uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}
            ctl.apps.delete_namespaced_deployment("gc", ctl.ns)
            wait_for(lambda: not ctl.replicasets("app=gc"), "replicaset deleted at once", 2)
            time.sleep(1.0)
            assert {p["metadata"]["name"] for p in ctl.pods("app=gc")} == set(uids)

            by_pod: dict[str, list[float]] = defaultdict(list)
            for received in hook.reviews():
                request = received.request
                name = request["name"]
                by_pod[name].append(received.at)
                assert request["operation"] == "DELETE" and request["namespace"] == ctl.ns
                assert request["userInfo"] == recorded["userInfo"]
                assert request["object"] is None and request["dryRun"] is False
                assert request["options"] == {
                    **recorded["options"],
                    "preconditions": {"uid": uids[name]},
                }
                old = request["oldObject"]
                assert old["metadata"]["ownerReferences"] == [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": rs["metadata"]["name"],
                        "uid": rs["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ]
                status = {k: old["status"].get(k) for k in ("phase", "qosClass")}
                assert status == recorded["oldObject"]["status"]
                assert "deletionTimestamp" not in old["metadata"]
            assert set(by_pod) == set(uids)
            for name, times in by_pod.items():
                assert 5 <= len(times) <= 15, (name, len(times))
                gaps = [b - a for a, b in itertools.pairwise(times)]
                assert gaps[-1] > 4 * gaps[0], gaps  # backing off

            hook.answer_with(ALLOW)
            wait_for(lambda: not ctl.pods("app=gc"), "pods deleted once allowed", timeout=5)
        finally:
            admission.delete_validating_webhook_configuration(config)


def test_default_gc_backoff_reproduces_the_recorded_retries() -> None:
    """With the default options, a pod denied for 25 s is tried as often as the real garbage
    collector tried each pod of gc-cascade-deployment-delete.json (39 reviews for 3 pods)."""
    recording = json.loads((RECORDINGS / "gc-cascade-deployment-delete.json").read_text())
    per_pod: dict[str, int] = defaultdict(int)
    for call in recording["webhook_calls"]:
        per_pod[call["name"]] += 1
    assert len(recording["webhook_calls"]) == 39 and set(per_pod.values()) == {13}

    async def attempts_within(seconds: float) -> int:
        options = ControllerOptions()
        queue = WorkQueue(options.gc_backoff_initial, options.gc_backoff_max)
        t, attempts = 0.0, 1
        while True:
            t += queue.add_rate_limited("pod")
            if t > seconds:
                queue.shut_down()
                return attempts
            attempts += 1

    assert asyncio.run(attempts_within(25.0)) == 13

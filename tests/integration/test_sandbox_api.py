"""API semantics through the official `kubernetes` client, valid on the sandbox and on a real
cluster alike (sandbox-only checks say so and skip elsewhere)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

from .conftest import REPO, SANDBOX_HISTORY_WINDOW, Clusters

pytestmark = pytest.mark.integration

PPR_GROUP, PPR_VERSION, PPR_PLURAL = "podseidon.kubewharf.io", "v1alpha1", "podprotectors"
CRD_FILE = REPO / "deploy" / "crds" / "podprotectors.yaml"


def pod(
    name: str,
    labels: dict[str, str] | None = None,
    node: str | None = None,
    finalizers: list[str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    if finalizers:
        meta["finalizers"] = finalizers
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def body_of(exc: client.ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


@pytest.fixture
def core(clusters: Clusters) -> client.CoreV1Api:
    return client.CoreV1Api(clusters.api("core"))


@pytest.fixture
def apps(clusters: Clusters) -> client.AppsV1Api:
    return client.AppsV1Api(clusters.api("core"))


@pytest.fixture
def custom(clusters: Clusters) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(clusters.api("core"))


def install_crd(clusters: Clusters, name: str = "core") -> None:
    ext = client.ApiextensionsV1Api(clusters.api(name))
    crd = yaml.safe_load(Path(CRD_FILE).read_text())
    try:
        ext.create_custom_resource_definition(crd)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = ext.read_custom_resource_definition(crd["metadata"]["name"])
        conditions = {c.type: c.status for c in (got.status.conditions or [])}
        if conditions.get("Established") == "True":
            return
        time.sleep(0.2)
    raise AssertionError("CRD never became Established")


# --- CRUD -------------------------------------------------------------------------------------


def test_namespace_and_pod_crud(core: client.CoreV1Api, namespace: str) -> None:
    ns = core.read_namespace(namespace)
    assert ns.status.phase == "Active"
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == namespace

    created = core.create_namespaced_pod(namespace, pod("web-0", {"app": "web"}))
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None
    assert created.status.phase == "Pending"
    assert created.spec.restart_policy == "Always"
    assert created.spec.containers[0].termination_message_path == "/dev/termination-log"

    with pytest.raises(client.ApiException) as dup:
        core.create_namespaced_pod(namespace, pod("web-0"))
    assert dup.value.status == 409
    assert body_of(dup.value)["reason"] == "AlreadyExists"
    assert body_of(dup.value)["message"] == 'pods "web-0" already exists'

    got = core.read_namespaced_pod("web-0", namespace)
    assert got.metadata.uid == created.metadata.uid

    with pytest.raises(client.ApiException) as missing:
        core.read_namespaced_pod("nope", namespace)
    assert missing.value.status == 404
    status = body_of(missing.value)
    assert status["message"] == 'pods "nope" not found'
    assert status["details"] == {"name": "nope", "kind": "pods"}

    core.delete_namespaced_pod("web-0", namespace)
    with pytest.raises(client.ApiException) as gone:
        core.read_namespaced_pod("web-0", namespace)
    assert gone.value.status == 404


def test_create_in_missing_namespace_is_404(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_pod("no-such-namespace", pod("x"))
    assert exc.value.status == 404
    assert body_of(exc.value)["message"] == 'namespaces "no-such-namespace" not found'


def test_deployment_crud_and_generation(apps: client.AppsV1Api, namespace: str) -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }
    created = apps.create_namespaced_deployment(namespace, dep)
    assert created.metadata.generation == 1
    assert created.spec.strategy.type == "RollingUpdate"

    labeled = apps.patch_namespaced_deployment(
        "web", namespace, {"metadata": {"labels": {"a": "b"}}}
    )
    assert labeled.metadata.generation == 1, "metadata changes do not move generation"

    scaled = apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": 3}})
    assert scaled.metadata.generation == 2

    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.spec.replicas == 3
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 1}})
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 1

    apps.delete_namespaced_deployment("web", namespace)
    with pytest.raises(client.ApiException) as exc:
        apps.read_namespaced_deployment("web", namespace)
    assert exc.value.status == 404
    assert body_of(exc.value)["details"] == {"name": "web", "group": "apps", "kind": "deployments"}


# --- lists ------------------------------------------------------------------------------------


def test_list_selectors(core: client.CoreV1Api, namespace: str) -> None:
    for i in range(4):
        core.create_namespaced_pod(
            namespace,
            pod(f"web-{i}", {"app": "web", "idx": str(i)}, node="node-x" if i == 3 else None),
        )
    core.create_namespaced_pod(namespace, pod("db-0", {"app": "db"}))

    def names(**kw: Any) -> list[str]:
        return [p.metadata.name for p in core.list_namespaced_pod(namespace, **kw).items]

    assert names(label_selector="app=web,idx!=3") == ["web-0", "web-1", "web-2"]
    assert names(label_selector="idx in (1,2)") == ["web-1", "web-2"]
    assert names(label_selector="idx notin (1,2),app") == ["db-0", "web-0", "web-3"]
    assert names(label_selector="!idx") == ["db-0"]
    assert names(field_selector="metadata.name=web-2") == ["web-2"]
    assert names(field_selector="spec.nodeName=node-x") == ["web-3"]
    assert names(field_selector="status.phase=Pending,metadata.name!=db-0") == [
        "web-0",
        "web-1",
        "web-2",
        "web-3",
    ]
    everywhere = core.list_pod_for_all_namespaces(field_selector=f"metadata.namespace={namespace}")
    assert len(everywhere.items) == 5

    with pytest.raises(client.ApiException) as exc:
        core.list_namespaced_pod(namespace, field_selector="spec.bogus=1")
    assert exc.value.status == 400


def test_pagination(core: client.CoreV1Api, namespace: str) -> None:
    for i in range(7):
        core.create_namespaced_pod(namespace, pod(f"p-{i}"))
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_pod(namespace, limit=3, _continue=token)
        pages += 1
        seen += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if pages == 1:
            assert page.metadata.remaining_item_count == 4
        if not token:
            break
    assert seen == [f"p-{i}" for i in range(7)]
    assert pages == 3


# --- watch ------------------------------------------------------------------------------------


def test_watch_resume_from_resource_version(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod("a"))
    rv = core.list_namespaced_pod(namespace).metadata.resource_version
    core.create_namespaced_pod(namespace, pod("b"))
    core.patch_namespaced_pod("b", namespace, {"metadata": {"labels": {"x": "1"}}})
    core.delete_namespaced_pod("a", namespace)

    events = []
    for event in watch.Watch().stream(
        core.list_namespaced_pod, namespace, resource_version=rv, timeout_seconds=2
    ):
        events.append((event["type"], event["object"].metadata.name))
        if len(events) == 4:
            break
    # Deleting a pod first marks it (MODIFIED, grace 0), then removes it (recorded stream).
    assert events == [("ADDED", "b"), ("MODIFIED", "b"), ("MODIFIED", "a"), ("DELETED", "a")]


def test_watch_from_zero_lists_current_state(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod("a", {"k": "v"}))
    core.create_namespaced_pod(namespace, pod("b"))
    events = []
    for event in watch.Watch().stream(
        core.list_namespaced_pod,
        namespace,
        label_selector="k=v",
        resource_version="0",
        timeout_seconds=2,
    ):
        events.append((event["type"], event["object"].metadata.name))
        break
    assert events == [("ADDED", "a")]


def test_watch_bookmarks(core: client.CoreV1Api, namespace: str) -> None:
    # Bookmarks come about once a minute, but kube-apiserver's watch cache also sends one 2 s
    # before a watch's deadline (once it has seen any pod event since it started), so a 3 s
    # watch gets one after 1 s, on the sandbox as on a real cluster.
    rv = core.list_namespaced_pod(namespace).metadata.resource_version
    raw = core.list_namespaced_pod(
        namespace,
        watch=True,
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=3,
        _preload_content=False,
    )
    bookmarks = []
    try:
        for line in raw.stream(amt=None):
            for part in line.splitlines():
                event = json.loads(part)
                assert event["type"] == "BOOKMARK"
                bookmarks.append(event["object"])
            if bookmarks:
                break
    finally:
        raw.close()
    assert bookmarks
    obj = bookmarks[0]
    assert obj["kind"] == "Pod" and obj["apiVersion"] == "v1"
    assert int(obj["metadata"]["resourceVersion"]) >= int(rv)


def test_watch_too_old_is_410_then_relist(
    clusters: Clusters, core: client.CoreV1Api, namespace: str
) -> None:
    clusters.require_sandbox("the sandbox's small, known watch history window (300 events)")
    core.create_namespaced_pod(namespace, pod("churn"))
    old_rv = core.list_namespaced_pod(namespace).metadata.resource_version
    for i in range(SANDBOX_HISTORY_WINDOW + 5):
        core.patch_namespaced_pod("churn", namespace, {"metadata": {"labels": {"i": str(i)}}})

    raw = core.list_namespaced_pod(
        namespace, watch=True, resource_version=old_rv, timeout_seconds=2, _preload_content=False
    )
    first = json.loads(raw.data.decode().splitlines()[0])
    assert first["type"] == "ERROR"
    status = first["object"]
    assert status["kind"] == "Status" and status["code"] == 410
    assert status["reason"] == "Expired"
    assert status["message"].startswith(f"too old resource version: {old_rv} (")

    with pytest.raises(client.ApiException) as exc:
        core.list_namespaced_pod(namespace, resource_version=old_rv, resource_version_match="Exact")
    assert exc.value.status == 410

    # The informer recovery: relist, then watch from the list's resourceVersion.
    listed = core.list_namespaced_pod(namespace)
    core.patch_namespaced_pod("churn", namespace, {"metadata": {"labels": {"after": "1"}}})
    for event in watch.Watch().stream(
        core.list_namespaced_pod,
        namespace,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=2,
    ):
        assert event["type"] == "MODIFIED"
        assert event["object"].metadata.labels["after"] == "1"
        break
    else:
        raise AssertionError("no event after relist")


def test_exact_list_at_older_resource_version(core: client.CoreV1Api, namespace: str) -> None:
    # kube-apiserver serves resourceVersionMatch=Exact from etcd until compaction (5 min).
    core.create_namespaced_pod(namespace, pod("a"))
    rv = core.list_namespaced_pod(namespace).metadata.resource_version
    core.create_namespaced_pod(namespace, pod("b"))
    then = core.list_namespaced_pod(namespace, resource_version=rv, resource_version_match="Exact")
    assert [p.metadata.name for p in then.items] == ["a"]


# --- updates, status, conflicts -----------------------------------------------------------------


def test_status_subresource_and_conflicts(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_pod(namespace, pod("web-0"))
    status = {
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
        }
    }
    patched = core.patch_namespaced_pod_status("web-0", namespace, status)
    assert patched.status.phase == "Running"
    assert patched.metadata.resource_version != created.metadata.resource_version

    # Status through the main resource is ignored.
    current = core.read_namespaced_pod("web-0", namespace)
    current.status.phase = "Failed"
    current.metadata.labels = {"changed": "yes"}
    updated = core.replace_namespaced_pod("web-0", namespace, current)
    assert updated.status.phase == "Running"
    assert updated.metadata.labels == {"changed": "yes"}

    # A stale resourceVersion on PUT and PUT /status is a 409 Conflict.
    stale = core.read_namespaced_pod("web-0", namespace)
    stale.metadata.resource_version = created.metadata.resource_version
    for call in (core.replace_namespaced_pod, core.replace_namespaced_pod_status):
        with pytest.raises(client.ApiException) as exc:
            call("web-0", namespace, stale)
        assert exc.value.status == 409
        body = body_of(exc.value)
        assert body["reason"] == "Conflict"
        assert body["message"] == (
            'Operation cannot be fulfilled on pods "web-0": the object has been modified; '
            "please apply your changes to the latest version and try again"
        )


def test_finalizers_hold_deletion(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod("fin-0", finalizers=["example.com/hold"]))
    deleted = core.delete_namespaced_pod("fin-0", namespace)
    assert deleted.metadata.deletion_timestamp is not None
    assert deleted.metadata.deletion_grace_period_seconds == 0
    still = core.read_namespaced_pod("fin-0", namespace)
    assert still.metadata.finalizers == ["example.com/hold"]

    core.patch_namespaced_pod("fin-0", namespace, {"metadata": {"finalizers": None}})
    with pytest.raises(client.ApiException) as exc:
        core.read_namespaced_pod("fin-0", namespace)
    assert exc.value.status == 404


def test_graceful_deletion_of_scheduled_pod(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod("sched-0", node="node-1"))
    first = core.delete_namespaced_pod("sched-0", namespace)
    assert first.metadata.deletion_timestamp is not None
    assert first.metadata.deletion_grace_period_seconds == 30
    again = core.delete_namespaced_pod("sched-0", namespace)
    assert again.metadata.resource_version == first.metadata.resource_version

    # What the kubelet does when the containers are gone.
    core.delete_namespaced_pod("sched-0", namespace, grace_period_seconds=0)
    with pytest.raises(client.ApiException) as exc:
        core.read_namespaced_pod("sched-0", namespace)
    assert exc.value.status == 404


def test_unscheduled_pod_is_deleted_at_once(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod("p"))
    deleted = core.delete_namespaced_pod("p", namespace)
    assert deleted.metadata.deletion_grace_period_seconds == 0
    assert core.list_namespaced_pod(namespace).items == []


def test_delete_collection_with_selector(core: client.CoreV1Api, namespace: str) -> None:
    for i in range(3):
        core.create_namespaced_pod(namespace, pod(f"batch-{i}", {"app": "batch"}))
    core.create_namespaced_pod(namespace, pod("keep", {"app": "keep"}))
    core.delete_collection_namespaced_pod(namespace, label_selector="app=batch")
    assert [p.metadata.name for p in core.list_namespaced_pod(namespace).items] == ["keep"]


def test_eviction_deletes_pod(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod("victim"))
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name="victim", namespace=namespace))
    core.create_namespaced_pod_eviction("victim", namespace, eviction)
    assert core.list_namespaced_pod(namespace).items == []

    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_pod_eviction("victim", namespace, eviction)
    assert exc.value.status == 404


def test_strategic_merge_patch_merges_lists_by_key(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod("smp"))
    core.patch_namespaced_pod_status(
        "smp",
        namespace,
        {
            "status": {
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "False"},
                ]
            }
        },
    )
    patched = core.patch_namespaced_pod_status(
        "smp", namespace, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    )
    assert {c.type: c.status for c in patched.status.conditions} == {
        "PodScheduled": "True",
        "Ready": "True",
    }


def test_node_cordon_patch(core: client.CoreV1Api, clusters: Clusters) -> None:
    name = f"node-{int(time.time() * 1000) % 100000}"
    clusters.require_sandbox("a throwaway cluster to add a Node to")
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    try:
        node = core.patch_node(name, {"spec": {"unschedulable": True}})
        assert node.spec.unschedulable is True
        assert core.list_node(field_selector="spec.unschedulable=true").items
    finally:
        core.delete_node(name)


# --- custom resources -------------------------------------------------------------------------


def test_podprotector_crd(
    clusters: Clusters, custom: client.CustomObjectsApi, namespace: str
) -> None:
    install_crd(clusters)
    ppr = {
        "apiVersion": f"{PPR_GROUP}/{PPR_VERSION}",
        "kind": "PodProtector",
        "metadata": {"name": "protector", "finalizers": ["podseidon.kubewharf.io/generator"]},
        "spec": {
            "minAvailable": 2,
            "minReadySeconds": 0,
            "selector": {"matchLabels": {"app": "web"}},
        },
        "status": {"summary": {"totalReplicas": 99}},
    }
    created = custom.create_namespaced_custom_object(
        PPR_GROUP, PPR_VERSION, namespace, PPR_PLURAL, ppr
    )
    assert created["metadata"]["generation"] == 1
    assert "status" not in created, "status is dropped on create with a status subresource"

    bad = json.loads(json.dumps(ppr))
    bad["metadata"] = {"name": "bad"}
    bad["spec"]["minAvailable"] = -1
    with pytest.raises(client.ApiException) as exc:
        custom.create_namespaced_custom_object(PPR_GROUP, PPR_VERSION, namespace, PPR_PLURAL, bad)
    assert exc.value.status == 422
    assert body_of(exc.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'PodProtector.podseidon.kubewharf.io "bad" is invalid: spec.minAvailable: '
        "Invalid value: -1: spec.minAvailable in body should be greater than or "
        "equal to 0",
        "reason": "Invalid",
        "details": {
            "name": "bad",
            "group": PPR_GROUP,
            "kind": "PodProtector",
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": "Invalid value: -1: spec.minAvailable in body should be "
                    "greater than or equal to 0",
                    "field": "spec.minAvailable",
                }
            ],
        },
        "code": 422,
    }

    status = {
        "cells": [
            {"cellID": "cell-a", "aggregation": {"totalReplicas": 4, "availableReplicas": 4}}
        ],
        "summary": {
            "totalReplicas": 4,
            "aggregatedAvailableReplicas": 4,
            "estimatedAvailableReplicas": 4,
        },
    }
    with_status = dict(created, status=status)
    written = custom.replace_namespaced_custom_object_status(
        PPR_GROUP, PPR_VERSION, namespace, PPR_PLURAL, "protector", with_status
    )
    assert written["status"]["summary"]["totalReplicas"] == 4
    assert written["metadata"]["generation"] == 1

    with pytest.raises(client.ApiException) as conflict:
        custom.replace_namespaced_custom_object_status(
            PPR_GROUP, PPR_VERSION, namespace, PPR_PLURAL, "protector", with_status
        )
    assert conflict.value.status == 409
    assert body_of(conflict.value)["details"] == {
        "name": "protector",
        "group": PPR_GROUP,
        "kind": PPR_PLURAL,
    }

    main = dict(written, status={"cells": []})
    main["spec"] = dict(written["spec"], minAvailable=3)
    updated = custom.replace_namespaced_custom_object(
        PPR_GROUP, PPR_VERSION, namespace, PPR_PLURAL, "protector", main
    )
    assert updated["metadata"]["generation"] == 2
    assert updated["status"] == written["status"], "status through the main resource is ignored"

    listed = custom.list_namespaced_custom_object(PPR_GROUP, PPR_VERSION, namespace, PPR_PLURAL)
    assert [o["metadata"]["name"] for o in listed["items"]] == ["protector"]

    custom.delete_namespaced_custom_object(
        PPR_GROUP, PPR_VERSION, namespace, PPR_PLURAL, "protector"
    )
    marked = custom.get_namespaced_custom_object(
        PPR_GROUP, PPR_VERSION, namespace, PPR_PLURAL, "protector"
    )
    assert marked["metadata"]["deletionTimestamp"]
    custom.patch_namespaced_custom_object(
        PPR_GROUP,
        PPR_VERSION,
        namespace,
        PPR_PLURAL,
        "protector",
        {"metadata": {"finalizers": None}},
    )
    with pytest.raises(client.ApiException) as gone:
        custom.get_namespaced_custom_object(
            PPR_GROUP, PPR_VERSION, namespace, PPR_PLURAL, "protector"
        )
    assert gone.value.status == 404


def test_crd_discovery_comes_and_goes(clusters: Clusters) -> None:
    clusters.require_sandbox("a throwaway cluster to create and delete a CRD in")
    api = clusters.api("cell-a")
    ext = client.ApiextensionsV1Api(api)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    ext.create_custom_resource_definition(crd)
    groups = client.ApisApi(api).get_api_versions()
    assert "example.com" in [g.name for g in groups.groups]
    custom = client.CustomObjectsApi(api)
    custom.create_cluster_custom_object(
        "example.com",
        "v1",
        "widgets",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "x": 1},
    )
    assert custom.get_cluster_custom_object("example.com", "v1", "widgets", "w")["x"] == 1
    ext.delete_custom_resource_definition("widgets.example.com")
    groups = client.ApisApi(api).get_api_versions()
    assert "example.com" not in [g.name for g in groups.groups]
    with pytest.raises(client.ApiException) as exc:
        custom.get_cluster_custom_object("example.com", "v1", "widgets", "w")
    assert exc.value.status == 404


def test_namespace_deletion_removes_content(core: client.CoreV1Api) -> None:
    name = f"gone-{int(time.time() * 1000) % 1000000}"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_pod(name, pod("p"))
    core.create_namespaced_config_map(name, {"metadata": {"name": "cm"}})
    core.delete_namespace(name)
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_pod(name, pod("late"))
    assert exc.value.status in (403, 404)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            core.read_namespace(name)
        except client.ApiException as gone:
            assert gone.status == 404
            return
        time.sleep(0.2)
    raise AssertionError("namespace was never removed")

"""Console actions through the REST API against the sandbox clusters (or real ones).

- Remove cell-a from 50 PodProtectors: the API starts a tracked operation that annotates them
  (polled to its end through its status URL), the real generator (in-process, restricted to the
  test's namespace) drops cell-a from every status and the annotation.
- Disable the webhook registration in cell-a and re-enable it: the stored object carries the
  never-matching selector (with the previous one saved on it), then exactly the original one.
- The PodProtector table is served by the real Informer cache.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from kubernetes import client as k8s
from rest_framework.test import APIClient

from console import cache as cache_module
from podseidon_site.config import ClusterAccess, GeneratorConfig, PodseidonConfig, parse_config
from protectors import clusters as cluster_clients
from protectors import constants
from protectors.kube.client import (
    DEPLOYMENTS,
    PODPROTECTORS,
    VALIDATING_WEBHOOKS,
    KubeClient,
    KubeError,
)
from tests.site.db_threads import operation_threads  # noqa: F401  (a fixture)
from tests.site.site_fakes import finished_operation
from webhook.registration import render_webhook_configuration
from webhook.services import NEVER_MATCHING_SELECTOR, SAVED_ANNOTATION
from workers.controller import AlwaysValidFence, ControllerContext
from workers.generator.controller import GeneratorController

from .webhook_env import create_protector, install_crd, write_aggregation

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T = TypeVar("T")
PROTECTORS = 50
CUSTOM_SELECTOR = {
    "matchLabels": {"podseidon-test/guarded": "yes"},
    "matchExpressions": [
        {"key": "app.kubernetes.io/part-of", "operator": "NotIn", "values": ["podseidon"]},
        {"key": "tier", "operator": "In", "values": ["front", "back"]},
    ],
}


def wait_for(fn: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def namespace(clusters) -> Iterator[str]:
    install_crd(clusters.api("core"))
    name = f"console-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(clusters.api("core"))
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name


@pytest.fixture
def site(clusters, namespace, settings) -> Iterator[dict[str, Any]]:
    kubeconfigs = {n: str(p) for n, p in clusters.kubeconfigs.items()}
    settings.PODSEIDON = parse_config(
        {
            "core": {"kubeconfig": kubeconfigs["core"], "namespace": namespace},
            "cells": [
                {"id": "cell-a", "kubeconfig": kubeconfigs["cell-a"]},
                {"id": "cell-b", "kubeconfig": kubeconfigs["cell-b"]},
            ],
            "generator": {"protection_selectors": {"deployments.apps": "protect=true"}},
            "webhook": {"url": "https://127.0.0.1:1"},
        }
    )
    settings.PODSEIDON_CACHE_SYNC_WAIT_SECONDS = 10
    cluster_clients.reset()
    operator = User.objects.create_user("oscar", password="pw-oscar-123456")
    operator.groups.add(Group.objects.get(name="operator"))
    api = APIClient()
    api.force_authenticate(operator)
    yield {"api": api, "config": settings.PODSEIDON, "kubeconfigs": kubeconfigs}
    cache_module.stop_cache()
    cluster_clients.reset()


@pytest.fixture
def generator(clusters, namespace) -> Iterator[KubeClient]:
    core = KubeClient.from_access(ClusterAccess(kubeconfig=str(clusters.kubeconfigs["core"])))
    config = PodseidonConfig(
        core=ClusterAccess(kubeconfig=str(clusters.kubeconfigs["core"]), namespace=namespace),
        generator=GeneratorConfig(
            protection_selectors={"deployments.apps": "protect=true"}, workers=4
        ),
    )
    errors: list[str] = []
    controller = GeneratorController(config)
    controller.start(
        ControllerContext(
            config=config,
            core=core,
            cells={},
            fence=AlwaysValidFence(),
            report=lambda error: errors.append(error) if error else None,
        )
    )
    assert controller.wait_synced(15)
    yield core
    # Release the workloads the normal way (the generator removes its finalizers), then stop.
    for item in core.list(DEPLOYMENTS, namespace)["items"]:
        core.delete(DEPLOYMENTS, namespace, item["metadata"]["name"])
    wait_for(lambda: not core.list(DEPLOYMENTS, namespace)["items"], "workloads to go", 60)
    controller.stop()
    assert errors == []


def _deployment(name: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"protect": "true", "tier": "front"}},
        "spec": {
            "replicas": 6,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }


def _write_cells(api: k8s.ApiClient, namespace: str, name: str) -> None:
    for _attempt in range(20):
        try:
            write_aggregation(api, namespace, name, {"cell-a": 3, "cell-b": 3})
            return
        except k8s.ApiException as error:
            if error.status != 409:
                raise
            time.sleep(0.05)
    raise AssertionError(f"could not write the status of {name}")


def test_remove_cell_a_from_50_protectors(
    clusters,
    namespace,
    site,
    generator,
    operation_threads,  # noqa: F811
) -> None:
    core = generator
    names = [f"app-{i:02d}" for i in range(PROTECTORS)]
    for name in names:
        core.create(DEPLOYMENTS, namespace, _deployment(name))
    wait_for(
        lambda: len(core.list(PODPROTECTORS, namespace)["items"]) == PROTECTORS,
        "the generator to create 50 protectors",
    )
    protector_names = [f"deployment-{name}" for name in names]  # the generator's naming
    for name in protector_names:
        _write_cells(clusters.api("core"), namespace, name)

    api = site["api"]
    # The table comes from the console's own Informer cache.
    listed = wait_for(
        lambda: (
            body := api.get("/api/v1/podprotectors/", {"cell": "cell-a", "page_size": 100}).json()
        )
        and body.get("count") == PROTECTORS
        and body,
        "the console cache to see cell-a in every protector",
    )
    assert {r["name"] for r in listed["results"]} == set(protector_names)
    assert {r["source_name"] for r in listed["results"]} == set(names)

    detail = api.get(f"/api/v1/podprotectors/{namespace}/{protector_names[0]}/").json()
    assert detail["source"]["found"] is True and detail["source"]["replicas"] == 6
    assert [c["cellID"] for c in detail["status"]["cells"]] == ["cell-a", "cell-b"]
    assert detail["events"]["error"] is None

    dry = api.post(
        "/api/v1/cells/cell-a/remove-from-protectors/",
        {"reason": "cell-a decommissioned", "dry_run": True},
        format="json",
    ).json()
    assert dry["result"]["annotated"] == PROTECTORS
    assert all(
        constants.ANNOTATION_REMOVE_CELL_ONCE not in (p["metadata"].get("annotations") or {})
        for p in core.list(PODPROTECTORS, namespace)["items"]
    )

    operation = finished_operation(
        api,
        api.post(
            "/api/v1/cells/cell-a/remove-from-protectors/",
            {"reason": "cell-a decommissioned"},
            format="json",
        ),
    )
    assert operation["state"] == "succeeded", operation
    assert (operation["total"], operation["done"], operation["failed"]) == (PROTECTORS, 50, 0)
    result = operation["result"]
    assert (result["matched"], result["annotated"], result["failed"]) == (PROTECTORS, 50, 0)
    record = api.get(f"/api/v1/audit/{operation['audit_id']}/").json()
    assert (record["action"], record["outcome"]) == ("remove-cell", "succeeded")

    def all_removed() -> bool:
        for ppr in core.list(PODPROTECTORS, namespace)["items"]:
            annotations = ppr["metadata"].get("annotations") or {}
            if constants.ANNOTATION_REMOVE_CELL_ONCE in annotations:
                return False
            cells = [c["cellID"] for c in (ppr.get("status") or {}).get("cells") or []]
            if cells != ["cell-b"]:
                return False
        return True

    wait_for(all_removed, "the generator to drop cell-a from every status", 60)
    for ppr in core.list(PODPROTECTORS, namespace)["items"]:
        assert ppr["status"]["summary"]["aggregatedAvailableReplicas"] == 3

    # Idempotent: nothing left to do.
    again = finished_operation(
        api,
        api.post(
            "/api/v1/cells/cell-a/remove-from-protectors/", {"reason": "again"}, format="json"
        ),
    )
    assert again["result"]["annotated"] == 0
    assert again["result"]["not_in_status"] == PROTECTORS


def test_overview_counts_the_protector_of_a_vanished_workload_as_dangling(
    clusters, namespace, site, generator, monkeypatch
) -> None:
    clusters.require_sandbox("the sandbox's sandboxForce delete (gone as if etcd lost it)")
    # Fresh protectors are given a grace period (their workload may lag in our watch); these
    # are known to be settled.
    monkeypatch.setattr(cache_module, "DANGLING_GRACE_SECONDS", 0.0)
    core = generator
    for name in ("kept", "lost"):
        core.create(DEPLOYMENTS, namespace, _deployment(name))
    api = site["api"]

    def counts() -> dict:
        return api.get("/api/v1/overview/").json()["counts"] or {}

    wait_for(
        lambda: (c := counts()).get("protectors") == 2
        and c["dangling_complete"]
        and c["dangling"] == 0,
        "the console to see both protectors and their workloads",
    )
    # Sandbox-only backdoor: the Deployment vanishes as if etcd lost it (no deletionTimestamp).
    core.request("DELETE", DEPLOYMENTS.path(namespace, "lost"), query={"sandboxForce": "true"})
    lost = wait_for(lambda: (c := counts())["dangling"] == 1 and c, "the protector to dangle")
    assert lost["dangling_protectors"] == [f"{namespace}/deployment-lost"]
    assert lost["protectors"] == 2  # the generator keeps it: it still protects the pods
    browser = Client()
    browser.force_login(User.objects.get(username="oscar"))
    page = browser.get("/").content.decode()
    assert f'href="/protectors/{namespace}/deployment-lost/"' in page

    core.create(DEPLOYMENTS, namespace, _deployment("lost"))
    wait_for(lambda: counts()["dangling"] == 0, "the workload's return to end the dangling")


def test_disable_and_reenable_the_webhook_in_cell_a(clusters, site) -> None:
    cell_a = KubeClient.from_access(ClusterAccess(kubeconfig=site["kubeconfigs"]["cell-a"]))
    cell_b = KubeClient.from_access(ClusterAccess(kubeconfig=site["kubeconfigs"]["cell-b"]))
    registrations = {}
    for cell_id, kube in (("cell-a", cell_a), ("cell-b", cell_b)):
        obj = render_webhook_configuration(site["config"], cell_id)
        obj["webhooks"][0]["objectSelector"] = copy.deepcopy(CUSTOM_SELECTOR)
        with contextlib.suppress(KubeError):  # left over from an earlier run
            kube.delete(VALIDATING_WEBHOOKS, None, obj["metadata"]["name"])
        registrations[cell_id] = kube.create(VALIDATING_WEBHOOKS, None, obj)
    name = registrations["cell-a"]["metadata"]["name"]
    api = site["api"]
    try:
        response = api.post("/api/v1/webhook/cell-a/disable/", {"reason": "webhook storm"})
        assert response.status_code == 200, response.content
        stored = cell_a.get(VALIDATING_WEBHOOKS, None, name)
        assert stored["webhooks"][0]["objectSelector"] == NEVER_MATCHING_SELECTOR
        saved = json.loads(stored["metadata"]["annotations"][SAVED_ANNOTATION])
        assert saved["selectors"] == {name: CUSTOM_SELECTOR}
        # Everything else about the registration is untouched.
        for key in ("rules", "failurePolicy", "clientConfig", "namespaceSelector"):
            assert stored["webhooks"][0][key] == registrations["cell-a"]["webhooks"][0][key]
        other = cell_b.get(VALIDATING_WEBHOOKS, None, name)
        assert other["webhooks"][0]["objectSelector"] == CUSTOM_SELECTOR

        states = {s["cell"]: s["state"] for s in api.get("/api/v1/webhook/").json()["cells"]}
        assert states == {"cell-a": "disabled-by-console", "cell-b": "enabled"}

        again = api.post("/api/v1/webhook/cell-a/disable/", {"reason": "again"}).json()
        assert again["result"]["changed"] is False
        assert cell_a.get(VALIDATING_WEBHOOKS, None, name) == stored

        response = api.post("/api/v1/webhook/cell-a/enable/", {"reason": "storm over"})
        assert response.status_code == 200, response.content
        restored = cell_a.get(VALIDATING_WEBHOOKS, None, name)
        assert restored["webhooks"][0]["objectSelector"] == CUSTOM_SELECTOR
        assert SAVED_ANNOTATION not in (restored["metadata"].get("annotations") or {})
        assert restored["webhooks"] == registrations["cell-a"]["webhooks"]
        states = {s["cell"]: s["state"] for s in api.get("/api/v1/webhook/").json()["cells"]}
        assert states == {"cell-a": "enabled", "cell-b": "enabled"}
    finally:
        for kube in (cell_a, cell_b):
            kube.delete(VALIDATING_WEBHOOKS, None, name)


# -- removal over generated, hand-made and dangling protectors ---------------------------------

MIXED_RUN_LABEL = "podseidon-test/mix"


@pytest.fixture
def other_namespace(clusters) -> Iterator[str]:
    """A namespace no generator watches: removals there stay pending."""
    name = f"console-other-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(clusters.api("core"))
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name


def _hand_made(api: k8s.ApiClient, namespace: str, name: str, run: str, cells: dict) -> None:
    create_protector(api, namespace, name, 1, {"app": name})
    k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
        "podseidon.kubewharf.io",
        "v1alpha1",
        namespace,
        "podprotectors",
        name,
        {"metadata": {"labels": {MIXED_RUN_LABEL: run}}},
    )
    write_aggregation(api, namespace, name, cells)


def test_removal_over_50_mixed_protectors_reports_exact_counts(
    clusters,
    namespace,
    other_namespace,
    site,
    generator,
    settings,
    operation_threads,  # noqa: F811
) -> None:
    """20 generated, 10 dangling (hand-made where the sandbox's force deletion is unavailable),
    10 hand-made, 5 without cell-a, all in the generator's namespace; 5 hand-made with cell-a
    in a namespace no generator watches. Exactly 40 lose cell-a; 5 stay pending, by name."""
    core = generator
    api = clusters.api("core")
    run = uuid.uuid4().hex[:8]
    # The console sees every namespace here (the selection is the label of this run).
    settings.PODSEIDON = parse_config(
        {**site["config"].model_dump(), "core": {"kubeconfig": site["kubeconfigs"]["core"]}}
    )
    settings.PODSEIDON_REMOVAL_CONFIRM_SECONDS = 10
    cluster_clients.reset()

    generated = [f"gen-{i:02d}" for i in range(20)]
    dangling = [f"lost-{i:02d}" for i in range(10)]
    for name in generated + dangling:
        core.create(DEPLOYMENTS, namespace, _deployment(name))
    wait_for(
        lambda: len(core.list(PODPROTECTORS, namespace)["items"]) == 30,
        "the generator to create 30 protectors",
    )
    for name in generated + dangling:
        ppr = f"deployment-{name}"
        core.patch(PODPROTECTORS, namespace, ppr, {"metadata": {"labels": {MIXED_RUN_LABEL: run}}})
        _write_cells(api, namespace, ppr)
    if clusters.is_sandbox:
        for name in dangling:  # gone as if etcd lost them: their protectors dangle
            core.request(
                "DELETE", DEPLOYMENTS.path(namespace, name), query={"sandboxForce": "true"}
            )
    for i in range(10):
        _hand_made(api, namespace, f"hand-{i:02d}", run, {"cell-a": 2, "cell-b": 2})
    for i in range(5):
        _hand_made(api, namespace, f"only-b-{i}", run, {"cell-b": 2})
    unwatched = [f"elsewhere-{i}" for i in range(5)]
    for name in unwatched:
        _hand_made(api, other_namespace, name, run, {"cell-a": 1})

    operation = finished_operation(
        site["api"],
        site["api"].post(
            "/api/v1/cells/cell-a/remove-from-protectors/",
            {"reason": "cell-a lost", "label_selector": f"{MIXED_RUN_LABEL}={run}"},
            format="json",
        ),
        timeout=60,
    )
    result = operation["result"]
    counts = {k: result[k] for k in ("matched", "annotated", "not_in_status", "failed")}
    assert counts == {"matched": 50, "annotated": 45, "not_in_status": 5, "failed": 0}
    assert (result["removed"], result["pending"]) == (40, 5), operation["message"]
    assert operation["state"] == "partial"
    assert sorted(p["protector"] for p in result["still_pending"]) == [
        f"{other_namespace}/{name}" for name in unwatched
    ]
    assert all("not processed yet" in p["why"] for p in result["still_pending"])
    assert operation["counts"]["removed"] == 40 and operation["counts"]["pending"] == 5

    # What the counts say is what the cluster holds.
    watched = core.list(PODPROTECTORS, namespace, label_selector=f"{MIXED_RUN_LABEL}={run}")
    for ppr in watched["items"]:
        cells = [c["cellID"] for c in ppr["status"]["cells"]]
        assert cells == ["cell-b"], (ppr["metadata"]["name"], cells)
    for name in unwatched:
        ppr = core.get(PODPROTECTORS, other_namespace, name)
        assert [c["cellID"] for c in ppr["status"]["cells"]] == ["cell-a"]

    # One audit record, with the same counts; the page shows them.
    records = site["api"].get("/api/v1/audit/", {"action": "remove-cell"}).json()["results"]
    assert [(r["outcome"], r["result"]["removed"], r["result"]["pending"]) for r in records] == [
        ("partial", 40, 5)
    ]
    browser = Client()
    browser.force_login(User.objects.get(username="oscar"))
    page = browser.get(f"/operations/{operation['id']}/").content.decode()
    assert "<th>Removed from status</th><td>40</td>" in page
    assert "<th>Still pending</th><td>5</td>" in page
    assert f"{other_namespace}/elsewhere-0" in page
    # Hand-made and dangling ones among them lose the annotation too (no workload event needed;
    # it goes right after the status write).
    wait_for(
        lambda: not any(
            constants.ANNOTATION_REMOVE_CELL_ONCE in (p["metadata"].get("annotations") or {})
            for p in core.list(PODPROTECTORS, namespace, label_selector=f"{MIXED_RUN_LABEL}={run}")[
                "items"
            ]
        ),
        "every annotation in the generator's namespace to be processed",
        10,
    )
    # The generator's finalizers on the dangling ones are released by the fixture's cleanup of
    # deployments only for live workloads; drop them here.
    if clusters.is_sandbox:
        for name in dangling:
            core.patch(
                PODPROTECTORS, namespace, f"deployment-{name}", {"metadata": {"finalizers": None}}
            )


# -- the race with the aggregator --------------------------------------------------------------


def test_a_paused_aggregator_keeps_the_removed_cell_removed(
    clusters,
    namespace,
    site,
    generator,
    settings,
    operation_threads,  # noqa: F811
) -> None:
    """The removal form's "pause the aggregator first": the real controller runtime (Redis
    lease, switches from the database) runs cell-a's aggregator; the removal pauses it, drops
    cell-a, and new pod events in cell-a do not bring it back. Resuming does: that is the race
    the pause closes."""
    if not clusters.is_sandbox:
        pytest.skip("pods made ready by writing their status need the sandbox (no kubelet)")
    import redis
    from django.db import connections

    from podseidon_site.config import CellConfig
    from workers.aggregator.controller import AggregatorController
    from workers.keys import RedisKeys
    from workers.leases import Timings
    from workers.runtime import ControllerManager
    from workers.switches import load_paused

    from .webhook_env import ready_pod

    store = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    try:
        store.ping()
    except redis.RedisError as error:
        pytest.skip(f"the controller runtime needs Redis at {settings.REDIS_URL}: {error}")
    prefix = f"it-race-{uuid.uuid4().hex[:8]}"
    settings.PODSEIDON_REDIS_PREFIX = prefix

    cell_api = k8s.CoreV1Api(clusters.api("cell-a"))
    cell_api.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    for i in range(3):
        ready_pod(cell_api, namespace, f"web-{i}", {"app": "web"})
    create_protector(clusters.api("core"), namespace, "web", 1, {"app": "web"})

    kubeconfigs = site["kubeconfigs"]
    config = PodseidonConfig(
        core=ClusterAccess(kubeconfig=kubeconfigs["core"], namespace=namespace),
        cells=[CellConfig(id="cell-a", kubeconfig=kubeconfigs["cell-a"])],
    )
    shared = connections["default"]  # the test's database, shared as operation threads do

    def switches() -> dict[str, bool]:
        connections["default"] = shared
        return load_paused()

    manager = ControllerManager(
        config,
        [AggregatorController(config, "cell-a")],
        client=store,
        keys=RedisKeys(prefix),
        switch_loader=switches,
        timings=Timings(lease_duration=6.0, renew_deadline=4.0, retry_period=0.5),
    )
    core = generator

    def cell_a_available() -> int | None:
        status = core.get(PODPROTECTORS, namespace, "web").get("status") or {}
        for cell in status.get("cells") or []:
            if cell["cellID"] == "cell-a":
                return cell["aggregation"].get("availableReplicas", 0)
        return None

    manager.start()
    try:
        wait_for(lambda: cell_a_available() == 3, "the aggregator to count cell-a's pods", 20)
        operation = finished_operation(
            site["api"],
            site["api"].post(
                "/api/v1/cells/cell-a/remove-from-protectors/",
                {"reason": "cell-a lost", "pause_aggregator": True},
                format="json",
            ),
            timeout=60,
        )
        assert operation["state"] == "succeeded", operation["message"]
        assert (operation["result"]["removed"], operation["result"]["pending"]) == (1, 0)
        assert operation["result"]["aggregator"]["stopped"] is True
        assert manager.running() == {"aggregator/cell-a": False}

        # Pod events in cell-a: a running aggregator would write cell-a back now.
        ready_pod(cell_api, namespace, "web-3", {"app": "web"})
        cell_api.delete_namespaced_pod("web-0", namespace)
        time.sleep(3)
        assert cell_a_available() is None, "the paused aggregator wrote cell-a back"

        resumed = site["api"].post(
            "/api/v1/cells/cell-a/aggregator/resume/", {"reason": "cell-a back"}, format="json"
        )
        assert resumed.status_code == 200, resumed.content
        wait_for(lambda: cell_a_available() == 3, "the resumed aggregator to count cell-a", 20)
    finally:
        manager.stop(timeout=10)
        for key in store.scan_iter(f"{prefix}:*"):
            store.delete(key)
        store.close()

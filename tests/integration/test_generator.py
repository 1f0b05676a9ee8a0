"""The generator controller against the `core` cluster (sandbox, or real clusters).

Each test runs its own GeneratorController in-process, restricted to the test's namespace
(``core.namespace``), with a fence that is always valid: no Redis, no Celery. The sandbox
fixture runs no built-in controllers, so no garbage collector: a deleted Deployment stays
(terminating) until the generator removes its finalizer, which is the behaviour under test.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s
from prometheus_client import REGISTRY

from podseidon_site.config import ClusterAccess, GeneratorConfig, PodseidonConfig
from protectors import constants
from protectors.kube.client import DEPLOYMENTS, PODPROTECTORS, STATEFULSETS, KubeClient, KubeError
from protectors.kube.events import EVENTS
from workers.controller import AlwaysValidFence, ControllerContext
from workers.generator.controller import GeneratorController
from workers.generator.protector import FINALIZER

from .conftest import kubectl_path
from .webhook_env import create_protector, install_crd

pytestmark = pytest.mark.integration

T = TypeVar("T")
PROTECT = {constants.LABEL_PROTECT: "true"}
BOTH_KINDS = {
    "deployments.apps": constants.DEFAULT_PROTECTION_SELECTOR,
    "statefulsets.apps": constants.DEFAULT_PROTECTION_SELECTOR,
}


def wait_for(fn: Callable[[], T], what: str, timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.03)


@dataclass
class Generator:
    controller: GeneratorController
    context: ControllerContext
    kube: KubeClient
    namespace: str
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- reads ---------------------------------------------------------------------------

    def get(self, resource, name: str) -> dict[str, Any] | None:
        try:
            return self.kube.get(resource, self.namespace, name)
        except KubeError as error:
            if error.is_not_found:
                return None
            raise

    def protector(self, name: str) -> dict[str, Any] | None:
        return self.get(PODPROTECTORS, name)

    def wait_protector(
        self, name: str, check: Callable[[dict[str, Any]], bool] = lambda p: True
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            ppr = self.protector(name)
            return ppr if ppr is not None and check(ppr) else None

        return wait_for(found, f"PodProtector {name}")

    def wait_gone(self, resource, name: str) -> None:
        wait_for(lambda: self.get(resource, name) is None, f"{resource.plural}/{name} to go")

    # -- writes ----------------------------------------------------------------------------

    def create_workload(
        self,
        resource,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        replicas: int = 4,
        max_unavailable: Any = None,
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        }
        if resource is DEPLOYMENTS:
            kind = "Deployment"
            if max_unavailable is not None:
                spec["strategy"] = {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": max_unavailable},
                }
        else:
            kind = "StatefulSet"
            spec["serviceName"] = name
            if max_unavailable is not None:
                spec["updateStrategy"] = {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": max_unavailable},
                }
        body = {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {"name": name, "labels": PROTECT if labels is None else labels},
            "spec": spec,
        }
        return self.kube.create(resource, self.namespace, body)

    def patch(self, resource, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.kube.patch(resource, self.namespace, name, patch)


def _reconciles(error: str) -> float:
    return REGISTRY.get_sample_value("generator_reconcile_count", {"error": error}) or 0.0


@pytest.fixture(scope="module")
def core_kube(clusters) -> KubeClient:
    install_crd(clusters.api("core"))
    return KubeClient.from_access(ClusterAccess(kubeconfig=str(clusters.kubeconfigs["core"])))


@pytest.fixture
def start_generator(clusters, core_kube) -> Iterator[Callable[..., Generator]]:
    namespace = f"gen-{uuid.uuid4().hex[:8]}"
    core_api = k8s.CoreV1Api(clusters.api("core"))
    core_api.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    started: list[Generator] = []

    def start(**generator_options: Any) -> Generator:
        options = {"protection_selectors": BOTH_KINDS, "workers": 2, **generator_options}
        config = PodseidonConfig(
            core=ClusterAccess(kubeconfig=str(clusters.kubeconfigs["core"]), namespace=namespace),
            generator=GeneratorConfig(**options),
        )
        controller = GeneratorController(config)
        generator = Generator(controller, None, core_kube, namespace)  # type: ignore[arg-type]

        def report(error: str | None) -> None:
            if error is not None:
                with generator.lock:
                    generator.errors.append(error)

        generator.context = ControllerContext(
            config=config,
            core=core_kube,
            cells={},
            fence=AlwaysValidFence(),
            report=report,
        )
        controller.start(generator.context)
        assert controller.wait_synced(10)
        started.append(generator)
        return generator

    yield start

    # Clean up while the generator still runs, so the finalizers come off the normal way.
    for generator in started:
        if not generator.controller.running:
            continue
        for resource in (DEPLOYMENTS, STATEFULSETS):
            for item in core_kube.list(resource, namespace)["items"]:
                core_kube.delete(resource, namespace, item["metadata"]["name"])
        wait_for(
            lambda: not any(
                core_kube.list(r, namespace)["items"] for r in (DEPLOYMENTS, STATEFULSETS)
            ),
            "workloads to be released",
        )
        for ppr in core_kube.list(PODPROTECTORS, namespace)["items"]:  # dangling ones
            name = ppr["metadata"]["name"]
            core_kube.patch(PODPROTECTORS, namespace, name, {"metadata": {"finalizers": None}})
            core_kube.delete(PODPROTECTORS, namespace, name)
        generator.controller.stop()
        assert generator.errors == []
    core_api.delete_namespace(namespace)


# --- the Deployment plugin ----------------------------------------------------------------


def test_labelled_deployment_gets_its_protector(start_generator) -> None:
    gen = start_generator()
    created = gen.create_workload(DEPLOYMENTS, "web", replicas=4)
    gen.create_workload(DEPLOYMENTS, "plain", labels={"app": "plain"})

    ppr = gen.wait_protector("deployment-web")
    metadata = ppr["metadata"]
    assert ppr["spec"] == {
        "minAvailable": 3,  # 4 - ceil(25% of 4)
        "minReadySeconds": 0,
        "selector": {"matchLabels": {"app": "web"}},
    }
    assert metadata["labels"] == {
        constants.LABEL_SOURCE_NAME: "web",
        constants.LABEL_SOURCE_KIND: "Deployment",
        constants.LABEL_SOURCE_GROUP: "apps",
        constants.LABEL_SOURCE_RESOURCE: "deployments",
    }
    assert metadata["finalizers"] == [FINALIZER]
    (owner,) = metadata["ownerReferences"]
    assert owner["apiVersion"] == "apps/v1"
    assert owner["kind"] == "Deployment"
    assert owner["name"] == "web"
    assert owner["uid"] == created["metadata"]["uid"]
    assert owner["controller"] is True
    assert not owner.get("blockOwnerDeletion")

    deployment = gen.get(DEPLOYMENTS, "web")
    assert FINALIZER in deployment["metadata"]["finalizers"]
    # The unlabelled Deployment is left alone.
    assert gen.protector("deployment-plain") is None
    assert not (gen.get(DEPLOYMENTS, "plain")["metadata"].get("finalizers") or [])


def test_scaling_and_max_unavailable_update_min_available(start_generator) -> None:
    gen = start_generator()
    gen.create_workload(DEPLOYMENTS, "web", replicas=4)
    gen.wait_protector("deployment-web", lambda p: p["spec"]["minAvailable"] == 3)
    successes, failures = _reconciles("false"), _reconciles("true")

    gen.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 6}})  # 6 - ceil(1.5)
    gen.wait_protector("deployment-web", lambda p: p["spec"]["minAvailable"] == 4)

    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    gen.patch(DEPLOYMENTS, "web", {"spec": {"strategy": strategy}})
    gen.wait_protector("deployment-web", lambda p: p["spec"]["minAvailable"] == 5)

    strategy["rollingUpdate"]["maxUnavailable"] = "50%"
    gen.patch(DEPLOYMENTS, "web", {"spec": {"strategy": strategy, "minReadySeconds": 7}})
    ppr = gen.wait_protector("deployment-web", lambda p: p["spec"]["minAvailable"] == 3)
    assert ppr["spec"]["minReadySeconds"] == 7
    assert _reconciles("false") > successes
    # The generator waits for its caches to show its own writes: no self-inflicted conflicts.
    assert _reconciles("true") == failures


def test_unlabelling_deletes_the_protector_and_both_finalizers(start_generator) -> None:
    gen = start_generator()
    gen.create_workload(DEPLOYMENTS, "web")
    gen.wait_protector("deployment-web")

    gen.patch(DEPLOYMENTS, "web", {"metadata": {"labels": {constants.LABEL_PROTECT: None}}})
    gen.wait_gone(PODPROTECTORS, "deployment-web")
    wait_for(
        lambda: FINALIZER not in (gen.get(DEPLOYMENTS, "web")["metadata"].get("finalizers") or []),
        "the Deployment's finalizer to go",
    )
    # Labelled again: protected again.
    gen.patch(DEPLOYMENTS, "web", {"metadata": {"labels": PROTECT}})
    gen.wait_protector("deployment-web")


def test_deleting_the_deployment_deletes_the_protector(start_generator) -> None:
    gen = start_generator()
    gen.create_workload(DEPLOYMENTS, "web")
    gen.wait_protector("deployment-web")

    gen.kube.delete(DEPLOYMENTS, gen.namespace, "web")
    gen.wait_gone(PODPROTECTORS, "deployment-web")
    gen.wait_gone(DEPLOYMENTS, "web")  # only once the generator released its finalizer
    assert gen.controller.dangling() == []


def test_protect_non_zero_keeps_a_terminating_deployment_protected(start_generator) -> None:
    gen = start_generator(protect_non_zero=True)
    gen.create_workload(DEPLOYMENTS, "web", replicas=2)
    gen.wait_protector("deployment-web")

    gen.kube.delete(DEPLOYMENTS, gen.namespace, "web")
    wait_for(
        lambda: gen.get(DEPLOYMENTS, "web")["metadata"].get("deletionTimestamp"), "terminating"
    )
    time.sleep(0.5)
    assert gen.protector("deployment-web") is not None

    gen.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 0}})
    gen.wait_gone(PODPROTECTORS, "deployment-web")
    gen.wait_gone(DEPLOYMENTS, "web")


def test_vanished_deployment_leaves_a_dangling_protector(clusters, start_generator) -> None:
    clusters.require_sandbox("the sandbox's sandboxForce delete (gone as if etcd lost it)")
    gen = start_generator()
    gen.create_workload(DEPLOYMENTS, "web")
    gen.wait_protector("deployment-web")
    key = ("deployments.apps", gen.namespace, "web")

    # Sandbox-only backdoor: the object vanishes as if etcd lost it (no deletionTimestamp).
    gen.kube.request(
        "DELETE",
        DEPLOYMENTS.path(gen.namespace, "web"),
        query={"sandboxForce": "true"},
    )
    assert gen.get(DEPLOYMENTS, "web") is None
    wait_for(lambda: gen.controller.dangling() == [key], "the protector to be reported dangling")
    assert REGISTRY.get_sample_value("generator_dangling_protectors") == 1
    time.sleep(0.3)
    ppr = gen.protector("deployment-web")
    assert ppr is not None and ppr["metadata"]["finalizers"] == [FINALIZER]
    assert not ppr["metadata"].get("deletionTimestamp")

    # A new leader (stop + start) finds it dangling too, without having seen the DELETE.
    gen.controller.stop()
    assert REGISTRY.get_sample_value("generator_dangling_protectors") == 0
    gen.controller.start(gen.context)
    assert gen.controller.wait_synced(10)
    wait_for(lambda: gen.controller.dangling() == [key], "dangling after a restart")
    assert REGISTRY.get_sample_value("generator_dangling_protectors") == 1

    # The workload comes back: no longer dangling, and the protector follows the new owner.
    recreated = gen.create_workload(DEPLOYMENTS, "web", replicas=8)
    wait_for(lambda: gen.controller.dangling() == [], "dangling to end")
    assert REGISTRY.get_sample_value("generator_dangling_protectors") == 0
    ppr = gen.wait_protector(
        "deployment-web",
        lambda p: p["metadata"]["ownerReferences"][0]["uid"] == recreated["metadata"]["uid"],
    )
    assert ppr["spec"]["minAvailable"] == 6


def test_remove_cell_once_drops_the_cells_and_the_annotation(start_generator) -> None:
    gen = start_generator()
    gen.create_workload(DEPLOYMENTS, "web")
    ppr = gen.wait_protector("deployment-web")

    def cell(cell_id: str, available: int) -> dict[str, Any]:
        return {
            "cellID": cell_id,
            "aggregation": {"totalReplicas": available, "availableReplicas": available},
            "admissionHistory": {"buckets": []},
        }

    ppr["status"] = {
        "cells": [cell("cell-a", 1), cell("cell-b", 2), cell("cell-c", 4)],
        "summary": {
            "totalReplicas": 7,
            "aggregatedAvailableReplicas": 7,
            "estimatedAvailableReplicas": 7,
        },
    }
    gen.kube.replace_status(PODPROTECTORS, gen.namespace, "deployment-web", ppr)

    annotation = {constants.ANNOTATION_REMOVE_CELL_ONCE: "cell-a, cell-c,cell-x"}
    gen.patch(PODPROTECTORS, "deployment-web", {"metadata": {"annotations": annotation}})
    ppr = gen.wait_protector(
        "deployment-web",
        lambda p: constants.ANNOTATION_REMOVE_CELL_ONCE
        not in (p["metadata"].get("annotations") or {}),
    )
    assert [c["cellID"] for c in ppr["status"]["cells"]] == ["cell-b"]
    assert ppr["status"]["summary"]["aggregatedAvailableReplicas"] == 2
    assert ppr["spec"]["minAvailable"] == 3  # the spec is untouched


# --- remove-cell-once on PodProtectors the generator did not make ----------------------------

REMOVAL_DEADLINE = 5.0  # seconds from the annotation to a status without the cell


def _cell(cell_id: str, available: int) -> dict[str, Any]:
    return {
        "cellID": cell_id,
        "aggregation": {"totalReplicas": available, "availableReplicas": available},
        "admissionHistory": {"buckets": []},
    }


def _with_cells(gen: Generator, name: str, cells: dict[str, int]) -> None:
    ppr = gen.protector(name)
    assert ppr is not None
    total = sum(cells.values())
    ppr["status"] = {
        "cells": [_cell(c, n) for c, n in cells.items()],
        "summary": {
            "totalReplicas": total,
            "aggregatedAvailableReplicas": total,
            "estimatedAvailableReplicas": total,
        },
    }
    gen.kube.replace_status(PODPROTECTORS, gen.namespace, name, ppr)


def _cells_of(gen: Generator, name: str) -> list[str]:
    ppr = gen.protector(name) or {}
    return [c["cellID"] for c in (ppr.get("status") or {}).get("cells") or []]


def _removed_within_deadline(gen: Generator, name: str, cell: str, annotated_at: float) -> dict:
    """The protector once its status no longer holds ``cell`` (the status, not the annotation,
    is what the webhook judges by), and not later than REMOVAL_DEADLINE after annotating."""
    wait_for(lambda: cell not in _cells_of(gen, name), f"{cell} to leave {name}'s status", 10)
    elapsed = time.monotonic() - annotated_at
    assert elapsed < REMOVAL_DEADLINE, f"{name}: {cell} left status only after {elapsed:.1f}s"
    ppr = gen.protector(name)
    assert ppr is not None
    return ppr


def _events_of(gen: Generator, name: str) -> list[tuple[str, str]]:
    assert gen.controller.flush_events(5)
    listing = gen.kube.list(EVENTS, gen.namespace, field_selector=f"involvedObject.name={name}")[
        "items"
    ]
    return sorted((e["reason"], e["message"]) for e in listing)


def test_remove_cell_once_on_a_hand_made_protector(clusters, start_generator) -> None:
    # No workload kind to generate for: the generator still carries out remove-cell-once.
    gen = start_generator(protection_selectors={})
    create_protector(clusters.api("core"), gen.namespace, "handmade", 2, {"app": "pay"})
    _with_cells(gen, "handmade", {"cell-a": 3, "cell-b": 3})

    # The runbook's own command, with the real kubectl where there is one.
    annotated_at = time.monotonic()
    if kubectl_path() is not None:
        subprocess.run(
            [
                kubectl_path() or "kubectl",
                "--kubeconfig",
                str(clusters.kubeconfigs["core"]),
                "-n",
                gen.namespace,
                "annotate",
                "ppr",
                "handmade",
                "--overwrite",
                f"{constants.ANNOTATION_REMOVE_CELL_ONCE}=cell-b",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
    else:
        gen.patch(
            PODPROTECTORS,
            "handmade",
            {"metadata": {"annotations": {constants.ANNOTATION_REMOVE_CELL_ONCE: "cell-b"}}},
        )
    ppr = _removed_within_deadline(gen, "handmade", "cell-b", annotated_at)
    assert [c["cellID"] for c in ppr["status"]["cells"]] == ["cell-a"]
    assert ppr["status"]["summary"]["aggregatedAvailableReplicas"] == 3
    wait_for(
        lambda: constants.ANNOTATION_REMOVE_CELL_ONCE
        not in ((gen.protector("handmade") or {})["metadata"].get("annotations") or {}),
        "the annotation to go",
    )
    reasons = [reason for reason, _ in _events_of(gen, "handmade")]
    assert reasons == ["CellRemoved", "RemoveCellOnceProcessed"]
    assert REGISTRY.get_sample_value("generator_remove_cell_once_total", {"result": "removed"})
    if kubectl_path() is not None:
        described = subprocess.run(
            [
                kubectl_path() or "kubectl",
                "--kubeconfig",
                str(clusters.kubeconfigs["core"]),
                "-n",
                gen.namespace,
                "describe",
                "ppr",
                "handmade",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        assert "CellRemoved" in described and "Removed cell(s) cell-b from status" in described
        assert "RemoveCellOnceProcessed" in described


def test_remove_cell_once_on_a_dangling_protector(clusters, start_generator) -> None:
    if not clusters.is_sandbox:
        pytest.skip("making a workload vanish without a deletion needs the sandbox's sandboxForce")
    gen = start_generator()
    gen.create_workload(DEPLOYMENTS, "lost")
    gen.wait_protector("deployment-lost")
    _with_cells(gen, "deployment-lost", {"cell-a": 2, "cell-b": 2})
    # Gone as if etcd lost it: no deletionTimestamp, so the generator keeps its protector.
    gen.kube.request(
        "DELETE", DEPLOYMENTS.path(gen.namespace, "lost"), query={"sandboxForce": "true"}
    )
    wait_for(lambda: gen.controller.dangling(), "the protector to dangle")

    annotated_at = time.monotonic()
    gen.patch(
        PODPROTECTORS,
        "deployment-lost",
        {"metadata": {"annotations": {constants.ANNOTATION_REMOVE_CELL_ONCE: "cell-a"}}},
    )
    ppr = _removed_within_deadline(gen, "deployment-lost", "cell-a", annotated_at)
    assert ppr["status"]["summary"]["aggregatedAvailableReplicas"] == 2
    assert gen.controller.dangling() == [("deployments.apps", gen.namespace, "lost")]


# --- the StatefulSet plugin -------------------------------------------------------------------


def test_statefulset_plugin(start_generator) -> None:
    gen = start_generator()
    created = gen.create_workload(STATEFULSETS, "db", replicas=5)
    gen.create_workload(STATEFULSETS, "cache", replicas=5, max_unavailable="40%")
    gen.create_workload(STATEFULSETS, "plain", labels={})

    ppr = gen.wait_protector("statefulset-db")
    assert ppr["spec"]["minAvailable"] == 4  # 5 - 1 (default maxUnavailable)
    assert ppr["metadata"]["labels"][constants.LABEL_SOURCE_KIND] == "StatefulSet"
    assert ppr["metadata"]["labels"][constants.LABEL_SOURCE_RESOURCE] == "statefulsets"
    owner = ppr["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("StatefulSet", created["metadata"]["uid"])
    cache = gen.wait_protector("statefulset-cache")
    assert cache["spec"]["minAvailable"] == 3  # 5 - ceil(40% of 5)
    assert gen.protector("statefulset-plain") is None

    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 3}}
    gen.patch(STATEFULSETS, "db", {"spec": {"updateStrategy": strategy}})
    gen.wait_protector("statefulset-db", lambda p: p["spec"]["minAvailable"] == 2)

    gen.kube.delete(STATEFULSETS, gen.namespace, "db")
    gen.wait_gone(PODPROTECTORS, "statefulset-db")
    gen.wait_gone(STATEFULSETS, "db")


def test_statefulsets_are_ignored_unless_enabled(start_generator) -> None:
    gen = start_generator(protection_selectors={"deployments.apps": "app=web"})
    gen.create_workload(STATEFULSETS, "web")
    gen.create_workload(DEPLOYMENTS, "web", labels={"app": "web"})
    gen.wait_protector("deployment-web")
    assert gen.protector("statefulset-web") is None

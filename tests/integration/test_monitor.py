"""The monitor's global gauges follow PodProtectors created, updated and deleted in the core
cluster (sandbox or real). The monitor runs in-process, restricted to the test's namespace so
other tests' protectors do not move the figures."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client as k8s
from prometheus_client import REGISTRY

from podseidon_site.config import ClusterAccess, PodseidonConfig
from protectors.kube.client import KubeClient
from tests.integration.webhook_env import (
    GROUP,
    PLURAL,
    VERSION,
    create_protector,
    install_crd,
    write_aggregation,
)
from workers.controller import AlwaysValidFence, ControllerContext
from workers.monitor.controller import MonitorController
from workers.monitor.gauges import MonitorGauges

pytestmark = pytest.mark.integration

GAUGES = {
    "protectors": "monitor_protectors",
    "min_available": "monitor_min_available",
    "aggregated_available": "monitor_aggregated_available",
    "estimated_available": "monitor_estimated_available",
    "max_latency_millis": "monitor_max_latency_millis",
    "at_risk": "monitor_protectors_at_risk",
}


def exported() -> MonitorGauges:
    return MonitorGauges(
        **{field: int(REGISTRY.get_sample_value(name) or 0) for field, name in GAUGES.items()}
    )


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what} (gauges: {exported()})")
        time.sleep(0.03)


@pytest.fixture
def monitor_env(clusters) -> Iterator[tuple[str, MonitorController, k8s.ApiClient]]:
    api = clusters.api("core")
    install_crd(api)
    namespace = f"mon-{uuid.uuid4().hex[:8]}"
    k8s.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    config = PodseidonConfig(
        core=ClusterAccess(kubeconfig=str(clusters.kubeconfigs["core"]), namespace=namespace)
    )
    monitor = MonitorController(config, debounce_seconds=0.1)
    monitor.start(
        ControllerContext(
            config=config,
            core=KubeClient.from_access(config.core),
            cells={},
            fence=AlwaysValidFence(),
        )
    )
    yield namespace, monitor, api
    monitor.stop()
    with contextlib.suppress(k8s.ApiException):
        k8s.CoreV1Api(api).delete_namespace(namespace)


def test_gauges_follow_protectors(monitor_env) -> None:
    namespace, monitor, api = monitor_env
    wait_for(lambda: exported() == MonitorGauges(), 5, "empty namespace: all zero")

    create_protector(api, namespace, "web", 2, {"app": "web"})
    create_protector(api, namespace, "api", 1, {"app": "api"})
    # Not aggregated yet: nothing is available, so both are at risk.
    expected = MonitorGauges(protectors=2, min_available=3, at_risk=2)
    wait_for(lambda: exported() == expected, 3, "two new protectors")
    assert monitor.last == expected

    write_aggregation(api, namespace, "web", {"cell-a": 3, "cell-b": 2})
    write_aggregation(api, namespace, "api", {"cell-a": 1})
    expected = MonitorGauges(2, 3, 6, 6, max_latency_millis=0, at_risk=1)
    wait_for(lambda: exported() == expected, 3, "aggregated status")

    objects = k8s.CustomObjectsApi(api)
    objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "web", {"spec": {"minAvailable": 5}}
    )
    wait_for(lambda: exported() == MonitorGauges(2, 6, 6, 6, at_risk=2), 3, "raised minimum")

    objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "api")
    wait_for(lambda: exported() == MonitorGauges(1, 5, 5, 5, at_risk=1), 3, "one deleted")


def test_stopped_monitor_resets_its_gauges(monitor_env) -> None:
    namespace, monitor, api = monitor_env
    create_protector(api, namespace, "web", 2, {"app": "web"})
    wait_for(lambda: exported().protectors == 1, 3, "one protector")
    monitor.stop()
    assert exported() == MonitorGauges()
    assert not monitor.running

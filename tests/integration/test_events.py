"""Events recorded through the real API (sandbox or real clusters): created in the object's
namespace, an identical one bumps the count, and kubectl describe shows them."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from podseidon_site.config import ClusterAccess
from protectors.kube.client import KubeClient
from protectors.kube.events import EVENTS, EventRecorder

from .conftest import kubectl_path
from .webhook_env import create_protector, install_crd

pytestmark = pytest.mark.integration


@pytest.fixture
def namespace(clusters) -> Iterator[str]:
    install_crd(clusters.api("core"))
    name = f"events-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(clusters.api("core"))
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def test_events_are_created_aggregated_and_described(clusters, namespace) -> None:
    kube = KubeClient.from_access(ClusterAccess(kubeconfig=str(clusters.kubeconfigs["core"])))
    ppr = create_protector(clusters.api("core"), namespace, "web", 1, {"app": "web"})
    recorder = EventRecorder(kube, "podseidon-test", host="test-host")
    try:
        recorder.normal(ppr, "CellRemoved", "Removed cell(s) cell-b from status")
        recorder.normal(ppr, "CellRemoved", "Removed cell(s) cell-b from status")
        recorder.warning(ppr, "Other", "something else")
        assert recorder.flush(10)
    finally:
        recorder.stop()
    items = kube.list(EVENTS, namespace, field_selector="involvedObject.name=web")["items"]
    by_reason = {e["reason"]: e for e in items}
    assert sorted(by_reason) == ["CellRemoved", "Other"]
    removed = by_reason["CellRemoved"]
    assert removed["count"] == 2 and removed["type"] == "Normal"
    assert removed["involvedObject"]["uid"] == ppr["metadata"]["uid"]
    assert removed["source"] == {"component": "podseidon-test", "host": "test-host"}
    assert by_reason["Other"]["type"] == "Warning"
    if kubectl_path() is None:
        return
    described = subprocess.run(
        [
            kubectl_path() or "kubectl",
            "--kubeconfig",
            str(clusters.kubeconfigs["core"]),
            "-n",
            namespace,
            "describe",
            "ppr",
            "web",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    events = described[described.index("Events:") :]
    print(events)
    assert ("CellRemoved" in events and "(x2 over" in events) or "x2" in events, events
    assert "Removed cell(s) cell-b from status" in events and "Other" in events

"""The Event recorder (protectors/kube/events.py): aggregation, rate limiting, and that
recording never blocks nor raises into the caller."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from protectors.kube.client import KubeError
from protectors.kube.events import (
    Bump,
    Correlator,
    Create,
    Drop,
    EventRecorder,
    ObjectReference,
    event_name,
)

PPR = ObjectReference(
    "podseidon.kubewharf.io/v1alpha1", "PodProtector", "web", "shop", "uid-1", "7"
)
VWC = ObjectReference(
    "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "podseidon.kubewharf.io"
)


def test_a_first_event_is_created_in_the_objects_namespace() -> None:
    decision = Correlator("podseidon-generator", "host-1").decide(
        PPR, "Normal", "CellRemoved", "removed cell-b", 1_700_000_000.5
    )
    assert isinstance(decision, Create)
    body = decision.body
    assert decision.namespace == "shop"
    assert body["metadata"]["name"] == event_name(PPR, 1_700_000_000.5)
    assert body["metadata"]["name"].startswith("web.")
    assert body["involvedObject"] == {
        "apiVersion": "podseidon.kubewharf.io/v1alpha1",
        "kind": "PodProtector",
        "name": "web",
        "namespace": "shop",
        "uid": "uid-1",
        "resourceVersion": "7",
    }
    assert (body["type"], body["reason"], body["count"]) == ("Normal", "CellRemoved", 1)
    assert body["source"] == {"component": "podseidon-generator", "host": "host-1"}
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2023-11-14T22:13:20Z"


def test_cluster_scoped_objects_get_their_events_in_default() -> None:
    decision = Correlator("podseidon-console").decide(VWC, "Normal", "Restored", "m", 0.0)
    assert isinstance(decision, Create) and decision.namespace == "default"
    assert "namespace" not in decision.body["involvedObject"]


def test_the_same_event_again_bumps_the_count_of_the_first() -> None:
    correlator = Correlator("c")
    first = correlator.decide(PPR, "Normal", "R", "m", 100.0)
    assert isinstance(first, Create)
    correlator.written(first, 100.0)
    # A newer resourceVersion of the same object is the same object.
    newer = dataclasses.replace(PPR, resource_version="9")
    second = correlator.decide(newer, "Normal", "R", "m", 160.0)
    assert isinstance(second, Bump)
    assert (second.namespace, second.name) == ("shop", first.body["metadata"]["name"])
    assert second.patch == {"count": 2, "lastTimestamp": "1970-01-01T00:02:40Z"}
    correlator.written(second, 160.0)
    third = correlator.decide(PPR, "Normal", "R", "m", 170.0)
    assert isinstance(third, Bump) and third.patch["count"] == 3
    # Another message or reason is another Event.
    assert isinstance(correlator.decide(PPR, "Normal", "R", "other", 171.0), Create)
    # Too old to bump: a new one.
    assert isinstance(correlator.decide(PPR, "Normal", "R", "m", 100.0 + 601), Create)


def test_the_spam_filter_drops_the_excess_per_object_and_refills() -> None:
    correlator = Correlator("c", burst=3, refill_seconds=10.0)
    results = [correlator.decide(PPR, "Normal", "R", f"m{i}", 0.0) for i in range(5)]
    assert [type(r) for r in results] == [Create, Create, Create, Drop, Drop]
    assert results[3] == Drop("rate_limited")
    # Another object has its own bucket.
    other = ObjectReference("v1", "PodProtector", "api", "shop", "uid-2")
    assert isinstance(correlator.decide(other, "Normal", "R", "m", 0.0), Create)
    assert isinstance(correlator.decide(PPR, "Normal", "R", "later", 10.0), Create)
    assert isinstance(correlator.decide(PPR, "Normal", "R", "again", 10.0), Drop)


class Cluster:
    """Records event writes; optionally slow, failing, or forgetting events."""

    def __init__(self, delay: float = 0.0) -> None:
        self.created: list[dict[str, Any]] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []
        self.delay = delay
        self.fail: KubeError | None = None
        self.expired = False
        self.lock = threading.Lock()

    def create(self, resource, namespace, body):
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        with self.lock:
            self.created.append(body)
        return body

    def patch(self, resource, namespace, name, patch):
        if self.expired:
            raise KubeError(404, "NotFound", "events not found")
        with self.lock:
            self.patched.append((name, patch))
        return {}


def test_recording_returns_at_once_while_the_api_is_slow() -> None:
    cluster = Cluster(delay=0.2)
    recorder = EventRecorder(cluster, "c", host="h")  # type: ignore[arg-type]
    started = time.monotonic()
    for index in range(20):
        recorder.normal(PPR, "R", f"message {index}")
    assert time.monotonic() - started < 0.1
    recorder.stop(timeout=0.5)


def test_the_recorder_writes_aggregates_and_survives_failures() -> None:
    cluster = Cluster()
    recorder = EventRecorder(cluster, "c", host="h")  # type: ignore[arg-type]
    recorder.normal(PPR, "CellRemoved", "removed cell-b")
    recorder.normal(PPR, "CellRemoved", "removed cell-b")
    assert recorder.flush(5)
    assert len(cluster.created) == 1 and cluster.patched[0][1]["count"] == 2
    cluster.fail = KubeError(0, "Unreachable", "connection refused")
    recorder.warning(PPR, "Other", "lost")  # counted as failed, never raised
    assert recorder.flush(5)
    cluster.fail = None
    cluster.expired = True  # the aggregated Event expired: a new one is created
    recorder.normal(PPR, "CellRemoved", "removed cell-b")
    assert recorder.flush(5)
    assert len(cluster.created) == 2 and cluster.created[1]["count"] == 1
    recorder.stop()
    recorder.normal(PPR, "After", "stopped")  # ignored after stop
    assert len(cluster.created) == 2


def test_a_full_queue_drops_instead_of_blocking() -> None:
    gate = threading.Event()

    class Stuck(Cluster):
        def create(self, resource, namespace, body):
            gate.wait(5)
            return super().create(resource, namespace, body)

    cluster = Stuck()
    recorder = EventRecorder(cluster, "c", host="h", queue_size=2)  # type: ignore[arg-type]
    started = time.monotonic()
    for index in range(10):
        recorder.normal(ObjectReference("v1", "Pod", f"p{index}", "ns"), "R", "m")
    assert time.monotonic() - started < 0.1
    gate.set()
    assert recorder.flush(5)
    assert 1 <= len(cluster.created) <= 3
    recorder.stop()

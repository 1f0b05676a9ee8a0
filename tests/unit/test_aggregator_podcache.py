"""What the aggregator keeps of a pod, and which pod events need no reconcile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from protectors.constants import ANNOTATION_UPDATE_TRIGGER_TIME
from protectors.health import PodHealth
from workers.aggregator.podcache import (
    HEALTH_FIELD,
    counting_view,
    pod_transform,
    slim_pod,
    slim_pod_with_times,
    slim_protector,
)
from workers.aggregator.synctime import status_time

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:00:05Z"
T2 = "2026-01-01T00:00:09Z"


def full_pod(**changes) -> dict:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-1",
            "namespace": "demo",
            "uid": "0f1e",
            "resourceVersion": "42",
            "creationTimestamp": T0,
            "labels": {"app": "web", "pod-template-hash": "abc"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                ANNOTATION_UPDATE_TRIGGER_TIME: T2,
            },
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-abc", "uid": "1"}],
            "managedFields": [{"manager": "kubelet"}],
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.1",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": T0},
                {"type": "Ready", "status": "True", "lastTransitionTime": T1},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": T1},
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastTransitionTime": T0,
                    "lastProbeTime": None,
                },
            ],
            "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0}],
        },
    }
    for path, value in changes.items():
        section, _, key = path.partition("__")
        pod[section][key] = value
    return pod


def test_slim_pod_keeps_what_counting_reads_and_nothing_else():
    pod = full_pod()
    slim = slim_pod(pod)
    assert slim["metadata"] == {
        "name": "web-1",
        "namespace": "demo",
        "resourceVersion": "42",
        "labels": {"app": "web", "pod-template-hash": "abc"},
    }
    assert slim["status"] == {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": T1},
            {"type": "PodScheduled", "status": "True"},
        ],
    }
    assert slim[HEALTH_FIELD] == PodHealth.from_pod(pod)
    assert "managedFields" in pod["metadata"]  # the received object is left alone


def test_slim_pod_with_times_keeps_what_dates_an_event():
    pod = full_pod()
    pod["metadata"]["deletionTimestamp"] = T2
    pod["metadata"]["deletionGracePeriodSeconds"] = 30
    slim = slim_pod_with_times(pod)
    assert slim["metadata"]["annotations"] == {ANNOTATION_UPDATE_TRIGGER_TIME: T2}
    assert slim["metadata"]["creationTimestamp"] == T0
    assert [c["type"] for c in slim["status"]["conditions"]] == [
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    assert status_time(slim) == status_time(pod)
    assert slim[HEALTH_FIELD] == PodHealth.from_pod(pod)
    assert slim[HEALTH_FIELD].terminating


def test_the_transform_follows_the_sync_time_algorithm():
    assert pod_transform("clock") is slim_pod
    assert pod_transform("status") is slim_pod_with_times


def test_repeated_strings_are_shared_between_pods():
    first = slim_pod(full_pod())
    second = slim_pod(full_pod(metadata__name="web-2"))
    assert first["metadata"]["namespace"] is second["metadata"]["namespace"]
    assert (
        first["metadata"]["labels"]["pod-template-hash"]
        is (second["metadata"]["labels"]["pod-template-hash"])
    )


def test_malformed_timestamp_leaves_the_health_to_reconcile():
    pod = full_pod()
    pod["status"]["conditions"][1]["lastTransitionTime"] = "yesterday"
    assert slim_pod(pod)[HEALTH_FIELD] is None


@pytest.mark.parametrize(
    ("change", "counts_the_same"),
    [
        (lambda pod: pod["status"].update(podIP="10.0.0.2"), True),
        (lambda pod: pod["status"]["containerStatuses"][0].update(restartCount=3), True),
        (lambda pod: pod["metadata"]["annotations"].update(x="y"), True),
        (lambda pod: pod["status"]["conditions"][0].update(lastTransitionTime=T2), True),
        (lambda pod: pod["status"]["conditions"][1].update(status="False"), False),
        (lambda pod: pod["status"]["conditions"][1].update(lastTransitionTime=T2), False),
        (lambda pod: pod["status"]["conditions"][3].update(status="False"), False),
        (lambda pod: pod["status"].update(phase="Failed"), False),
        (lambda pod: pod["metadata"]["labels"].update(app="api"), False),
        (lambda pod: pod["metadata"].update(deletionTimestamp=T2), False),
    ],
)
def test_counting_view(change, counts_the_same):
    before = full_pod()
    after = full_pod()
    change(after)
    for transform in (slim_pod, slim_pod_with_times):
        same = counting_view(transform(before)) == counting_view(transform(after))
        assert same is counts_the_same


def test_health_is_read_as_of_the_event():
    since = datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
    health = slim_pod(full_pod())[HEALTH_FIELD]
    assert health.ready_since == since
    assert health.is_available(10, since + timedelta(seconds=10))
    assert not health.is_available(10, since + timedelta(seconds=9))


def test_slim_protector_drops_what_only_the_api_server_reads():
    protector = {
        "metadata": {
            "name": "p",
            "resourceVersion": "7",
            "managedFields": [{"manager": "podseidon"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "a": "b"},
        },
        "spec": {"minAvailable": 1},
        "status": {"cells": []},
    }
    slim = slim_protector(protector)
    assert slim["metadata"] == {"name": "p", "resourceVersion": "7", "annotations": {"a": "b"}}
    assert slim["spec"] is protector["spec"] and slim["status"] is protector["status"]
    assert "managedFields" in protector["metadata"]
    plain = {"metadata": {"name": "q"}, "spec": {}}
    assert slim_protector(plain) is plain  # nothing to drop: no copy

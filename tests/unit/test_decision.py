"""The webhook decision (design.md §4 "Webhook decision") with the outside world faked."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from podseidon_site.config import parse_config
from protectors.health import HealthCriterion
from protectors.kube.client import KubeError
from protectors.model import PodProtector
from protectors.quota import AdmissionResult, DeletionRequest
from tests.unit.protector_fakes import IndexLookups
from webhook.batching import BatchTimeout
from webhook.bounded_client import NoAnswer
from webhook.core_breaker import CoreBreaker, CoreUnavailable
from webhook.decision import Decider, WebhookUnavailable
from webhook.review import MalformedReview, ReviewRequest

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


def _pod(
    name: str = "web-0",
    *,
    ready: bool = True,
    ready_for: float = 3600,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    terminating: bool = False,
) -> dict[str, Any]:
    since = (NOW - timedelta(seconds=ready_for)).strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": "demo",
        "uid": f"uid-{name}",
        "labels": {"app": "web"} if labels is None else labels,
    }
    if annotations:
        metadata["annotations"] = annotations
    if terminating:
        metadata["deletionTimestamp"] = "2026-11-21T11:59:00Z"
    return {
        "metadata": metadata,
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": since,
                },
            ],
        },
    }


def _protector(name: str = "protector", min_ready_seconds: int = 0) -> PodProtector:
    return PodProtector.from_dict(
        {
            "apiVersion": "podseidon.kubewharf.io/v1alpha1",
            "kind": "PodProtector",
            "metadata": {"name": name, "namespace": "demo", "resourceVersion": "7"},
            "spec": {
                "minAvailable": 2,
                "minReadySeconds": min_ready_seconds,
                "selector": {"matchLabels": {"app": "web"}},
            },
        }
    )


def _delete(pod: dict | None, *, dry_run: bool = False, name: str = "web-0") -> ReviewRequest:
    return ReviewRequest(
        uid="u1",
        operation="DELETE",
        group="",
        resource="pods",
        sub_resource="",
        namespace="demo",
        name=name,
        object=None,
        old_object=pod,
        dry_run=dry_run,
        username="admin",
    )


def _evict(annotations: dict[str, str] | None = None) -> ReviewRequest:
    eviction: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {}}
    if annotations:
        eviction["metadata"]["annotations"] = annotations
    return ReviewRequest(
        uid="u2",
        operation="CREATE",
        group="",
        resource="pods",
        sub_resource="eviction",
        namespace="demo",
        name="web-0",
        object=eviction,
        old_object=None,
        dry_run=False,
        username="admin",
    )


@dataclass
class FakeWorld(IndexLookups):
    protectors: list[PodProtector] = field(default_factory=lambda: [_protector()])
    results: dict[str, Any] = field(default_factory=dict)
    pods: dict[str, dict] = field(default_factory=lambda: {"web-0": _pod()})
    synced: bool = True
    submitted: list[tuple[str, DeletionRequest]] = field(default_factory=list)
    observed: list[tuple[str, str, bool]] = field(default_factory=list)

    def listed(self):
        return self.protectors

    def get(self, namespace, name):
        return next((p for p in self.protectors if p.name == name), None)

    def submit(self, key, item, deadline):
        self.submitted.append((key, item))
        outcome = self.results.get(key, AdmissionResult.OK)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def fetch_pod(self, cell_id, namespace, name, deadline):
        if name not in self.pods:
            raise KubeError(404, "NotFound", f'pods "{name}" not found')
        return self.pods[name]

    def pod_in_protector(self, cell_id, protector, result, rejected):
        self.observed.append((protector.name, result, rejected))


def _decider(world: FakeWorld, **webhook: Any) -> Decider:
    config = parse_config(
        {
            "cells": [{"id": "cell-a", "requires_pod_name": True}, {"id": "cell-b"}],
            "webhook": webhook,
        }
    )
    return Decider(
        config=config,
        protectors=world,
        synced=lambda: world.synced,
        batcher=world,
        fetch_pod=world.fetch_pod,
        observer=world,
        started_at=0.0,
        now=lambda: NOW,
        monotonic=lambda: 1000.0,
    )


def test_allowed_deletion_submits_one_request_per_protector() -> None:
    world = FakeWorld(protectors=[_protector("a"), _protector("b")])
    verdict = _decider(world).decide("cell-a", _delete(_pod()), deadline=1e9)
    assert verdict.allowed and verdict.audit_annotations == {}
    assert [key for key, _ in world.submitted] == ["demo/a", "demo/b"]
    request = world.submitted[0][1]
    assert request.cell_id == "cell-a"
    assert request.pod_uid == "uid-web-0"
    assert request.contributions.available
    assert request.criterion is HealthCriterion.AVAILABLE


DENIALS = [
    (
        "denied",
        AdmissionResult.DENIED,
        429,
        "PodProtector demo/protector reports too few available replicas to admit pod deletion",
    ),
    (
        "retry",
        AdmissionResult.RETRY,
        409,
        "PodProtector demo/protector has full admission buffer and is temporarily unable to "
        "admit pod deletion",
    ),
    (
        "timeout",
        BatchTimeout("late"),
        500,
        "PodProtector demo/protector: timed out waiting for its status update",
    ),
    (
        "write-error",
        KubeError(500, "InternalError", "etcd is sad"),
        500,
        "PodProtector demo/protector: 500 InternalError: etcd is sad",
    ),
    (
        "core-silent",
        NoAnswer("PUT /apis/x", 3.0),
        500,
        "cannot record the admission of pod demo/web-0 in PodProtector demo/protector: core "
        "cluster did not answer within 3000 ms",
    ),
    (
        "core-breaker-open",
        CoreUnavailable(3.0, 2.25),
        500,
        "cannot record the admission of pod demo/web-0 in PodProtector demo/protector: core "
        "cluster did not answer within 3000 ms (no answer for 2.2 s; failing fast until a "
        "status write succeeds)",
    ),
]


@pytest.mark.parametrize(
    ("outcome", "code", "message"), [d[1:] for d in DENIALS], ids=[d[0] for d in DENIALS]
)
def test_rejections_carry_the_documented_code_and_message(outcome, code, message) -> None:
    world = FakeWorld(results={"demo/protector": outcome})
    verdict = _decider(world).decide("cell-a", _delete(_pod()), deadline=1e9)
    assert not verdict.allowed
    assert (verdict.code, verdict.message) == (code, message)
    assert verdict.audit_annotations == {"reject-by-podprotector": "demo/protector"}
    assert world.observed[-1][2] is True


@pytest.mark.parametrize(
    ("result", "allowed"),
    [
        (AdmissionResult.OK, True),
        (AdmissionResult.ALREADY_ADMITTED, True),
        (AdmissionResult.ALREADY_UNHEALTHY, True),
        (AdmissionResult.RETRY, False),
        (AdmissionResult.DENIED, False),
    ],
)
def test_each_quota_result(result: AdmissionResult, allowed: bool) -> None:
    world = FakeWorld(results={"demo/protector": result})
    assert _decider(world).decide("cell-a", _delete(_pod()), 1e9).allowed is allowed


def test_first_rejecting_protector_stops_the_loop() -> None:
    world = FakeWorld(
        protectors=[_protector("a"), _protector("b"), _protector("c")],
        results={"demo/b": AdmissionResult.DENIED},
    )
    verdict = _decider(world).decide("cell-a", _delete(_pod()), 1e9)
    assert verdict.audit_annotations == {"reject-by-podprotector": "demo/b"}
    assert [key for key, _ in world.submitted] == ["demo/a", "demo/b"]


@pytest.mark.parametrize(
    "pod",
    [
        pytest.param(_pod(terminating=True), id="terminating"),
        pytest.param(_pod(ready=False), id="not-ready"),
    ],
)
def test_pods_that_are_going_or_not_ready_are_allowed_without_a_bucket(pod) -> None:
    world = FakeWorld(results={"demo/protector": AdmissionResult.DENIED}, synced=False)
    verdict = _decider(world).decide("cell-a", _delete(pod), 1e9)
    assert verdict.allowed
    assert world.submitted == []


def test_ready_but_not_yet_available_is_fine_for_that_protector() -> None:
    world = FakeWorld(
        protectors=[_protector("slow", min_ready_seconds=600), _protector("fast")],
        results={"demo/slow": AdmissionResult.DENIED},
    )
    verdict = _decider(world).decide("cell-a", _delete(_pod(ready_for=60)), 1e9)
    assert verdict.allowed
    assert [key for key, _ in world.submitted] == ["demo/fast"]
    assert ("slow", "NotYetAvailable", False) in world.observed


def test_min_ready_seconds_boundary_counts_as_available() -> None:
    world = FakeWorld(protectors=[_protector("p", min_ready_seconds=60)])
    _decider(world).decide("cell-a", _delete(_pod(ready_for=60)), 1e9)
    assert [key for key, _ in world.submitted] == ["demo/p"]


def test_no_matching_protector_allows() -> None:
    world = FakeWorld()
    verdict = _decider(world).decide("cell-a", _delete(_pod(labels={"app": "other"})), 1e9)
    assert verdict.allowed and world.submitted == []


def test_force_delete_is_a_dry_run_for_that_pod() -> None:
    world = FakeWorld(results={"demo/protector": AdmissionResult.DENIED})
    pod = _pod(annotations={"podseidon.kubewharf.io/force-delete": ""})
    verdict = _decider(world).decide("cell-a", _delete(pod), 1e9)
    assert verdict.allowed
    assert verdict.audit_annotations == {
        "dry-run": "1",
        "reject-by-podprotector": "demo/protector",
    }
    assert len(world.submitted) == 1, "still recorded as if live"


def test_global_dry_run_allows_but_records() -> None:
    world = FakeWorld(results={"demo/protector": AdmissionResult.DENIED})
    verdict = _decider(world, dry_run=True).decide("cell-a", _delete(_pod()), 1e9)
    assert verdict.allowed and verdict.audit_annotations["dry-run"] == "1"
    assert len(world.submitted) == 1


def test_configured_annotation_keys_are_honoured() -> None:
    world = FakeWorld(results={"demo/protector": AdmissionResult.DENIED})
    pod = _pod(annotations={"example.com/yolo": "1", "example.com/level": "Scheduled"})
    decider = _decider(
        world,
        force_delete_annotation="example.com/yolo",
        health_criterion_annotation="example.com/level",
    )
    verdict = decider.decide("cell-a", _delete(pod), 1e9)
    assert verdict.allowed
    assert world.submitted[0][1].criterion is HealthCriterion.SCHEDULED


@pytest.mark.parametrize(
    ("value", "criterion"),
    [
        ("Ready", HealthCriterion.READY),
        ("Running", HealthCriterion.RUNNING),
        ("Scheduled", HealthCriterion.SCHEDULED),
        ("Available", HealthCriterion.AVAILABLE),
        ("nonsense", HealthCriterion.AVAILABLE),
    ],
)
def test_health_criterion_annotation(value: str, criterion: HealthCriterion) -> None:
    world = FakeWorld()
    pod = _pod(annotations={"podseidon.kubewharf.io/health-criterion": value})
    _decider(world).decide("cell-a", _delete(pod), 1e9)
    assert world.submitted[0][1].criterion is criterion


def test_denial_message_names_the_criterion() -> None:
    world = FakeWorld(results={"demo/protector": AdmissionResult.DENIED})
    pod = _pod(annotations={"podseidon.kubewharf.io/health-criterion": "Ready"})
    verdict = _decider(world).decide("cell-a", _delete(pod), 1e9)
    assert "too few ready replicas" in verdict.message


def test_eviction_fetches_the_pod_and_reads_the_criterion_from_the_eviction() -> None:
    world = FakeWorld(
        pods={"web-0": _pod(annotations={"podseidon.kubewharf.io/health-criterion": "Ready"})}
    )
    review = _evict({"podseidon.kubewharf.io/health-criterion": "Running"})
    assert _decider(world).decide("cell-b", review, 1e9).allowed
    assert world.submitted[0][1].criterion is HealthCriterion.RUNNING
    assert world.submitted[0][1].cell_id == "cell-b"


def test_eviction_of_a_missing_pod_is_a_404_with_the_apiserver_message() -> None:
    world = FakeWorld(pods={})
    verdict = _decider(world).decide("cell-a", _evict(), 1e9)
    assert (verdict.allowed, verdict.code, verdict.message) == (
        False,
        404,
        'pods "web-0" not found',
    )


def test_eviction_when_the_cell_apiserver_fails_is_unavailable() -> None:
    world = FakeWorld()

    def broken(*args):
        raise KubeError(0, "Unreachable", "connection refused")

    decider = _decider(world)
    decider.fetch_pod = broken
    with pytest.raises(WebhookUnavailable):
        decider.decide("cell-a", _evict(), 1e9)


def test_evictions_pass_untouched_when_not_handled() -> None:
    world = FakeWorld(results={"demo/protector": AdmissionResult.DENIED})
    assert _decider(world, handle_eviction=False).decide("cell-a", _evict(), 1e9).allowed
    assert world.submitted == []


@pytest.mark.parametrize(
    "review",
    [
        pytest.param(
            ReviewRequest("u", "CREATE", "", "pods", "", "demo", "x", {}, None, False, "a"),
            id="pod-create",
        ),
        pytest.param(
            ReviewRequest(
                "u", "DELETE", "apps", "deployments", "", "demo", "x", None, {}, False, "a"
            ),
            id="deployment-delete",
        ),
        pytest.param(
            ReviewRequest("u", "DELETE", "", "pods", "status", "demo", "x", None, {}, False, "a"),
            id="pod-status-delete",
        ),
    ],
)
def test_unexpected_review_subject(review: ReviewRequest) -> None:
    verdict = _decider(FakeWorld()).decide("cell-a", review, 1e9)
    assert (verdict.allowed, verdict.code, verdict.message) == (
        False,
        500,
        "Unexpected review subject",
    )


def test_delete_without_old_object_is_malformed() -> None:
    with pytest.raises(MalformedReview, match="oldObject"):
        _decider(FakeWorld()).decide("cell-a", _delete(None), 1e9)


def test_unsynced_cache_is_unavailable() -> None:
    with pytest.raises(WebhookUnavailable, match="not synced"):
        _decider(FakeWorld(synced=False)).decide("cell-a", _delete(_pod()), 1e9)


def test_cold_start_delay() -> None:
    decider = _decider(FakeWorld(), cold_start_delay_seconds=5)
    decider.started_at = 998.0  # two seconds ago
    with pytest.raises(WebhookUnavailable, match="cold start"):
        decider.decide("cell-a", _delete(_pod()), 1e9)
    decider.started_at = 990.0
    assert decider.decide("cell-a", _delete(_pod()), 1e9).allowed


@pytest.mark.parametrize(
    ("mode", "cell", "recorded"),
    [
        ("never", "cell-a", False),
        ("always", "cell-b", True),
        ("by-cell", "cell-a", True),
        ("by-cell", "cell-b", False),
    ],
)
def test_requires_pod_name(mode: str, cell: str, recorded: bool) -> None:
    world = FakeWorld()
    _decider(world, requires_pod_name=mode).decide(cell, _delete(_pod()), 1e9)
    assert (world.submitted[0][1].pod_name == "web-0") is recorded


def test_dry_run_requests_are_judged_without_recording() -> None:
    world = FakeWorld()
    protector = _protector()  # no status: every healthy deletion is denied by the quota
    world.protectors = [protector]
    verdict = _decider(world).decide("cell-a", _delete(_pod(), dry_run=True), 1e9)
    assert not verdict.allowed and verdict.code == 429
    assert world.submitted == []


def test_deletecollection_member_uses_the_old_object() -> None:
    world = FakeWorld()
    verdict = _decider(world).decide("cell-a", _delete(_pod("web-3"), name=""), 1e9)
    assert verdict.allowed
    assert world.submitted[0][1].pod_uid == "uid-web-3"


def _with_bucket(age: timedelta, uid: str = "uid-web-0", cell: str = "cell-a") -> PodProtector:
    body = _protector().to_dict()
    body["status"] = {
        "cells": [
            {
                "cellID": cell,
                "aggregation": {"totalReplicas": 5, "availableReplicas": 5},
                "admissionHistory": {
                    "buckets": [
                        {
                            "startTime": (NOW - age).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                            "podUID": uid,
                        }
                    ]
                },
            }
        ]
    }
    return PodProtector.from_dict(body)


# (bucket age, its pod, its cell, refresh threshold ms, answered without the batch)
REPEATS = [
    ("young-bucket", timedelta(milliseconds=20), "uid-web-0", "cell-a", 100, True),
    ("old-bucket", timedelta(seconds=2), "uid-web-0", "cell-a", 100, False),
    ("other-pod", timedelta(milliseconds=20), "uid-other", "cell-a", 100, False),
    ("other-cell", timedelta(milliseconds=20), "uid-web-0", "cell-b", 100, False),
    ("threshold-off", timedelta(milliseconds=20), "uid-web-0", "cell-a", 0, False),
]


@pytest.mark.parametrize(
    ("age", "uid", "cell", "threshold", "skips_batch"),
    [r[1:] for r in REPEATS],
    ids=[r[0] for r in REPEATS],
)
def test_repeat_review_of_a_just_admitted_pod_skips_the_batch(
    age, uid, cell, threshold, skips_batch
) -> None:
    world = FakeWorld(protectors=[_with_bucket(age, uid, cell)])
    decider = _decider(world, bucket_refresh_after_millis=threshold)
    verdict = decider.decide("cell-a", _delete(_pod()), deadline=1e9)
    assert verdict.allowed
    assert (world.submitted == []) is skips_batch
    if skips_batch:
        assert world.observed == [("protector", "AlreadyAdmitted", False)]


@pytest.mark.parametrize(
    ("outcome", "cause"),
    [
        (BatchTimeout("late"), "deadline"),
        (NoAnswer("PUT x", 3.0), "core-timeout"),
        (CoreUnavailable(3.0, 1.0), "core-unavailable"),
        (KubeError(500, "InternalError", "etcd is sad"), "core-error"),
        (RuntimeError("bug"), "internal"),
    ],
)
def test_failed_writes_name_their_cause_and_dry_run_still_allows(outcome, cause) -> None:
    world = FakeWorld(results={"demo/protector": outcome})
    verdict = _decider(world).decide("cell-a", _delete(_pod()), deadline=1e9)
    assert (verdict.allowed, verdict.code, verdict.cause) == (False, 500, cause)
    dry = _decider(world, dry_run=True).decide("cell-a", _delete(_pod()), deadline=1e9)
    assert dry.allowed and dry.audit_annotations["dry-run"] == "1"


def test_open_breaker_refuses_without_waiting_for_a_batch() -> None:
    world = FakeWorld()
    decider = _decider(world)
    clock = [100.0]
    decider.core_breaker = CoreBreaker(1.0, clock=lambda: clock[0])
    decider.core_breaker.silent(3.0, probe=False)
    verdict = decider.decide("cell-a", _delete(_pod()), deadline=1e9)
    assert (verdict.code, verdict.cause) == (500, "core-unavailable")
    assert world.submitted == []  # refused before the batcher
    # Unprotected pods, and pods that are not ready, need no write: still allowed.
    assert decider.decide("cell-a", _delete(_pod(labels={"app": "x"})), deadline=1e9).allowed
    assert decider.decide("cell-a", _delete(_pod(ready=False)), deadline=1e9).allowed
    clock[0] += 1.5  # a probe is due: this review goes to the batcher
    assert decider.decide("cell-a", _delete(_pod()), deadline=1e9).allowed
    assert len(world.submitted) == 1


def test_reviews_beyond_max_waiting_are_refused_at_once() -> None:
    breaker = CoreBreaker(1.0, max_waiting=2)
    world = FakeWorld()
    decider = _decider(world)
    decider.core_breaker = breaker
    with breaker.waiting(), breaker.waiting():
        verdict = decider.decide("cell-a", _delete(_pod()), deadline=1e9)
    assert (verdict.code, verdict.cause) == (500, "core-busy")
    assert "2 reviews in this webhook process are already waiting" in verdict.message
    assert decider.decide("cell-a", _delete(_pod()), deadline=1e9).allowed

"""The drain planner (console/planner.py): tables of plans, and the plan against the webhook's
own Decider run over the same pods one deletion at a time."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from console.planner import (
    DELETE,
    EVICTION,
    PodTarget,
    Registration,
    Verdict,
    drain_filter,
    plan_deletions,
)
from podseidon_site.config import parse_config
from protectors.health import HealthCriterion
from protectors.model import PodProtector
from protectors.quota import admit_batch
from tests.unit.protector_fakes import IndexLookups
from webhook.decision import Decider
from webhook.registration import render_webhook_configuration
from webhook.review import ReviewRequest
from webhook.services import NEVER_MATCHING_SELECTOR

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
CELL = "cell-a"
DENIED = "PodProtector ns/{} reports too few {} replicas to admit pod deletion"
RETRY = (
    "PodProtector ns/{} has full admission buffer and is temporarily unable to admit pod deletion"
)


def _config(**webhook: Any):
    return parse_config(
        {"cells": [{"id": CELL}, {"id": "cell-b"}], "webhook": {"url": "https://x", **webhook}}
    )


def _pod(
    name: str,
    app: str = "web",
    *,
    ready: bool = True,
    ready_for: float = 3600,
    phase: str = "Running",
    node: str = "node-1",
    annotations: dict[str, str] | None = None,
    owner: str | None = "ReplicaSet",
    terminating: bool = False,
    labels: dict[str, str] | None = None,
    volumes: list[dict] | None = None,
) -> dict[str, Any]:
    since = (NOW - timedelta(seconds=ready_for)).strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": "ns",
        "uid": f"uid-{name}",
        "labels": {"app": app, **(labels or {})},
        "annotations": annotations or {},
    }
    if owner:
        metadata["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner, "name": "x", "uid": "o", "controller": True}
        ]
    if terminating:
        metadata["deletionTimestamp"] = "2026-11-21T11:59:00Z"
    return {
        "metadata": metadata,
        "spec": {"nodeName": node, "containers": [{"name": "c"}], "volumes": volumes or []},
        "status": {
            "phase": phase,
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


def _protector(
    name: str,
    minimum: int,
    available: int,
    *,
    app: str | None = None,
    unconfirmed: int = 0,
    lag_limit: int | None = None,
    min_ready_seconds: int = 0,
    ready: int | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "minAvailable": minimum,
        "minReadySeconds": min_ready_seconds,
        "selector": {"matchLabels": {"app": app or name}},
    }
    if lag_limit:
        spec["admissionHistoryConfig"] = {"maxConcurrentLag": lag_limit}
    start = (NOW - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "podseidon.kubewharf.io/v1alpha1",
        "kind": "PodProtector",
        "metadata": {"namespace": "ns", "name": name, "resourceVersion": "1"},
        "spec": spec,
        "status": {
            "cells": [
                {
                    "cellID": CELL,
                    "aggregation": {
                        "totalReplicas": available,
                        "availableReplicas": available,
                        "readyReplicas": available if ready is None else ready,
                        "scheduledReplicas": available,
                        "runningReplicas": available,
                    },
                    "admissionHistory": {
                        "buckets": [
                            {"startTime": start, "podUID": f"gone-{i}"} for i in range(unconfirmed)
                        ]
                    },
                }
            ],
            "summary": {},
        },
    }


def _registered(config=None) -> Registration:
    config = config or _config()
    return Registration.from_object(render_webhook_configuration(config, CELL))


def _plan(pods, protectors, *, config=None, **kwargs):
    config = config or _config()
    kwargs.setdefault("registration", _registered(config))
    targets = [PodTarget("ns", p["metadata"]["name"], p) for p in pods]
    return plan_deletions(config, CELL, targets, protectors, NOW, **kwargs)


def _verdicts(plan) -> dict[str, str]:
    return {p.name: p.verdict.value for p in plan.pods}


# -- one protector: how many go ---------------------------------------------------------------

# (case, pods of app=web on the node, minAvailable, aggregated available, unconfirmed buckets,
#  maxConcurrentLag, expected admitted, refused with code, capacity)
QUOTA_TABLE = [
    ("room-for-all", 3, 1, 6, 0, None, 3, 0, None, 5),
    ("none-left", 2, 2, 2, 0, None, 0, 2, 429, 0),
    ("some-go", 3, 2, 4, 0, None, 2, 1, 429, 2),
    ("exactly-enough", 2, 2, 4, 0, None, 2, 0, None, 2),
    # Unconfirmed admissions already use quota: refusals become "try again" (409).
    ("buffer-full", 2, 2, 5, 3, None, 0, 2, 409, 0),
    ("buffer-part", 3, 1, 5, 2, None, 2, 1, 409, 2),
    # maxConcurrentLag caps the batch whatever the counts say.
    ("lag-limit", 3, 1, 10, 0, 1, 1, 2, 409, 1),
    ("lag-limit-used", 2, 1, 10, 1, 1, 0, 2, 409, 0),
    ("min-zero", 4, 0, 4, 0, None, 4, 0, None, 4),
]


@pytest.mark.parametrize(
    ("pods", "minimum", "available", "unconfirmed", "lag", "admitted", "refused", "code", "cap"),
    [row[1:] for row in QUOTA_TABLE],
    ids=[row[0] for row in QUOTA_TABLE],
)
def test_quota_walk_over_the_set(
    pods, minimum, available, unconfirmed, lag, admitted, refused, code, cap
) -> None:
    plan = _plan(
        [_pod(f"web-{i}") for i in range(pods)],
        [_protector("web", minimum, available, unconfirmed=unconfirmed, lag_limit=lag)],
    )
    verdicts = [p.verdict for p in plan.pods]
    assert verdicts.count(Verdict.ADMITTED) == admitted
    assert verdicts.count(Verdict.REFUSED) == refused
    assert plan.blocked == bool(refused)
    (summary,) = plan.protectors
    assert (summary.requested, summary.admitted, summary.refused) == (pods, admitted, refused)
    assert summary.capacity == cap
    assert summary.unconfirmed == unconfirmed
    for pod in plan.pods:
        # Some but not all go: which ones depends on the order the evictions arrive in.
        assert pod.contended == bool(admitted and refused)
        if pod.verdict is Verdict.REFUSED:
            assert pod.refusal.code == code
            expected = DENIED.format("web", "available") if code == 429 else RETRY.format("web")
            assert pod.refusal.message == expected == pod.reason
            assert pod.refusal.protector == "ns/web"


def test_the_newest_request_is_judged_first_as_in_the_webhook() -> None:
    # The quota walks a batch newest first: with room for one, the last pod listed goes.
    plan = _plan([_pod("web-0"), _pod("web-1")], [_protector("web", 1, 2)])
    assert _verdicts(plan) == {"web-0": "refused", "web-1": "admitted"}


def test_nothing_in_the_inputs_changes() -> None:
    protectors = [_protector("web", 1, 3)]
    before = copy.deepcopy(protectors)
    pods = [_pod("web-0"), _pod("web-1")]
    pods_before = copy.deepcopy(pods)
    _plan(pods, protectors)
    assert protectors == before and pods == pods_before


# -- pods the quota never sees ----------------------------------------------------------------

PODS_TABLE = [
    ("unprotected", _pod("other", app="batch"), "unprotected"),
    ("not-ready", _pod("web-x", ready=False), "already-unhealthy"),
    ("finished", _pod("web-x", ready=False, phase="Succeeded"), "already-unhealthy"),
    ("terminating", _pod("web-x", terminating=True), "terminating"),
]


@pytest.mark.parametrize(
    ("pod", "verdict"), [r[1:] for r in PODS_TABLE], ids=[r[0] for r in PODS_TABLE]
)
def test_pods_that_cost_no_quota(pod, verdict) -> None:
    # Every available pod is needed: only pods that cost nothing can go.
    plan = _plan([pod], [_protector("web", 3, 3)])
    assert _verdicts(plan) == {pod["metadata"]["name"]: verdict}
    assert not plan.blocked


def test_not_yet_available_costs_that_protector_nothing() -> None:
    plan = _plan([_pod("web-new", ready_for=5)], [_protector("web", 3, 3, min_ready_seconds=60)])
    (pod,) = plan.pods
    assert pod.verdict is Verdict.ALREADY_UNHEALTHY
    assert pod.steps == (("ns/web", "NotYetAvailable"),)
    assert plan.protectors[0].requested == 0


def test_the_eviction_criterion_is_the_one_asked_for() -> None:
    # 3 ready, 2 of them available: at Ready one may go, at Available none.
    protectors = [_protector("web", 2, 2, ready=3)]
    strict = _plan([_pod("web-0")], protectors)
    assert strict.pods[0].refusal.message == DENIED.format("web", "available")
    lenient = _plan([_pod("web-0")], protectors, criterion=HealthCriterion.READY)
    assert lenient.pods[0].verdict is Verdict.ADMITTED
    assert lenient.protectors[0].capacity == 1


def test_the_pods_own_criterion_annotation_counts_when_none_is_asked() -> None:
    annotated = _pod("web-0", annotations={"podseidon.kubewharf.io/health-criterion": "Ready"})
    plan = _plan([annotated], [_protector("web", 2, 2, ready=3)])
    assert plan.pods[0].verdict is Verdict.ADMITTED


def test_a_criterion_is_only_for_evictions() -> None:
    with pytest.raises(ValueError, match="eviction"):
        _plan([_pod("web-0")], [], operation=DELETE, criterion=HealthCriterion.READY)


def test_several_protectors_are_asked_in_order_and_the_first_refusal_stops() -> None:
    both = {"team": "pay"}
    pods = [_pod(f"web-{i}", labels=both) for i in range(3)]
    protectors = [
        _protector("a-team", 1, 10, app="web"),  # room for everything
        _protector("b-web", 2, 3, app="web"),  # room for one
    ]
    plan = _plan(pods, protectors)
    assert [p.verdict for p in plan.pods].count(Verdict.ADMITTED) == 1
    refused = [p for p in plan.pods if p.verdict is Verdict.REFUSED]
    assert {p.refusal.protector for p in refused} == {"ns/b-web"}
    for pod in plan.pods:
        assert [key for key, _ in pod.steps] == ["ns/a-team", "ns/b-web"]
    by_key = {p.key: p for p in plan.protectors}
    assert (by_key["ns/a-team"].admitted, by_key["ns/b-web"].admitted) == (3, 1)


def test_a_refusal_by_the_first_protector_never_reaches_the_second() -> None:
    pods = [_pod("web-0")]
    protectors = [_protector("a", 1, 1, app="web"), _protector("b", 1, 10, app="web")]
    plan = _plan(pods, protectors)
    assert plan.pods[0].steps == (("ns/a", "Denied"),)
    assert {p.key: p.requested for p in plan.protectors} == {"ns/a": 1, "ns/b": 0}


def test_an_already_admitted_pod_goes_again() -> None:
    # Two needed, three counted, one of them already on its way: no room for another.
    protector = _protector("web", 2, 3)
    start = (NOW - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    protector["status"]["cells"][0]["admissionHistory"]["buckets"] = [
        {"startTime": start, "podUID": "uid-web-0"}
    ]
    plan = _plan([_pod("web-0"), _pod("web-1")], [protector])
    assert _verdicts(plan) == {"web-0": "admitted", "web-1": "refused"}
    assert plan.pods[0].steps == (("ns/web", "AlreadyAdmitted"),)
    assert plan.pods[1].refusal.code == 409
    assert not plan.pods[0].contended and not plan.pods[1].contended


# -- what the webhook never sees, and dry runs ------------------------------------------------


def test_global_dry_run_lets_refusals_through_but_still_counts_them() -> None:
    plan = _plan(
        [_pod("web-0"), _pod("web-1")], [_protector("web", 1, 2)], config=_config(dry_run=True)
    )
    assert _verdicts(plan) == {"web-0": "dry-run", "web-1": "admitted"}
    assert not plan.blocked
    assert any("dry run" in note for note in plan.notes)


def test_force_delete_annotation_is_a_dry_run_for_that_pod() -> None:
    forced = _pod("web-0", annotations={"podseidon.kubewharf.io/force-delete": "yes"})
    plan = _plan([forced, _pod("web-1")], [_protector("web", 2, 2)])
    assert _verdicts(plan) == {"web-0": "dry-run", "web-1": "refused"}


def test_not_registered_means_nothing_is_judged() -> None:
    plan = _plan([_pod("web-0")], [_protector("web", 1, 1)], registration=None)
    assert _verdicts(plan) == {"web-0": "not-judged"}
    assert "not registered" in plan.notes[0]


def test_a_disabled_webhook_judges_nothing() -> None:
    registration = render_webhook_configuration(_config(), CELL)
    registration["webhooks"][0]["objectSelector"] = NEVER_MATCHING_SELECTOR
    for operation in (EVICTION, DELETE):
        plan = _plan(
            [_pod("web-0")],
            [_protector("web", 1, 1)],
            registration=Registration.from_object(registration),
            operation=operation,
        )
        assert _verdicts(plan) == {"web-0": "not-judged"}, operation


def test_self_exclusion_holds_for_deletes_but_not_for_evictions() -> None:
    # kube-apiserver matches the objectSelector against the Eviction (no labels) for an
    # eviction: the NotIn exclusion of Podseidon's own pods lets evictions through to the webhook.
    own = _pod("web-0", labels={"app.kubernetes.io/part-of": "podseidon"})
    protectors = [_protector("web", 1, 1)]
    assert _verdicts(_plan([own], protectors, operation=DELETE)) == {"web-0": "not-judged"}
    assert _verdicts(_plan([own], protectors, operation=EVICTION)) == {"web-0": "refused"}


def test_namespace_selector_leaves_out_namespaces_it_does_not_match() -> None:
    config = _config(namespace_selector={"matchLabels": {"protected": "yes"}})
    pods, protectors = [_pod("web-0")], [_protector("web", 1, 1)]
    out = _plan(pods, protectors, config=config, namespace_labels={"ns": {}})
    assert _verdicts(out) == {"web-0": "not-judged"}
    inside = _plan(pods, protectors, config=config, namespace_labels={"ns": {"protected": "yes"}})
    assert _verdicts(inside) == {"web-0": "refused"}


def test_evictions_unjudged_when_the_webhook_does_not_handle_them() -> None:
    config = _config(handle_eviction=False)
    pods, protectors = [_pod("web-0")], [_protector("web", 1, 1)]
    assert _verdicts(_plan(pods, protectors, config=config)) == {"web-0": "not-judged"}
    deleted = _plan(pods, protectors, config=config, operation=DELETE)
    assert _verdicts(deleted) == {"web-0": "refused"}


def test_registration_from_config_when_the_live_one_is_unknown() -> None:
    plan = _plan(
        [_pod("web-0")], [_protector("web", 1, 1)], registration=Registration.from_config(_config())
    )
    assert _verdicts(plan) == {"web-0": "refused"}
    assert any("could not be read" in note for note in plan.notes)


def test_missing_pods_are_reported() -> None:
    plan = plan_deletions(
        _config(),
        CELL,
        [PodTarget("ns", "ghost", None)],
        [],
        NOW,
        registration=_registered(),
    )
    assert _verdicts(plan) == {"ghost": "not-found"}


# -- kubectl drain's filters --------------------------------------------------------------------

DRAIN_TABLE = [
    ("replicaset", _pod("a"), None, ()),
    ("daemonset", _pod("a", owner="DaemonSet"), "DaemonSet", ()),
    (
        "mirror",
        _pod("a", owner=None, annotations={"kubernetes.io/config.mirror": "x"}),
        "mirror",
        (),
    ),
    ("bare", _pod("a", owner=None), None, ("--force",)),
    ("bare-finished", _pod("a", owner=None, phase="Succeeded", ready=False), None, ()),
    (
        "emptydir",
        _pod("a", volumes=[{"name": "s", "emptyDir": {}}]),
        None,
        ("--delete-emptydir-data",),
    ),
]


@pytest.mark.parametrize(
    ("pod", "skip", "flags"), [r[1:] for r in DRAIN_TABLE], ids=[r[0] for r in DRAIN_TABLE]
)
def test_drain_filter(pod, skip, flags) -> None:
    reason, notes = drain_filter(pod)
    assert (reason is None) == (skip is None)
    if skip:
        assert skip in reason
    assert len(notes) == len(flags)
    for flag, note in zip(flags, notes, strict=True):
        assert flag in note


def test_a_node_drain_skips_what_kubectl_drain_skips() -> None:
    pods = [_pod("web-0", owner="DaemonSet"), _pod("web-1", owner=None)]
    plan = _plan(pods, [_protector("web", 1, 1)], node_drain=True)
    assert _verdicts(plan) == {"web-0": "skipped", "web-1": "refused"}
    assert "--force" in plan.pods[1].drain_notes[0]
    # The same pods named one by one are not a drain: nothing is skipped.
    assert _verdicts(_plan(pods, [_protector("web", 1, 1)])) == {
        "web-0": "refused",
        "web-1": "refused",
    }


# -- the plan against the webhook itself --------------------------------------------------------


class _Store(IndexLookups):
    """The webhook's status writes, applied to PodProtectors in memory, one batch per review:
    the webhook's own Decider runs against it."""

    def __init__(self, objects: list[dict], config) -> None:
        from protectors.history_config import EffectiveHistoryConfig, effective_config

        history = config.admission_history
        self.defaults = EffectiveHistoryConfig.from_millis(
            history.max_concurrent_lag, history.compact_threshold, history.aggregation_rate_millis
        )
        self._effective = effective_config
        self.protectors = {
            f"ns/{o['metadata']['name']}": PodProtector.from_dict(o) for o in objects
        }

    def listed(self):
        return sorted(self.protectors.values(), key=lambda p: p.name)

    def get(self, namespace, name):
        return self.protectors.get(f"{namespace}/{name}")

    def submit(self, key, item, deadline):
        protector = self.protectors[key]
        config = self._effective(protector.spec.admission_history_config, self.defaults)
        outcome = admit_batch(protector, config, [item], NOW)
        self.protectors[key] = protector.with_status(outcome.status)
        return outcome.results[0]

    def pod_in_protector(self, *args) -> None:
        pass


def _eviction(pod: dict) -> ReviewRequest:
    return ReviewRequest(
        uid="u",
        operation="CREATE",
        group="",
        resource="pods",
        sub_resource="eviction",
        namespace="ns",
        name=pod["metadata"]["name"],
        object={"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {}},
        old_object=None,
        dry_run=False,
        username="kubectl",
    )


SCENARIOS = [
    (
        "mixed-node",
        [
            *(_pod(f"roomy-{i}", "roomy") for i in range(3)),
            *(_pod(f"tight-{i}", "tight") for i in range(2)),
            *(_pod(f"part-{i}", "part") for i in range(3)),
            _pod("loose", "nobody"),
            _pod("tight-sick", "tight", ready=False),
        ],
        [
            _protector("roomy", 1, 5),
            _protector("tight", 2, 2),
            _protector("part", 2, 4),
        ],
    ),
    (
        "buffered",
        [_pod(f"web-{i}") for i in range(4)],
        [_protector("web", 1, 10, lag_limit=2)],
    ),
]


@pytest.mark.parametrize(
    ("pods", "protectors"), [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS]
)
def test_plan_agrees_with_the_webhook_deciding_one_eviction_at_a_time(pods, protectors) -> None:
    config = _config()
    plan = _plan(pods, protectors, config=config)
    store = _Store(protectors, config)
    by_name = {p["metadata"]["name"]: p for p in pods}
    decider = Decider(
        config=config,
        protectors=store,
        synced=lambda: True,
        batcher=store,
        fetch_pod=lambda cell, ns, name, deadline: by_name[name],
        observer=store,
        started_at=0.0,
        now=lambda: NOW,
        monotonic=lambda: 1000.0,
    )
    # The plan's order, newest first, as the quota walks one batch.
    answers = {
        name: decider.decide(CELL, _eviction(by_name[name]), deadline=1e9)
        for name in reversed([p.name for p in plan.pods])
    }
    for pod in plan.pods:
        answer = answers[pod.name]
        assert answer.allowed == pod.verdict.goes, pod
        if not answer.allowed:
            # Same protector, same message family; a refusal after admissions in earlier
            # batches is a 409 where one shared batch says 429 (see console/planner.py).
            assert answer.message.startswith(f"PodProtector {pod.refusal.protector} ")
            if not pod.contended:
                assert (answer.code, answer.message) == (pod.refusal.code, pod.refusal.message)

"""The generator's pure reconcile decision (design.md §4 "Generator"), as a table of cases."""

from __future__ import annotations

from typing import Any

import pytest

from protectors import constants
from protectors.selectors import parse_selector_string
from workers.generator.decide import (
    Options,
    UpdateProtector,
    decide,
    is_required,
)
from workers.generator.plugins import DEPLOYMENT_PLUGIN, STATEFULSET_PLUGIN
from workers.generator.protector import FINALIZER, render_protector

SELECTOR = parse_selector_string(constants.DEFAULT_PROTECTION_SELECTOR)
PROTECT = {constants.LABEL_PROTECT: "true"}
NOW = "2024-05-01T10:00:00Z"


def workload(
    *,
    labels: dict[str, str] | None = None,
    finalizer: bool = True,
    terminating: bool = False,
    replicas: int | None = 4,
    max_unavailable: Any = None,
    uid: str = "uid-1",
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": "web",
        "namespace": "ns",
        "uid": uid,
        "resourceVersion": "10",
        "labels": PROTECT if labels is None else labels,
    }
    if finalizer:
        metadata["finalizers"] = [FINALIZER]
    if terminating:
        metadata["deletionTimestamp"] = NOW
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "web"}}}
    if replicas is not None:
        spec["replicas"] = replicas
    if max_unavailable is not None:
        spec["strategy"] = {"rollingUpdate": {"maxUnavailable": max_unavailable}}
    return {"metadata": metadata, "spec": spec}


def protector(
    *,
    of: dict[str, Any] | None = None,
    managed: bool = True,
    finalizer: bool = True,
    terminating: bool = False,
    min_available: int | None = None,
    remove_cells: str | None = None,
    cells: tuple[str, ...] = (),
) -> dict[str, Any]:
    source = of or workload()
    body = render_protector(DEPLOYMENT_PLUGIN, source, DEPLOYMENT_PLUGIN.protector_spec(source))
    metadata = body["metadata"]
    metadata.update(uid="ppr-uid", resourceVersion="20")
    if not managed:
        del metadata["labels"], metadata["ownerReferences"]
    if not finalizer:
        del metadata["finalizers"]
    if terminating:
        metadata["deletionTimestamp"] = NOW
    if min_available is not None:
        body["spec"]["minAvailable"] = min_available
    if remove_cells is not None:
        metadata["annotations"] = {constants.ANNOTATION_REMOVE_CELL_ONCE: remove_cells}
    if cells:
        body["status"] = {
            "cells": [
                {"cellID": c, "aggregation": {"totalReplicas": 1, "availableReplicas": 1}}
                for c in cells
            ]
        }
    return body


ABSENT = object()  # the workload is gone
RELEASE = ["RemoveProtectorFinalizer", "DeleteProtector"]

CASES = [
    # (id, workload, protector, last_seen, protect_non_zero, actions, required, dangling)
    ("new-workload", workload(finalizer=False), None, None, False,
     ["AddWorkloadFinalizer", "CreateProtector"], True, False),
    ("finalizer-already-there", workload(), None, None, False,
     ["CreateProtector"], True, False),
    ("up-to-date", workload(), protector(), None, False, [], True, False),
    ("scaled", workload(replicas=8), protector(), None, False,
     ["UpdateProtector"], True, False),
    ("max-unavailable-changed", workload(max_unavailable=2), protector(), None, False,
     ["UpdateProtector"], True, False),
    ("protector-lost-finalizer", workload(), protector(finalizer=False), None, False,
     ["UpdateProtector"], True, False),
    ("protector-not-labelled-is-adopted", workload(), protector(managed=False), None, False,
     ["UpdateProtector"], True, False),
    ("workload-lost-finalizer", workload(finalizer=False), protector(), None, False,
     ["AddWorkloadFinalizer"], True, False),
    ("workload-recreated-new-uid", workload(uid="uid-2"), protector(), None, False,
     ["UpdateProtector"], True, False),
    ("unlabelled", workload(labels={}), protector(), None, False,
     [*RELEASE, "RemoveWorkloadFinalizer"], False, False),
    ("label-false", workload(labels={constants.LABEL_PROTECT: "false"}), protector(), None,
     False, [*RELEASE, "RemoveWorkloadFinalizer"], False, False),
    ("unlabelled-protector-gone", workload(labels={}), None, None, False,
     ["RemoveWorkloadFinalizer"], False, False),
    ("unlabelled-nothing-left", workload(labels={}, finalizer=False), None, None, False,
     [], False, False),
    ("unlabelled-foreign-protector-untouched", workload(labels={}),
     protector(managed=False, finalizer=False), None, False,
     ["RemoveWorkloadFinalizer"], False, False),
    ("unlabelled-protector-already-terminating", workload(labels={}),
     protector(terminating=True), None, False,
     ["RemoveProtectorFinalizer", "RemoveWorkloadFinalizer"], False, False),
    ("terminating", workload(terminating=True), protector(), None, False,
     [*RELEASE, "RemoveWorkloadFinalizer"], False, False),
    ("terminating-protect-non-zero", workload(terminating=True), protector(), None, True,
     [], True, False),
    ("terminating-protect-non-zero-scaled-to-zero",
     workload(terminating=True, replicas=0), protector(min_available=0), None, True,
     [*RELEASE, "RemoveWorkloadFinalizer"], False, False),
    ("terminating-protect-non-zero-no-protector", workload(terminating=True), None, None, True,
     ["CreateProtector"], True, False),
    ("terminating-without-finalizer-gets-no-protector",
     workload(terminating=True, finalizer=False), None, None, True, [], True, False),
    ("protector-being-deleted-while-required", workload(), protector(terminating=True), None,
     False, [], True, False),
    ("vanished-never-seen", ABSENT, protector(), None, False, [], True, True),
    ("vanished-without-deletion", ABSENT, protector(), workload(), False, [], True, True),
    ("vanished-while-terminating-cache-lag", ABSENT, protector(), workload(terminating=True),
     False, RELEASE, False, False),
    ("vanished-protect-non-zero-replicas", ABSENT, protector(), workload(terminating=True),
     True, [], True, True),
    ("vanished-after-unlabel", ABSENT, protector(), workload(labels={}), False,
     RELEASE, False, False),
    ("vanished-no-protector", ABSENT, None, workload(), False, [], False, False),
    ("vanished-foreign-protector", ABSENT, protector(managed=False, finalizer=False), None,
     False, [], False, False),
    # remove-cell-once is not a workload matter (workers/generator/cell_removal.py does it for
    # every PodProtector): the workload reconcile leaves it alone.
    ("remove-cell-once-ignored", workload(), protector(remove_cells="cell-a, cell-b",
     cells=("cell-a", "cell-b", "cell-c")), None, False, [], True, False),
    ("remove-cell-once-and-spec", workload(replicas=9),
     protector(remove_cells="cell-a", cells=("cell-a",)), None, False,
     ["UpdateProtector"], True, False),
    ("remove-cell-once-on-dangling", ABSENT, protector(remove_cells="cell-a", cells=("cell-a",)),
     None, False, [], True, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("current", "existing", "last_seen", "non_zero", "actions", "required", "dangling"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide(current, existing, last_seen, non_zero, actions, required, dangling) -> None:
    decision = decide(
        DEPLOYMENT_PLUGIN,
        "web",
        None if current is ABSENT else current,
        existing,
        Options(SELECTOR, protect_non_zero=non_zero),
        last_seen=last_seen,
    )
    assert decision.action_names == actions
    assert decision.required is required
    assert decision.dangling is dangling
    assert decision.problem is None


def test_update_carries_the_new_spec_and_the_cached_resource_version() -> None:
    decision = decide(
        DEPLOYMENT_PLUGIN, "web", workload(replicas=8), protector(), Options(SELECTOR)
    )
    (update,) = decision.actions
    assert isinstance(update, UpdateProtector)
    assert update.body["spec"]["minAvailable"] == 6  # 8 - ceil(25% of 8)
    assert update.body["metadata"]["resourceVersion"] == "20"
    assert "status" not in update.body


@pytest.mark.parametrize(
    ("max_unavailable", "has_protector", "actions"),
    [("abc", False, []), ("abc", True, []), (-1, True, [])],
)
def test_unreadable_spec_is_a_problem_and_never_overwrites(
    max_unavailable, has_protector, actions
) -> None:
    current = workload(max_unavailable=max_unavailable)
    existing = protector() if has_protector else None
    decision = decide(DEPLOYMENT_PLUGIN, "web", current, existing, Options(SELECTOR))
    assert decision.action_names == actions
    assert decision.required
    assert decision.problem is not None
    assert "maxUnavailable" in decision.problem


def test_unreadable_spec_still_repairs_metadata() -> None:
    current = workload(max_unavailable="abc")
    decision = decide(
        DEPLOYMENT_PLUGIN, "web", current, protector(finalizer=False), Options(SELECTOR)
    )
    (update,) = decision.actions
    assert isinstance(update, UpdateProtector)
    assert FINALIZER in update.body["metadata"]["finalizers"]
    assert update.body["spec"]["minAvailable"] == 3  # the old spec is kept as it was


@pytest.mark.parametrize(
    ("selector", "labels", "terminating", "non_zero", "replicas", "required"),
    [
        (constants.DEFAULT_PROTECTION_SELECTOR, PROTECT, False, False, 3, True),
        (constants.DEFAULT_PROTECTION_SELECTOR, {}, False, False, 3, False),
        (constants.DEFAULT_PROTECTION_SELECTOR, PROTECT, True, False, 3, False),
        (constants.DEFAULT_PROTECTION_SELECTOR, PROTECT, True, True, 3, True),
        (constants.DEFAULT_PROTECTION_SELECTOR, PROTECT, True, True, None, True),  # default 1
        (constants.DEFAULT_PROTECTION_SELECTOR, PROTECT, True, True, 0, False),
        ("tier in (gold,silver)", {"tier": "gold"}, False, False, 3, True),
        ("tier in (gold,silver)", {"tier": "bronze"}, False, False, 3, False),
        ("", {}, False, False, 3, True),  # empty selector: everything
    ],
)
def test_is_required(selector, labels, terminating, non_zero, replicas, required) -> None:
    current = workload(labels=labels, terminating=terminating, replicas=replicas)
    options = Options(parse_selector_string(selector), protect_non_zero=non_zero)
    assert is_required(DEPLOYMENT_PLUGIN, current, options) is required


def test_statefulset_goes_through_the_same_decision() -> None:
    current = workload()
    current["spec"]["updateStrategy"] = {"rollingUpdate": {"maxUnavailable": "50%"}}
    decision = decide(STATEFULSET_PLUGIN, "web", current, None, Options(SELECTOR))
    assert decision.action_names == ["CreateProtector"]
    body = decision.actions[0].body
    assert body["metadata"]["name"] == "statefulset-web"
    assert body["spec"]["minAvailable"] == 2  # 4 - ceil(50% of 4)

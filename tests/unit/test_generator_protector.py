"""Rendering generated PodProtectors and reading existing ones (labels, finalizer, owner)."""

from __future__ import annotations

from typing import Any

import pytest

from protectors import constants
from protectors.model import PodProtector
from workers.generator.plugins import DEPLOYMENT_PLUGIN, STATEFULSET_PLUGIN
from workers.generator.protector import (
    FINALIZER,
    is_managed,
    owner_reference,
    parse_remove_cell_once,
    reconciled_protector,
    render_protector,
    source_keys,
    source_labels,
)


def deployment(name: str = "web", uid: str = "uid-1", replicas: int = 4) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "resourceVersion": "7"},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": 5,
            "selector": {"matchLabels": {"app": name}},
        },
    }


def rendered(workload: dict[str, Any] | None = None) -> dict[str, Any]:
    workload = workload or deployment()
    return render_protector(DEPLOYMENT_PLUGIN, workload, DEPLOYMENT_PLUGIN.protector_spec(workload))


def test_render_deployment_protector() -> None:
    assert rendered() == {
        "apiVersion": "podseidon.kubewharf.io/v1alpha1",
        "kind": "PodProtector",
        "metadata": {
            "name": "deployment-web",
            "namespace": "shop",
            "labels": {
                "podseidon.kubewharf.io/source-name": "web",
                "podseidon.kubewharf.io/source-kind": "Deployment",
                "podseidon.kubewharf.io/source-group": "apps",
                "podseidon.kubewharf.io/source-resource": "deployments",
            },
            "finalizers": ["podseidon.kubewharf.io/generator"],
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "web",
                    "uid": "uid-1",
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": {
            "minAvailable": 3,
            "minReadySeconds": 5,
            "selector": {"matchLabels": {"app": "web"}},
        },
    }


def test_rendered_protector_parses_with_the_model() -> None:
    parsed = PodProtector.from_dict(rendered())
    assert parsed.spec.min_available == 3
    assert parsed.spec.label_selector.matches({"app": "web"})


def test_statefulset_labels_and_owner() -> None:
    assert source_labels(STATEFULSET_PLUGIN, "db") == {
        constants.LABEL_SOURCE_NAME: "db",
        constants.LABEL_SOURCE_KIND: "StatefulSet",
        constants.LABEL_SOURCE_GROUP: "apps",
        constants.LABEL_SOURCE_RESOURCE: "statefulsets",
    }
    ref = owner_reference(STATEFULSET_PLUGIN, deployment("db", uid="u9"))
    assert (ref["apiVersion"], ref["kind"], ref["name"], ref["uid"]) == (
        "apps/v1",
        "StatefulSet",
        "db",
        "u9",
    )


def test_rendered_selector_is_a_copy() -> None:
    workload = deployment()
    body = rendered(workload)
    body["spec"]["selector"]["matchLabels"]["app"] = "changed"
    assert workload["spec"]["selector"]["matchLabels"]["app"] == "web"


# --- reconciled_protector -------------------------------------------------------------------


def existing(**metadata: Any) -> dict[str, Any]:
    body = rendered()
    body["metadata"].update(uid="ppr-uid", resourceVersion="30", **metadata)
    body["status"] = {"cells": []}
    return body


def test_up_to_date_protector_needs_no_write() -> None:
    workload = deployment()
    spec = DEPLOYMENT_PLUGIN.protector_spec(workload)
    assert reconciled_protector(DEPLOYMENT_PLUGIN, workload, spec, existing()) is None


def test_reconciled_keeps_foreign_labels_finalizers_owners_and_spec_fields() -> None:
    other_owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "cm"}
    current = existing(
        labels={"team": "a", constants.LABEL_SOURCE_NAME: "web"},
        finalizers=["example.com/keep"],
        ownerReferences=[other_owner],
    )
    current["spec"]["admissionHistoryConfig"] = {"maxConcurrentLag": 2}
    workload = deployment(replicas=10)
    body = reconciled_protector(
        DEPLOYMENT_PLUGIN, workload, DEPLOYMENT_PLUGIN.protector_spec(workload), current
    )
    assert body is not None
    metadata = body["metadata"]
    assert metadata["labels"] == {"team": "a", **source_labels(DEPLOYMENT_PLUGIN, "web")}
    assert metadata["finalizers"] == ["example.com/keep", FINALIZER]
    assert metadata["ownerReferences"] == [
        other_owner,
        owner_reference(DEPLOYMENT_PLUGIN, workload),
    ]
    assert metadata["resourceVersion"] == "30"
    assert body["spec"]["minAvailable"] == 7
    assert body["spec"]["admissionHistoryConfig"] == {"maxConcurrentLag": 2}
    assert "status" not in body


def test_reconciled_replaces_the_controller_reference_of_an_old_workload() -> None:
    current = existing()
    workload = deployment(uid="uid-2")
    body = reconciled_protector(
        DEPLOYMENT_PLUGIN, workload, DEPLOYMENT_PLUGIN.protector_spec(workload), current
    )
    assert body is not None
    assert [r["uid"] for r in body["metadata"]["ownerReferences"]] == ["uid-2"]


def test_no_finalizer_is_added_to_a_protector_being_deleted() -> None:
    current = existing(finalizers=[], deletionTimestamp="2024-05-01T00:00:00Z")
    workload = deployment()
    body = reconciled_protector(
        DEPLOYMENT_PLUGIN, workload, DEPLOYMENT_PLUGIN.protector_spec(workload), current
    )
    assert body is None


def test_spec_none_leaves_spec_alone() -> None:
    current = existing(finalizers=[])
    body = reconciled_protector(DEPLOYMENT_PLUGIN, deployment(replicas=50), None, current)
    assert body is not None
    assert body["spec"] == current["spec"]
    assert body["metadata"]["finalizers"] == [FINALIZER]


# --- reading ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "managed"),
    [
        ({"labels": source_labels(DEPLOYMENT_PLUGIN, "web")}, True),
        ({"labels": source_labels(DEPLOYMENT_PLUGIN, "other")}, False),
        ({"labels": source_labels(STATEFULSET_PLUGIN, "web")}, False),
        ({"finalizers": [FINALIZER]}, True),
        (
            {
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                     "controller": True}
                ]
            },
            True,
        ),
        (
            {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}]},
            False,
        ),
        ({}, False),
    ],
)  # fmt: skip
def test_is_managed(metadata: dict[str, Any], managed: bool) -> None:
    protector = {"metadata": {"name": "deployment-web", "namespace": "shop", **metadata}}
    assert is_managed(DEPLOYMENT_PLUGIN, "web", protector) is managed


@pytest.mark.parametrize(
    ("value", "cells"),
    [
        (None, ()),
        ("", ()),
        ("cell-a", ("cell-a",)),
        ("cell-a,cell-b", ("cell-a", "cell-b")),
        (" cell-a , cell-b ", ("cell-a", "cell-b")),
        ("cell-a,,cell-b,", ("cell-a", "cell-b")),
        ("cell-b,cell-a,cell-b", ("cell-b", "cell-a")),
        (" , ", ()),
    ],
)
def test_parse_remove_cell_once(value: str | None, cells: tuple[str, ...]) -> None:
    assert parse_remove_cell_once(value) == cells


PLUGINS = (DEPLOYMENT_PLUGIN, STATEFULSET_PLUGIN)


@pytest.mark.parametrize(
    ("metadata", "keys"),
    [
        # generated: labels, owner and name agree
        (rendered()["metadata"], [("deployments.apps", "shop", "web")]),
        # labels only
        (
            {"name": "custom", "labels": source_labels(STATEFULSET_PLUGIN, "db")},
            [("statefulsets.apps", "shop", "db")],
        ),
        # owner only
        (
            {
                "name": "custom",
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api",
                     "controller": True}
                ],
            },
            [("deployments.apps", "shop", "api")],
        ),
        # name only (a hand-made protector the generator may adopt)
        ({"name": "statefulset-db"}, [("statefulsets.apps", "shop", "db")]),
        # labels of a kind that is not enabled, and an unrelated name
        ({"name": "custom", "labels": {constants.LABEL_SOURCE_NAME: "x",
          constants.LABEL_SOURCE_RESOURCE: "daemonsets", constants.LABEL_SOURCE_GROUP: "apps"}},
         []),
        ({"name": "deployment-"}, []),
    ],
)  # fmt: skip
def test_source_keys(metadata: dict[str, Any], keys: list[tuple[str, str, str]]) -> None:
    protector = {"metadata": {"namespace": "shop", **metadata}}
    assert source_keys(protector, PLUGINS) == keys


def test_source_keys_only_for_enabled_plugins() -> None:
    protector = {"metadata": {"namespace": "shop", "name": "statefulset-db"}}
    assert source_keys(protector, (DEPLOYMENT_PLUGIN,)) == []

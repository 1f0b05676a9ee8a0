"""remove-cell-once on one PodProtector (workers/generator/cell_removal.py) against a fake
client: what is written, with which resourceVersion, in which order, and what a conflict does."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from protectors import constants
from protectors.history_config import DEFAULT_HISTORY_CONFIG
from protectors.kube.client import KubeError
from protectors.kube.events import ObjectReference
from workers.generator.cell_removal import (
    ATTEMPTS,
    CellRemover,
    removal_plan,
    removed_status,
)
from workers.generator.observer import GeneratorObserver

ANNOTATION = constants.ANNOTATION_REMOVE_CELL_ONCE


def protector(*cells: str, annotation: str | None = "cell-a", rv: str = "40") -> dict[str, Any]:
    """A hand-made PodProtector (no generator labels, no owner): 2 available pods per cell."""
    metadata: dict[str, Any] = {
        "name": "handmade",
        "namespace": "ns",
        "uid": "p-uid",
        "resourceVersion": rv,
    }
    if annotation is not None:
        metadata["annotations"] = {ANNOTATION: annotation, "team": "payments"}
    return {
        "apiVersion": "podseidon.kubewharf.io/v1alpha1",
        "kind": "PodProtector",
        "metadata": metadata,
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}},
        "status": {
            "cells": [
                {
                    "cellID": c,
                    "aggregation": {"totalReplicas": 2, "availableReplicas": 2},
                    "admissionHistory": {"buckets": []},
                }
                for c in cells
            ],
            "summary": {
                "totalReplicas": 2 * len(cells),
                "aggregatedAvailableReplicas": 2 * len(cells),
                "estimatedAvailableReplicas": 2 * len(cells),
            },
        },
    }


class FakeClient:
    """One PodProtector; status writes and merge patches honour the resourceVersion."""

    def __init__(self, obj: dict[str, Any] | None) -> None:
        self.obj = copy.deepcopy(obj)
        self.calls: list[tuple[str, Any]] = []
        self.rv = 100
        # Before the n-th write (0-based), someone else writes: the write conflicts.
        self.race_before: set[int] = set()
        self.writes = 0

    def _race(self) -> None:
        index, self.writes = self.writes, self.writes + 1
        if index in self.race_before:
            self.rv += 1
            self.obj["metadata"]["resourceVersion"] = str(self.rv)

    def get(self, resource, namespace, name):
        self.calls.append(("get", None))
        if self.obj is None:
            raise KubeError(404, "NotFound", "gone")
        return copy.deepcopy(self.obj)

    def replace_status(self, resource, namespace, name, body):
        self.calls.append(("replace_status", body))
        self._race()
        if body["metadata"]["resourceVersion"] != self.obj["metadata"]["resourceVersion"]:
            raise KubeError(409, "Conflict", "the object has been modified")
        self.rv += 1
        self.obj = {**self.obj, "status": copy.deepcopy(body["status"])}
        self.obj["metadata"] = {**self.obj["metadata"], "resourceVersion": str(self.rv)}
        return copy.deepcopy(self.obj)

    def patch(self, resource, namespace, name, patch):
        self.calls.append(("patch", patch))
        self._race()
        if patch["metadata"]["resourceVersion"] != self.obj["metadata"]["resourceVersion"]:
            raise KubeError(409, "Conflict", "the object has been modified")
        self.rv += 1
        annotations = dict(self.obj["metadata"].get("annotations") or {})
        for key, value in patch["metadata"]["annotations"].items():
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value
        self.obj["metadata"] = {
            **self.obj["metadata"],
            "annotations": annotations,
            "resourceVersion": str(self.rv),
        }
        return copy.deepcopy(self.obj)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def normal(self, obj, reason: str, message: str) -> None:
        self.events.append((ObjectReference.of(obj).name, reason, message))


def remover(client: FakeClient) -> tuple[CellRemover, Recorder]:
    recorder = Recorder()
    return CellRemover(client, GeneratorObserver(), recorder), recorder  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "cells", "requested", "present"),
    [
        ("cell-a", ("cell-a", "cell-b"), ("cell-a",), ("cell-a",)),
        ("cell-b, cell-x,cell-a,cell-b", ("cell-a", "cell-b"), ("cell-b", "cell-x", "cell-a"),
         ("cell-b", "cell-a")),
        ("cell-x", ("cell-a",), ("cell-x",), ()),
        (" , ", ("cell-a",), (), ()),
        ("", (), (), ()),
    ],
)  # fmt: skip
def test_the_plan_names_the_requested_cells_that_are_in_status(
    value, cells, requested, present
) -> None:
    plan = removal_plan(protector(*cells, annotation=value))
    assert plan is not None
    assert (plan.requested, plan.present) == (requested, present)


def test_no_annotation_no_plan() -> None:
    assert removal_plan(protector("cell-a", annotation=None)) is None


def test_removed_status_recomputes_the_summary() -> None:
    status = removed_status(protector("cell-a", "cell-b"), ("cell-a",), DEFAULT_HISTORY_CONFIG)
    assert [c["cellID"] for c in status["cells"]] == ["cell-b"]
    assert status["summary"]["aggregatedAvailableReplicas"] == 2
    assert status["summary"]["totalReplicas"] == 2


def test_drops_the_cell_then_the_annotation_each_with_the_latest_resource_version() -> None:
    client = FakeClient(protector("cell-a", "cell-b"))
    cells, recorder = remover(client)
    removal = cells.process("ns", "handmade")
    assert (removal.result, removal.removed) == ("removed", ("cell-a",))
    assert [c[0] for c in client.calls] == ["get", "replace_status", "patch"]
    assert client.calls[1][1]["metadata"]["resourceVersion"] == "40"
    assert client.calls[2][1] == {
        "metadata": {"resourceVersion": "101", "annotations": {ANNOTATION: None}}
    }
    assert [c["cellID"] for c in client.obj["status"]["cells"]] == ["cell-b"]
    assert client.obj["metadata"]["annotations"] == {"team": "payments"}  # only ours went
    assert [(name, reason) for name, reason, _ in recorder.events] == [
        ("handmade", "CellRemoved"),
        ("handmade", "RemoveCellOnceProcessed"),
    ]
    assert "aggregated available 4 -> 2" in recorder.events[0][2]


def test_a_cell_not_in_status_only_drops_the_annotation() -> None:
    client = FakeClient(protector("cell-b", annotation="cell-a,cell-x"))
    cells, recorder = remover(client)
    removal = cells.process("ns", "handmade")
    assert removal.result == "not_in_status"
    assert [c[0] for c in client.calls] == ["get", "patch"]
    assert "nothing to remove; not in status: cell-a, cell-x" in recorder.events[-1][2]


def test_a_conflicting_status_write_is_retried_from_a_fresh_read() -> None:
    client = FakeClient(protector("cell-a", "cell-b"))
    client.race_before = {0}  # an aggregator writes status between our read and our write
    cells, _ = remover(client)
    assert cells.process("ns", "handmade").result == "removed"
    assert [c[0] for c in client.calls] == [
        "get",
        "replace_status",
        "get",
        "replace_status",
        "patch",
    ]
    assert [c["cellID"] for c in client.obj["status"]["cells"]] == ["cell-b"]
    assert ANNOTATION not in client.obj["metadata"]["annotations"]


def test_a_conflicting_annotation_patch_starts_over_and_keeps_what_was_removed() -> None:
    client = FakeClient(protector("cell-a", "cell-b"))
    client.race_before = {1}  # someone writes between our status write and our patch
    cells, recorder = remover(client)
    removal = cells.process("ns", "handmade")
    assert (removal.result, removal.removed) == ("removed", ("cell-a",))
    assert [c[0] for c in client.calls] == ["get", "replace_status", "patch", "get", "patch"]
    assert "removed cell-a" in recorder.events[-1][2]


def test_conflicts_past_the_inline_attempts_are_left_to_the_queue() -> None:
    client = FakeClient(protector("cell-a"))
    client.race_before = set(range(10))
    cells, _ = remover(client)
    with pytest.raises(KubeError) as failure:
        cells.process("ns", "handmade")
    assert failure.value.is_conflict
    assert [c[0] for c in client.calls].count("get") == ATTEMPTS


def test_nothing_to_do_when_the_annotation_or_the_protector_is_gone() -> None:
    client = FakeClient(protector("cell-a", annotation=None))
    assert remover(client)[0].process("ns", "handmade").result == "absent"
    assert [c[0] for c in client.calls] == ["get"]
    gone = FakeClient(None)
    assert remover(gone)[0].process("ns", "handmade").result == "gone"

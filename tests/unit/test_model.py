"""The PodProtector wire model: exact round-trips of recorded objects, Go-like serialization of
built ones, clear errors for bad input."""

import copy
import json
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from protectors import constants
from protectors.model import (
    WRITTEN_FIELD_PATHS,
    AdmissionHistory,
    AdmissionHistoryConfig,
    Aggregation,
    Bucket,
    CellStatus,
    PodProtector,
    PodProtectorFormatError,
    Spec,
    Status,
    Summary,
)
from protectors.selectors import LabelSelector

T0 = datetime(2026, 11, 21, tzinfo=UTC)
T1 = datetime(2026, 11, 21, 0, 0, 1, 500000, tzinfo=UTC)


def _reference_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "fixtures" / "kube-apiserver-v1.24"


def _find_protectors(node, where):
    """Every PodProtector object (with a spec) anywhere inside a recorded exchange."""
    if isinstance(node, dict):
        if node.get("kind") == constants.KIND and isinstance(node.get("spec"), dict):
            yield where, node
            return
        for key, value in node.items():
            yield from _find_protectors(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _find_protectors(value, f"{where}[{index}]")


def _recorded_protectors():
    directory = _reference_dir()
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.json")):
        for where, body in _find_protectors(json.loads(path.read_text()), path.stem):
            found.append(pytest.param(body, id=where))
    return found


RECORDED = _recorded_protectors()
VALID_RECORDED = [p for p in RECORDED if p.values[0]["spec"].get("minAvailable", 0) >= 0]


def test_reference_recordings_found():
    # The recordings are part of the repository; their absence must fail loudly, or every
    # round-trip case below would silently vanish.
    assert _reference_dir().is_dir(), f"reference recordings not found at {_reference_dir()}"
    # Files 22, 24, 25, 26 and 27 hold PodProtector bodies; losing them would hide regressions.
    assert len(VALID_RECORDED) >= 8


@pytest.mark.parametrize("body", VALID_RECORDED)
def test_recorded_protector_round_trips_exactly(body):
    original = copy.deepcopy(body)
    parsed = PodProtector.from_dict(body)
    assert parsed.to_dict() == original
    assert body == original, "parsing must not modify its input"


def test_recorded_invalid_min_available_is_rejected():
    invalid = [p for p in RECORDED if p.values[0]["spec"].get("minAvailable", 0) < 0]
    assert invalid, "recording 23 (negative minAvailable) is missing"
    with pytest.raises(PodProtectorFormatError) as info:
        PodProtector.from_dict(invalid[0].values[0])
    assert info.value.path == "spec.minAvailable"


SPEC = {"minAvailable": 2, "minReadySeconds": 0, "selector": {"matchLabels": {"app": "web"}}}


def _ppr(**overrides):
    body = {
        "apiVersion": constants.API_VERSION,
        "kind": constants.KIND,
        "metadata": {"name": "p", "namespace": "demo"},
        "spec": copy.deepcopy(SPEC),
    }
    body.update(overrides)
    return body


# (id, body) shapes a parser must keep exactly as they came.
PRESERVED_SHAPES = [
    ("empty-status", _ppr(status={"cells": [], "summary": {}})),
    (
        "null-buckets",
        _ppr(status={"cells": [{"cellID": "a", "admissionHistory": {"buckets": None}}]}),
    ),
    (
        "zero-optionals",
        _ppr(
            status={
                "cells": [
                    {
                        "cellID": "a",
                        "aggregation": {
                            "totalReplicas": 0,
                            "availableReplicas": 0,
                            "readyReplicas": 0,
                            "scheduledReplicas": 0,
                            "runningReplicas": 0,
                        },
                    }
                ]
            }
        ),
    ),
    ("no-api-version-or-kind", {"metadata": {"name": "p"}, "spec": copy.deepcopy(SPEC)}),
    ("spec-unknown-field", _ppr(spec={**SPEC, "futureKnob": {"x": [1, 2]}})),
    (
        "status-unknown-fields",
        _ppr(
            status={
                "cells": [
                    {
                        "cellID": "a",
                        "newCellField": True,
                        "aggregation": {"x": 1},
                        "admissionHistory": {
                            "buckets": [
                                {
                                    "startTime": "2026-11-21T00:00:00.000000Z",
                                    "podUID": "u",
                                    "hint": "h",
                                }
                            ],
                            "more": 1,
                        },
                    }
                ],
                "summary": {"totalReplicas": 1, "extraSummary": "s"},
                "conditions": [],
            }
        ),
    ),
    ("top-level-unknown", _ppr(extraTop={"k": "v"})),
    (
        "compacted-bucket",
        _ppr(
            status={
                "cells": [
                    {
                        "cellID": "a",
                        "admissionHistory": {
                            "buckets": [
                                {
                                    "startTime": "2026-11-21T00:00:00.000000Z",
                                    "endTime": "2026-11-21T00:00:05.000000Z",
                                    "counter": 7,
                                }
                            ]
                        },
                    }
                ]
            }
        ),
    ),
    (
        "full-spec",
        _ppr(
            spec={
                **SPEC,
                "aggregationSelector": {
                    "matchExpressions": [
                        {"key": "app", "operator": "In", "values": ["web", "web-canary"]}
                    ]
                },
                "admissionHistoryConfig": {
                    "maxConcurrentLag": 0,
                    "compactThreshold": 10,
                    "aggregationRateMillis": 500,
                },
            }
        ),
    ),
    (
        "summary-zero-latency",
        _ppr(
            status={
                "cells": [],
                "summary": {
                    "totalReplicas": 0,
                    "aggregatedAvailableReplicas": 0,
                    "estimatedAvailableReplicas": -1,
                    "maxLatencyMillis": 0,
                },
            }
        ),
    ),
]


@pytest.mark.parametrize(
    "body", [c[1] for c in PRESERVED_SHAPES], ids=[c[0] for c in PRESERVED_SHAPES]
)
def test_parsed_shapes_are_preserved(body):
    assert PodProtector.from_dict(copy.deepcopy(body)).to_dict() == body


def test_parse_reads_values():
    ppr = PodProtector.from_dict(
        _ppr(
            status={
                "cells": [
                    {
                        "cellID": "cell-a",
                        "aggregation": {
                            "totalReplicas": 4,
                            "availableReplicas": 3,
                            "readyReplicas": 4,
                            "lastEventTime": "2026-11-21T00:00:00.000000Z",
                        },
                        "admissionHistory": {
                            "buckets": [
                                {
                                    "startTime": "2026-11-21T00:00:01.500000Z",
                                    "podUID": "uid-1",
                                    "podName": "web-1",
                                }
                            ]
                        },
                    }
                ],
                "summary": {"totalReplicas": 4, "maxLatencyMillis": 1500},
            }
        )
    )
    assert ppr.key == "demo/p"
    assert ppr.spec.min_available == 2
    assert ppr.spec.label_selector == LabelSelector.from_dict({"matchLabels": {"app": "web"}})
    assert ppr.spec.aggregation_label_selector == ppr.spec.label_selector
    cell = ppr.status.cell("cell-a")
    assert cell.aggregation == Aggregation(
        total_replicas=4, available_replicas=3, ready_replicas=4, last_event_time=T0
    )
    assert cell.buckets == (Bucket(start_time=T1, pod_uid="uid-1", pod_name="web-1"),)
    assert ppr.status.summary.max_latency_millis == 1500
    assert ppr.status.cell("missing") is None


# (id, object built in code, its expected JSON form)
BUILT_CASES = [
    (
        "minimal-protector",
        PodProtector(metadata={"name": "p"}, spec=Spec(min_available=0, selector={})),
        {
            "apiVersion": "podseidon.kubewharf.io/v1alpha1",
            "kind": "PodProtector",
            "metadata": {"name": "p"},
            "spec": {"minAvailable": 0, "minReadySeconds": 0, "selector": {}},
        },
    ),
    (
        "empty-history-config-omitted",
        Spec(min_available=1, selector={}, admission_history_config=AdmissionHistoryConfig()),
        {"minAvailable": 1, "minReadySeconds": 0, "selector": {}},
    ),
    (
        "empty-aggregation-selector-kept",
        Spec(min_available=1, selector={"matchLabels": {"a": "b"}}, aggregation_selector={}),
        {
            "minAvailable": 1,
            "minReadySeconds": 0,
            "selector": {"matchLabels": {"a": "b"}},
            "aggregationSelector": {},
        },
    ),
    (
        "history-config-zero-omitted",
        AdmissionHistoryConfig(max_concurrent_lag=0, compact_threshold=5),
        {"compactThreshold": 5},
    ),
    (
        "empty-status",
        Status(),
        {
            "cells": [],
            "summary": {
                "totalReplicas": 0,
                "aggregatedAvailableReplicas": 0,
                "estimatedAvailableReplicas": 0,
            },
        },
    ),
    (
        "bare-cell",
        CellStatus(cell_id="a"),
        {
            "cellID": "a",
            "aggregation": {"totalReplicas": 0, "availableReplicas": 0},
            "admissionHistory": {"buckets": []},
        },
    ),
    (
        "full-aggregation",
        Aggregation(
            total_replicas=5,
            available_replicas=4,
            ready_replicas=4,
            scheduled_replicas=5,
            running_replicas=5,
            last_event_time=T1,
        ),
        {
            "totalReplicas": 5,
            "availableReplicas": 4,
            "readyReplicas": 4,
            "scheduledReplicas": 5,
            "runningReplicas": 5,
            "lastEventTime": "2026-11-21T00:00:01.500000Z",
        },
    ),
    (
        "single-pod-bucket",
        Bucket(start_time=T0, pod_uid="u"),
        {"startTime": "2026-11-21T00:00:00.000000Z", "podUID": "u"},
    ),
    (
        "bucket-empty-strings-omitted",
        Bucket(start_time=T0, pod_uid="", pod_name=""),
        {"startTime": "2026-11-21T00:00:00.000000Z"},
    ),
    (
        "compacted-bucket",
        Bucket(start_time=T0, end_time=T1, counter=3),
        {
            "startTime": "2026-11-21T00:00:00.000000Z",
            "endTime": "2026-11-21T00:00:01.500000Z",
            "counter": 3,
        },
    ),
    (
        "summary-zero-optionals-omitted",
        Summary(
            total_replicas=2,
            aggregated_available_replicas=2,
            estimated_available_replicas=1,
            max_latency_millis=0,
        ),
        {"totalReplicas": 2, "aggregatedAvailableReplicas": 2, "estimatedAvailableReplicas": 1},
    ),
    (
        "summary-all",
        Summary(
            total_replicas=3,
            aggregated_available_replicas=2,
            estimated_available_replicas=1,
            max_latency_millis=250,
            aggregated_ready=3,
            aggregated_scheduled=3,
            aggregated_running=3,
        ),
        {
            "totalReplicas": 3,
            "aggregatedAvailableReplicas": 2,
            "estimatedAvailableReplicas": 1,
            "maxLatencyMillis": 250,
            "aggregatedReady": 3,
            "aggregatedScheduled": 3,
            "aggregatedRunning": 3,
        },
    ),
]


@pytest.mark.parametrize(
    ("obj", "expected"), [c[1:] for c in BUILT_CASES], ids=[c[0] for c in BUILT_CASES]
)
def test_built_objects_serialize_like_go(obj, expected):
    assert obj.to_dict() == expected
    assert type(obj).from_dict(expected).to_dict() == expected


def test_replace_of_parsed_object_serializes_like_go():
    parsed = Status.from_dict({"cells": [], "summary": {}})
    assert parsed.to_dict() == {"cells": [], "summary": {}}
    rebuilt = replace(parsed, summary=Summary(total_replicas=1))
    assert rebuilt.to_dict()["summary"] == {
        "totalReplicas": 1,
        "aggregatedAvailableReplicas": 0,
        "estimatedAvailableReplicas": 0,
    }


def test_unknown_fields_survive_replace():
    cell = CellStatus.from_dict({"cellID": "a", "future": 1})
    assert replace(cell, aggregation=Aggregation(total_replicas=1)).to_dict()["future"] == 1


def test_to_dict_returns_independent_copies():
    ppr = PodProtector.from_dict(_ppr())
    out = ppr.to_dict()
    out["metadata"]["name"] = "changed"
    out["spec"]["selector"]["matchLabels"]["app"] = "changed"
    assert ppr.name == "p"
    assert ppr.spec.selector == {"matchLabels": {"app": "web"}}


def test_from_dict_copies_its_input():
    body = _ppr()
    ppr = PodProtector.from_dict(body)
    body["metadata"]["name"] = "changed"
    body["spec"]["selector"]["matchLabels"]["app"] = "changed"
    assert ppr.name == "p"
    assert ppr.spec.label_selector.matches({"app": "web"})


def test_models_are_immutable():
    ppr = PodProtector.from_dict(_ppr())
    with pytest.raises(AttributeError):
        ppr.spec = None  # type: ignore[misc]


def test_status_helpers():
    status = Status(cells=(CellStatus(cell_id="a"), CellStatus(cell_id="b")))
    updated = status.with_cell(CellStatus(cell_id="b", aggregation=Aggregation(total_replicas=2)))
    assert [c.cell_id for c in updated.cells] == ["a", "b"]
    assert updated.cell("b").aggregation.total_replicas == 2
    assert status.cell("b").aggregation.total_replicas == 0
    assert [c.cell_id for c in status.with_cell(CellStatus(cell_id="c")).cells] == ["a", "b", "c"]
    assert [c.cell_id for c in status.without_cells(["a"]).cells] == ["b"]
    cell = CellStatus(cell_id="a").with_buckets([Bucket(start_time=T0)])
    assert cell.admission_history == AdmissionHistory(buckets=(Bucket(start_time=T0),))


def test_bucket_weight_and_end():
    assert Bucket(start_time=T0).weight == 1
    assert Bucket(start_time=T0, counter=0).weight == 1
    assert Bucket(start_time=T0, counter=4).weight == 4
    assert Bucket(start_time=T0).end == T0
    assert Bucket(start_time=T0, end_time=T1).end == T1


# (id, body, field path named by the error)
INVALID_BODIES = [
    ("not-an-object", [], ""),
    ("negative-min-available", _ppr(spec={**SPEC, "minAvailable": -1}), "spec.minAvailable"),
    ("string-min-available", _ppr(spec={**SPEC, "minAvailable": "2"}), "spec.minAvailable"),
    ("bool-min-available", _ppr(spec={**SPEC, "minAvailable": True}), "spec.minAvailable"),
    ("float-min-available", _ppr(spec={**SPEC, "minAvailable": 2.5}), "spec.minAvailable"),
    ("int32-overflow", _ppr(spec={**SPEC, "minAvailable": 2**31}), "spec.minAvailable"),
    ("missing-min-available", _ppr(spec={"selector": {}}), "spec.minAvailable"),
    ("null-min-available", _ppr(spec={**SPEC, "minAvailable": None}), "spec.minAvailable"),
    ("missing-selector", _ppr(spec={"minAvailable": 1}), "spec.selector"),
    ("missing-spec", {"kind": "PodProtector", "metadata": {}}, "spec"),
    ("spec-not-object", _ppr(spec=[]), "spec"),
    (
        "invalid-selector",
        _ppr(spec={**SPEC, "selector": {"matchLabels": {"a": "b c"}}}),
        "spec.selector",
    ),
    (
        "invalid-aggregation-selector",
        _ppr(
            spec={
                **SPEC,
                "aggregationSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]},
            }
        ),
        "spec.aggregationSelector",
    ),
    (
        "history-config-type",
        _ppr(spec={**SPEC, "admissionHistoryConfig": {"compactThreshold": "10"}}),
        "spec.admissionHistoryConfig.compactThreshold",
    ),
    ("cells-not-list", _ppr(status={"cells": {}}), "status.cells"),
    ("cell-without-id", _ppr(status={"cells": [{"aggregation": {}}]}), "status.cells[0].cellID"),
    (
        "duplicate-cell",
        _ppr(status={"cells": [{"cellID": "a"}, {"cellID": "a"}]}),
        "status.cells[1].cellID",
    ),
    (
        "negative-total",
        _ppr(status={"cells": [{"cellID": "a", "aggregation": {"totalReplicas": -1}}]}),
        "status.cells[0].aggregation.totalReplicas",
    ),
    (
        "bad-last-event-time",
        _ppr(status={"cells": [{"cellID": "a", "aggregation": {"lastEventTime": "yesterday"}}]}),
        "status.cells[0].aggregation.lastEventTime",
    ),
    (
        "bucket-without-start",
        _ppr(
            status={"cells": [{"cellID": "a", "admissionHistory": {"buckets": [{"podUID": "u"}]}}]}
        ),
        "status.cells[0].admissionHistory.buckets[0].startTime",
    ),
    (
        "bucket-counter-type",
        _ppr(
            status={
                "cells": [
                    {
                        "cellID": "a",
                        "admissionHistory": {
                            "buckets": [{"startTime": "2026-11-21T00:00:00Z", "counter": "3"}]
                        },
                    }
                ]
            }
        ),
        "status.cells[0].admissionHistory.buckets[0].counter",
    ),
    (
        "summary-type",
        _ppr(status={"summary": {"totalReplicas": "x"}}),
        "status.summary.totalReplicas",
    ),
    ("wrong-kind", _ppr(kind="Pod"), "kind"),
]


@pytest.mark.parametrize(
    ("body", "path"), [c[1:] for c in INVALID_BODIES], ids=[c[0] for c in INVALID_BODIES]
)
def test_invalid_input_names_the_field(body, path):
    with pytest.raises(PodProtectorFormatError) as info:
        PodProtector.from_dict(body)
    assert isinstance(info.value, ValueError)
    assert info.value.path == path
    if path:
        assert str(info.value).startswith(f"{path}: ")


def test_written_field_paths():
    paths = set(WRITTEN_FIELD_PATHS)
    for expected in (
        "spec.minAvailable",
        "spec.minReadySeconds",
        "spec.selector",
        "spec.aggregationSelector",
        "spec.admissionHistoryConfig.maxConcurrentLag",
        "spec.admissionHistoryConfig.compactThreshold",
        "spec.admissionHistoryConfig.aggregationRateMillis",
        "status.cells[].cellID",
        "status.cells[].aggregation.lastEventTime",
        "status.cells[].admissionHistory.buckets[].startTime",
        "status.cells[].admissionHistory.buckets[].counter",
        "status.summary.maxLatencyMillis",
        "status.summary.aggregatedRunning",
    ):
        assert expected in paths
    assert len(paths) == len(WRITTEN_FIELD_PATHS)


def _leaf_paths(node, prefix):
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}"
            yield path
            if not key.endswith("elector"):
                yield from _leaf_paths(value, path)
    elif isinstance(node, list):
        for value in node:
            yield from _leaf_paths(value, prefix + "[]")


def test_every_written_path_is_listed():
    everything_set = PodProtector(
        spec=Spec(
            min_available=1,
            min_ready_seconds=5,
            selector={"matchLabels": {"a": "b"}},
            aggregation_selector={},
            admission_history_config=AdmissionHistoryConfig(
                max_concurrent_lag=1, compact_threshold=2, aggregation_rate_millis=3
            ),
        ),
        status=Status(
            cells=(
                CellStatus(
                    cell_id="a",
                    aggregation=Aggregation(
                        total_replicas=1,
                        available_replicas=1,
                        ready_replicas=1,
                        scheduled_replicas=1,
                        running_replicas=1,
                        last_event_time=T0,
                    ),
                    admission_history=AdmissionHistory(
                        buckets=(
                            Bucket(start_time=T0, pod_uid="u", pod_name="n"),
                            Bucket(start_time=T0, end_time=T1, counter=2),
                        )
                    ),
                ),
            ),
            summary=Summary(
                total_replicas=1,
                aggregated_available_replicas=1,
                estimated_available_replicas=1,
                max_latency_millis=1,
                aggregated_ready=1,
                aggregated_scheduled=1,
                aggregated_running=1,
            ),
        ),
    ).to_dict()
    written = set(_leaf_paths(everything_set["spec"], "spec")) | set(
        _leaf_paths(everything_set["status"], "status")
    )
    assert written == set(WRITTEN_FIELD_PATHS)


EVOLVE_CASES = [
    (Bucket(start_time=T0, pod_uid="u", extra={"x": 1}), {"start_time": T1, "counter": 3}),
    (CellStatus(cell_id="a"), {"aggregation": Aggregation(total_replicas=2)}),
    (Status(cells=(CellStatus(cell_id="a"),)), {"summary": Summary(total_replicas=1)}),
    (PodProtector.from_dict(_ppr()), {"metadata": {"name": "q"}}),
    (Status.from_dict({"cells": [], "summary": {}, "future": 1}), {"cells": ()}),
]


@pytest.mark.parametrize(("obj", "changes"), EVOLVE_CASES)
def test_evolve_is_dataclasses_replace(obj, changes):
    fast, slow = obj.evolve(**changes), replace(obj, **changes)
    assert fast == slow and type(fast) is type(slow)
    assert fast.to_dict() == slow.to_dict()
    assert fast._shape is None
    for f in fields(fast):
        if f.name != "_shape":
            assert getattr(fast, f.name) is getattr(slow, f.name)


def test_evolve_drops_cached_properties_and_refuses_unknown_fields():
    history = AdmissionHistory(buckets=(Bucket(start_time=T1), Bucket(start_time=T0)))
    assert history.in_order is False and history.pending == 2
    sorted_history = history.evolve(buckets=(Bucket(start_time=T0),))
    assert sorted_history.in_order is True and sorted_history.pending == 1
    with pytest.raises(TypeError, match="no field bukets"):
        history.evolve(bukets=())

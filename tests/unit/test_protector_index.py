"""ProtectorIndex: which PodProtectors select a pod, found through the label index."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.protector_index import ProtectorIndex


def _ppr(name: str, selector: dict[str, Any], namespace: str = "demo", rv: str = "1") -> dict:
    return {
        "apiVersion": "podseidon.kubewharf.io/v1alpha1",
        "kind": "PodProtector",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": rv},
        "spec": {"minAvailable": 1, "selector": selector},
    }


PROTECTORS = [
    _ppr("web", {"matchLabels": {"app": "web"}}),
    _ppr("web-canary", {"matchLabels": {"app": "web", "track": "canary"}}),
    _ppr(
        "tier-front",
        {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]}]},
    ),
    _ppr(
        "not-batch",
        {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["batch"]}]},
    ),
    _ppr("everything", {}),
    _ppr("elsewhere", {"matchLabels": {"app": "web"}}, namespace="other"),
]

CASES = [
    ("web-stable", "demo", {"app": "web"}, ["everything", "not-batch", "web"]),
    (
        "web-canary",
        "demo",
        {"app": "web", "track": "canary"},
        ["everything", "not-batch", "web", "web-canary"],
    ),
    ("front", "demo", {"app": "shop", "tier": "front"}, ["everything", "not-batch", "tier-front"]),
    ("batch", "demo", {"app": "batch"}, ["everything"]),
    ("no-labels", "demo", {}, ["everything", "not-batch"]),
    ("other-namespace", "other", {"app": "web"}, ["elsewhere"]),
    ("empty-namespace", "nowhere", {"app": "web"}, []),
]


@pytest.fixture
def index() -> ProtectorIndex:
    index = ProtectorIndex()
    for obj in PROTECTORS:
        index.on_add(obj)
    return index


@pytest.mark.parametrize(
    ("namespace", "labels", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_matching(index: ProtectorIndex, namespace: str, labels: dict, expected: list) -> None:
    assert [p.name for p in index.matching(namespace, labels)] == expected


def test_update_moves_a_protector_to_its_new_selector(index: ProtectorIndex) -> None:
    old = PROTECTORS[0]
    new = _ppr("web", {"matchLabels": {"app": "api"}}, rv="2")
    index.on_update(old, new)
    assert "web" not in [p.name for p in index.matching("demo", {"app": "web"})]
    assert "web" in [p.name for p in index.matching("demo", {"app": "api"})]
    assert index.get("demo", "web").resource_version == "2"


def test_delete_removes_it(index: ProtectorIndex) -> None:
    index.on_delete(PROTECTORS[1])
    assert "web-canary" not in [
        p.name for p in index.matching("demo", {"app": "web", "track": "canary"})
    ]
    assert index.get("demo", "web-canary") is None
    assert len(index) == len(PROTECTORS) - 1


def test_invalid_protector_is_ignored_and_forgotten(index: ProtectorIndex) -> None:
    broken = _ppr("web", {"matchExpressions": [{"key": "app", "operator": "Near"}]}, rv="3")
    index.on_update(PROTECTORS[0], broken)
    assert index.get("demo", "web") is None
    assert "web" not in [p.name for p in index.matching("demo", {"app": "web"})]


def test_many_protectors_in_one_namespace_stay_cheap() -> None:
    index = ProtectorIndex()
    for i in range(2000):
        index.on_add(_ppr(f"p{i}", {"matchLabels": {"app": f"app-{i}"}}))
    assert [p.name for p in index.matching("demo", {"app": "app-1234", "x": "y"})] == ["p1234"]


def _with_status(buckets: list[dict[str, Any]], rv: str) -> dict:
    obj = _ppr("web", {"matchLabels": {"app": "web"}}, rv=rv)
    obj["status"] = {
        "cells": [{"cellID": "cell-a", "admissionHistory": {"buckets": buckets}}],
    }
    return obj


def test_status_is_parsed_only_for_a_status_write(
    index: ProtectorIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    from protectors.model import PodProtector

    parsed: list[bool] = []
    original = PodProtector.from_dict.__func__

    def counting(cls, data, **kwargs):
        parsed.append("status" in data)
        return original(cls, data, **kwargs)

    monkeypatch.setattr(PodProtector, "from_dict", classmethod(counting))
    bucket = {"podUID": "u1", "startTime": "2026-11-21T12:00:00Z"}
    for rv in range(10, 20):  # ten status writes arrive, nobody asks in between
        index.on_update({}, _with_status([bucket], str(rv)))
    # A review finds the protector and asks about its pod: still nothing parsed.
    (found,) = [p for p in index.matching("demo", {"app": "web"}) if p.name == "web"]
    assert found.resource_version == "19" and found.status is None
    when = index.admitted_at("demo", "web", "cell-a", "u1")
    assert when is not None and when.isoformat() == "2026-11-21T12:00:00+00:00"
    assert index.admitted_at("demo", "web", "cell-a", "u2") is None
    assert index.admitted_at("demo", "web", "cell-b", "u1") is None
    assert parsed.count(True) == 0
    # A status write needs it all: parsed once for this version.
    protector = index.get("demo", "web")
    assert protector.status.cell("cell-a").buckets[0].pod_uid == "u1"
    assert index.get("demo", "web") is protector
    assert parsed.count(True) == 1
    assert index.admitted_at("demo", "web", "cell-a", "u1") == when  # now from the parsed one


def test_protector_with_a_bad_status_is_ignored_by_writes(index: ProtectorIndex) -> None:
    index.on_update({}, _with_status([{"podUID": "u1"}], "5"))  # startTime is required
    assert index.get("demo", "web") is None  # the status writer lets the deletion through
    assert index.admitted_at("demo", "web", "cell-a", "u1") is None


def test_status_writes_keep_the_parsed_spec_and_a_spec_change_replaces_it(
    index: ProtectorIndex,
) -> None:
    first = _with_status([], "10")
    index.on_update({}, first)
    shell = index.matching("demo", {"app": "web"})[-1]
    second = _with_status([{"podUID": "u1", "startTime": "2026-11-21T12:00:00Z"}], "11")
    index.on_update(first, second)
    (again,) = [p for p in index.matching("demo", {"app": "web"}) if p.name == "web"]
    assert again.spec is shell.spec  # not parsed again
    assert again.resource_version == "11"
    assert index.get("demo", "web").status.cell("cell-a").buckets[0].pod_uid == "u1"
    moved = _with_status([], "12")
    moved["spec"] = dict(moved["spec"], selector={"matchLabels": {"app": "api"}})
    index.on_update(second, moved)
    assert "web" not in [p.name for p in index.matching("demo", {"app": "web"})]
    assert "web" in [p.name for p in index.matching("demo", {"app": "api"})]
    labelled = _with_status([], "13")
    labelled["metadata"] = dict(labelled["metadata"], labels={"team": "x"})
    index.on_update(moved, labelled)
    assert index.get("demo", "web").labels == {"team": "x"}


def test_admitted_at_takes_the_newest_of_a_pod_listed_twice(index: ProtectorIndex) -> None:
    # The webhook never writes a pod twice into one cell, but a hand-written status may.
    buckets = [
        {"podUID": "u1", "startTime": "2026-11-21T12:00:05Z"},
        {"podUID": "u2", "startTime": "2026-11-21T12:00:01Z"},
        {"podUID": "u1", "startTime": "2026-11-21T12:00:03Z"},
        {"startTime": "2026-11-21T11:00:00Z", "counter": 7},
    ]
    index.on_update({}, _with_status(buckets, "5"))
    first = index.admitted_at("demo", "web", "cell-a", "u1")
    assert first is not None and first.isoformat() == "2026-11-21T12:00:05+00:00"
    second = index.admitted_at("demo", "web", "cell-a", "u2")
    assert second is not None and second.isoformat() == "2026-11-21T12:00:01+00:00"
    assert index.admitted_at("demo", "web", "cell-a", "u3") is None
    # A new version is listed afresh.
    index.on_update({}, _with_status(buckets[1:2], "6"))
    assert index.admitted_at("demo", "web", "cell-a", "u1") is None

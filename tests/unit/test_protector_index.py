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

"""Protector specs and names generated from Deployments and StatefulSets."""

import pytest

from protectors.model import Spec
from protectors.specs import (
    GeneratedSpec,
    WorkloadSpecError,
    deployment_protector_name,
    deployment_protector_spec,
    resolve_int_or_percent,
    statefulset_protector_name,
    statefulset_protector_spec,
)

SELECTOR = {"matchLabels": {"app": "web"}}


def deployment(replicas=None, max_unavailable=None, min_ready=None, strategy_type=None):
    spec = {"selector": SELECTOR, "template": {"metadata": {"labels": {"app": "web"}}}}
    if replicas is not None:
        spec["replicas"] = replicas
    if min_ready is not None:
        spec["minReadySeconds"] = min_ready
    if max_unavailable is not None or strategy_type is not None:
        spec["strategy"] = {"type": strategy_type or "RollingUpdate"}
        if max_unavailable is not None:
            spec["strategy"]["rollingUpdate"] = {"maxUnavailable": max_unavailable}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": spec,
    }


def statefulset(replicas=None, max_unavailable=None, min_ready=None):
    spec = {"selector": SELECTOR, "serviceName": "web"}
    if replicas is not None:
        spec["replicas"] = replicas
    if min_ready is not None:
        spec["minReadySeconds"] = min_ready
    if max_unavailable is not None:
        spec["updateStrategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": max_unavailable},
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": spec,
    }


# (id, deployment, expected minAvailable)
DEPLOYMENT_CASES = [
    ("defaults-one-replica-25pct-rounds-up", deployment(), 0),
    ("4-replicas-default-25pct", deployment(replicas=4), 3),
    ("10-replicas-default-25pct-rounds-up", deployment(replicas=10), 7),
    ("50pct-of-3", deployment(replicas=3, max_unavailable="50%"), 1),
    ("int-max-unavailable", deployment(replicas=5, max_unavailable=2), 3),
    ("zero-max-unavailable", deployment(replicas=5, max_unavailable=0), 5),
    ("zero-pct", deployment(replicas=5, max_unavailable="0%"), 5),
    ("100pct", deployment(replicas=5, max_unavailable="100%"), 0),
    ("max-unavailable-above-replicas", deployment(replicas=2, max_unavailable=5), 0),
    ("replicas-zero", deployment(replicas=0), 0),
    ("replicas-zero-int", deployment(replicas=0, max_unavailable=1), 0),
    ("1pct-of-1-rounds-up", deployment(replicas=1, max_unavailable="1%"), 0),
    ("33pct-of-10", deployment(replicas=10, max_unavailable="33%"), 6),
    ("strategy-without-rolling-update", deployment(replicas=8, strategy_type="Recreate"), 6),
]


@pytest.mark.parametrize(
    ("workload", "min_available"),
    [c[1:] for c in DEPLOYMENT_CASES],
    ids=[c[0] for c in DEPLOYMENT_CASES],
)
def test_deployment_min_available(workload, min_available):
    assert deployment_protector_spec(workload).min_available == min_available


# (id, statefulset, expected minAvailable)
STATEFULSET_CASES = [
    ("defaults-one-replica", statefulset(), 0),
    ("3-replicas-default-1", statefulset(replicas=3), 2),
    ("50pct-of-3", statefulset(replicas=3, max_unavailable="50%"), 1),
    ("int-2", statefulset(replicas=5, max_unavailable=2), 3),
    ("replicas-zero", statefulset(replicas=0), 0),
]


@pytest.mark.parametrize(
    ("workload", "min_available"),
    [c[1:] for c in STATEFULSET_CASES],
    ids=[c[0] for c in STATEFULSET_CASES],
)
def test_statefulset_min_available(workload, min_available):
    assert statefulset_protector_spec(workload).min_available == min_available


def test_min_ready_seconds_and_selector_copied():
    workload = deployment(replicas=4, min_ready=15)
    generated = deployment_protector_spec(workload)
    assert generated == GeneratedSpec(min_available=3, min_ready_seconds=15, selector=SELECTOR)
    generated.selector["matchLabels"]["app"] = "changed"
    assert workload["spec"]["selector"] == {"matchLabels": {"app": "web"}}, "selector is copied"
    assert statefulset_protector_spec(statefulset(min_ready=7)).min_ready_seconds == 7


def test_generated_spec_to_spec():
    spec = deployment_protector_spec(deployment(replicas=4, min_ready=3)).to_spec()
    assert spec == Spec(min_available=3, min_ready_seconds=3, selector=SELECTOR)
    assert spec.to_dict() == {"minAvailable": 3, "minReadySeconds": 3, "selector": SELECTOR}


# (id, value, total, round_up, expected)
RESOLVE_CASES = [
    ("int", 3, 10, True, 3),
    ("int-ignores-total", 3, 0, True, 3),
    ("pct-exact", "50%", 4, True, 2),
    ("pct-round-up", "50%", 3, True, 2),
    ("pct-round-down", "50%", 3, False, 1),
    ("pct-of-zero", "25%", 0, True, 0),
    ("pct-over-100", "150%", 2, True, 3),
    ("plus-sign", "+10%", 10, True, 1),
]


@pytest.mark.parametrize(
    ("value", "total", "round_up", "expected"),
    [c[1:] for c in RESOLVE_CASES],
    ids=[c[0] for c in RESOLVE_CASES],
)
def test_resolve_int_or_percent(value, total, round_up, expected):
    assert resolve_int_or_percent(value, total, round_up=round_up) == expected


BAD_VALUES = [
    ("letters-pct", "abc%"),
    ("no-pct-sign", "25"),
    ("decimal-pct", "2.5%"),
    ("negative-pct", "-10%"),
    ("negative-int", -1),
    ("space", " 25%"),
    ("empty", ""),
    ("bool", True),
    ("float", 2.0),
    ("none", None),
]


@pytest.mark.parametrize("value", [c[1] for c in BAD_VALUES], ids=[c[0] for c in BAD_VALUES])
def test_resolve_rejects(value):
    with pytest.raises(ValueError):
        resolve_int_or_percent(value, 10)


# (id, workload, field path in the message)
BAD_WORKLOADS = [
    (
        "malformed-percentage",
        deployment(replicas=3, max_unavailable="abc%"),
        "spec.strategy.rollingUpdate.maxUnavailable",
    ),
    ("string-replicas", deployment(replicas="3"), "spec.replicas"),
    ("negative-replicas", deployment(replicas=-1), "spec.replicas"),
    ("no-selector", {"spec": {"replicas": 1}}, "spec.selector"),
    (
        "strategy-not-object",
        {"spec": {"selector": SELECTOR, "strategy": "RollingUpdate"}},
        "spec.strategy",
    ),
    ("string-min-ready", deployment(min_ready="5"), "spec.minReadySeconds"),
]


@pytest.mark.parametrize(
    ("workload", "path"), [c[1:] for c in BAD_WORKLOADS], ids=[c[0] for c in BAD_WORKLOADS]
)
def test_bad_deployments(workload, path):
    with pytest.raises(WorkloadSpecError, match=path.replace(".", r"\.")):
        deployment_protector_spec(workload)


def test_bad_statefulset_percentage():
    with pytest.raises(WorkloadSpecError, match=r"updateStrategy\.rollingUpdate\.maxUnavailable"):
        statefulset_protector_spec(statefulset(replicas=3, max_unavailable="x%"))


def test_names():
    assert deployment_protector_name("web") == "deployment-web"
    assert statefulset_protector_name("db") == "statefulset-db"

"""Counting a cell's pods for a protector."""

from datetime import UTC, datetime, timedelta

import pytest

from protectors.aggregation import AggregationResult, aggregate, select_pods
from protectors.model import Aggregation
from protectors.selectors import LabelSelector, parse_selector_string

NOW = datetime(2026, 11, 21, 18, 30, tzinfo=UTC)


def ts(seconds_before_now: int) -> str:
    return (NOW - timedelta(seconds=seconds_before_now)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name, *, state="available", ready_for=300, namespace="demo", labels=None):
    """A pod in one of the states: unscheduled, scheduled, running, ready, terminating."""
    conditions = []
    phase = "Pending"
    if state != "unscheduled":
        conditions.append({"type": "PodScheduled", "status": "True"})
    if state in ("running", "available", "terminating"):
        phase = "Running"
    if state in ("available", "terminating"):
        conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": ts(ready_for)})
    metadata = {"name": name, "namespace": namespace, "labels": labels or {"app": "web"}}
    if state == "terminating":
        metadata["deletionTimestamp"] = ts(1)
    return {"metadata": metadata, "status": {"phase": phase, "conditions": conditions}}


# (id, pods, minReadySeconds, expected result)
AGGREGATE_CASES = [
    ("no-pods", [], 0, AggregationResult()),
    (
        "all-available",
        [pod("a"), pod("b"), pod("c")],
        0,
        AggregationResult(total=3, available=3, ready=3, scheduled=3, running=3),
    ),
    (
        "mixed-states",
        [
            pod("a"),
            pod("b", state="running"),
            pod("c", state="scheduled"),
            pod("d", state="unscheduled"),
        ],
        0,
        AggregationResult(total=4, available=1, ready=1, scheduled=3, running=2),
    ),
    (
        "terminating-not-counted",
        [pod("a"), pod("b", state="terminating")],
        0,
        AggregationResult(total=1, available=1, ready=1, scheduled=1, running=1),
    ),
    (
        "ready-but-not-yet-available-requeues",
        [pod("a", ready_for=10), pod("b", ready_for=25), pod("c", ready_for=100)],
        30,
        AggregationResult(
            total=3,
            available=1,
            ready=3,
            scheduled=3,
            running=3,
            requeue_at=NOW + timedelta(seconds=5),
        ),
    ),
    (
        "exactly-at-min-ready-is-available",
        [pod("a", ready_for=30)],
        30,
        AggregationResult(total=1, available=1, ready=1, scheduled=1, running=1),
    ),
    (
        "terminating-never-requeues",
        [pod("a", state="terminating", ready_for=1)],
        30,
        AggregationResult(),
    ),
]


@pytest.mark.parametrize(
    ("pods", "min_ready", "expected"),
    [c[1:] for c in AGGREGATE_CASES],
    ids=[c[0] for c in AGGREGATE_CASES],
)
def test_aggregate(pods, min_ready, expected):
    assert aggregate(pods, min_ready, NOW) == expected


def test_to_aggregation():
    result = AggregationResult(total=3, available=2, ready=2, scheduled=3, running=3)
    assert result.to_aggregation(NOW) == Aggregation(
        total_replicas=3,
        available_replicas=2,
        ready_replicas=2,
        scheduled_replicas=3,
        running_replicas=3,
        last_event_time=NOW,
    )


PODS = [
    pod("web-0", labels={"app": "web", "idx": "0"}),
    pod("web-1", labels={"app": "web", "idx": "1"}),
    pod("web-other-ns", namespace="other", labels={"app": "web", "idx": "2"}),
    pod("db-0", labels={"app": "db"}),
]

# (id, namespace, selector, expected pod names)
SELECT_CASES = [
    ("by-label-in-namespace", "demo", parse_selector_string("app=web"), ["web-0", "web-1"]),
    ("other-namespace", "other", parse_selector_string("app=web"), ["web-other-ns"]),
    ("everything-in-namespace", "demo", LabelSelector(), ["web-0", "web-1", "db-0"]),
    ("set-selector", "demo", parse_selector_string("idx in (1,2)"), ["web-1"]),
    ("no-namespace-match", "nowhere", LabelSelector(), []),
]


@pytest.mark.parametrize(
    ("namespace", "selector", "names"),
    [c[1:] for c in SELECT_CASES],
    ids=[c[0] for c in SELECT_CASES],
)
def test_select_pods(namespace, selector, names):
    assert [p["metadata"]["name"] for p in select_pods(PODS, namespace, selector)] == names

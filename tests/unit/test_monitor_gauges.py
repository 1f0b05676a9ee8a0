"""The monitor's global figures over all PodProtectors."""

from __future__ import annotations

import pytest

from workers.monitor.gauges import MonitorGauges, compute_gauges


def ppr(min_available, aggregated=None, estimated=None, latency=None) -> dict:
    obj: dict = {"spec": {"minAvailable": min_available, "selector": {}}}
    if aggregated is not None:
        summary = {
            "aggregatedAvailableReplicas": aggregated,
            "estimatedAvailableReplicas": aggregated if estimated is None else estimated,
        }
        if latency is not None:
            summary["maxLatencyMillis"] = latency
        obj["status"] = {"cells": [], "summary": summary}
    return obj


# (id, protectors, expected)
CASES = [
    ("none", [], MonitorGauges()),
    (
        "healthy",
        [ppr(2, 5), ppr(1, 3)],
        MonitorGauges(protectors=2, min_available=3, aggregated_available=8, estimated_available=8),
    ),
    (
        "pending-deletions-put-one-at-risk",
        [ppr(3, 5, estimated=3, latency=250), ppr(1, 4, latency=900)],
        MonitorGauges(2, 4, 9, 7, max_latency_millis=900, at_risk=1),
    ),
    (
        "not-aggregated-yet-is-at-risk",
        [ppr(2)],
        MonitorGauges(protectors=1, min_available=2, at_risk=1),
    ),
    (
        "zero-minimum-never-at-risk",
        [ppr(0), ppr(0, 0, estimated=-1)],
        MonitorGauges(protectors=2, estimated_available=-1),
    ),
    (
        "malformed-counts-as-protector",
        [{"spec": "nonsense", "status": {"summary": ["x"]}}, {}],
        MonitorGauges(protectors=2),
    ),
    ("booleans-are-not-numbers", [ppr(True, True)], MonitorGauges(protectors=1)),
]


@pytest.mark.parametrize(("objs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_compute_gauges(objs, expected):
    assert compute_gauges(objs) == expected

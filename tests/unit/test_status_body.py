"""StatusBodies: a status write's JSON, reusing the previous write's, is exactly to_dict()."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from protectors.health import Contributions
from protectors.history_config import EffectiveHistoryConfig
from protectors.model import Bucket, PodProtector
from protectors.quota import DeletionRequest, admit_batch
from webhook.status_body import StatusBodies

START = datetime(2026, 11, 21, 12, tzinfo=UTC)
HEALTHY = Contributions(scheduled=True, running=True, ready=True, available=True)


def _ppr() -> PodProtector:
    return PodProtector.from_dict(
        {
            "apiVersion": "podseidon.kubewharf.io/v1alpha1",
            "kind": "PodProtector",
            "metadata": {"name": "p", "namespace": "demo", "resourceVersion": "1", "uid": "x"},
            "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "web"}}},
            "status": {
                "cells": [
                    {
                        "cellID": cell,
                        "aggregation": {"totalReplicas": 500, "availableReplicas": 500},
                        "admissionHistory": {
                            "buckets": [
                                {"podUID": f"{cell}-old", "startTime": "2026-11-21T11:59:59Z"}
                            ]
                        },
                        "someFutureField": {"kept": True},
                    }
                    for cell in ("cell-a", "cell-b")
                ],
                "summary": {"totalReplicas": 1000, "aggregatedAvailableReplicas": 1000},
            },
        }
    )


def test_reused_json_is_exactly_the_models_over_many_writes(monkeypatch) -> None:
    serialized: list[int] = []
    original = Bucket.to_dict

    def counting(self):
        serialized.append(1)
        return original(self)

    rng = random.Random(7)
    bodies = StatusBodies()
    config = EffectiveHistoryConfig.from_millis(0, 20, 1000)  # compaction kicks in often
    base = _ppr()
    now = START
    written = 0
    for round_ in range(150):
        now += timedelta(milliseconds=rng.choice([1, 5, 50, 300]))
        requests = [
            DeletionRequest(
                cell_id=rng.choice(["cell-a", "cell-b"]),
                # Mostly new pods, sometimes one admitted before (a repeat or a refresh).
                pod_uid=f"u{rng.randrange(round_ + 1) if rng.random() < 0.2 else round_}-{i}",
                contributions=HEALTHY,
            )
            for i in range(rng.choice([1, 1, 2, 5]))
        ]
        outcome = admit_batch(base, config, requests, now, refresh_after=timedelta(0))
        if not outcome.changed:
            continue
        sent = base.with_status(outcome.status)
        monkeypatch.setattr(Bucket, "to_dict", counting)
        body = bodies.body("demo/p", sent, base)
        monkeypatch.setattr(Bucket, "to_dict", original)
        assert body == sent.to_dict(), f"round {round_}"
        written += sum(len(c.buckets) for c in sent.status.cells)
        bodies.written("demo/p", sent, body)
        base = sent  # the next write starts from ours, as the status writer does
    # Most buckets' JSON came from the previous body rather than from to_dict again.
    assert len(serialized) < written / 4, (len(serialized), written)


def test_a_base_it_did_not_write_is_serialized_in_full() -> None:
    bodies = StatusBodies()
    base = _ppr()
    request = DeletionRequest(cell_id="cell-a", pod_uid="u1", contributions=HEALTHY)
    outcome = admit_batch(base, EffectiveHistoryConfig(), [request], START)
    sent = base.with_status(outcome.status)
    bodies.written("demo/p", sent, sent.to_dict())
    other = _ppr()  # e.g. the aggregator wrote since: a different object
    outcome = admit_batch(other, EffectiveHistoryConfig(), [request], START)
    fresh = other.with_status(outcome.status)
    assert bodies.body("demo/p", fresh, other) == fresh.to_dict()


# Cells as another writer left them: keys missing or null where ours always writes them.
ODD_CELLS = {
    "no-admission-history": {"cellID": "cell-a", "aggregation": {"totalReplicas": 5}},
    "admission-history-null": {
        "cellID": "cell-a",
        "aggregation": {"totalReplicas": 5, "availableReplicas": 5},
        "admissionHistory": None,
    },
    "aggregation-null": {
        "cellID": "cell-a",
        "aggregation": None,
        "admissionHistory": {"buckets": []},
    },
}


@pytest.mark.parametrize("cell", ODD_CELLS.values(), ids=ODD_CELLS.keys())
def test_a_first_write_over_a_parsed_cell_then_ours(cell) -> None:
    base = PodProtector.from_dict(
        {
            "apiVersion": "podseidon.kubewharf.io/v1alpha1",
            "kind": "PodProtector",
            "metadata": {"name": "p", "namespace": "demo", "resourceVersion": "1"},
            "spec": {"minAvailable": 0, "selector": {}},
            "status": {
                "cells": [
                    cell,
                    {
                        "cellID": "cell-b",
                        "aggregation": {"totalReplicas": 9, "availableReplicas": 9},
                    },
                ]
            },
        }
    )
    bodies = StatusBodies()
    config = EffectiveHistoryConfig()
    # The first write leaves cell-a as parsed (the request is for cell-b); later ones touch it.
    for i, cell_id in enumerate(["cell-b", "cell-a", "cell-a", "cell-b"]):
        request = DeletionRequest(cell_id=cell_id, pod_uid=f"u{i}", contributions=HEALTHY)
        outcome = admit_batch(base, config, [request], START + timedelta(seconds=i))
        assert outcome.changed, f"write {i}"
        sent = base.with_status(outcome.status)
        body = bodies.body("demo/p", sent, base)
        assert body == sent.to_dict(), f"write {i}"
        bodies.written("demo/p", sent, body)
        base = sent

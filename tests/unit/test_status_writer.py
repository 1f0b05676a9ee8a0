"""StatusWriter: one quota evaluation and at most one status write per batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from protectors.health import Contributions
from protectors.history_config import EffectiveHistoryConfig
from protectors.kube.client import KubeError
from protectors.model import PodProtector
from protectors.quota import AdmissionResult, DeletionRequest
from webhook.batching import NeedRetry
from webhook.bounded_client import NoAnswer
from webhook.core_breaker import CoreBreaker, CoreUnavailable
from webhook.status_writer import StatusWriter

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)
HEALTHY = Contributions(scheduled=True, running=True, ready=True, available=True)


def _ppr(rv: str, available: int = 5) -> PodProtector:
    return PodProtector.from_dict(
        {
            "apiVersion": "podseidon.kubewharf.io/v1alpha1",
            "kind": "PodProtector",
            "metadata": {"name": "p", "namespace": "demo", "resourceVersion": rv},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": {
                "cells": [
                    {
                        "cellID": "cell-a",
                        "aggregation": {"totalReplicas": available, "availableReplicas": available},
                        "admissionHistory": {"buckets": []},
                    }
                ],
                "summary": {
                    "totalReplicas": available,
                    "aggregatedAvailableReplicas": available,
                    "estimatedAvailableReplicas": available,
                },
            },
        }
    )


class FakeCore:
    def __init__(self) -> None:
        self.writes: list[dict[str, Any]] = []
        self.budgets: list[float] = []
        self.fail: KubeError | None = None
        self.fail_once: list[KubeError] = []
        self.current: dict[str, Any] | None = None  # what a GET returns
        self.gets = 0
        self.rv = 100

    def get(self, resource, namespace, name, budget):
        self.gets += 1
        if self.current is None:
            raise KubeError(404, "NotFound", "gone")
        return self.current

    def replace_status(self, resource, namespace, name, body, budget):
        self.budgets.append(budget)
        if self.fail_once:
            raise self.fail_once.pop(0)
        if self.fail:
            raise self.fail
        self.writes.append(body)
        self.rv += 1
        return dict(body, metadata=dict(body["metadata"], resourceVersion=str(self.rv)))


class Cache:
    def __init__(self, protector: PodProtector | None) -> None:
        self.protector = protector

    def get(self, namespace, name):
        return self.protector

    def resource_version(self, namespace, name):
        return self.protector.resource_version if self.protector else None


def _request(uid: str) -> DeletionRequest:
    return DeletionRequest(cell_id="cell-a", pod_uid=uid, contributions=HEALTHY)


def _writer(core: FakeCore, cache: Cache) -> StatusWriter:
    return StatusWriter(core, cache, EffectiveHistoryConfig(), lambda: NOW)


def test_one_write_for_a_whole_batch() -> None:
    core = FakeCore()
    results = _writer(core, Cache(_ppr("1")))("demo/p", [_request(f"u{i}") for i in range(5)])
    # 5 available, min 2: the three newest are admitted, the two oldest denied.
    assert results == [AdmissionResult.DENIED] * 2 + [AdmissionResult.OK] * 3
    assert len(core.writes) == 1
    buckets = core.writes[0]["status"]["cells"][0]["admissionHistory"]["buckets"]
    assert [b["podUID"] for b in buckets] == ["u4", "u3", "u2"]
    assert core.writes[0]["metadata"]["resourceVersion"] == "1"


def test_a_second_conflict_asks_for_a_retry() -> None:
    core = FakeCore()
    core.current = _ppr("7").to_dict()
    core.fail = KubeError(409, "Conflict", "the object has been modified")
    with pytest.raises(NeedRetry):
        _writer(core, Cache(_ppr("1")))("demo/p", [_request("u1")])
    assert core.gets == 1 and len(core.budgets) == 2


def test_a_conflict_is_retried_at_once_on_the_fresh_object() -> None:
    core = FakeCore()
    # Meanwhile the aggregator saw one pod fewer: 3 available, min 2.
    core.current = _ppr("7", available=3).to_dict()
    core.fail_once = [KubeError(409, "Conflict", "the object has been modified")]
    cache = Cache(_ppr("1"))
    writer = _writer(core, cache)
    results = writer("demo/p", [_request("u1"), _request("u2")])
    # Decided on the fresh object, not on the stale copy that still had 5 available.
    assert results == [AdmissionResult.DENIED, AdmissionResult.OK]
    assert core.writes[0]["metadata"]["resourceVersion"] == "7"
    # The cache still holds rv 1 (older than our write, 5 available): the next batch builds on
    # our write instead, where u2's bucket holds the last spare pod back (retry, not admit).
    assert writer("demo/p", [_request("u3")]) == [AdmissionResult.RETRY]
    assert len(core.writes) == 1


def test_other_errors_fail_the_batch() -> None:
    core = FakeCore()
    core.fail = KubeError(500, "InternalError", "boom")
    with pytest.raises(KubeError):
        _writer(core, Cache(_ppr("1")))("demo/p", [_request("u1")])


@pytest.mark.parametrize("protector", [None], ids=["gone-from-cache"])
def test_protector_gone_lets_the_deletion_through(protector) -> None:
    core = FakeCore()
    assert _writer(core, Cache(protector))("demo/p", [_request("u1")]) == [AdmissionResult.OK]
    assert core.writes == []


def test_deleted_while_writing_lets_the_deletion_through() -> None:
    core = FakeCore()
    core.fail = KubeError(404, "NotFound", "gone")
    assert _writer(core, Cache(_ppr("1")))("demo/p", [_request("u1")]) == [AdmissionResult.OK]


def test_nothing_changed_means_no_write() -> None:
    core = FakeCore()
    unhealthy_none = DeletionRequest(cell_id="cell-a", pod_uid="u1", contributions=HEALTHY)
    writer = _writer(core, Cache(_ppr("1", available=2)))
    assert writer("demo/p", [unhealthy_none]) == [AdmissionResult.DENIED]
    assert core.writes == []


def test_starts_from_its_own_write_until_the_cache_catches_up() -> None:
    core = FakeCore()
    cache = Cache(_ppr("1"))
    writer = _writer(core, cache)
    writer("demo/p", [_request("u1")])
    writer("demo/p", [_request("u2")])  # cache still at rv 1: must build on rv 101
    assert core.writes[1]["metadata"]["resourceVersion"] == "101"
    buckets = core.writes[1]["status"]["cells"][0]["admissionHistory"]["buckets"]
    assert [b["podUID"] for b in buckets] == ["u1", "u2"]
    cache.protector = _ppr("555")  # somebody else wrote after us: the cache wins
    writer("demo/p", [_request("u3")])
    assert core.writes[2]["metadata"]["resourceVersion"] == "555"


def test_repeated_review_within_the_refresh_threshold_writes_nothing() -> None:
    core = FakeCore()
    clock = [NOW]
    writer = StatusWriter(
        core,
        Cache(_ppr("1")),
        EffectiveHistoryConfig(),
        lambda: clock[0],
        refresh_after=timedelta(milliseconds=100),
    )
    assert writer("demo/p", [_request("u1")]) == [AdmissionResult.OK]
    assert len(core.writes) == 1
    # kube-apiserver's second review of the same DELETE, milliseconds later: no second write.
    clock[0] = NOW + timedelta(milliseconds=3)
    assert writer("demo/p", [_request("u1")]) == [AdmissionResult.ALREADY_ADMITTED]
    assert len(core.writes) == 1
    # A retry long after (a client retrying a timed-out DELETE) does refresh the bucket.
    clock[0] = NOW + timedelta(seconds=2)
    assert writer("demo/p", [_request("u1")]) == [AdmissionResult.ALREADY_ADMITTED]
    assert len(core.writes) == 2
    bucket = core.writes[-1]["status"]["cells"][0]["admissionHistory"]["buckets"][0]
    assert bucket["podUID"] == "u1"
    assert bucket["startTime"].startswith("2026-11-21T12:00:02")


def _bounded(core: FakeCore, clock: list[float]) -> tuple[StatusWriter, CoreBreaker]:
    breaker = CoreBreaker(1.0, clock=lambda: clock[0])
    writer = StatusWriter(
        core,
        Cache(_ppr("1")),
        EffectiveHistoryConfig(),
        lambda: NOW,
        write_timeout=3.0,
        breaker=breaker,
        clock=lambda: clock[0],
    )
    return writer, breaker


def test_each_write_is_bounded_by_the_timeout_and_the_deadline() -> None:
    core, clock = FakeCore(), [50.0]
    writer, _ = _bounded(core, clock)
    writer("demo/p", [_request("u1")], 60.0)
    writer("demo/p", [_request("u2")], 51.2)
    writer("demo/p", [_request("u3")])
    assert core.budgets == [3.0, pytest.approx(1.2), 3.0]


def test_silent_core_opens_the_breaker_and_a_probe_closes_it() -> None:
    core, clock = FakeCore(), [50.0]
    writer, breaker = _bounded(core, clock)
    core.fail = NoAnswer("PUT", 3.0)
    with pytest.raises(NoAnswer):
        writer("demo/p", [_request("u1")], 60.0)
    assert breaker.is_open
    # Refused without another write while no probe is due.
    with pytest.raises(CoreUnavailable):
        writer("demo/p", [_request("u2")], 60.0)
    assert len(core.budgets) == 1
    clock[0] += 1.0
    core.fail = None
    assert writer("demo/p", [_request("u3")], 60.0) == [AdmissionResult.OK]
    assert not breaker.is_open and len(core.budgets) == 2


def test_silence_within_a_short_budget_proves_nothing() -> None:
    core, clock = FakeCore(), [50.0]
    writer, breaker = _bounded(core, clock)
    core.fail = NoAnswer("PUT", 0.2)
    with pytest.raises(NoAnswer):
        writer("demo/p", [_request("u1")], 50.2)  # the review's deadline cut the budget
    assert not breaker.is_open


def test_an_answered_error_keeps_the_breaker_closed() -> None:
    core, clock = FakeCore(), [50.0]
    writer, breaker = _bounded(core, clock)
    core.fail = KubeError(500, "InternalError", "etcd is sad")
    with pytest.raises(KubeError):
        writer("demo/p", [_request("u1")], 60.0)
    assert not breaker.is_open


def test_once_the_cache_shows_our_write_the_next_batch_parses_nothing() -> None:
    core = FakeCore()
    cache = Cache(_ppr("1"))
    reads: list[str] = []
    original = cache.get

    def counting_get(namespace, name):
        reads.append(name)
        return original(namespace, name)

    cache.get = counting_get
    writer = _writer(core, cache)
    writer("demo/p", [_request("u1")])
    assert len(reads) == 1
    cache.protector = PodProtector.from_dict(
        dict(core.writes[0], metadata={**core.writes[0]["metadata"], "resourceVersion": "101"})
    )  # the watch delivers our own write
    writer("demo/p", [_request("u2")])
    assert len(reads) == 1  # built on the object we sent, not a fresh parse of the cache
    buckets = core.writes[1]["status"]["cells"][0]["admissionHistory"]["buckets"]
    assert [b["podUID"] for b in buckets] == ["u1", "u2"]
    assert core.writes[1]["metadata"]["resourceVersion"] == "101"

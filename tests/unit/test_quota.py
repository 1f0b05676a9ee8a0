"""The disruption quota over a batch of concurrent deletions."""

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from protectors.health import Contributions, HealthCriterion
from protectors.history_config import EffectiveHistoryConfig
from protectors.model import (
    AdmissionHistory,
    Aggregation,
    Bucket,
    CellStatus,
    PodProtector,
    Spec,
    Status,
)
from protectors.quota import AdmissionResult, DeletionRequest, admit_batch

NOW = datetime(2026, 11, 21, 18, 30, tzinfo=UTC)
EARLIER = NOW - timedelta(seconds=5)

OK = AdmissionResult.OK
ADMITTED = AdmissionResult.ALREADY_ADMITTED
UNHEALTHY = AdmissionResult.ALREADY_UNHEALTHY
RETRY = AdmissionResult.RETRY
DENIED = AdmissionResult.DENIED

AVAILABLE = HealthCriterion.AVAILABLE
READY = HealthCriterion.READY
RUNNING = HealthCriterion.RUNNING
SCHEDULED = HealthCriterion.SCHEDULED

# How healthy the pod to delete is, as the webhook would compute it.
HEALTH = {
    "available": Contributions(scheduled=True, running=True, ready=True, available=True),
    "ready": Contributions(scheduled=True, running=True, ready=True),
    "running": Contributions(scheduled=True, running=True),
    "scheduled": Contributions(scheduled=True),
    "none": Contributions(),
}


def req(uid, health="available", criterion=AVAILABLE, cell="a", name=None):
    return DeletionRequest(
        cell_id=cell,
        pod_uid=uid,
        contributions=HEALTH[health],
        criterion=criterion,
        pod_name=name,
    )


def pending(uid, cell="a"):
    """A bucket for an earlier admitted deletion of `uid`."""
    return (cell, Bucket(start_time=EARLIER, pod_uid=uid))


def compacted(counter, cell="a"):
    return (cell, Bucket(start_time=EARLIER, end_time=EARLIER, counter=counter))


@dataclass
class Case:
    id: str
    min_available: int
    requests: list
    expected: list
    available: int = 4
    ready: int | None = None
    running: int | None = None
    scheduled: int | None = None
    buckets: list = field(default_factory=list)
    max_lag: int = 0


def protector(case: Case) -> PodProtector:
    # All counts sit in cell "a"; cell "b" exists (empty) so cross-cell lookups can be tested.
    ready = case.available if case.ready is None else case.ready
    running = ready if case.running is None else case.running
    scheduled = running if case.scheduled is None else case.scheduled
    per_cell: dict[str, list[Bucket]] = {"a": [], "b": []}
    for cell_id, bucket in case.buckets:
        per_cell[cell_id].append(bucket)
    cells = (
        CellStatus(
            cell_id="a",
            aggregation=Aggregation(
                total_replicas=scheduled,
                available_replicas=case.available,
                ready_replicas=ready,
                running_replicas=running,
                scheduled_replicas=scheduled,
                last_event_time=EARLIER - timedelta(seconds=1),
            ),
        ).with_buckets(per_cell["a"]),
        CellStatus(cell_id="b").with_buckets(per_cell["b"]),
    )
    return PodProtector(
        metadata={"name": "p", "namespace": "demo", "resourceVersion": "7"},
        spec=Spec(min_available=case.min_available, selector={"matchLabels": {"app": "web"}}),
        status=Status(cells=cells),
    )


CASES = [
    # --- thresholds -------------------------------------------------------------------------
    Case("ok-above-min", 2, [req("p1")], [OK]),
    Case("ok-one-above-min", 3, [req("p1")], [OK]),
    Case("denied-at-min", 4, [req("p1")], [DENIED]),
    Case("denied-below-min", 5, [req("p1")], [DENIED]),
    Case("min-zero-last-pod", 0, [req("p1")], [OK], available=1),
    Case("min-zero-no-pods-counted", 0, [req("p1")], [DENIED], available=0),
    # lag = 2 unconfirmed deletions: 4 <= 2 + 2 -> quota reserved by others, retry.
    Case("retry-with-lag", 2, [req("p1")], [RETRY], buckets=[pending("x"), pending("y")]),
    Case("ok-above-lag", 1, [req("p1")], [OK], buckets=[pending("x"), pending("y")]),
    Case("deny-beats-retry", 4, [req("p1")], [DENIED], buckets=[pending("x")]),
    Case("compacted-counter-is-lag", 1, [req("p1")], [RETRY], buckets=[compacted(3)]),
    Case("lag-in-other-cell-counts", 2, [req("p1")], [RETRY], buckets=[compacted(2, "b")]),
    # --- unhealthy pods -------------------------------------------------------------------
    Case("unready-pod-already-unhealthy", 4, [req("p1", "running")], [UNHEALTHY]),
    Case("unscheduled-pod-already-unhealthy", 9, [req("p1", "none")], [UNHEALTHY]),
    Case("ready-not-available-is-unhealthy", 4, [req("p1", "ready")], [UNHEALTHY]),
    # --- the four criteria ----------------------------------------------------------------
    Case("criterion-ready-ok", 2, [req("p1", "ready", READY)], [OK], available=0, ready=4),
    Case("criterion-ready-denied", 2, [req("p1", "ready", READY)], [DENIED], ready=2),
    Case("criterion-running-ok", 2, [req("p1", "running", RUNNING)], [OK], ready=0, running=3),
    Case("criterion-running-denied", 3, [req("p1", "running", RUNNING)], [DENIED], running=3),
    Case(
        "criterion-scheduled-ok",
        1,
        [req("p1", "scheduled", SCHEDULED)],
        [OK],
        ready=0,
        running=0,
        scheduled=2,
    ),
    Case(
        "criterion-scheduled-denied",
        2,
        [req("p1", "scheduled", SCHEDULED)],
        [DENIED],
        scheduled=2,
    ),
    Case("criterion-running-pod-not-running", 0, [req("p1", "scheduled", RUNNING)], [UNHEALTHY]),
    # --- maxConcurrentLag -----------------------------------------------------------------
    Case("max-lag-free", 0, [req("p1")], [OK], max_lag=2, buckets=[pending("x")]),
    Case(
        "max-lag-exhausted",
        0,
        [req("p1")],
        [RETRY],
        max_lag=2,
        buckets=[pending("x"), pending("y")],
    ),
    Case(
        "lag-already-above-limit",
        0,
        [req("p1")],
        [RETRY],
        max_lag=2,
        buckets=[pending("x"), pending("y"), pending("z")],
    ),
    Case("max-lag-one-of-two", 0, [req("old"), req("new")], [RETRY, OK], max_lag=1),
    Case(
        "max-lag-blocks-unhealthy-too",
        0,
        [req("p1", "none")],
        [RETRY],
        max_lag=1,
        buckets=[pending("x")],
    ),
    Case(
        "unhealthy-consumes-max-lag",
        0,
        [req("old"), req("new", "none")],
        [RETRY, UNHEALTHY],
        max_lag=1,
    ),
    # --- ordering and counting within a batch ----------------------------------------------
    Case("newest-wins", 3, [req("old"), req("new")], [DENIED, OK]),
    Case("newest-wins-of-three", 3, [req("a1"), req("a2"), req("a3")], [DENIED, DENIED, OK]),
    Case("counts-decrement", 1, [req("a1"), req("a2"), req("a3"), req("a4")], [DENIED, OK, OK, OK]),
    Case(
        "unhealthy-lowers-the-counts-it-has",
        2,
        [req("old", "scheduled", SCHEDULED), req("new", "scheduled", AVAILABLE)],
        [DENIED, UNHEALTHY],
        available=0,
        scheduled=3,
    ),
    Case(
        "ok-lowers-every-level",
        2,
        [req("old", "ready", READY), req("new")],
        [DENIED, OK],
        available=5,
        ready=3,
    ),
    # --- already admitted -----------------------------------------------------------------
    Case("already-admitted", 4, [req("x")], [ADMITTED], buckets=[pending("x")]),
    Case(
        "already-admitted-despite-max-lag",
        0,
        [req("x")],
        [ADMITTED],
        max_lag=1,
        buckets=[pending("x")],
    ),
    Case(
        "admitted-in-other-cell-does-not-count",
        4,
        [req("x")],
        [DENIED],
        buckets=[pending("x", "b")],
    ),
    Case("same-pod-twice-in-batch", 0, [req("p1"), req("p1")], [ADMITTED, OK]),
    Case("empty-batch", 0, [], []),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_admit_batch_results(case):
    config = EffectiveHistoryConfig(max_concurrent_lag=case.max_lag)
    ppr = protector(case)
    before = copy.deepcopy(ppr.to_dict())
    outcome = admit_batch(ppr, config, case.requests, NOW)
    assert list(outcome.results) == case.expected
    assert ppr.to_dict() == before, "the input protector must not change"
    new_buckets = sum(1 for r in outcome.results if r in (OK, UNHEALTHY))
    old_weight = sum(b.weight for _, b in case.buckets)
    summary = outcome.status.summary
    assert (
        summary.aggregated_available_replicas - summary.estimated_available_replicas
        == old_weight + new_buckets
    )
    assert outcome.changed is (new_buckets > 0 or ADMITTED in outcome.results)


# (result, allows the deletion)
ALLOWS = [(OK, True), (ADMITTED, True), (UNHEALTHY, True), (RETRY, False), (DENIED, False)]


@pytest.mark.parametrize(("result", "allowed"), ALLOWS, ids=[r.value for r, _ in ALLOWS])
def test_allows_deletion(result, allowed):
    assert result.allows_deletion is allowed


def _simple(min_available=0, available=4, buckets=(), cells=("a",)):
    return PodProtector(
        metadata={"name": "p", "namespace": "demo"},
        spec=Spec(min_available=min_available, selector={}),
        status=Status(
            cells=tuple(
                CellStatus(
                    cell_id=c,
                    aggregation=Aggregation(
                        total_replicas=available if c == "a" else 0,
                        available_replicas=available if c == "a" else 0,
                    ),
                ).with_buckets(buckets if c == "a" else ())
                for c in cells
            )
        ),
    )


def test_ok_appends_bucket_to_the_pods_cell():
    outcome = admit_batch(
        _simple(cells=("a", "b")), EffectiveHistoryConfig(), [req("p1", cell="b")], NOW
    )
    assert outcome.status.cell("a").buckets == ()
    assert outcome.status.cell("b").buckets == (Bucket(start_time=NOW, pod_uid="p1"),)
    assert outcome.status.summary.estimated_available_replicas == 3


def test_missing_cell_is_created():
    outcome = admit_batch(_simple(), EffectiveHistoryConfig(), [req("p1", cell="new")], NOW)
    assert [c.cell_id for c in outcome.status.cells] == ["a", "new"]
    assert outcome.status.cell("new").aggregation == Aggregation()
    assert outcome.status.cell("new").buckets == (Bucket(start_time=NOW, pod_uid="p1"),)


def test_protector_without_status():
    ppr = PodProtector(spec=Spec(min_available=0, selector={}))
    outcome = admit_batch(ppr, EffectiveHistoryConfig(), [req("p1")], NOW)
    # Nothing is known to be available, so even minAvailable 0 denies.
    assert outcome.results == (DENIED,)
    assert outcome.changed is False
    assert outcome.status.cells == ()


@pytest.mark.parametrize(
    ("record", "expected_name"), [(True, "web-1"), (False, None)], ids=["record", "omit"]
)
def test_pod_names_recorded_only_when_asked(record, expected_name):
    outcome = admit_batch(
        _simple(),
        EffectiveHistoryConfig(),
        [req("p1", name="web-1")],
        NOW,
        record_pod_names=record,
    )
    assert outcome.status.cell("a").buckets[0].pod_name == expected_name


def test_already_admitted_refreshes_start_time():
    old = Bucket(start_time=EARLIER, pod_uid="x", pod_name="web-x")
    other = Bucket(start_time=EARLIER - timedelta(seconds=1), pod_uid="y")
    outcome = admit_batch(_simple(buckets=(old, other)), EffectiveHistoryConfig(), [req("x")], NOW)
    assert outcome.results == (ADMITTED,)
    assert outcome.changed
    assert outcome.status.cell("a").buckets == (
        other,
        Bucket(start_time=NOW, pod_uid="x", pod_name="web-x"),
    )
    # No quota is spent: the same two deletions are pending as before.
    assert outcome.status.summary.estimated_available_replicas == 2


def test_refresh_at_same_instant_is_no_change():
    ppr = _simple(buckets=(Bucket(start_time=NOW, pod_uid="x"),))
    outcome = admit_batch(ppr, EffectiveHistoryConfig(), [req("x")], NOW)
    assert outcome.results == (ADMITTED,)
    assert outcome.changed is False


# (bucket age relative to now, refresh_after, whether the startTime moves to now)
REFRESH = [
    ("older-than-threshold", timedelta(seconds=2), timedelta(seconds=1), True),
    ("younger-than-threshold", timedelta(milliseconds=40), timedelta(milliseconds=100), False),
    ("exactly-threshold", timedelta(milliseconds=100), timedelta(milliseconds=100), False),
    ("just-past-threshold", timedelta(milliseconds=101), timedelta(milliseconds=100), True),
    ("no-threshold-any-age", timedelta(milliseconds=1), timedelta(0), True),
    # Another replica's clock may run ahead: a refresh never moves a bucket back in time.
    ("future-bucket-no-threshold", -timedelta(milliseconds=30), timedelta(0), False),
    ("future-bucket-threshold", -timedelta(seconds=3), timedelta(milliseconds=100), False),
]


@pytest.mark.parametrize(
    ("age", "refresh_after", "moves"), [r[1:] for r in REFRESH], ids=[r[0] for r in REFRESH]
)
def test_refresh_threshold(age, refresh_after, moves):
    bucket = Bucket(start_time=NOW - age, pod_uid="x")
    outcome = admit_batch(
        _simple(buckets=(bucket,)),
        EffectiveHistoryConfig(),
        [req("x")],
        NOW,
        refresh_after=refresh_after,
    )
    assert outcome.results == (ADMITTED,)
    assert outcome.changed is moves
    expected = NOW if moves else NOW - age
    assert outcome.status.cell("a").buckets[0].start_time == expected
    # Whether or not it is rewritten, the admitted deletion still holds its quota.
    assert outcome.status.summary.estimated_available_replicas == 3


def test_refresh_rides_along_with_a_new_admission():
    young = Bucket(start_time=NOW - timedelta(milliseconds=10), pod_uid="x")
    outcome = admit_batch(
        _simple(buckets=(young,)),
        EffectiveHistoryConfig(),
        [req("x"), req("p2")],
        NOW,
        refresh_after=timedelta(milliseconds=100),
    )
    assert outcome.results == (ADMITTED, OK)
    assert outcome.changed
    assert [b.start_time for b in outcome.status.cell("a").buckets] == [young.start_time, NOW]


def test_rejections_change_nothing():
    ppr = _simple(min_available=4)
    outcome = admit_batch(ppr, EffectiveHistoryConfig(), [req("p1"), req("p2")], NOW)
    assert outcome.results == (DENIED, DENIED)
    assert outcome.changed is False
    assert outcome.status.cell("a").buckets == ()


def test_result_is_compacted_and_summarized():
    buckets = tuple(
        Bucket(start_time=EARLIER + timedelta(milliseconds=i), pod_uid=f"old-{i}") for i in range(3)
    )
    config = EffectiveHistoryConfig(compact_threshold=3)
    outcome = admit_batch(_simple(available=10, buckets=buckets), config, [req("p1")], NOW)
    result_buckets = outcome.status.cell("a").buckets
    assert len(result_buckets) == 3
    assert result_buckets[0] == Bucket(
        start_time=EARLIER, end_time=EARLIER + timedelta(milliseconds=1), counter=2
    )
    assert result_buckets[-1] == Bucket(start_time=NOW, pod_uid="p1")
    assert outcome.status.summary.estimated_available_replicas == 10 - 4


def test_written_status_is_go_shaped():
    outcome = admit_batch(_simple(), EffectiveHistoryConfig(), [req("p1")], NOW)
    assert outcome.status.to_dict()["cells"][0]["admissionHistory"] == {
        "buckets": [{"startTime": "2026-11-21T18:30:00.000000Z", "podUID": "p1"}]
    }


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="naive"):
        admit_batch(_simple(), EffectiveHistoryConfig(), [req("p1")], datetime(2026, 11, 21))


def _fresh(history):
    """The same buckets in a history whose cached figures are computed from scratch."""
    return AdmissionHistory(buckets=tuple(history.buckets))


# (existing buckets of cell "a", requests, compaction threshold): the quota seeds each new
# history's pending count and order instead of counting again; they must match a recount.
SEED_CASES = {
    "append-to-empty": ([], [req("p1")], 100),
    "append-to-sorted": ([pending("x")], [req("p1"), req("p2")], 100),
    "refresh-moves-a-bucket": (
        [(("a", Bucket(start_time=NOW - timedelta(seconds=9), pod_uid="x")))],
        [req("x"), req("p1")],
        100,
    ),
    "existing-out-of-order": (
        [
            ("a", Bucket(start_time=EARLIER, pod_uid="late")),
            ("a", Bucket(start_time=EARLIER - timedelta(seconds=1), pod_uid="early")),
        ],
        [req("p1")],
        100,
    ),
    "newer-bucket-than-now": (
        [("a", Bucket(start_time=NOW + timedelta(seconds=1), pod_uid="future"))],
        [req("p1")],
        100,
    ),
    "compacted-counter": ([compacted(7), pending("x")], [req("p1")], 100),
    "compaction-triggered": (
        [
            ("a", Bucket(start_time=EARLIER + timedelta(milliseconds=i), pod_uid=f"o{i}"))
            for i in range(4)
        ],
        [req("p1"), req("p2")],
        3,
    ),
    "other-cell": ([pending("x")], [req("p1", cell="b")], 100),
}


@pytest.mark.parametrize("case", SEED_CASES.values(), ids=SEED_CASES.keys())
def test_seeded_history_figures_match_a_recount(case):
    buckets, requests, threshold = case
    ppr = protector(Case("seed", 0, requests, [], available=10, buckets=buckets))
    outcome = admit_batch(ppr, EffectiveHistoryConfig(compact_threshold=threshold), requests, NOW)
    for cell in outcome.status.cells:
        history = cell.admission_history
        assert history.pending == _fresh(history).pending, cell.cell_id
        assert history.in_order == _fresh(history).in_order, cell.cell_id
        assert history.in_order, "summarize leaves every cell sorted"

"""The aggregator's reconcile decision for one protector in one cell, as tables."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from podseidon_site.config import AdmissionHistoryDefaults
from protectors.history_config import DEFAULT_HISTORY_CONFIG, EffectiveHistoryConfig
from protectors.model import (
    AdmissionHistoryConfig,
    Aggregation,
    Bucket,
    CellStatus,
    PodProtector,
    Spec,
    Status,
)
from protectors.summarize import summarize
from workers.aggregator.reconcile import (
    expire_buckets,
    history_defaults,
    is_expired,
    jittered_delay,
    reconcile_cell,
)

NOW = datetime(2026, 11, 21, 18, 30, tzinfo=UTC)
SYNC = NOW - timedelta(seconds=2)
CELL = "cell-a"


def at(seconds: float) -> datetime:
    """A moment relative to the sync time."""
    return SYNC + timedelta(seconds=seconds)


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    name: str,
    *,
    ready: bool = True,
    ready_since: datetime | None = None,
    labels: dict[str, str] | None = None,
    namespace: str = "demo",
    terminating: bool = False,
) -> dict:
    metadata = {"name": name, "namespace": namespace, "labels": labels or {"app": "web"}}
    if terminating:
        metadata["deletionTimestamp"] = ts(NOW)
    since = ready_since or NOW - timedelta(hours=1)
    return {
        "metadata": metadata,
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": ts(since),
                },
            ],
        },
    }


def protector(
    status: Status | None = None,
    *,
    min_ready_seconds: int = 0,
    aggregation_selector: dict | None = None,
    history: AdmissionHistoryConfig | None = None,
) -> PodProtector:
    return PodProtector(
        metadata={"name": "web", "namespace": "demo", "resourceVersion": "7"},
        spec=Spec(
            min_available=1,
            min_ready_seconds=min_ready_seconds,
            selector={"matchLabels": {"app": "web"}},
            aggregation_selector=aggregation_selector,
            admission_history_config=history,
        ),
        status=status,
    )


def single(start: datetime, uid: str = "u") -> Bucket:
    return Bucket(start_time=start, pod_uid=uid)


def compacted(start: datetime, end: datetime, counter: int = 3) -> Bucket:
    return Bucket(start_time=start, end_time=end, counter=counter)


def cell_status(
    available: int = 2,
    last_event_time: datetime | None = SYNC,
    buckets: tuple[Bucket, ...] = (),
    cell_id: str = CELL,
) -> CellStatus:
    return CellStatus(
        cell_id=cell_id,
        aggregation=Aggregation(
            total_replicas=available,
            available_replicas=available,
            ready_replicas=available,
            scheduled_replicas=available,
            running_replicas=available,
            last_event_time=last_event_time,
        ),
    ).with_buckets(buckets)


def status_of(*cells: CellStatus) -> Status:
    return summarize(Status(cells=cells))


TWO = [pod("a"), pod("b")]


# -- bucket expiry ----------------------------------------------------------------------------

# (id, bucket, sync time, expired?)
EXPIRY_CASES = [
    ("single-older", single(at(-1)), SYNC, True),
    ("single-at-sync-time-kept", single(at(0)), SYNC, False),
    ("single-newer", single(at(0.001)), SYNC, False),
    ("compacted-ended-before", compacted(at(-10), at(-1)), SYNC, True),
    ("compacted-started-before-ends-after", compacted(at(-10), at(1)), SYNC, False),
    ("compacted-ends-at-sync-time-kept", compacted(at(-10), at(0)), SYNC, False),
    ("no-sync-time-keeps-everything", single(at(-3600)), None, False),
]


@pytest.mark.parametrize(
    ("bucket", "sync_time", "expired"),
    [c[1:] for c in EXPIRY_CASES],
    ids=[c[0] for c in EXPIRY_CASES],
)
def test_is_expired(bucket, sync_time, expired):
    assert is_expired(bucket, sync_time) is expired


def test_expire_buckets_keeps_order_and_counts_dropped():
    buckets = (
        compacted(at(-20), at(-5)),
        single(at(-2), "old"),
        compacted(at(-3), at(3)),
        single(at(1), "new"),
    )
    kept, dropped = expire_buckets(buckets, SYNC)
    assert kept == (buckets[2], buckets[3])
    assert dropped == 2


# -- reconcile decisions --------------------------------------------------------------------


def decide(ppr: PodProtector, pods=TWO, sync_time=SYNC, now=NOW, defaults=DEFAULT_HISTORY_CONFIG):
    return reconcile_cell(ppr, CELL, pods, sync_time, now, defaults)


def test_first_aggregation_writes_counts_event_time_and_summary():
    decision = decide(protector())
    assert decision.changed
    cell = decision.status.cell(CELL)
    assert cell.aggregation == Aggregation(
        total_replicas=2,
        available_replicas=2,
        ready_replicas=2,
        scheduled_replicas=2,
        running_replicas=2,
        last_event_time=SYNC,
    )
    assert decision.status.summary.aggregated_available_replicas == 2
    assert decision.status.summary.estimated_available_replicas == 2
    assert not decision.waiting
    assert decision.requeue_at is None


def test_reconciling_its_own_result_changes_nothing():
    first = decide(protector())
    again = decide(protector(first.status))
    assert again.status is None
    assert not again.changed


def test_status_parsed_from_the_wire_compares_by_meaning():
    first = decide(protector())
    wire = Status.from_dict(first.status.to_dict())
    assert decide(protector(wire)).status is None


# (id, previous status, pods, sync time, write expected?, explanation)
WRITE_CASES = [
    ("count-changed", status_of(cell_status(available=1)), TWO, SYNC, True),
    (
        "only-event-time-moved-no-buckets-skipped",
        status_of(cell_status(last_event_time=at(-5))),
        TWO,
        SYNC,
        False,
    ),
    (
        "only-event-time-moved-with-pending-bucket-written",
        status_of(cell_status(last_event_time=at(-5), buckets=(single(at(1)),))),
        TWO,
        SYNC,
        True,
    ),
    (
        "event-time-never-set-written",
        status_of(cell_status(last_event_time=None)),
        TWO,
        SYNC,
        True,
    ),
    ("cell-missing-written", status_of(cell_status(cell_id="cell-b")), TWO, SYNC, True),
    (
        "expired-bucket-written",
        status_of(cell_status(buckets=(single(at(-1)),))),
        TWO,
        SYNC,
        True,
    ),
    (
        "pending-bucket-unchanged-skipped",
        status_of(cell_status(buckets=(single(at(1)),))),
        TWO,
        SYNC,
        False,
    ),
    (
        "stale-summary-rewritten",
        replace(status_of(cell_status()), summary=replace(status_of().summary, total_replicas=9)),
        TWO,
        SYNC,
        True,
    ),
    ("no-sync-time-keeps-event-time", status_of(cell_status()), TWO, None, False),
]


@pytest.mark.parametrize(
    ("previous", "pods", "sync_time", "write"),
    [c[1:] for c in WRITE_CASES],
    ids=[c[0] for c in WRITE_CASES],
)
def test_writes_only_when_something_changed(previous, pods, sync_time, write):
    decision = decide(protector(previous), pods=pods, sync_time=sync_time)
    assert decision.changed is write


def test_bucket_expiry_against_sync_time_and_pool_membership():
    buckets = (
        compacted(at(-30), at(-10), counter=4),  # ended before: dropped
        compacted(at(-30), at(5), counter=2),  # still covering later deletions: kept
        single(at(-1), "old"),  # dropped
        single(at(1), "new"),  # kept
    )
    decision = decide(protector(status_of(cell_status(buckets=buckets))))
    kept = decision.status.cell(CELL).buckets
    assert kept == (buckets[1], buckets[3])
    assert decision.expired == 2
    assert decision.waiting  # buckets newer than the sync time remain
    assert decision.status.summary.estimated_available_replicas == 2 - 3
    # maxLatencyMillis = newest bucket start - lastEventTime (the sync time).
    assert decision.status.summary.max_latency_millis == 1000


def test_all_buckets_expired_leaves_the_pool():
    decision = decide(protector(status_of(cell_status(buckets=(single(at(-1)),)))))
    assert decision.status.cell(CELL).buckets == ()
    assert not decision.waiting
    assert decision.status.summary.max_latency_millis is None


def test_without_sync_time_nothing_expires_and_the_protector_waits():
    previous = status_of(cell_status(last_event_time=at(-60), buckets=(single(at(-30)),)))
    decision = decide(protector(previous), sync_time=None)
    assert decision.waiting
    assert decision.expired == 0
    assert decision.status is None  # counts and buckets unchanged; event time kept


def test_other_cells_are_kept_and_summed():
    other = cell_status(available=5, cell_id="cell-b", buckets=(single(at(-100), "b"),))
    decision = decide(protector(status_of(other)))
    cells = {c.cell_id: c for c in decision.status.cells}
    assert cells["cell-b"] == other  # another cell's buckets are not ours to expire
    assert decision.status.summary.aggregated_available_replicas == 7
    assert decision.status.summary.estimated_available_replicas == 6


def test_selection_namespace_terminating_and_aggregation_selector():
    pods = [
        pod("a"),
        pod("b", terminating=True),
        pod("c", namespace="other"),
        pod("d", labels={"app": "db"}),
        pod("e", labels={"app": "web", "canary": "true"}),
    ]
    decision = decide(protector(), pods=pods)
    assert decision.aggregation.total == 2
    wider = protector(
        aggregation_selector={"matchExpressions": [{"key": "app", "operator": "Exists"}]}
    )
    assert decide(wider, pods=pods).aggregation.total == 3


def test_not_ready_pods_count_in_total_only():
    decision = decide(protector(), pods=[pod("a"), pod("b", ready=False)])
    assert (decision.aggregation.total, decision.aggregation.available) == (2, 1)
    assert decision.aggregation.ready == 1


def test_min_ready_seconds_requeues_for_the_moment_a_pod_turns_available():
    pods = [pod("a"), pod("b", ready_since=NOW - timedelta(seconds=3))]
    decision = decide(protector(min_ready_seconds=10), pods=pods)
    assert decision.aggregation.available == 1
    assert decision.requeue_at == NOW + timedelta(seconds=7)
    later = decide(
        protector(decision.status, min_ready_seconds=10), pods=pods, now=NOW + timedelta(seconds=7)
    )
    assert later.aggregation.available == 2
    assert later.requeue_at is None
    assert later.changed


def test_compaction_uses_the_protectors_threshold():
    buckets = tuple(single(at(1 + i), f"u{i}") for i in range(5))
    previous = status_of(cell_status(buckets=buckets))
    history = AdmissionHistoryConfig(compact_threshold=2)
    decision = decide(protector(previous, history=history))
    kept = decision.status.cell(CELL).buckets
    assert len(kept) == 2
    assert kept[0].counter == 4 and kept[0].end_time == at(4)
    assert decision.status.summary.estimated_available_replicas == 2 - 5


def test_malformed_pod_counts_in_total_never_available():
    broken = pod("x")
    broken["status"]["conditions"][1]["lastTransitionTime"] = "yesterday"
    decision = decide(protector(), pods=[pod("a"), broken])
    assert (decision.aggregation.total, decision.aggregation.available) == (2, 1)
    assert decision.malformed_pods == 1


def test_unknown_fields_of_the_cell_survive():
    wire = status_of(cell_status(available=1)).to_dict()
    wire["cells"][0]["aggregation"]["futureField"] = "x"
    wire["cells"][0]["futureCellField"] = 1
    decision = decide(protector(Status.from_dict(wire)))
    out = decision.status.to_dict()["cells"][0]
    assert out["futureCellField"] == 1
    assert out["aggregation"]["futureField"] == "x"
    assert out["aggregation"]["availableReplicas"] == 2


# -- delays and defaults --------------------------------------------------------------------


@pytest.mark.parametrize("jitter", [(0.5, 1.0), (1.0, 1.0), (0.1, 3.0)])
def test_jittered_delay_bounds(jitter):
    rate = timedelta(milliseconds=200)
    low, high = jitter
    assert jittered_delay(rate, jitter, lambda a, b: a) == pytest.approx(0.2 * low)
    assert jittered_delay(rate, jitter, lambda a, b: b) == pytest.approx(0.2 * high)
    samples = [jittered_delay(rate, jitter) for _ in range(500)]
    assert all(0.2 * low <= s <= 0.2 * high for s in samples)
    if low < high:
        assert max(samples) - min(samples) > 0.2 * (high - low) / 2  # actually spread


def test_jittered_delay_of_zero_rate_is_zero():
    assert jittered_delay(timedelta(0), (0.5, 1.0)) == 0


def test_history_defaults_from_operator_config():
    defaults = history_defaults(
        AdmissionHistoryDefaults(
            max_concurrent_lag=3, compact_threshold=7, aggregation_rate_millis=250
        )
    )
    assert defaults == EffectiveHistoryConfig(3, 7, timedelta(milliseconds=250))
    ppr = protector(history=AdmissionHistoryConfig(compact_threshold=1))
    buckets = (single(at(1), "a"), single(at(2), "b"))
    decision = reconcile_cell(
        ppr.with_status(status_of(cell_status(buckets=buckets))), CELL, TWO, SYNC, NOW, defaults
    )
    assert len(decision.status.cell(CELL).buckets) == 1  # per-object threshold wins

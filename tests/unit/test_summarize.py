"""Bucket compaction and status summaries."""

from datetime import UTC, datetime, timedelta

import pytest

from protectors.history_config import EffectiveHistoryConfig
from protectors.model import Aggregation, Bucket, CellStatus, Status, Summary
from protectors.summarize import compact_buckets, latency_millis, summarize

T0 = datetime(2026, 11, 21, 18, 0, tzinfo=UTC)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def single(second: float, uid: str | None = None) -> Bucket:
    return Bucket(start_time=t(second), pod_uid=uid or f"uid-{second}")


def compacted(start: float, end: float, counter: int) -> Bucket:
    return Bucket(start_time=t(start), end_time=t(end), counter=counter)


# (id, buckets, threshold, expected)
COMPACT_CASES = [
    ("empty", [], 3, ()),
    ("below-threshold-sorted", [single(2), single(1)], 3, (single(1), single(2))),
    (
        "exactly-threshold-no-op",
        [single(1), single(2), single(3)],
        3,
        (single(1), single(2), single(3)),
    ),
    (
        "threshold-plus-one-folds-two",
        [single(4), single(1), single(3), single(2)],
        3,
        (compacted(1, 2, 2), single(3), single(4)),
    ),
    (
        "many-over-threshold",
        [single(s) for s in range(10)],
        3,
        (compacted(0, 7, 8), single(8), single(9)),
    ),
    (
        "existing-compacted-counter-added",
        [compacted(0, 5, 10), single(6), single(7), single(8)],
        3,
        (compacted(0, 6, 11), single(7), single(8)),
    ),
    (
        "end-is-latest-end-not-latest-start",
        # The compacted bucket ends after the single one that starts later.
        [compacted(0, 9, 4), single(3), single(10), single(11)],
        3,
        (compacted(0, 9, 5), single(10), single(11)),
    ),
    (
        "two-compacted-buckets-merge",
        [compacted(0, 2, 3), compacted(1, 4, 2), single(5)],
        2,
        (compacted(0, 4, 5), single(5)),
    ),
    (
        "counter-zero-counts-one",
        [Bucket(start_time=t(0), counter=0), single(1), single(2)],
        2,
        (compacted(0, 1, 2), single(2)),
    ),
    ("threshold-one-folds-all", [single(1), single(2), single(3)], 1, (compacted(1, 3, 3),)),
    ("threshold-zero-treated-as-one", [single(1), single(2)], 0, (compacted(1, 2, 2),)),
]


@pytest.mark.parametrize(
    ("buckets", "threshold", "expected"),
    [c[1:] for c in COMPACT_CASES],
    ids=[c[0] for c in COMPACT_CASES],
)
def test_compact_buckets(buckets, threshold, expected):
    result = compact_buckets(buckets, threshold)
    assert result == expected
    assert sum(b.weight for b in result) == sum(b.weight for b in buckets)


def test_compacted_bucket_names_no_pod():
    merged = compact_buckets([single(1, "a"), single(2, "b"), single(3, "c")], 2)[0]
    assert merged.pod_uid is None
    assert merged.pod_name is None


def cell(cell_id, *, total=0, available=0, ready=0, scheduled=0, running=0, seen=None, buckets=()):
    return CellStatus(
        cell_id=cell_id,
        aggregation=Aggregation(
            total_replicas=total,
            available_replicas=available,
            ready_replicas=ready,
            scheduled_replicas=scheduled,
            running_replicas=running,
            last_event_time=None if seen is None else t(seen),
        ),
    ).with_buckets(buckets)


# (id, cells, expected summary)
SUMMARY_CASES = [
    ("no-cells", (), Summary()),
    (
        "one-cell-no-buckets",
        (cell("a", total=4, available=4, ready=4, scheduled=4, running=4, seen=0),),
        Summary(
            total_replicas=4,
            aggregated_available_replicas=4,
            estimated_available_replicas=4,
            aggregated_ready=4,
            aggregated_scheduled=4,
            aggregated_running=4,
        ),
    ),
    (
        "sums-over-cells",
        (
            cell("a", total=3, available=2, ready=3, scheduled=3, running=3),
            cell("b", total=5, available=5, ready=5, scheduled=5, running=5),
        ),
        Summary(
            total_replicas=8,
            aggregated_available_replicas=7,
            estimated_available_replicas=7,
            aggregated_ready=8,
            aggregated_scheduled=8,
            aggregated_running=8,
        ),
    ),
    (
        "buckets-reduce-estimate",
        (
            cell("a", total=5, available=5, seen=0, buckets=(single(1), compacted(0, 0.5, 3))),
            cell("b", total=2, available=2, buckets=(single(2),)),
        ),
        Summary(
            total_replicas=7,
            aggregated_available_replicas=7,
            estimated_available_replicas=2,
            max_latency_millis=1000,
        ),
    ),
    (
        "latency-max-over-cells-with-buckets",
        (
            cell("a", seen=0, buckets=(single(0.25), single(1.5))),
            cell("b", seen=1, buckets=(single(3.75),)),
            cell("c", seen=-100),  # no buckets: not part of the latency
        ),
        Summary(estimated_available_replicas=-3, max_latency_millis=2750),
    ),
    (
        "latency-needs-last-event-time",
        (cell("a", buckets=(single(1),)),),
        Summary(estimated_available_replicas=-1),
    ),
    (
        "negative-latency-truncates-toward-zero",
        (cell("a", seen=2, buckets=(single(1.0005),)),),
        Summary(estimated_available_replicas=-1, max_latency_millis=-999),
    ),
]


@pytest.mark.parametrize(
    ("cells", "expected"), [c[1:] for c in SUMMARY_CASES], ids=[c[0] for c in SUMMARY_CASES]
)
def test_summary(cells, expected):
    assert summarize(Status(cells=cells)).summary == expected


def test_summarize_compacts_and_sorts_each_cell():
    config = EffectiveHistoryConfig(compact_threshold=2)
    status = Status(
        cells=(
            cell("a", available=10, buckets=(single(3), single(1), single(2))),
            cell("b", available=10, buckets=(single(5),)),
        )
    )
    result = summarize(status, config)
    assert result.cell("a").buckets == (compacted(1, 2, 2), single(3))
    assert result.cell("b") is status.cell("b"), "unchanged cells are kept as they are"
    assert result.summary.estimated_available_replicas == 20 - 4
    assert status.cell("a").buckets == (single(3), single(1), single(2)), "input untouched"


def test_summarize_keeps_parsed_cells_verbatim():
    body = {
        "cells": [
            {
                "cellID": "cell-a",
                "aggregation": {
                    "totalReplicas": 4,
                    "availableReplicas": 4,
                    "lastEventTime": "2026-11-21T00:00:00.000000Z",
                },
                "admissionHistory": {"buckets": []},
            }
        ],
        "summary": {},
    }
    out = summarize(Status.from_dict(body)).to_dict()
    assert out["cells"] == body["cells"]
    assert out["summary"] == {
        "totalReplicas": 4,
        "aggregatedAvailableReplicas": 4,
        "estimatedAvailableReplicas": 4,
    }


@pytest.mark.parametrize(
    ("delta", "millis"),
    [
        (timedelta(seconds=1.5), 1500),
        (timedelta(microseconds=999), 0),
        (timedelta(microseconds=-999), 0),
        (timedelta(microseconds=-1001), -1),
        (timedelta(0), 0),
    ],
    ids=["positive", "sub-milli", "negative-sub-milli", "negative", "zero"],
)
def test_latency_millis(delta, millis):
    assert latency_millis(delta) == millis


# A status as parsed writes back the keys it came with; summarize always hands back one in the
# shape our writers send (every summary field), even when its figures are already right.
PARSED_STATUSES = {
    "summary-with-null-and-missing-keys": {"summary": {"maxLatencyMillis": None}},
    "cells-null": {"cells": None},
    "empty": {},
}


@pytest.mark.parametrize("raw", PARSED_STATUSES.values(), ids=PARSED_STATUSES.keys())
def test_summarize_writes_a_parsed_status_in_our_shape(raw):
    summarized = summarize(Status.from_dict(raw))
    assert summarized.to_dict() == {
        "cells": [],
        "summary": {
            "totalReplicas": 0,
            "aggregatedAvailableReplicas": 0,
            "estimatedAvailableReplicas": 0,
        },
    }


def test_summarize_returns_our_own_summarized_status_as_it_is():
    status = summarize(Status(cells=(CellStatus(cell_id="a", aggregation=Aggregation()),)))
    assert summarize(status) is status


def test_a_summarized_status_is_not_summarized_again_for_the_same_config():
    config = EffectiveHistoryConfig(compact_threshold=2)
    buckets = tuple(Bucket(start_time=T0 + timedelta(seconds=i), pod_uid=f"u{i}") for i in range(3))
    status = summarize(Status(cells=(CellStatus(cell_id="a").with_buckets(buckets),)), config)
    assert len(status.cell("a").buckets) == 2
    assert summarize(status, config) is status
    # Another threshold is another result: the mark is per config.
    again = summarize(status, EffectiveHistoryConfig(compact_threshold=1))
    assert len(again.cell("a").buckets) == 1
    # A copy made from it (another cell, say) is summarized afresh.
    changed = status.with_cell(CellStatus(cell_id="b").with_buckets(buckets))
    assert len(summarize(changed, config).cell("b").buckets) == 2


def test_compact_buckets_trusts_in_order_only_when_told():
    late, early = Bucket(start_time=T0 + timedelta(seconds=1)), Bucket(start_time=T0)
    assert compact_buckets([late, early], 5) == (early, late)
    assert compact_buckets([early, late], 5, in_order=True) == (early, late)

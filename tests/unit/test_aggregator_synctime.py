"""How far a cell's pod stream is known to be current: the clock and status algorithms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from protectors.constants import ANNOTATION_UPDATE_TRIGGER_TIME
from workers.aggregator.synctime import SyncClock, SyncTimeAlgorithm, event_time, status_time

T0 = datetime(2026, 11, 21, 18, 0, tzinfo=UTC)
RECEIVED = T0 + timedelta(hours=1)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fmt(seconds: float) -> str:
    return t(seconds).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pod(
    *,
    created: float | None = 0,
    deleted: float | None = None,
    grace: int | None = None,
    trigger: str | None = None,
    conditions: list[dict] | None = None,
) -> dict:
    metadata: dict = {"name": "p", "namespace": "demo"}
    if created is not None:
        metadata["creationTimestamp"] = fmt(created)
    if deleted is not None:
        metadata["deletionTimestamp"] = fmt(deleted)
    if grace is not None:
        metadata["deletionGracePeriodSeconds"] = grace
    if trigger is not None:
        metadata["annotations"] = {ANNOTATION_UPDATE_TRIGGER_TIME: trigger}
    return {"metadata": metadata, "status": {"conditions": conditions or []}}


# (id, pod, expected status time)
STATUS_CASES = [
    ("creation-only", pod(created=5), t(5)),
    ("nothing-at-all", pod(created=None), None),
    ("deletion-without-grace", pod(created=5, deleted=20), t(20)),
    # deletionTimestamp lies grace seconds in the future: the request was at deleted - grace.
    ("deletion-minus-grace", pod(created=5, deleted=40, grace=30), t(10)),
    ("update-trigger-annotation", pod(created=5, trigger=fmt(12.5)), t(12.5)),
    ("unreadable-annotation-ignored", pod(created=5, trigger="soon"), t(5)),
    (
        "probe-time",
        pod(created=5, conditions=[{"type": "Ready", "status": "True", "lastProbeTime": fmt(9)}]),
        t(9),
    ),
    (
        "transition-time",
        pod(
            created=5,
            conditions=[
                {"type": "Ready", "status": "True", "lastTransitionTime": fmt(7)},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None},
            ],
        ),
        t(7),
    ),
    (
        "max-of-all",
        pod(
            created=1,
            deleted=50,
            grace=30,
            trigger=fmt(25),
            conditions=[{"type": "Ready", "lastProbeTime": fmt(22)}],
        ),
        t(25),
    ),
]


@pytest.mark.parametrize(
    ("obj", "expected"), [c[1:] for c in STATUS_CASES], ids=[c[0] for c in STATUS_CASES]
)
def test_status_time(obj, expected):
    assert status_time(obj) == expected


def test_clock_algorithm_uses_the_receive_time():
    assert event_time(SyncTimeAlgorithm.CLOCK, pod(created=5), RECEIVED) == RECEIVED


def test_status_algorithm_uses_the_pod():
    assert event_time(SyncTimeAlgorithm.STATUS, pod(created=5), RECEIVED) == t(5)


def test_sync_clock_never_moves_backwards():
    clock = SyncClock()
    assert clock.value is None
    assert not clock.advance(None)
    assert clock.advance(t(10))
    assert not clock.advance(t(5))
    assert not clock.advance(t(10))
    assert clock.value == t(10)
    assert clock.advance(t(11))
    assert clock.value == t(11)
    clock.reset()
    assert clock.value is None

"""The aggregator's decision for one PodProtector in one cell, as pure functions (design.md §4
"Aggregator").

Given the protector as cached, the cell's candidate pods, the cell's sync time and the current
time, ``reconcile_cell`` says which status to write (or that nothing changed), when to look
again because a pod turns available, and whether the protector must wait in the next-event pool
because some admitted deletion is newer than anything the cell's stream has shown.

Decisions where design.md is silent:
- A bucket expires when the moment it covers up to (``endTime`` of a compacted bucket,
  ``startTime`` of a single one) is strictly before the sync time; a bucket at exactly the sync
  time is kept (conservative: it may belong to an event not seen yet).
- Without a sync time (no pod event seen yet) no bucket expires and the stored lastEventTime is
  kept.
- lastEventTime is written whenever anything else is written. A reconcile that would change only
  lastEventTime writes it when the cell still holds buckets (it moves maxLatencyMillis) or never
  had one; otherwise it is skipped, so busy cells do not rewrite every protector on every
  unrelated pod event.
- A pod with a malformed timestamp counts toward totalReplicas only: it is never treated as
  available, which errs on the side of protection.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from podseidon_site.config import AdmissionHistoryDefaults
from protectors.aggregation import AggregationResult, aggregate_health, select_pods
from protectors.health import PodHealth
from protectors.history_config import (
    DEFAULT_HISTORY_CONFIG,
    EffectiveHistoryConfig,
    effective_config,
)
from protectors.model import Bucket, CellStatus, PodProtector, Status
from protectors.summarize import summarize
from workers.aggregator.podcache import HEALTH_FIELD

__all__ = [
    "CellReconcile",
    "expire_buckets",
    "history_defaults",
    "is_expired",
    "jittered_delay",
    "reconcile_cell",
]


@dataclass(frozen=True)
class CellReconcile:
    """What one reconcile of one protector in one cell decided."""

    # The status to write (summarized), or None when nothing worth writing changed.
    status: Status | None
    aggregation: AggregationResult
    # A ready pod becomes available at this moment; reconcile again then.
    requeue_at: datetime | None = None
    # The cell still holds buckets the sync time has not passed: wait for the next pod event.
    waiting: bool = False
    # Buckets dropped because the cell's stream moved past them.
    expired: int = 0
    # Selected pods whose health could not be read (malformed timestamps).
    malformed_pods: int = 0

    @property
    def changed(self) -> bool:
        return self.status is not None


def history_defaults(defaults: AdmissionHistoryDefaults) -> EffectiveHistoryConfig:
    """The operator's admission-history defaults in effect for protectors that set nothing."""
    return EffectiveHistoryConfig.from_millis(
        defaults.max_concurrent_lag,
        defaults.compact_threshold,
        defaults.aggregation_rate_millis,
    )


def jittered_delay(
    rate: timedelta,
    jitter: tuple[float, float],
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait before aggregating: ``rate`` * U[low, high] (design.md: U[0.5, 1.0])."""
    low, high = jitter
    return max(rate.total_seconds(), 0.0) * uniform(low, high)


def is_expired(bucket: Bucket, sync_time: datetime | None) -> bool:
    """Whether the cell's stream has moved past everything ``bucket`` stands for."""
    return sync_time is not None and bucket.end < sync_time


def expire_buckets(
    buckets: Iterable[Bucket], sync_time: datetime | None
) -> tuple[tuple[Bucket, ...], int]:
    """The buckets still pending at ``sync_time`` (order kept) and how many were dropped."""
    kept = []
    dropped = 0
    for bucket in buckets:
        if is_expired(bucket, sync_time):
            dropped += 1
        else:
            kept.append(bucket)
    return tuple(kept), dropped


def _healths(pods: Iterable[Mapping[str, Any]]) -> tuple[list[PodHealth], int]:
    healths = []
    malformed = 0
    for pod in pods:
        known = pod.get(HEALTH_FIELD)
        if known is not None:
            healths.append(known)
            continue
        try:
            healths.append(PodHealth.from_pod(pod))
        except ValueError:
            malformed += 1
            metadata = pod.get("metadata") or {}
            healths.append(PodHealth(terminating=bool(metadata.get("deletionTimestamp"))))
    return healths, malformed


def reconcile_cell(
    protector: PodProtector,
    cell_id: str,
    pods: Iterable[Mapping[str, Any]],
    sync_time: datetime | None,
    now: datetime,
    defaults: EffectiveHistoryConfig = DEFAULT_HISTORY_CONFIG,
) -> CellReconcile:
    """Aggregate ``pods`` (any superset of the protector's pods in this cell) into the
    protector's status for ``cell_id``, expire buckets against ``sync_time`` and summarize."""
    config = effective_config(protector.spec.admission_history_config, defaults)
    selected = select_pods(pods, protector.namespace, protector.spec.aggregation_label_selector)
    healths, malformed = _healths(selected)
    result = aggregate_health(healths, protector.spec.min_ready_seconds, now)

    current = protector.status
    base = current or Status()
    previous = base.cell(cell_id)
    previous_event_time = previous.aggregation.last_event_time if previous else None
    event_time = sync_time if sync_time is not None else previous_event_time

    kept, dropped = expire_buckets(previous.buckets if previous else (), sync_time)
    status: Status | None
    if (
        current is not None
        and previous is not None
        and previous_event_time is not None
        and not kept
        and event_time != previous_event_time
        and _same_counts(previous, result)
    ):
        # Would only lastEventTime move? Then it is not worth a write (see module docstring).
        same_time = _updated_cell(previous, cell_id, result, previous_event_time, kept)
        if summarize(base.with_cell(same_time), config) == current:
            status = None
        else:
            cell = _updated_cell(previous, cell_id, result, event_time, kept)
            status = summarize(base.with_cell(cell), config)
    else:
        cell = _updated_cell(previous, cell_id, result, event_time, kept)
        status = summarize(base.with_cell(cell), config)
        if current is not None and status == current:
            status = None

    return CellReconcile(
        status=status,
        aggregation=result,
        requeue_at=result.requeue_at,
        waiting=bool(kept),
        expired=dropped,
        malformed_pods=malformed,
    )


def _same_counts(previous: CellStatus, result: AggregationResult) -> bool:
    aggregation = previous.aggregation
    return (
        aggregation.total_replicas == result.total
        and aggregation.available_replicas == result.available
        and aggregation.ready_replicas == result.ready
        and aggregation.scheduled_replicas == result.scheduled
        and aggregation.running_replicas == result.running
    )


def _updated_cell(
    previous: CellStatus | None,
    cell_id: str,
    result: AggregationResult,
    event_time: datetime | None,
    buckets: tuple[Bucket, ...],
) -> CellStatus:
    counts = {
        "total_replicas": result.total,
        "available_replicas": result.available,
        "ready_replicas": result.ready,
        "scheduled_replicas": result.scheduled,
        "running_replicas": result.running,
        "last_event_time": event_time,
    }
    if previous is None:
        return CellStatus(cell_id=cell_id, aggregation=result.to_aggregation(event_time))
    # replace() keeps unknown fields a newer writer may have added.
    aggregation = replace(previous.aggregation, **counts)
    cell = replace(previous, aggregation=aggregation)
    if buckets != previous.buckets:
        cell = cell.with_buckets(buckets)
    return cell

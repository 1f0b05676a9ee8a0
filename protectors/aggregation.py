"""Counting one cell's pods for one PodProtector (design.md §4 "Aggregation")."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from protectors.health import PodHealth
from protectors.model import Aggregation
from protectors.selectors import LabelSelector
from protectors.timefmt import utc

__all__ = ["AggregationResult", "aggregate", "aggregate_health", "select_pods"]


@dataclass(frozen=True)
class AggregationResult:
    total: int = 0
    available: int = 0
    ready: int = 0
    scheduled: int = 0
    running: int = 0
    # The earliest future moment a ready pod turns available; the protector must be
    # re-aggregated then, because no pod event will announce it.
    requeue_at: datetime | None = None

    def to_aggregation(self, last_event_time: datetime | None) -> Aggregation:
        return Aggregation(
            total_replicas=self.total,
            available_replicas=self.available,
            ready_replicas=self.ready,
            scheduled_replicas=self.scheduled,
            running_replicas=self.running,
            last_event_time=last_event_time,
        )


def aggregate_health(
    healths: Iterable[PodHealth], min_ready_seconds: int, now: datetime
) -> AggregationResult:
    """Count non-terminating pods by health level, from already-computed health."""
    now = utc(now)
    total = available = ready = scheduled = running = 0
    requeue_at: datetime | None = None
    for health in healths:
        if health.terminating:
            continue
        total += 1
        ready += health.ready
        scheduled += health.scheduled
        running += health.running
        if health.is_available(min_ready_seconds, now):
            available += 1
            continue
        at = health.available_at(min_ready_seconds)
        if at is not None and at > now and (requeue_at is None or at < requeue_at):
            requeue_at = at
    return AggregationResult(total, available, ready, scheduled, running, requeue_at)


def aggregate(
    pods: Iterable[Mapping[str, Any]], min_ready_seconds: int, now: datetime
) -> AggregationResult:
    """Count the given pods (already selected for the protector) by health level."""
    return aggregate_health((PodHealth.from_pod(p) for p in pods), min_ready_seconds, now)


def select_pods(
    pods: Iterable[Mapping[str, Any]], namespace: str, selector: LabelSelector
) -> Iterator[Mapping[str, Any]]:
    """The pods in `namespace` whose labels `selector` matches (a protector only ever counts
    pods of its own namespace)."""
    for pod in pods:
        metadata = pod.get("metadata") or {}
        if metadata.get("namespace") == namespace and selector.matches(metadata.get("labels")):
            yield pod

"""Pod health as the aggregator and the webhook judge it (design.md §4 "Pod health").

scheduled = condition PodScheduled is True; running = phase Running; ready = condition Ready is
True; available = not terminating, ready, and ready for at least minReadySeconds.
A terminating pod (deletionTimestamp set) counts toward nothing: it is already on its way out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from protectors.constants import ANNOTATION_HEALTH_CRITERION
from protectors.timefmt import parse_time, utc

__all__ = ["Contributions", "HealthCriterion", "PodHealth", "criterion_from_annotations"]


class HealthCriterion(StrEnum):
    """The health level a deletion is judged at (annotation `health-criterion`)."""

    AVAILABLE = "Available"
    READY = "Ready"
    RUNNING = "Running"
    SCHEDULED = "Scheduled"

    @classmethod
    def parse(cls, value: str | None) -> HealthCriterion:
        """The criterion named by `value`; anything missing or unknown is Available, the
        strictest level, so a typo can never weaken protection."""
        try:
            return cls(value)
        except ValueError:
            return cls.AVAILABLE


def criterion_from_annotations(annotations: Mapping[str, str] | None) -> HealthCriterion:
    """The criterion requested by a pod's or an Eviction's annotations."""
    return HealthCriterion.parse((annotations or {}).get(ANNOTATION_HEALTH_CRITERION))


_CONTRIBUTION_FIELD = {
    HealthCriterion.AVAILABLE: "available",
    HealthCriterion.READY: "ready",
    HealthCriterion.RUNNING: "running",
    HealthCriterion.SCHEDULED: "scheduled",
}


@dataclass(frozen=True)
class Contributions:
    """Which counts one pod adds to. The caller computes them once per request."""

    scheduled: bool = False
    running: bool = False
    ready: bool = False
    available: bool = False

    def at(self, criterion: HealthCriterion) -> bool:
        """Whether the pod counts at `criterion`."""
        return getattr(self, _CONTRIBUTION_FIELD[criterion])


# Slots: the aggregator keeps one per cached pod (workers/aggregator/podcache.py).
@dataclass(frozen=True, slots=True)
class PodHealth:
    scheduled: bool = False
    running: bool = False
    ready: bool = False
    # Ready condition's lastTransitionTime; None when unknown.
    ready_since: datetime | None = None
    terminating: bool = False

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any]) -> PodHealth:
        """Read health from a pod object (only metadata and status are looked at).

        Raises ValueError naming the field when a timestamp is malformed or a field read here
        is not of the type Kubernetes gives it.
        """
        metadata = _object(pod.get("metadata"), "metadata")
        status = _object(pod.get("status"), "status")
        listed = status.get("conditions") or []
        if not isinstance(listed, list):
            raise ValueError("pod status.conditions must be a list")
        conditions = {
            c["type"]: c
            for c in listed
            if isinstance(c, Mapping) and isinstance(c.get("type"), str)
        }
        ready_condition = conditions.get("Ready") or {}
        ready = _is_true(ready_condition)
        transition = ready_condition.get("lastTransitionTime") if ready else None
        ready_since = (
            _parse_field(transition, "status.conditions[Ready].lastTransitionTime")
            if transition
            else None
        )
        return cls(
            scheduled=_is_true(conditions.get("PodScheduled") or {}),
            running=status.get("phase") == "Running",
            ready=ready,
            ready_since=ready_since,
            terminating=bool(metadata.get("deletionTimestamp")),
        )

    def available_at(self, min_ready_seconds: int) -> datetime | None:
        """When this pod becomes (or became) available if nothing else changes.

        None when waiting alone cannot make it available (not ready, terminating) or the
        moment is unknown (ready without a transition time). The aggregator requeues a
        protector for this moment when it lies in the future.
        """
        if self.terminating or not self.ready or self.ready_since is None:
            return None
        try:
            return self.ready_since + timedelta(seconds=max(min_ready_seconds, 0))
        except OverflowError:
            return None  # ready since the last days of year 9999: never, as far as we care

    def is_available(self, min_ready_seconds: int, now: datetime) -> bool:
        if self.terminating or not self.ready:
            return False
        if min_ready_seconds <= 0:
            return True
        at = self.available_at(min_ready_seconds)
        # Inclusive: ready for exactly minReadySeconds is available (design.md: now - t >= min).
        return at is not None and utc(now) >= at

    def contributions(self, min_ready_seconds: int, now: datetime) -> Contributions:
        if self.terminating:
            return Contributions()
        return Contributions(
            scheduled=self.scheduled,
            running=self.running,
            ready=self.ready,
            available=self.is_available(min_ready_seconds, now),
        )

    def contributes(
        self, criterion: HealthCriterion, min_ready_seconds: int, now: datetime
    ) -> bool:
        """Whether the pod counts toward the protector's count at `criterion`."""
        return self.contributions(min_ready_seconds, now).at(criterion)


def _object(value: Any, path: str) -> Mapping[str, Any]:
    """A field that must be a JSON object; missing, null or otherwise empty reads as empty."""
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"pod {path} must be a JSON object")
    return value


def _is_true(condition: Mapping[str, Any]) -> bool:
    return condition.get("status") == "True"


def _parse_field(value: Any, path: str) -> datetime:
    try:
        return parse_time(value)
    except ValueError as exc:
        raise ValueError(f"pod {path}: {exc}") from None

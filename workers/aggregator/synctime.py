"""A cell's sync time: the moment up to which its pod stream is known to be current.

Any pod event proves the stream has delivered everything up to that event, so an admission
bucket older than the sync time has had its chance to show up in the aggregation and can be
dropped. Two ways to date an event (``aggregator.sync_time_algorithm``):

- ``clock``: when the aggregator received it (its own clock; the default);
- ``status``: the newest time the pod object itself carries, so only the clocks of the
  apiserver, the kubelet and the update trigger matter: creationTimestamp, the moment deletion
  was requested, the update-trigger annotation and its conditions' lastProbeTime and
  lastTransitionTime.

Decisions where design.md is silent: the deletion moment is ``deletionTimestamp -
deletionGracePeriodSeconds`` (a graceful deletion dates deletionTimestamp into the future, which
would otherwise let the sync time run ahead of the stream by the grace period);
lastTransitionTime is used beside lastProbeTime because the kubelet rarely sets the latter and a
readiness flip is the commonest pod event; unreadable timestamps are ignored. The sync time never
moves backwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from protectors.constants import ANNOTATION_UPDATE_TRIGGER_TIME
from protectors.timefmt import parse_time

__all__ = ["SyncClock", "SyncTimeAlgorithm", "event_time", "status_time"]


class SyncTimeAlgorithm(StrEnum):
    CLOCK = "clock"
    STATUS = "status"


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def status_time(pod: Mapping[str, Any]) -> datetime | None:
    """The newest moment the pod object records, or None when it records none."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    candidates = [_parse(metadata.get("creationTimestamp"))]

    deletion = _parse(metadata.get("deletionTimestamp"))
    if deletion is not None:
        grace = metadata.get("deletionGracePeriodSeconds")
        if isinstance(grace, int) and not isinstance(grace, bool) and grace > 0:
            deletion -= timedelta(seconds=grace)
        candidates.append(deletion)

    annotations = metadata.get("annotations") or {}
    candidates.append(_parse(annotations.get(ANNOTATION_UPDATE_TRIGGER_TIME)))

    for condition in status.get("conditions") or ():
        if isinstance(condition, Mapping):
            candidates.append(_parse(condition.get("lastProbeTime")))
            candidates.append(_parse(condition.get("lastTransitionTime")))

    known = [c for c in candidates if c is not None]
    return max(known) if known else None


def event_time(
    algorithm: SyncTimeAlgorithm, pod: Mapping[str, Any], received_at: datetime
) -> datetime | None:
    """How far one pod event proves the stream current, by ``algorithm``."""
    if algorithm is SyncTimeAlgorithm.CLOCK:
        return received_at
    return status_time(pod)


class SyncClock:
    """The cell's sync time: the newest event time seen, never moving backwards.

    Not thread-safe by itself: the controller updates it under the lock that also guards the
    next-event pool, so a protector cannot slip into the pool just after the wake-up.
    """

    def __init__(self) -> None:
        self.value: datetime | None = None

    def advance(self, moment: datetime | None) -> bool:
        """Move to ``moment`` if it is newer; True when the sync time moved."""
        if moment is None or (self.value is not None and moment <= self.value):
            return False
        self.value = moment
        return True

    def reset(self) -> None:
        self.value = None

"""The disruption quota: which of a batch of concurrent pod deletions one PodProtector admits
(design.md §4 "Disruption quota").

The webhook gathers the deletion requests that reach it for the same protector at about the
same time, runs them through `admit_batch` against the protector it last read, and writes the
returned status with that protector's resourceVersion. On a 409 Conflict it re-reads and runs
the whole batch again, which is why this is a pure function of its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from operator import attrgetter

from protectors.health import Contributions, HealthCriterion
from protectors.history_config import EffectiveHistoryConfig
from protectors.model import Bucket, CellStatus, PodProtector, Status
from protectors.summarize import summarize
from protectors.timefmt import utc

__all__ = [
    "AdmissionResult",
    "DeletionRequest",
    "QuotaOutcome",
    "admit_batch",
    "refresh_due",
]


class AdmissionResult(StrEnum):
    # Admitted, and a bucket now records it.
    OK = "Ok"
    # This pod's deletion was admitted before (its bucket is still there); admitted again.
    ALREADY_ADMITTED = "AlreadyAdmitted"
    # The pod does not count at its criterion, so deleting it costs no availability.
    ALREADY_UNHEALTHY = "AlreadyUnhealthy"
    # Quota is reserved by admitted-but-unconfirmed deletions: try again shortly.
    RETRY = "Retry"
    # Deleting would take the protector to or below minAvailable.
    DENIED = "Denied"

    @property
    def allows_deletion(self) -> bool:
        return self in _ALLOWING


_ALLOWING = frozenset(
    {AdmissionResult.OK, AdmissionResult.ALREADY_ADMITTED, AdmissionResult.ALREADY_UNHEALTHY}
)


@dataclass(frozen=True)
class DeletionRequest:
    """One pod deletion to judge. `contributions` describe the pod as the webhook sees it."""

    cell_id: str
    pod_uid: str
    contributions: Contributions
    criterion: HealthCriterion = HealthCriterion.AVAILABLE
    pod_name: str | None = None


@dataclass(frozen=True)
class QuotaOutcome:
    # One result per request, in the order the requests were given.
    results: tuple[AdmissionResult, ...]
    # The summarized status to write back.
    status: Status
    # Whether the admission history changed; when False there is nothing worth writing.
    changed: bool


_POD_UID = attrgetter("pod_uid")


def refresh_due(start_time: datetime, now: datetime, refresh_after: timedelta) -> bool:
    """Whether a repeated admission of the pod of a bucket that starts at `start_time` moves
    the startTime to `now`: only when it is older than `refresh_after`, and never backwards."""
    return start_time < now - refresh_after


def admit_batch(
    protector: PodProtector,
    config: EffectiveHistoryConfig,
    requests: Sequence[DeletionRequest],
    now: datetime,
    *,
    record_pod_names: bool = False,
    refresh_after: timedelta = timedelta(0),
) -> QuotaOutcome:
    """Judge `requests` (ordered oldest to newest) against `protector`'s quota.

    The newest request is judged first: an older one is more likely to have timed out at the
    apiserver already, so spending the quota on it would waste it.

    A request for a pod that already has a bucket moves the bucket's startTime to `now` only
    when the bucket is older than `refresh_after` (never backwards). kube-apiserver reviews one
    DELETE more than once within milliseconds; moving the startTime by those milliseconds would
    cost a status write of its own while barely changing when the aggregator may drop it.
    """
    now = utc(now)
    current = summarize(protector.status or Status(), config)
    summary = current.summary

    # Buckets are admitted deletions the aggregator has not yet seen happen, so the aggregated
    # counts still include those pods. A count at or below min + lag is only exhausted if all of
    # them go through, which is not known yet (a request may have timed out): retry, not deny.
    lag = summary.aggregated_available_replicas - summary.estimated_available_replicas
    reject_at = protector.spec.min_available
    retry_at = reject_at + lag
    remaining = config.max_concurrent_lag - lag if config.max_concurrent_lag > 0 else None
    counts = {
        HealthCriterion.AVAILABLE: summary.aggregated_available_replicas,
        HealthCriterion.READY: summary.aggregated_ready,
        HealthCriterion.RUNNING: summary.aggregated_running,
        HealthCriterion.SCHEDULED: summary.aggregated_scheduled,
    }

    buckets: dict[str, list[Bucket]] = {c.cell_id: list(c.buckets) for c in current.cells}
    # Built for the cells the requests name only.
    by_uid: dict[str, dict[str, int]] = {}
    touched: set[str] = set()
    # Per cell: buckets appended, and whether any bucket's startTime moved; a cell with only
    # appended (newest) buckets keeps its order and its pending count grows by that many.
    added: dict[str, int] = {}
    refreshed: set[str] = set()
    decided: dict[int, AdmissionResult] = {}

    for index in reversed(range(len(requests))):
        request = requests[index]
        cell_buckets = buckets.setdefault(request.cell_id, [])
        cell_uids = by_uid.get(request.cell_id)
        if cell_uids is None:
            # (A compacted bucket has no uid: its None key is never looked up.)
            cell_uids = by_uid[request.cell_id] = dict(
                zip(map(_POD_UID, cell_buckets), range(len(cell_buckets)), strict=True)
            )

        existing = cell_uids.get(request.pod_uid) if request.pod_uid else None
        if existing is not None:
            # Refreshing keeps the aggregator from clearing the bucket before it sees the pod go.
            bucket = cell_buckets[existing]
            if refresh_due(bucket.start_time, now, refresh_after):
                cell_buckets[existing] = bucket.evolve(start_time=now)
                touched.add(request.cell_id)
                refreshed.add(request.cell_id)
            decided[index] = AdmissionResult.ALREADY_ADMITTED
            continue

        if remaining is not None and remaining <= 0:
            decided[index] = AdmissionResult.RETRY
            continue
        if request.contributions.at(request.criterion):
            count = counts[request.criterion]
            if count <= reject_at:
                decided[index] = AdmissionResult.DENIED
                continue
            if count <= retry_at:
                decided[index] = AdmissionResult.RETRY
                continue
            result = AdmissionResult.OK
        else:
            result = AdmissionResult.ALREADY_UNHEALTHY

        # Even an unhealthy pod gets a bucket: the counts it does contribute to (e.g. scheduled)
        # drop too, and the aggregator must see it gone before forgetting the deletion.
        for criterion in HealthCriterion:
            if request.contributions.at(criterion):
                counts[criterion] -= 1
        if remaining is not None:
            remaining -= 1
        if request.pod_uid:
            cell_uids[request.pod_uid] = len(cell_buckets)
        cell_buckets.append(
            Bucket(
                start_time=now,
                pod_uid=request.pod_uid or None,
                pod_name=(request.pod_name or None) if record_pod_names else None,
            )
        )
        touched.add(request.cell_id)
        added[request.cell_id] = added.get(request.cell_id, 0) + 1
        decided[index] = result

    status = current
    if touched:
        for cell_id in buckets:
            if cell_id in touched:
                cell = status.cell(cell_id) or CellStatus(cell_id=cell_id)
                if cell_id in refreshed:
                    cell = cell.with_buckets(buckets[cell_id])
                else:
                    before = cell.admission_history
                    cell = cell.with_buckets(
                        buckets[cell_id],
                        pending=before.pending + added.get(cell_id, 0),
                        in_order=before.in_order
                        and (not before.buckets or before.buckets[-1].start_time <= now),
                    )
                status = status.with_cell(cell)
        status = summarize(status, config)
    return QuotaOutcome(
        results=tuple(decided[i] for i in range(len(requests))),
        status=status,
        changed=bool(touched),
    )

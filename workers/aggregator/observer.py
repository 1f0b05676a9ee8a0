"""The aggregator's one observer: every log line and metric of the component goes through here.

Metric names follow design.md §6. Labels stay bounded: ``cell`` comes from the config, ``error``
from the small set of reconcile outcomes below; no namespace or protector names.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from workers.aggregator.reconcile import CellReconcile

__all__ = ["AggregatorObserver", "ReconcileError"]

logger = logging.getLogger("podseidon.aggregator")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class ReconcileError(StrEnum):
    """The ``error`` label of ``aggregator_reconcile``."""

    NONE = "none"
    # 409 on the status write: the protector changed under us; requeued.
    CONFLICT = "conflict"
    # Any other API failure (unreachable, 5xx, ...); retried with backoff.
    KUBE = "kube"
    # The protector cannot be parsed (bad selector, malformed status); waits for a change.
    INVALID = "invalid"
    # The lease was lost: the write did not go out.
    LOST_LEADERSHIP = "lost-leadership"
    # A bug.
    INTERNAL = "internal"


RECONCILE = Histogram(
    "aggregator_reconcile",
    "Time to reconcile one PodProtector in one cell, in seconds, by outcome.",
    ["cell", "error"],
    buckets=_LATENCY_BUCKETS,
)
POOL_SIZE = Gauge(
    "aggregator_next_event_pool_current_size",
    "PodProtectors waiting for the cell's next pod event to expire their admission buckets.",
    ["cell"],
    multiprocess_mode="livemax",
)
POOL_LATENCY = Gauge(
    "aggregator_next_event_pool_current_latency",
    "Seconds the oldest PodProtector in the next-event pool has been waiting.",
    ["cell"],
    multiprocess_mode="livemax",
)
STATUS_WRITES = Counter(
    "aggregator_status_write",
    "PodProtector status writes made by the aggregator.",
    ["cell"],
)
EXPIRED_BUCKETS = Counter(
    "aggregator_expired_buckets",
    "Admission buckets dropped because the cell's pod stream moved past them.",
    ["cell"],
)
UPDATE_TRIGGER = Counter(
    "aggregator_update_trigger",
    "Bumps of the update-trigger dummy pod, by result.",
    ["cell", "result"],
)


class AggregatorObserver:
    def __init__(self, cell_id: str) -> None:
        self.cell_id = cell_id
        # Labelled children looked up once each: a reconcile should not pay for the lookup.
        self._reconcile: dict[ReconcileError, Any] = {}
        self._status_writes = STATUS_WRITES.labels(cell_id)

    def started(self) -> None:
        logger.info("aggregator for cell %s started", self.cell_id)

    def stopped(self) -> None:
        self.pool(0, 0.0)
        logger.info("aggregator for cell %s stopped", self.cell_id)

    def synced(self) -> None:
        logger.info("aggregator for cell %s: caches synced, reconciling", self.cell_id)

    def reconciled(
        self, key: str, seconds: float, error: ReconcileError, message: str | None = None
    ) -> None:
        child = self._reconcile.get(error)
        if child is None:
            child = self._reconcile[error] = RECONCILE.labels(self.cell_id, error.value)
        child.observe(seconds)
        if error is ReconcileError.NONE:
            return
        if error is ReconcileError.CONFLICT:
            logger.debug("cell %s: PodProtector %s changed under us; requeued", self.cell_id, key)
        elif error is ReconcileError.INTERNAL:
            logger.error(
                "cell %s: reconciling PodProtector %s failed: %s", self.cell_id, key, message
            )
        else:
            logger.warning(
                "cell %s: reconciling PodProtector %s failed (%s): %s",
                self.cell_id,
                key,
                error.value,
                message,
            )

    def status_written(self, key: str, decision: CellReconcile) -> None:
        self._status_writes.inc()
        if decision.expired:
            EXPIRED_BUCKETS.labels(self.cell_id).inc(decision.expired)
        aggregation = decision.aggregation
        logger.debug(
            "cell %s: PodProtector %s: %d total, %d available; %d bucket(s) expired",
            self.cell_id,
            key,
            aggregation.total,
            aggregation.available,
            decision.expired,
        )
        if decision.malformed_pods:
            logger.warning(
                "cell %s: PodProtector %s: %d pod(s) with unreadable timestamps counted as "
                "unavailable",
                self.cell_id,
                key,
                decision.malformed_pods,
            )

    def pool(self, size: int, latency: float) -> None:
        POOL_SIZE.labels(self.cell_id).set(size)
        POOL_LATENCY.labels(self.cell_id).set(latency)

    def update_trigger(self, error: Exception | None) -> None:
        UPDATE_TRIGGER.labels(self.cell_id, "ok" if error is None else "error").inc()
        if error is not None:
            logger.warning("cell %s: update trigger failed: %s", self.cell_id, error)

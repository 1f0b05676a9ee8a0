"""The monitor's one observer: its gauges (design.md §4 "Monitor", §6) and logs.

Only the leader sets the gauges; a stopped monitor resets them to 0, so summing or taking the
max across every worker's :9090 gives the leader's figures.
"""

from __future__ import annotations

import logging

from prometheus_client import Gauge

from workers.monitor.gauges import MonitorGauges

__all__ = ["MonitorObserver"]

logger = logging.getLogger("podseidon.monitor")


def _gauge(name: str, documentation: str) -> Gauge:
    return Gauge(name, documentation, multiprocess_mode="livemax")


PROTECTORS = _gauge("monitor_protectors", "Number of PodProtectors.")
MIN_AVAILABLE = _gauge("monitor_min_available", "Sum of spec.minAvailable over PodProtectors.")
AGGREGATED_AVAILABLE = _gauge(
    "monitor_aggregated_available",
    "Sum of status.summary.aggregatedAvailableReplicas over PodProtectors.",
)
ESTIMATED_AVAILABLE = _gauge(
    "monitor_estimated_available",
    "Sum of status.summary.estimatedAvailableReplicas over PodProtectors.",
)
MAX_LATENCY = _gauge(
    "monitor_max_latency_millis",
    "Largest status.summary.maxLatencyMillis (admission bucket lag) over PodProtectors.",
)
AT_RISK = _gauge(
    "monitor_protectors_at_risk",
    "PodProtectors with minAvailable > 0 whose estimated available count is at or below it.",
)


class MonitorObserver:
    def __init__(self) -> None:
        self._last: MonitorGauges | None = None

    def started(self) -> None:
        logger.info("monitor started")

    def stopped(self) -> None:
        self.publish(MonitorGauges())
        self._last = None
        logger.info("monitor stopped")

    def publish(self, gauges: MonitorGauges) -> None:
        PROTECTORS.set(gauges.protectors)
        MIN_AVAILABLE.set(gauges.min_available)
        AGGREGATED_AVAILABLE.set(gauges.aggregated_available)
        ESTIMATED_AVAILABLE.set(gauges.estimated_available)
        MAX_LATENCY.set(gauges.max_latency_millis)
        AT_RISK.set(gauges.at_risk)
        if self._last is not None and gauges.at_risk > self._last.at_risk:
            logger.warning(
                "%d PodProtector(s) at or below their minimum (was %d)",
                gauges.at_risk,
                self._last.at_risk,
            )
        self._last = gauges

    def failed(self, error: Exception) -> None:
        logger.exception("monitor: computing gauges failed: %s", error)

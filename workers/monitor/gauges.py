"""The monitor's global figures over all PodProtectors, as a pure function of their objects.

Read straight from the raw objects (``spec.minAvailable`` and ``status.summary``) instead of
parsing whole protectors: a malformed one still counts as a protector, with what can be read.

"At risk" (design.md says "at or below their minimum") is a protector with ``minAvailable > 0``
whose estimated available count is ``<= minAvailable``: the webhook rejects every further
deletion it guards. A protector not aggregated yet has no summary and counts 0 available, so a
new protector with a minimum is at risk until an aggregator reports on it. A protector with
``minAvailable == 0`` guards nothing and is never at risk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MonitorGauges", "compute_gauges"]


@dataclass(frozen=True)
class MonitorGauges:
    protectors: int = 0
    min_available: int = 0
    aggregated_available: int = 0
    estimated_available: int = 0
    # Largest summary.maxLatencyMillis over all protectors (0 when none has pending buckets).
    max_latency_millis: int = 0
    at_risk: int = 0


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def compute_gauges(protectors: Iterable[Mapping[str, Any]]) -> MonitorGauges:
    count = min_available = aggregated = estimated = at_risk = 0
    max_latency = 0
    for obj in protectors:
        count += 1
        spec = obj.get("spec") or {}
        summary = (obj.get("status") or {}).get("summary") or {}
        minimum = _int(spec.get("minAvailable")) if isinstance(spec, Mapping) else 0
        if not isinstance(summary, Mapping):
            summary = {}
        available = _int(summary.get("aggregatedAvailableReplicas"))
        estimate = _int(summary.get("estimatedAvailableReplicas"))
        min_available += minimum
        aggregated += available
        estimated += estimate
        max_latency = max(max_latency, _int(summary.get("maxLatencyMillis")))
        if minimum > 0 and estimate <= minimum:
            at_risk += 1
    return MonitorGauges(count, min_available, aggregated, estimated, max_latency, at_risk)

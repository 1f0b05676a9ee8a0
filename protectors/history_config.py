"""Admission history settings in effect for one PodProtector: its own values over defaults."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from protectors.model import AdmissionHistoryConfig

__all__ = ["DEFAULT_HISTORY_CONFIG", "EffectiveHistoryConfig", "effective_config"]


@dataclass(frozen=True)
class EffectiveHistoryConfig:
    # Admitted-but-unconfirmed deletions allowed at once; 0 = unlimited.
    max_concurrent_lag: int = 0
    # Single-pod buckets kept per cell before the oldest are folded into one.
    compact_threshold: int = 100
    # Delay between a pod event and the aggregation it triggers.
    aggregation_rate: timedelta = timedelta(seconds=1)

    @classmethod
    def from_millis(
        cls, max_concurrent_lag: int, compact_threshold: int, aggregation_rate_millis: int
    ) -> EffectiveHistoryConfig:
        """Build from the millisecond form used by the API and the operator config."""
        return cls(
            max_concurrent_lag=max_concurrent_lag,
            compact_threshold=compact_threshold,
            aggregation_rate=timedelta(milliseconds=aggregation_rate_millis),
        )

    @property
    def aggregation_rate_millis(self) -> int:
        return self.aggregation_rate // timedelta(milliseconds=1)


DEFAULT_HISTORY_CONFIG = EffectiveHistoryConfig()


def effective_config(
    spec_config: AdmissionHistoryConfig | None,
    defaults: EffectiveHistoryConfig = DEFAULT_HISTORY_CONFIG,
) -> EffectiveHistoryConfig:
    """Per-object values where set, defaults elsewhere.

    A value of 0 (or below) counts as unset: built objects omit zeros on the wire, so 0 and
    "absent" must mean the same thing, and no setting is meaningful below 1.
    """
    if spec_config is None:
        return defaults

    def pick(value: int | None, default: int) -> int:
        return value if value is not None and value > 0 else default

    return EffectiveHistoryConfig(
        max_concurrent_lag=pick(spec_config.max_concurrent_lag, defaults.max_concurrent_lag),
        compact_threshold=pick(spec_config.compact_threshold, defaults.compact_threshold),
        aggregation_rate=(
            timedelta(milliseconds=spec_config.aggregation_rate_millis)
            if spec_config.aggregation_rate_millis and spec_config.aggregation_rate_millis > 0
            else defaults.aggregation_rate
        ),
    )

"""Per-object admission history settings over defaults."""

from datetime import timedelta

import pytest

from protectors.history_config import (
    DEFAULT_HISTORY_CONFIG,
    EffectiveHistoryConfig,
    effective_config,
)
from protectors.model import AdmissionHistoryConfig

OPERATOR = EffectiveHistoryConfig.from_millis(
    max_concurrent_lag=5, compact_threshold=50, aggregation_rate_millis=2000
)

# (id, per-object config, defaults, expected)
CASES = [
    ("no-config-built-in-defaults", None, DEFAULT_HISTORY_CONFIG, EffectiveHistoryConfig(0, 100)),
    ("no-config-operator-defaults", None, OPERATOR, OPERATOR),
    ("empty-config", AdmissionHistoryConfig(), OPERATOR, OPERATOR),
    (
        "all-overridden",
        AdmissionHistoryConfig(
            max_concurrent_lag=2, compact_threshold=7, aggregation_rate_millis=250
        ),
        OPERATOR,
        EffectiveHistoryConfig(2, 7, timedelta(milliseconds=250)),
    ),
    (
        "partial-override",
        AdmissionHistoryConfig(compact_threshold=10),
        OPERATOR,
        EffectiveHistoryConfig(5, 10, timedelta(seconds=2)),
    ),
    (
        "zero-means-default",
        AdmissionHistoryConfig(
            max_concurrent_lag=0, compact_threshold=0, aggregation_rate_millis=0
        ),
        OPERATOR,
        OPERATOR,
    ),
    (
        "negative-ignored",
        AdmissionHistoryConfig(max_concurrent_lag=-1, compact_threshold=-3),
        OPERATOR,
        OPERATOR,
    ),
]


@pytest.mark.parametrize(
    ("spec_config", "defaults", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_effective_config(spec_config, defaults, expected):
    assert effective_config(spec_config, defaults) == expected


def test_defaults_match_design():
    assert DEFAULT_HISTORY_CONFIG.max_concurrent_lag == 0
    assert DEFAULT_HISTORY_CONFIG.compact_threshold == 100
    assert DEFAULT_HISTORY_CONFIG.aggregation_rate == timedelta(seconds=1)
    assert DEFAULT_HISTORY_CONFIG.aggregation_rate_millis == 1000

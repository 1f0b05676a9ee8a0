"""Kubernetes Time/MicroTime parsing and formatting."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from protectors.timefmt import format_micro_time, format_time, parse_time

PARSE_CASES = [
    ("seconds", "2026-11-21T18:21:31Z", datetime(2026, 11, 21, 18, 21, 31, tzinfo=UTC)),
    (
        "micro",
        "2026-11-21T00:00:00.000000Z",
        datetime(2026, 11, 21, tzinfo=UTC),
    ),
    (
        "millis",
        "2026-11-21T18:21:31.250Z",
        datetime(2026, 11, 21, 18, 21, 31, 250000, tzinfo=UTC),
    ),
    (
        "nanos-truncated",
        "2026-11-21T18:21:31.123456789Z",
        datetime(2026, 11, 21, 18, 21, 31, 123456, tzinfo=UTC),
    ),
    (
        "positive-offset",
        "2026-11-21T20:21:31+02:00",
        datetime(2026, 11, 21, 18, 21, 31, tzinfo=UTC),
    ),
    (
        "negative-offset-crosses-day",
        "2026-11-21T23:30:00-01:00",
        datetime(2026, 11, 22, 0, 30, tzinfo=UTC),
    ),
    ("lowercase-t-z", "2026-11-21t18:21:31z", datetime(2026, 11, 21, 18, 21, 31, tzinfo=UTC)),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES]
)
def test_parse_time(text, expected):
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


BAD_TIMES = [
    ("empty", ""),
    ("date-only", "2026-11-21"),
    ("no-zone", "2026-11-21T18:21:31"),
    ("space-separator", "2026-11-21 18:21:31Z"),
    ("month-13", "2026-13-01T00:00:00Z"),
    ("hour-25", "2026-11-21T25:00:00Z"),
    ("empty-fraction", "2026-11-21T18:21:31.Z"),
    ("trailing-garbage", "2026-11-21T18:21:31Zjunk"),
    ("not-a-string", 1763749291),
    ("none", None),
    # Valid RFC 3339, but outside what datetime holds once in UTC (found by the webhook fuzz).
    ("before-year-1-in-utc", "0001-01-01T00:00:00+01:00"),
    ("after-year-9999-in-utc", "9999-12-31T23:59:59-01:00"),
]


@pytest.mark.parametrize("value", [c[1] for c in BAD_TIMES], ids=[c[0] for c in BAD_TIMES])
def test_parse_time_rejects(value):
    with pytest.raises(ValueError, match=r"RFC 3339|bad UTC offset"):
        parse_time(value)


def test_parse_time_error_does_not_echo_a_huge_value():
    with pytest.raises(ValueError, match="RFC 3339") as raised:
        parse_time("x" * 1_000_000)
    assert len(str(raised.value)) < 200


FORMAT_CASES = [
    (
        "whole-second",
        datetime(2026, 11, 21, 18, 21, 31, tzinfo=UTC),
        "2026-11-21T18:21:31Z",
        "2026-11-21T18:21:31.000000Z",
    ),
    (
        "fraction",
        datetime(2026, 11, 21, 18, 21, 31, 5, tzinfo=UTC),
        "2026-11-21T18:21:31Z",
        "2026-11-21T18:21:31.000005Z",
    ),
    (
        "other-zone-normalized",
        datetime(2026, 11, 21, 20, 0, tzinfo=timezone(timedelta(hours=2))),
        "2026-11-21T18:00:00Z",
        "2026-11-21T18:00:00.000000Z",
    ),
    (
        "early-year-padded",
        datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
        "0999-01-02T03:04:05Z",
        "0999-01-02T03:04:05.000000Z",
    ),
]


@pytest.mark.parametrize(
    ("moment", "time_text", "micro_text"),
    [c[1:] for c in FORMAT_CASES],
    ids=[c[0] for c in FORMAT_CASES],
)
def test_format(moment, time_text, micro_text):
    assert format_time(moment) == time_text
    assert format_micro_time(moment) == micro_text
    assert parse_time(micro_text) == moment


@pytest.mark.parametrize("formatter", [format_time, format_micro_time])
def test_format_refuses_naive(formatter):
    with pytest.raises(ValueError, match="naive"):
        formatter(datetime(2026, 11, 21))

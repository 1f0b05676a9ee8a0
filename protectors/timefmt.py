"""Kubernetes time formats on the wire.

`metav1.Time` is RFC 3339 at second precision (`2026-11-21T18:21:31Z`); `metav1.MicroTime`
always carries exactly six fractional digits (`2026-11-21T18:21:31.000000Z`). Both parse from
any RFC 3339 timestamp.
"""

from __future__ import annotations

import re
import reprlib
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["format_micro_time", "format_time", "parse_time", "utc"]

# Errors name the value, cut short: it may be a megabyte of whatever a client sent.
_shown = reprlib.Repr()
_shown.maxstring = _shown.maxother = 80

_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt]"
    r"(?P<time>\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})"
)


def parse_time(value: str) -> datetime:
    """Parse an RFC 3339 timestamp into a timezone-aware UTC datetime.

    Fractions finer than a microsecond (Go allows nanoseconds) are truncated, because
    Python's datetime cannot hold them.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 timestamp string, got {type(value).__name__}")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(
            f"invalid RFC 3339 timestamp {_shown.repr(value)} (want e.g. 2026-11-21T18:21:31Z)"
        )
    fraction = (match["fraction"] or "").ljust(6, "0")[:6]
    offset = match["offset"]
    if offset in ("Z", "z"):
        tz: timezone = UTC
    else:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"invalid RFC 3339 timestamp {_shown.repr(value)}: bad UTC offset")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        parsed = datetime.fromisoformat(f"{match['date']}T{match['time']}.{fraction}")
        return parsed.replace(tzinfo=tz).astimezone(UTC)
    except ValueError as exc:
        raise ValueError(f"invalid RFC 3339 timestamp {_shown.repr(value)}: {exc}") from None
    except OverflowError:
        # 0001-01-01T00:00:00+01:00 is a valid RFC 3339 time before datetime.min in UTC.
        raise ValueError(
            f"invalid RFC 3339 timestamp {_shown.repr(value)}: out of range in UTC"
        ) from None


def utc(moment: datetime) -> datetime:
    """Return `moment` in UTC; naive datetimes are refused rather than guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()} has no timezone; use an aware one")
    return moment.astimezone(UTC)


def format_time(moment: datetime) -> str:
    """Format as `metav1.Time`: UTC, whole seconds (the fraction is dropped, as Go does)."""
    return _seconds(utc(moment)) + "Z"


def format_micro_time(moment: datetime) -> str:
    """Format as `metav1.MicroTime`: UTC with exactly six fractional digits."""
    moment = utc(moment)
    return f"{_seconds(moment)}.{moment.microsecond:06d}Z"


def _seconds(moment: datetime) -> str:
    # strftime("%Y") does not zero-pad years below 1000 on every platform.
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )

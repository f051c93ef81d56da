"""RFC 3339 date-times, the form of an image's ``uploaded``, read exactly.

``datetime.fromisoformat`` reads what the API writes (``2024-03-05T10:22:31.123Z``) on
Python 3.11+, but not on 3.10 (no ``Z``), and on no version a lower-case ``t``/``z`` or a leap
second (``23:59:60``), all valid RFC 3339. The emulator keeps seed files' times as written,
so the hook and the emulator read them with this one parser.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_DATE = date(1970, 1, 1)
# ASCII digits only, and nothing after the offset (not even a line break).
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(Z|z|[+-][0-9]{2}:[0-9]{2})"
)


@lru_cache(maxsize=65_536)
def _days(year: int, month: int, day: int) -> int:
    # Raises ValueError for impossible dates (2023-02-30).
    return (date(year, month, day) - _EPOCH_DATE).days


def epoch_micros(value: str) -> int:
    """Parse an RFC 3339 date-time into microseconds since the epoch.

    A leap second (``:60``) is the first instant of the next minute.

    :param value: e.g. ``2024-03-05T10:22:31.123Z`` or ``2024-03-05T11:22:31+01:00``.
    :raises ValueError: when ``value`` is not an RFC 3339 date-time.
    """
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    hours, minutes, seconds = int(hour), int(minute), int(second)
    offset_hours, offset_minutes = (
        (0, 0) if offset in ("Z", "z") else (int(offset[1:3]), int(offset[4:6]))
    )
    try:
        if hours > 23 or minutes > 59 or seconds > 60 or offset_hours > 23 or offset_minutes > 59:
            raise ValueError("time out of range")
        days = _days(int(year), int(month), int(day))
    except ValueError:
        raise ValueError(f"not an RFC 3339 date-time: {value!r}") from None
    sign = -1 if offset.startswith("-") else 1
    total = days * 86_400 + hours * 3600 + minutes * 60 + seconds
    total -= sign * (offset_hours * 3600 + offset_minutes * 60)
    micros = int((fraction or "0").ljust(6, "0")[:6])
    return total * 1_000_000 + micros


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 date-time into an aware UTC datetime.

    :param value: e.g. ``2024-03-05T10:22:31.123Z``.
    :raises ValueError: when ``value`` is not an RFC 3339 date-time.
    """
    return EPOCH + timedelta(microseconds=epoch_micros(value))

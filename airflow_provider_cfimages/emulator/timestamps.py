"""Upload timestamps: the RFC 3339 strings the API writes, and the integers the emulator sorts by.

The API writes ``uploaded`` with millisecond precision and a ``Z`` suffix
(``2024-03-05T10:22:31.123Z``). Images loaded from a seed file may use other valid RFC 3339
forms (no fraction, microseconds, ``+00:00``); they are kept as written and sorted by the
instant they denote, in microseconds since the epoch.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_DATE = date(1970, 1, 1)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$"
)


@lru_cache(maxsize=65_536)
def _day_text(days: int) -> str:
    return (_EPOCH + timedelta(days=days)).strftime("%Y-%m-%d")


@lru_cache(maxsize=65_536)
def _days(year: int, month: int, day: int) -> int:
    # Raises ValueError for impossible dates (2023-02-30).
    return (date(year, month, day) - _EPOCH_DATE).days


def format_uploaded(epoch_ms: int) -> str:
    """Format epoch milliseconds the way the API writes ``uploaded``."""
    # Seeding formats a million of these: arithmetic and a per-day cache, not strftime.
    days, in_day = divmod(epoch_ms, 86_400_000)
    seconds, millis = divmod(in_day, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_day_text(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def parse_uploaded(value: str) -> int:
    """Parse an RFC 3339 date-time into epoch microseconds.

    :param value: e.g. ``2024-03-05T10:22:31.123Z`` or ``2024-03-05T11:22:31+01:00``.
    :raises ValueError: when ``value`` is not an RFC 3339 date-time.
    """
    match = _RFC3339.match(value)
    if match is None:
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    hours, minutes, seconds = int(hour), int(minute), int(second)
    try:
        if hours > 23 or minutes > 59 or seconds > 60:
            raise ValueError("time out of range")
        days = _days(int(year), int(month), int(day))
    except ValueError:
        raise ValueError(f"not an RFC 3339 date-time: {value!r}") from None
    total = days * 86_400 + hours * 3600 + minutes * 60 + seconds
    if offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        total -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    micros = int((fraction or "0").ljust(6, "0")[:6])
    return total * 1_000_000 + micros


def now_ms() -> int:
    """The current time in epoch milliseconds (the precision the API keeps)."""
    delta = datetime.now(timezone.utc) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000

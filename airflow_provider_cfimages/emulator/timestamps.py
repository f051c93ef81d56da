"""Upload timestamps: the RFC 3339 strings the API writes, and the integers the emulator sorts by.

The API writes ``uploaded`` with millisecond precision and a ``Z`` suffix
(``2024-03-05T10:22:31.123Z``). Images loaded from a seed file may use other valid RFC 3339
forms (no fraction, microseconds, ``+00:00``); they are kept as written and sorted by the
instant they denote, in microseconds since the epoch.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache

from airflow_provider_cfimages.utils.timestamps import parse_rfc3339

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


@lru_cache(maxsize=65_536)
def _day_text(days: int) -> str:
    return (EPOCH + timedelta(days=days)).strftime("%Y-%m-%d")


def epoch_micros(value: str) -> int:
    """Parse an RFC 3339 date-time into microseconds since the epoch (finer digits dropped).

    :param value: e.g. ``2024-03-05T10:22:31.123Z`` or ``2024-03-05T11:22:31+01:00``.
    :raises ValueError: when ``value`` is not an RFC 3339 date-time.
    """
    return (parse_rfc3339(value) - EPOCH) // _MICROSECOND


def format_uploaded(epoch_ms: int) -> str:
    """Format epoch milliseconds the way the API writes ``uploaded``."""
    # Seeding formats a million of these: arithmetic and a per-day cache, not strftime.
    days, in_day = divmod(epoch_ms, 86_400_000)
    seconds, millis = divmod(in_day, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_day_text(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def now_ms() -> int:
    """The current time in epoch milliseconds (the precision the API keeps)."""
    delta = datetime.now(timezone.utc) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000

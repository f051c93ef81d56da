"""Upload timestamps: the RFC 3339 strings the API writes, and the integers the emulator sorts by.

The API writes ``uploaded`` with millisecond precision and a ``Z`` suffix
(``2024-03-05T10:22:31.123Z``). Images loaded from a seed file may use other valid RFC 3339
forms (no fraction, microseconds, ``+00:00``); they are kept as written and sorted by the
instant they denote, in microseconds since the epoch.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$"
)


def format_uploaded(epoch_ms: int) -> str:
    """Format epoch milliseconds the way the API writes ``uploaded``."""
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{epoch_ms % 1000:03d}Z"


def parse_uploaded(value: str) -> int:
    """Parse an RFC 3339 date-time into epoch microseconds.

    :param value: e.g. ``2024-03-05T10:22:31.123Z`` or ``2024-03-05T11:22:31+01:00``.
    :raises ValueError: when ``value`` is not an RFC 3339 date-time.
    """
    match = _RFC3339.match(value)
    if match is None:
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    moment = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone.utc
    )
    if offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        moment -= sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
    micros = int((fraction or "0").ljust(6, "0")[:6])
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + micros


def now_ms() -> int:
    """The current time in epoch milliseconds (the precision the API keeps)."""
    delta = datetime.now(timezone.utc) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000

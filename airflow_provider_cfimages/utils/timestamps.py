"""Upload times: one parser of the RFC 3339 date-times the API writes, for the whole provider.

The hook, the inventory writer, the reconcile and delete operators and the emulator all read
``uploaded`` through these functions. The emulator runs on the standard library and msgspec
alone, so this module imports nothing from Airflow, and pendulum only where it is needed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def parse_uploaded(value: Any) -> dt.datetime | None:
    """Parse an image's ``uploaded`` field; ``None`` if it cannot be read.

    A value without a UTC offset is taken as UTC, as :func:`parse_instant` does.

    :param value: the field as the API returned it (``2024-03-05T10:22:31.123Z``).
    """
    if not isinstance(value, str):
        return None
    try:
        parsed = _read_iso_datetime(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def parse_rfc3339(text: str) -> dt.datetime:
    """Parse an RFC 3339 date-time, which always carries its UTC offset (or ``Z``).

    The emulator checks upload and expiry times with it, so it reads them as the hook does.

    :param text: e.g. ``2024-03-05T10:22:31.123Z`` or ``2024-03-05T11:22:31+01:00``.
    :raises ValueError: when ``text`` is not a date-time with an offset.
    """
    try:
        parsed = _read_iso_datetime(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    return parsed


def _read_iso_datetime(text: str) -> dt.datetime:
    """``datetime.fromisoformat``, with pendulum's ISO 8601 parser for what it cannot read.

    Python 3.10's ``fromisoformat`` reads no ``Z`` (so it becomes ``+00:00`` first), and only
    fractions of 3 or 6 digits; pendulum reads the rest (``.5``, nanoseconds).
    """
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        from pendulum.parsing import parse_iso8601

        parsed = parse_iso8601(text)  # raises ValueError too
    if not isinstance(parsed, dt.datetime):  # a date, a time or a duration
        raise ValueError(f"not a date-time: {text!r}")
    return parsed

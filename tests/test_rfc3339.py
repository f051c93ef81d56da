"""RFC 3339 upload times: every valid form reads the same in the hook as in the emulator."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_cfimages.hooks.query import parse_uploaded
from airflow_provider_cfimages.hooks.rfc3339 import EPOCH, epoch_micros, parse_rfc3339

UTC = dt.timezone.utc
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)


def rfc3339(instant: dt.datetime, *, zulu: bool) -> str:
    text = instant.isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z") if zulu else text


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(
    instant=st.datetimes(
        min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=offsets
    ),
    zulu=st.booleans(),
)
def test_the_parser_agrees_with_fromisoformat(instant: dt.datetime, zulu: bool) -> None:
    text = rfc3339(instant, zulu=zulu)

    assert parse_rfc3339(text) == instant == parse_uploaded(text)
    assert parse_rfc3339(text).tzinfo == UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # What the API writes; Python 3.10's fromisoformat cannot read the "Z".
        ("2024-03-05T10:22:31.123Z", dt.datetime(2024, 3, 5, 10, 22, 31, 123000, UTC)),
        ("2024-03-05t10:22:31z", dt.datetime(2024, 3, 5, 10, 22, 31, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", dt.datetime(2017, 1, 1, tzinfo=UTC)),  # a leap second
        ("2024-03-05T11:22:31.5+01:00", dt.datetime(2024, 3, 5, 10, 22, 31, 500000, UTC)),
    ],
)
def test_every_rfc3339_form_reads_as_in_the_emulator(text: str, expected: dt.datetime) -> None:
    assert parse_uploaded(text) == expected
    assert parse_rfc3339(text) == expected
    assert EPOCH + dt.timedelta(microseconds=epoch_micros(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2024-02-30T00:00:00Z",
        "2024-03-05T24:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-03-01T10:22:31+99:99",  # an offset out of range
        "2024-03-01T10:22:31Z\n",
        "\u0662\u0660\u0662\u0664-03-05T10:22:31Z",  # Arabic-Indic digits
    ],
)
def test_what_is_not_a_date_time_reads_as_none(text: str) -> None:
    assert parse_uploaded(text) is None
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_rfc3339(text)

"""Upload times: the hook, the writer, the delete operator and the emulator read them alike."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_cfimages.emulator.timestamps import EPOCH, epoch_micros
from airflow_provider_cfimages.utils.timestamps import parse_rfc3339, parse_uploaded

UTC = dt.timezone.utc
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)


def rfc3339(instant: dt.datetime, *, zulu: bool, timespec: str) -> str:
    text = instant.isoformat(timespec=timespec)
    return text.replace("+00:00", "Z") if zulu else text


@settings(deadline=None)  # timing varies on a loaded CI machine
@given(
    instant=st.datetimes(
        min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=offsets
    ),
    zulu=st.booleans(),
    timespec=st.sampled_from(["seconds", "milliseconds", "microseconds"]),
)
def test_every_instant_reads_back_from_its_rfc3339_text(
    instant: dt.datetime, zulu: bool, timespec: str
) -> None:
    text = rfc3339(instant, zulu=zulu, timespec=timespec)
    expected = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))

    assert parse_rfc3339(text) == expected == parse_uploaded(text)
    assert EPOCH + dt.timedelta(microseconds=epoch_micros(text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # What the API writes; Python 3.10's fromisoformat cannot read the "Z" by itself.
        ("2024-03-05T10:22:31.123Z", dt.datetime(2024, 3, 5, 10, 22, 31, 123000, UTC)),
        ("2024-03-05T10:22:31Z", dt.datetime(2024, 3, 5, 10, 22, 31, tzinfo=UTC)),
        ("2024-03-05T10:22:31.123z", dt.datetime(2024, 3, 5, 10, 22, 31, 123000, UTC)),
        ("2024-03-05T11:22:31.5+01:00", dt.datetime(2024, 3, 5, 10, 22, 31, 500000, UTC)),
        ("2024-03-05T10:22:31.123456789Z", dt.datetime(2024, 3, 5, 10, 22, 31, 123456, UTC)),
        ("2024-03-05T05:22:31.123456-05:00", dt.datetime(2024, 3, 5, 10, 22, 31, 123456, UTC)),
        ("2024-03-05 10:22:31+00:00", dt.datetime(2024, 3, 5, 10, 22, 31, tzinfo=UTC)),
    ],
)
def test_the_forms_upload_times_come_in_read_the_same_everywhere(
    text: str, expected: dt.datetime
) -> None:
    assert parse_uploaded(text) == expected
    assert parse_rfc3339(text) == expected
    assert EPOCH + dt.timedelta(microseconds=epoch_micros(text)) == expected


def test_an_upload_time_without_an_offset_is_utc_to_the_client_but_refused_by_the_emulator() -> (
    None
):
    assert parse_uploaded("2024-03-05T10:22:31") == dt.datetime(2024, 3, 5, 10, 22, 31, tzinfo=UTC)
    with pytest.raises(ValueError, match="not an RFC 3339 date-time"):
        parse_rfc3339("2024-03-05T10:22:31")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Z",
        "yesterday",
        "2024-02-30T00:00:00Z",
        "2024-03-05T24:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-03-01T10:22:31+99:99",  # an offset out of range
        "2024-03-01T10:22:31Z\n",
        "\u0662\u0660\u0662\u0664-03-05T10:22:31Z",  # Arabic-Indic digits
        "T10:22:31Z",
        "P1D",  # an ISO 8601 duration, not an instant
    ],
)
def test_what_is_not_a_date_time_reads_as_none(text: str) -> None:
    assert parse_uploaded(text) is None
    with pytest.raises(ValueError, match="not an RFC 3339 date-time"):
        parse_rfc3339(text)


@pytest.mark.parametrize("value", [None, 1_709_634_151, b"2024-03-05T10:22:31Z"])
def test_an_upload_time_that_is_not_text_reads_as_none(value: object) -> None:
    assert parse_uploaded(value) is None

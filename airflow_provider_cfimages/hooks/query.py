"""The listing parameters shared by the hook, the list operator, the sensor and the trigger.

:class:`ImageQuery` checks them once, before any request, with errors that name the
parameter, and decides per image whether it is in the requested upload-time window or
whether listing can stop because the sort order puts every later image outside it.

The window is half-open, ``uploaded_after <= uploaded < uploaded_before``, so consecutive
data intervals (``{{ data_interval_start }}`` .. ``{{ data_interval_end }}``) neither
overlap nor leave gaps.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any, Literal

import jinja2

from airflow_provider_cfimages.hooks.meta_filters import (
    NO_FILTERS,
    MetaFilters,
    parse_meta_filters,
)
from airflow_provider_cfimages.utils.templates import undefined_value_message
from airflow_provider_cfimages.utils.validation import check_choice, is_absent

SortOrder = Literal["asc", "desc"]
SORT_ORDERS: tuple[SortOrder, ...] = ("asc", "desc")
MIN_PER_PAGE = 10
MAX_PER_PAGE = 10_000
DEFAULT_PER_PAGE = 1000
#: What one page really holds at most: the API accepts per_page up to 10000 but its docs
#: say "up to 1000 results per page".
API_PAGE_CAP = 1000


class EmptyWindowError(ValueError):
    """``uploaded_after`` and ``uploaded_before`` are the same instant: nothing can match.

    Nearly always a zero-length data interval: in Airflow 3 a cron schedule means
    ``CronTriggerTimetable``, whose runs have ``data_interval_start == data_interval_end``.

    :param instant: the instant both bounds rendered to.
    :param timetable: the DAG's timetable in words, when the caller knows it.
    """

    def __init__(self, instant: dt.datetime, timetable: str | None = None) -> None:
        self.instant = instant
        self.timetable = timetable
        schedule = f"this DAG's timetable, {timetable}," if timetable else "the DAG's timetable"
        super().__init__(
            f"uploaded_after ({instant.isoformat()}) must be earlier than uploaded_before "
            f"({instant.isoformat()}): at the same instant, the window uploaded_after <= "
            "uploaded < uploaded_before is empty. If they "
            "come from {{ data_interval_start }} and {{ data_interval_end }}, "
            f"{schedule} gives data intervals of zero length: in Airflow 3 a cron schedule "
            '(schedule="@hourly") means CronTriggerTimetable, which does (unless [scheduler] '
            "create_cron_data_intervals is set). For one window per "
            "schedule interval, schedule the DAG with CronDataIntervalTimetable (e.g. "
            'CronDataIntervalTimetable("0 * * * *", timezone="UTC"), from airflow.sdk; '
            "airflow.timetables.interval on Airflow 3.1) or DeltaDataIntervalTimetable."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.instant, self.timetable))


class Verdict(enum.Enum):
    """What to do with one listed image."""

    KEEP = "keep"
    SKIP = "skip"
    STOP = "stop"


@dataclass(frozen=True)
class ImageQuery:
    """A checked listing request: page size, order, upload-time window, creator and limit.

    Build it with :meth:`build`, which accepts the loose types DAG authors pass (templated
    strings, datetimes, numbers as strings) and rejects anything else by parameter name.
    """

    per_page: int = DEFAULT_PER_PAGE
    sort_order: SortOrder = "desc"
    uploaded_after: dt.datetime | None = None
    uploaded_before: dt.datetime | None = None
    creator: str | None = None
    limit: int | None = None
    meta_filters: MetaFilters = NO_FILTERS

    @classmethod
    def build(
        cls,
        *,
        per_page: Any = DEFAULT_PER_PAGE,
        sort_order: Any = "desc",
        uploaded_after: Any = None,
        uploaded_before: Any = None,
        creator: Any = None,
        limit: Any = None,
        limit_name: str = "limit",
        meta_filters: Any = None,
    ) -> ImageQuery:
        """Check and normalise listing parameters.

        :param per_page: images per request, 10..10000.
        :param sort_order: ``asc`` or ``desc`` by upload time.
        :param uploaded_after: keep images uploaded at or after this instant.
        :param uploaded_before: keep images uploaded strictly before this instant.
        :param creator: only images with this creator (sent to the API as a filter); ``""``
            (the empty string) for images without a creator.
        :param limit: stop after this many images; ``None`` for all.
        :param limit_name: the caller's name for ``limit`` (``max_images`` on the operator),
            used in error messages.
        :param meta_filters: metadata filters sent to the API (see
            :mod:`~airflow_provider_cfimages.hooks.meta_filters`).
        """
        filters = parse_meta_filters(meta_filters)
        after = parse_instant(uploaded_after, name="uploaded_after")
        before = parse_instant(uploaded_before, name="uploaded_before")
        if after is not None and after == before:
            raise EmptyWindowError(after)
        if after is not None and before is not None and after > before:
            raise ValueError(
                f"uploaded_after ({after.isoformat()}) must be earlier than "
                f"uploaded_before ({before.isoformat()}): the window is "
                "uploaded_after <= uploaded < uploaded_before."
            )
        return cls(
            per_page=_per_page(per_page),
            sort_order=_sort_order(sort_order),
            uploaded_after=after,
            uploaded_before=before,
            creator=_creator(creator),
            limit=_limit(limit, limit_name),
            meta_filters=filters,
        )

    @property
    def has_window(self) -> bool:
        """Whether an upload-time bound is set."""
        return self.uploaded_after is not None or self.uploaded_before is not None

    def api_params(self, continuation_token: str | None) -> dict[str, str | int]:
        """The query string of one "List images V2" request."""
        params: dict[str, str | int] = {"per_page": self.per_page, "sort_order": self.sort_order}
        if self.creator is not None:
            params["creator"] = self.creator
        params.update(self.meta_filters.query_params())
        if continuation_token:
            params["continuation_token"] = continuation_token
        return params

    def verdict(self, uploaded: dt.datetime) -> Verdict:
        """Keep, skip, or stop listing at an image uploaded at ``uploaded``.

        Listing stops at the first image past the far bound in the direction of travel
        (older than ``uploaded_after`` when newest-first, not older than ``uploaded_before``
        when oldest-first): every later page lies outside the window.
        """
        if self.uploaded_after is not None and uploaded < self.uploaded_after:
            return Verdict.STOP if self.sort_order == "desc" else Verdict.SKIP
        if self.uploaded_before is not None and uploaded >= self.uploaded_before:
            return Verdict.STOP if self.sort_order == "asc" else Verdict.SKIP
        return Verdict.KEEP

    def window_as_strings(self) -> dict[str, str | None]:
        """The window as ISO 8601 strings, for manifests and XCom."""
        return {
            "uploaded_after": _iso(self.uploaded_after),
            "uploaded_before": _iso(self.uploaded_before),
        }


def parse_instant(value: Any, *, name: str) -> dt.datetime | None:
    """Parse an instant given as a datetime, a date, or text pendulum understands.

    Naive values are taken as UTC, as Airflow does. Returns an aware datetime or ``None``.
    A Jinja ``Undefined`` (what native rendering, ``render_template_as_native_obj``, makes
    of a value the run does not have) is an error naming the argument.
    """
    if isinstance(value, jinja2.Undefined):
        raise ValueError(undefined_value_message(name, value))
    if is_absent(value):
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    if isinstance(value, str):
        import pendulum

        try:
            parsed = pendulum.parse(value.strip(), tz="UTC")
        except (ValueError, TypeError, pendulum.parsing.exceptions.ParserError) as err:
            raise ValueError(
                f"{name} must be a date-time such as '2024-05-01T00:00:00Z' or a template "
                f"like '{{{{ data_interval_start }}}}'; could not parse {value!r} ({err})."
            ) from None
        if isinstance(parsed, dt.datetime):
            return parsed
        if isinstance(parsed, dt.date):
            return dt.datetime(parsed.year, parsed.month, parsed.day, tzinfo=dt.timezone.utc)
    raise ValueError(
        f"{name} must be a datetime or a date-time string; got {type(value).__name__} {value!r}."
    )


def _whole_number(value: Any, name: str, expected: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {expected}; got {value!r}.")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ValueError(f"{name} must be {expected}; got {value!r}.")


def _per_page(value: Any) -> int:
    expected = f"a whole number from {MIN_PER_PAGE} to {MAX_PER_PAGE}"
    number = _whole_number(value, "per_page", expected)
    if not MIN_PER_PAGE <= number <= MAX_PER_PAGE:
        raise ValueError(f"per_page must be {expected}; got {value!r}.")
    return number


def _sort_order(value: Any) -> SortOrder:
    expected = "'asc' (oldest first) or 'desc' (newest first)"
    return check_choice("sort_order", value, SORT_ORDERS, expected=expected, error=ValueError)


def _creator(value: Any) -> str | None:
    if value == "":
        return ""  # the API's "images without a creator"
    if is_absent(value):
        return None
    if not isinstance(value, str):
        raise ValueError(f"creator must be a string; got {type(value).__name__} {value!r}.")
    return value.strip()


def _limit(value: Any, name: str) -> int | None:
    if is_absent(value):
        return None
    number = _whole_number(value, name, "a whole number >= 1 (or None for no limit)")
    if number < 1:
        raise ValueError(
            f"{name} must be a whole number >= 1 (or None for no limit); got {value!r}."
        )
    return number


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None

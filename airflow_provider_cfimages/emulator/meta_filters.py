"""The emulator's side of List images V2 metadata filters: ``meta.<path>[<op>]=<value>``.

:func:`parse_query_filters` reads them from a request's query string (raising the API's
400s), and :meth:`QueryFilter.matches` tests one image's ``meta``. As in the API, filters
are AND-combined, at most five a request (code 5400: "Too many metadata filters: 6
provided, maximum 5 allowed"), paths at most five levels deep; contradictory filters are
not rejected, they just match nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_cfimages.emulator.errors import BadRequest, CloudflareAPIError

MAX_FILTERS = 5
MAX_PATH_LEVELS = 5
MAX_IN_VALUES = 10
_KEY = re.compile(r"^meta\.(?P<path>[^\[\]]+)\[(?P<op>[a-z]+)(?::(?P<type>[a-z]+))?\]$")
_TYPES = {
    "eq": (None, "string", "number", "boolean"),
    "gt": (None, "number"),
    "gte": (None, "number"),
    "lt": (None, "number"),
    "lte": (None, "number"),
    "in": (None, "string", "number"),
}
_MISSING = object()


class TooManyMetadataFilters(BadRequest):
    """5400 with the API's own message (no "Bad request: " prefix)."""

    def __init__(self, count: int) -> None:
        CloudflareAPIError.__init__(
            self, f"Too many metadata filters: {count} provided, maximum {MAX_FILTERS} allowed"
        )


@dataclass(frozen=True)
class QueryFilter:
    """One metadata filter of a request.

    :param path: the names inside ``meta``, outermost first.
    :param operator: ``eq``, ``gt``, ``gte``, ``lt``, ``lte`` or ``in``.
    :param value_type: ``string``, ``number``, ``boolean`` or ``None`` (untyped).
    :param values: the value(s) as sent (one, or the ``|``-separated values of ``in``).
    """

    path: tuple[str, ...]
    operator: str
    value_type: str | None
    values: tuple[str, ...]

    def canonical(self) -> str:
        """The filter as text (continuation tokens are bound to the filters they listed)."""
        return f"{'.'.join(self.path)}[{self.operator}:{self.value_type}]={'|'.join(self.values)}"

    def matches(self, meta: Any) -> bool:
        """Whether an image's ``meta`` passes this filter."""
        actual = _lookup(meta, self.path)
        if actual is _MISSING:
            return False
        if self.operator in ("eq", "in"):
            return any(_equal(actual, value, self.value_type) for value in self.values)
        number = _number(actual)
        if number is None:
            return False
        bound = float(self.values[0])
        if self.operator == "gt":
            return number > bound
        if self.operator == "gte":
            return number >= bound
        if self.operator == "lt":
            return number < bound
        return number <= bound


def parse_query_filters(query: Mapping[str, str]) -> tuple[QueryFilter, ...]:
    """The metadata filters of a List images V2 query string, checked as the API does.

    :param query: the query parameters (name -> value).
    :raises BadRequest: too many filters, a path too deep, an unknown operator or type, a
        range operator without a number, or ``in`` with more than ten values.
    """
    filters = [_parse_one(name, value) for name, value in query.items() if name.startswith("meta.")]
    if len(filters) > MAX_FILTERS:
        raise TooManyMetadataFilters(len(filters))
    return tuple(filters)


def _parse_one(name: str, value: str) -> QueryFilter:
    found = _KEY.match(name)
    if found is None:
        raise BadRequest(f"invalid metadata filter {name!r}: expected meta.<path>[<operator>]")
    path = tuple(found["path"].split("."))
    if any(not part for part in path) or len(path) > MAX_PATH_LEVELS:
        raise BadRequest(
            f"invalid metadata filter {name!r}: paths have 1 to {MAX_PATH_LEVELS} non-empty levels"
        )
    operator, value_type = found["op"], found["type"]
    if operator not in _TYPES or value_type not in _TYPES[operator]:
        raise BadRequest(f"invalid metadata filter operator in {name!r}")
    values = tuple(value.split("|")) if operator == "in" else (value,)
    if operator == "in" and len(values) > MAX_IN_VALUES:
        raise BadRequest(f"metadata filter {name!r}: at most {MAX_IN_VALUES} values for in")
    if (operator not in ("eq", "in") or value_type == "number") and any(
        _number(text, parse_text=True) is None for text in values
    ):
        raise BadRequest(f"metadata filter {name!r} needs a number, got {value!r}")
    if value_type == "boolean" and value not in ("true", "false"):
        raise BadRequest(f"metadata filter {name!r} needs true or false, got {value!r}")
    return QueryFilter(path, operator, value_type, values)


def _lookup(meta: Any, path: tuple[str, ...]) -> Any:
    current = meta
    for name in path:
        if not isinstance(current, dict) or name not in current:
            return _MISSING
        current = current[name]
    return current


def _equal(actual: Any, text: str, value_type: str | None) -> bool:
    if value_type == "string":
        return isinstance(actual, str) and actual == text
    if value_type == "boolean":
        return isinstance(actual, bool) and actual == (text == "true")
    if value_type == "number":
        number = _number(actual)
        return number is not None and number == float(text)
    # Untyped: compare as the stored value's own type.
    if isinstance(actual, bool):
        return text == ("true" if actual else "false")
    if isinstance(actual, (int, float)):
        expected = _number(text, parse_text=True)
        return expected is not None and float(actual) == expected
    return isinstance(actual, str) and actual == text


def _number(value: Any, *, parse_text: bool = False) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if parse_text and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None

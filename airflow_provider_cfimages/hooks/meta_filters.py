"""Metadata filters of "List images V2": ``meta.<path>[<op>]=<value>``, checked before sending.

A DAG author writes them as a mapping of field path (dotted, inside ``meta``) to:

- a value: equality; the operator's type suffix follows the value (``True`` ->
  ``eq:boolean``, ``42`` / ``4.2`` -> ``eq:number``, ``"eu"`` -> ``eq:string``);
- a list: ``in`` (at most 10 values, all strings or all numbers);
- a mapping of operators to values: ``{"gte": 100, "lt": 1300}`` is two filters on one
  field. Operators: ``eq``, ``gt``, ``gte``, ``lt``, ``lte`` (numbers only), ``in``.

The API combines filters with AND and accepts at most five per request, with paths at most
five levels deep; the checks here say so by the parameter's name, ``meta_filters``, before
any request, instead of a 400 after the first one. The filters are sent to the API, never
applied client-side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError
from airflow_provider_cfimages.utils.validation import list_from_text

MAX_FILTERS = 5
MAX_PATH_LEVELS = 5
MAX_IN_VALUES = 10
OPERATORS = ("eq", "gt", "gte", "lt", "lte", "in")
RANGE_OPERATORS = frozenset({"gt", "gte", "lt", "lte"})
PARAMETER = "meta_filters"

Scalar = str | int | float | bool


@dataclass(frozen=True)
class MetaFilter:
    """One checked filter: a path inside ``meta``, an operator and its value(s).

    :param path: the field's names, outermost first (``("region", "name")``).
    :param operator: ``eq``, ``gt``, ``gte``, ``lt``, ``lte`` or ``in``.
    :param value: a scalar, or for ``in`` a tuple of scalars of one type.
    """

    path: tuple[str, ...]
    operator: str
    value: Scalar | tuple[Scalar, ...]

    @property
    def field(self) -> str:
        """The dotted path, as the DAG author wrote it."""
        return ".".join(self.path)

    def query_param(self) -> tuple[str, str]:
        """The query-string pair: ``("meta.region.name[eq:string]", "eu-west")``."""
        values = self.value if isinstance(self.value, tuple) else (self.value,)
        suffix = _type_suffix(values[0])
        text = "|".join(_value_text(value) for value in values)
        return f"meta.{self.field}[{self.operator}:{suffix}]", text

    def to_json(self) -> dict[str, Any]:
        """The filter as JSON data (for manifests and trigger serialization)."""
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"field": self.field, "op": self.operator, "value": value}


@dataclass(frozen=True)
class MetaFilters:
    """The checked filters of one listing, in the order given (at most five).

    :param filters: the filters, AND-combined.
    """

    filters: tuple[MetaFilter, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.filters)

    def __len__(self) -> int:
        return len(self.filters)

    def query_params(self) -> dict[str, str]:
        """The query-string pairs of every filter."""
        return dict(meta_filter.query_param() for meta_filter in self.filters)

    def to_mapping(self) -> dict[str, Any]:
        """The filters back in the form :func:`parse_meta_filters` takes (JSON-safe).

        Used for manifests and to serialize a trigger: parsing the result again gives the
        same filters.
        """
        by_field: dict[str, dict[str, Any]] = {}
        for meta_filter in self.filters:
            value = meta_filter.to_json()["value"]
            by_field.setdefault(meta_filter.field, {})[meta_filter.operator] = value
        return by_field

    def describe(self) -> str:
        """The filters in words, for logs."""
        return " and ".join(
            f"meta.{f.field} {f.operator} {f.to_json()['value']!r}" for f in self.filters
        )


def parse_meta_filters(value: Any) -> MetaFilters:
    """Check ``meta_filters`` as a DAG gives it; raise naming ``meta_filters`` when wrong.

    :param value: ``None``, a mapping (see the module docstring), or its text as a template
        renders it (JSON, or Python's ``repr``).
    """
    if value is None or (isinstance(value, str) and value.strip() in ("", "None", "null", "{}")):
        return MetaFilters()
    if isinstance(value, str) and value.strip().startswith("{"):
        value = list_from_text(PARAMETER, value.strip())
    if not isinstance(value, Mapping):
        raise CloudflareImagesConfigError(
            f"{PARAMETER} must be a mapping of meta field path to a value, a list of values "
            "(in), or a mapping of operators to values, such as {'status': 'ready', "
            f"'size': {{'gte': 100, 'lt': 1300}}}}; got {type(value).__name__} {value!r}."
        )
    filters: list[MetaFilter] = []
    for field_path, condition in value.items():
        path = _path(field_path)
        filters.extend(_filters_for(path, condition))
    if len(filters) > MAX_FILTERS:
        raise CloudflareImagesConfigError(
            f"{PARAMETER} holds {len(filters)} filters; the API allows at most {MAX_FILTERS} "
            "per listing (a mapping of operators counts one filter per operator)."
        )
    return MetaFilters(tuple(filters))


#: No metadata filter (the default of a listing).
NO_FILTERS = MetaFilters()


def _path(field_path: Any) -> tuple[str, ...]:
    if not isinstance(field_path, str) or not field_path.strip():
        raise CloudflareImagesConfigError(
            f"{PARAMETER}: a field path must be a non-empty string such as 'region.name'; "
            f"got {field_path!r}."
        )
    names = tuple(field_path.strip().split("."))
    if any(not name.strip() for name in names):
        raise CloudflareImagesConfigError(
            f"{PARAMETER}: field path {field_path!r} has an empty name; write the names inside "
            "meta separated by single dots, such as 'region.name'."
        )
    if any(char in name for name in names for char in "[]"):
        raise CloudflareImagesConfigError(
            f"{PARAMETER}: field path {field_path!r} holds '[' or ']', which the API reads as "
            "the operator; give the operator as a mapping instead: {'size': {'gte': 100}}."
        )
    if len(names) > MAX_PATH_LEVELS:
        raise CloudflareImagesConfigError(
            f"{PARAMETER}: field path {field_path!r} is {len(names)} levels deep; the API "
            f"allows at most {MAX_PATH_LEVELS}."
        )
    return names


def _filters_for(path: tuple[str, ...], condition: Any) -> list[MetaFilter]:
    field = ".".join(path)
    if isinstance(condition, Mapping):
        if not condition:
            raise CloudflareImagesConfigError(
                f"{PARAMETER}: the operators for {field!r} are empty; give at least one of "
                f"{list(OPERATORS)}."
            )
        return [_one(field, path, operator, value) for operator, value in condition.items()]
    if isinstance(condition, (list, tuple)):
        return [_one(field, path, "in", condition)]
    return [_one(field, path, "eq", condition)]


def _one(field: str, path: tuple[str, ...], operator: Any, value: Any) -> MetaFilter:
    if operator not in OPERATORS:
        raise CloudflareImagesConfigError(
            f"{PARAMETER}: unknown operator {operator!r} for {field!r}; use one of "
            f"{list(OPERATORS)}."
        )
    if operator == "in":
        return MetaFilter(path, operator, _in_values(field, value))
    scalar = _scalar(field, operator, value)
    if operator in RANGE_OPERATORS and not _is_number(scalar):
        raise CloudflareImagesConfigError(
            f"{PARAMETER}: {field!r} {operator} needs a number (range operators compare "
            f"numbers only); got {value!r}."
        )
    return MetaFilter(path, operator, scalar)


def _in_values(field: str, values: Any) -> tuple[Scalar, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise CloudflareImagesConfigError(
            f"{PARAMETER}: {field!r} in needs a non-empty list of values; got {values!r}."
        )
    if len(values) > MAX_IN_VALUES:
        raise CloudflareImagesConfigError(
            f"{PARAMETER}: {field!r} in has {len(values)} values; the API allows at most "
            f"{MAX_IN_VALUES}."
        )
    checked = tuple(_scalar(field, "in", value) for value in values)
    if all(isinstance(value, str) for value in checked):
        bad = [value for value in checked if "|" in value]
        if bad:
            raise CloudflareImagesConfigError(
                f"{PARAMETER}: {field!r} in cannot match {bad[0]!r}: the API separates the "
                "values of 'in' with '|'."
            )
        return checked
    if all(_is_number(value) for value in checked):
        return checked
    raise CloudflareImagesConfigError(
        f"{PARAMETER}: {field!r} in needs values of one type, all strings or all numbers "
        f"(the API has in:string and in:number); got {list(values)!r}."
    )


def _scalar(field: str, operator: str, value: Any) -> Scalar:
    if isinstance(value, float) and not math.isfinite(value):
        raise CloudflareImagesConfigError(
            f"{PARAMETER}: {field!r} {operator} needs a finite number; got {value!r}."
        )
    if isinstance(value, (str, bool, int, float)):
        return value
    raise CloudflareImagesConfigError(
        f"{PARAMETER}: {field!r} {operator} needs a string, number or boolean; got "
        f"{type(value).__name__} {value!r}."
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type_suffix(value: Scalar) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string"


def _value_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

"""Checks of arguments, shared by the hook, the operators and the sensor.

Each raises :class:`CloudflareImagesConfigError` (a ``ValueError``) naming the argument and
what it expects, so a bad value fails before any request is sent.
"""

from __future__ import annotations

import ast
import json
import math
from typing import Any

from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError


def check_whole(name: str, value: Any, *, minimum: int) -> int:
    """Return ``value`` if it is a whole number >= ``minimum``; else raise naming ``name``.

    :param name: the argument, for the message.
    :param value: what was given.
    :param minimum: the smallest value allowed.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CloudflareImagesConfigError(
            f"{name} must be a whole number >= {minimum}; got {value!r}."
        )
    return value


def check_positive(name: str, value: Any, *, expected: str = "a positive number") -> float:
    """Return ``value`` as a float if it is a number > 0; else raise naming ``name``.

    :param name: the argument, for the message.
    :param value: what was given.
    :param expected: how the message describes a valid value.
    """
    # "not > 0" also refuses NaN, which would otherwise pass every comparison silently;
    # infinity would reach socket timeouts and sleeps as an overflow.
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
        or not math.isfinite(value)
    ):
        raise CloudflareImagesConfigError(f"{name} must be {expected}; got {value!r}.")
    return float(value)


def list_from_text(name: str, text: str) -> Any:
    """Read back a list that a template rendered as text: JSON, or Python's ``repr``.

    ``"{{ params.fields }}"`` renders a list param as ``"['id', 'filename']"``.

    :param name: the argument, for the message.
    :param text: the rendered text, starting with ``[``.
    """
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError):
            continue
    raise CloudflareImagesConfigError(
        f"{name} looks like a list but could not be read: {text[:200]!r}."
    )

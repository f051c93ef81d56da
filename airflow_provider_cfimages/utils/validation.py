"""Checks of arguments, shared by the hook, the operators and the sensor.

Each raises :class:`CloudflareImagesConfigError` (a ``ValueError``) naming the argument and
what it expects, so a bad value fails before any request is sent.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping
from typing import Any

from airflow.sdk import XComArg

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


def check_choice(
    name: str,
    value: Any,
    choices: tuple[str, ...],
    *,
    expected: str,
    error: type[Exception] = CloudflareImagesConfigError,
) -> Any:
    """Return ``value`` (stripped and lower-cased) if it is one of ``choices``; else raise.

    :param name: the argument, for the message.
    :param value: what was given.
    :param choices: the values allowed, in lower case.
    :param expected: how the message describes a valid value.
    :param error: the exception to raise.
    """
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in choices:
        raise error(f"{name} must be {expected}; got {value!r}.")
    return text


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


# What an unset Jinja value renders to; treated as "not given".
_ABSENT_STRINGS = frozenset({"", "None", "none", "null"})
# Enough items to find a template in a list or mapping without walking a huge literal.
_SCAN_ITEMS = 100


def is_absent(value: Any) -> bool:
    """Whether a value means "not given": ``None``, or what an unset template renders to."""
    return value is None or (isinstance(value, str) and value.strip() in _ABSENT_STRINGS)


def is_unrendered(value: Any) -> bool:
    """Whether a value is only known after rendering: a Jinja template or an XComArg."""
    if isinstance(value, XComArg):
        return True
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, (list, tuple)):
        return any(is_unrendered(item) for item in value[:_SCAN_ITEMS])
    if isinstance(value, Mapping):
        return any(is_unrendered(item) for item in list(value.values())[:_SCAN_ITEMS])
    return False


def check_flag(name: str, value: Any) -> bool:
    """Return a boolean given as a bool or a rendered ``"True"``/``"False"``; else raise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise CloudflareImagesConfigError(f"{name} must be True or False; got {value!r}.")


def check_image_id(image_id: Any) -> str:
    """Return an image id that is safe to put in a URL path; else raise ``ValueError``.

    Custom ids may contain sub-paths (``product/42``) but cannot start or end with ``/``.

    :param image_id: the image id.
    """
    if (
        not isinstance(image_id, str)
        or not image_id.strip()
        or image_id.startswith("/")
        or image_id.endswith("/")
    ):
        raise ValueError(
            "image_id must be a non-empty image id that does not start or end with '/'; "
            f"got {image_id!r}."
        )
    # URLs resolve "." and ".." segments before they are sent: "tmp/../victim" would
    # reach the image "victim".
    if any(segment in (".", "..") for segment in image_id.split("/")):
        raise ValueError(
            "image_id must not have a '.' or '..' path segment: the request would reach "
            f"another image than the one named; got {image_id!r}."
        )
    return image_id

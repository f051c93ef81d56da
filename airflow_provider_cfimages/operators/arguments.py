"""Checks of operator arguments, shared by the operators.

Operators check what they can when the DAG is parsed and the rest after templates are
rendered; :func:`is_unrendered` tells the two apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import XComArg

from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError

# Enough items to find a template in a list or mapping without walking a huge literal.
_SCAN_ITEMS = 100


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

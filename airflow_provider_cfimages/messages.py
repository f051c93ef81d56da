"""Quoting user data in error messages."""

from __future__ import annotations

from typing import Any

MAX_QUOTE = 80


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to a readable length, for quoting a bad record in an error."""
    try:
        text = repr(value)
    except RecursionError:
        return f"a {type(value).__name__} nested too deeply to print"
    return text if len(text) <= MAX_QUOTE else text[: MAX_QUOTE - 3] + "..."

"""Client-side request pacing, so the provider stays under Cloudflare's rate limit.

Two pacers, both thread-safe and both waiting on a :class:`threading.Event` so a kill or a
trigger's cancellation ends the wait at once:

- :class:`QuotaPacer` reads the ``Ratelimit`` / ``Ratelimit-Policy`` headers every answer
  carries (``"default";r=<remaining>;t=<seconds to reset>`` and
  ``"default";q=<quota>;w=<window>``) and, once what is left of the quota falls to a
  reserve, waits for the window to reset: exceeding the quota locks the whole account out
  (every call of every client refused for minutes), so it must never be reached.
- :class:`RequestBudget` spaces requests evenly at a fixed rate (the optional
  ``max_requests_per_minute`` cap, and the batch API's per-token rate).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import http_sf

log = logging.getLogger(__name__)

DEFAULT_RESERVE = 0.1
MAX_RESERVE = 0.9
# The header's reset time is whole seconds: a window reported to reset in "0" seconds may
# still be open for most of one.
_MIN_WAIT = 1.0
# A reset this much later than the one already known means a new window has started
# (less would be the rounding of the header's whole seconds).
_NEW_WINDOW_SLACK = 1.5


@dataclass(frozen=True)
class QuotaState:
    """What one item of the ``Ratelimit`` header says, joined with its policy.

    :param name: the policy name (``"default"``, ``"burst"``, ...).
    :param remaining: requests left in the current window.
    :param reset: seconds until the window resets.
    :param quota: the window's quota, when ``Ratelimit-Policy`` names the same policy.
    :param window: the window's length in seconds, when known.
    """

    name: str
    remaining: int
    reset: float
    quota: int | None = None
    window: float | None = None


def parse_quota_headers(headers: Mapping[str, str]) -> list[QuotaState]:
    """Every well-formed item of the ``Ratelimit`` header, with its policy's quota.

    Headers that are absent or do not parse as structured fields give an empty list;
    items without a usable ``r`` and ``t`` are skipped: pacing is an aid, never an error.

    :param headers: the response headers (a case-insensitive mapping).
    """
    policies = {name: params for name, params in _items(headers.get("Ratelimit-Policy"))}
    states = []
    for name, params in _items(headers.get("Ratelimit")):
        remaining, reset = params.get("r"), params.get("t")
        if not _is_count(remaining) or not _is_seconds(reset):
            continue
        policy = policies.get(name, {})
        quota, window = policy.get("q"), policy.get("w")
        states.append(
            QuotaState(
                name,
                remaining,
                float(reset),
                quota if _is_count(quota) and quota > 0 else None,
                float(window) if _is_seconds(window) and window > 0 else None,
            )
        )
    return states


def _items(value: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The ``(name, parameters)`` of each item of a structured-field list header."""
    if not value:
        return []
    try:
        parsed = http_sf.parse(value.encode("latin-1"), tltype="list")
    except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError):
        return []
    items = []
    for item in parsed:
        if not isinstance(item, tuple) or len(item) != 2 or not isinstance(item[1], dict):
            continue
        name, params = item
        if isinstance(name, (list, tuple, bytes, bool, int, float)):
            continue  # an inner list or a bare value: not a policy name
        items.append((str(name), params))
    return items


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_seconds(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


class QuotaPacer:
    """Waits for the rate-limit window to reset before the quota left falls below a reserve.

    Fed every answer's headers (:meth:`observe`), consulted before every request
    (:meth:`before_request`). Between answers it counts the requests it let go, so threads
    sending at once cannot together overshoot what the last answer said was left. With
    several policies (a "burst" one beside the default), the tightest one decides.

    :param reserve: the fraction of each policy's quota to leave unused, for the account's
        other clients (its dashboard users, its upload service).
    :param clock: a monotonic clock, replaceable in tests.
    """

    def __init__(
        self, reserve: float = DEFAULT_RESERVE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if isinstance(reserve, bool) or not 0 <= reserve <= MAX_RESERVE:
            raise ValueError(
                f"rate_limit_reserve must be between 0 and {MAX_RESERVE}; got {reserve!r}."
            )
        self.reserve = reserve
        self._clock = clock
        self._lock = threading.Lock()
        # Per policy name: (requests left, when the window resets, quota, window length).
        self._known: dict[str, tuple[int, float, int | None, float | None]] = {}
        #: seconds spent waiting, and how many waits
        self.waited = 0.0
        self.waits = 0

    def observe(self, headers: Mapping[str, str]) -> None:
        """Take in what an answer's ``Ratelimit`` headers say (nothing if they are absent).

        :param headers: the response headers.
        """
        states = parse_quota_headers(headers)
        if not states:
            return
        with self._lock:
            now = self._clock()
            for state in states:
                resets_at = now + state.reset
                known = self._known.get(state.name)
                remaining = state.remaining
                # Within the same window, answers to requests sent earlier can arrive after
                # requests this pacer has let go since: keep the lower count.
                slack = min(_NEW_WINDOW_SLACK, (state.window or math.inf) / 2)
                if known is not None and resets_at <= known[1] + slack:
                    remaining = min(remaining, known[0])
                    resets_at = max(resets_at, known[1])
                self._known[state.name] = (remaining, resets_at, state.quota, state.window)

    def before_request(self, cancelled: threading.Event) -> float:
        """Wait, if the quota left is at or below the reserve, until its window resets.

        Returns the seconds waited; returns early when ``cancelled`` is set.

        :param cancelled: set to end the wait at once.
        """
        waited = 0.0
        while not cancelled.is_set():
            with self._lock:
                wait, why = self._wait_needed(self._clock())
                if wait <= 0:
                    self._count_request()
                    return waited
                self.waits += 1
            log.info("%s; waiting %.1f s for it to reset", why, wait)
            started = self._clock()
            cancelled.wait(wait)
            slept = self._clock() - started
            waited += slept
            with self._lock:
                self.waited += slept
        return waited

    def _wait_needed(self, now: float) -> tuple[float, str]:
        """The longest wait any policy needs now, and why (the lock is held)."""
        longest, why = 0.0, ""
        for name, (remaining, resets_at, quota, window) in list(self._known.items()):
            if now >= resets_at:
                # A new window: its full quota, if the policy said what it is.
                if quota is None:
                    del self._known[name]
                    continue
                remaining = quota
                resets_at = now + (window or _MIN_WAIT)
                self._known[name] = (remaining, resets_at, quota, window)
            keep = self.reserve * quota if quota is not None else 0.0
            if remaining > keep:
                continue
            wait = max(resets_at - now, _MIN_WAIT if resets_at > now else 0.0)
            if wait > longest:
                longest = wait
                why = (
                    f"Cloudflare rate limit {name!r}: {remaining} request(s) left of "
                    f"{quota if quota is not None else '?'} in this "
                    f"{f'{window:g} s ' if window else ''}window, at or below the reserve "
                    f"({self.reserve:.0%}, {keep:g} requests, kept for the account's other "
                    "clients)"
                )
        return longest, why

    def _count_request(self) -> None:
        for name, (remaining, resets_at, quota, window) in self._known.items():
            self._known[name] = (remaining - 1, resets_at, quota, window)


class RequestBudget:
    """Spaces requests evenly so that at most ``per_minute`` start in any minute.

    Even spacing (rather than bursts up to the limit) keeps a long export from
    tripping Cloudflare's 1200-requests-per-5-minutes limit, which other clients of the
    same user share.

    :param per_minute: the most requests to start per minute.
    :param clock: a monotonic clock, replaceable in tests.
    """

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError(f"max_requests_per_minute must be positive; got {per_minute!r}.")
        self.interval = 60.0 / per_minute
        self._clock = clock
        self._next_start: float | None = None
        self._lock = threading.Lock()

    def acquire(self, cancelled: threading.Event | None = None) -> float:
        """Wait until the next request may start; return the seconds waited."""
        with self._lock:
            now = self._clock()
            start = now if self._next_start is None else max(now, self._next_start)
            self._next_start = start + self.interval
        wait = start - now
        if wait > 0:
            (cancelled or threading.Event()).wait(wait)
        return wait

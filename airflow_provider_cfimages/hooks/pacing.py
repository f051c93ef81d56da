"""A client-side request budget, so a long export stays under Cloudflare's rate limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


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

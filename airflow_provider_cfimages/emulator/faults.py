"""Fault injection: make the emulator fail the way the real API and Cloudflare's edge do.

A :class:`FaultPlan` holds rules. Each rule matches requests by ``path`` prefix and
``method``, waits for its ``on_request``-th matching request, then fires on ``k`` matching
requests (or until :meth:`FaultPlan.clear` when ``k`` is ``None``)::

    emu.faults.fail_next(2, status=502, path="/images/v2")          # next 2 list pages: 502
    emu.faults.fail_next(1, status=503, path="/images/v2", on_request=5)  # the 5th page only
    emu.faults.rate_limit(requests=12, window_seconds=10, block_seconds=20)  # Cloudflare's rule
    emu.faults.lose_answer_next(1, method="DELETE")  # carried out, then the connection drops

``path`` is a prefix of the path after ``/client/v4/accounts/{account_id}`` (e.g.
``/images/v2``, ``/images/v1/stats``) or of the whole path (``/client/v4/...``).

Where faults apply:

- at the edge, before routing and authentication (like Cloudflare's proxy): ``drop_next``,
  ``slow_next``, ``fail_next``, ``fail_randomly``, and ``truncate_next`` (which cuts the
  body of the response the request then gets) and ``lose_answer_next`` (which handles the
  request in full, then closes the connection without answering);
- after authentication (the API's per-user quota): ``rate_limit`` and ``block_for``;
  with ``rate_limit`` every answer carries ``Ratelimit`` and ``Ratelimit-Policy``;
- inside List images V2: ``repeat_token``, ``short_pages``, ``trailing_empty_page``.

Rules are evaluated in the order they were added; a request answered by a fault (dropped,
failed) is not seen by later rules. No fault leaves the inventory half-changed: a failed,
dropped or rate-limited request never reaches the backend; a truncated one was handled in
full and only its response is cut (a connection lost on the way back).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from airflow_provider_cfimages.emulator.errors import (
    CloudflareAPIError,
    InternalServerError,
    RateLimited,
    ServerUnavailable,
)

FaultKind = Literal[
    "fail",
    "drop",
    "truncate",
    "slow",
    "random_fail",
    "repeat_token",
    "short_pages",
    "trailing",
    "lose_answer",
]

_REASONS = {
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway time-out",
    520: "Web server is returning an unknown error",
    522: "Connection timed out",
}


@dataclass
class FaultRule:
    """One armed fault; returned by the :class:`FaultPlan` methods (``rule.fired`` counts)."""

    kind: FaultKind
    remaining: int | None
    path: str | None = None
    method: str | None = None
    on_request: int = 1
    status: int = 500
    html: bool = True
    body: bytes | None = None
    seconds: float = 0.0
    honest_length: bool = True
    rate: float = 0.0
    statuses: tuple[int, ...] = (502, 503, 504)
    after_pages: int = 0
    max_items: int = 0
    seen: int = 0
    fired: int = 0
    first_token: str | None = None
    rng: random.Random | None = field(default=None, repr=False)

    def matches(self, method: str, api_path: str, full_path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        if self.path is None:
            return True
        return api_path.startswith(self.path) or full_path.startswith(self.path)

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def describe(self) -> dict[str, Any]:
        """The rule as JSON-friendly data (for the control API)."""
        data = {item.name: getattr(self, item.name) for item in fields(self) if item.name != "rng"}
        data["body"] = None if self.body is None else self.body.decode("utf-8", "replace")
        data["statuses"] = list(self.statuses)
        return data


@dataclass(frozen=True)
class EdgeFault:
    """What the edge does to one request, decided before it is handled.

    ``fail`` holds ``(status, html, body)``; ``truncate`` is ``"honest"`` (Content-Length of
    the cut body) or ``"lying"`` (the full Content-Length, then the connection closes).
    """

    drop: bool = False
    delay: float = 0.0
    fail: tuple[int, bool, bytes | None] | None = None
    truncate: Literal["honest", "lying"] | None = None
    names: tuple[str, ...] = ()
    lose_answer: bool = False


@dataclass(frozen=True)
class RateLimitRule:
    """Cloudflare's account-wide limit: ``requests`` per window, then a lockout.

    :param requests: the quota of one window.
    :param window_seconds: the window's length.
    :param retry_after: a fixed ``Retry-After`` for the 429s (else the lockout left).
    :param block_seconds: the lockout: once the quota is exceeded, every call is refused
        this long (default: ``retry_after``, or the rest of the window).
    :param headers: send ``Ratelimit`` and ``Ratelimit-Policy`` on every answer.
    :param policy: the policy name in those headers.
    """

    requests: int
    window_seconds: float
    retry_after: int | None = None
    block_seconds: float | None = None
    headers: bool = True
    policy: str = "default"

    def describe(self) -> dict[str, Any]:
        """The rule as JSON-friendly data (for the control API)."""
        return {item.name: getattr(self, item.name) for item in fields(self)}

    def quota_headers(self, remaining: int, reset: float) -> dict[str, str]:
        """Both headers, for ``remaining`` requests left and ``reset`` seconds to go."""
        if not self.headers:
            return {}
        name = self.policy.replace("\\", "\\\\").replace('"', '\\"')
        return {
            "Ratelimit": f'"{name}";r={max(0, remaining)};t={max(0, math.ceil(reset))}',
            "Ratelimit-Policy": f'"{name}";q={self.requests};w={_sf_number(self.window_seconds)}',
        }


def _sf_number(value: float) -> str:
    """A number as a structured-field integer or decimal (never in exponent notation)."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0")


def edge_error_page(status: int, ray_id: str) -> bytes:
    """An HTML error page like the one Cloudflare's edge serves for a 5xx."""
    reason = _REASONS.get(status, "Error")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en-US"><head><meta charset="UTF-8"/>'
        f"<title>api.cloudflare.com | {status}: {reason}</title></head>\n"
        f'<body><div id="cf-error-details"><h1>{reason}</h1>'
        f'<span class="cf-error-code">Error code {status}</span>'
        "<p>The web server reported an error. Please try again in a few minutes.</p>"
        f'<p>Cloudflare Ray ID: <strong class="font-semibold">{ray_id}</strong></p>'
        "</div></body></html>\n"
    ).encode()


def json_error_for(status: int) -> CloudflareAPIError:
    """The JSON error used by ``fail_next(..., html=False)`` for a status."""
    error: CloudflareAPIError = (
        ServerUnavailable() if status in (502, 503, 504) else InternalServerError()
    )
    if error.status != status:
        error.status = status  # type: ignore[misc]  # the instance answers with the asked status
    return error


class FaultPlan:
    """The faults armed on one emulator; thread-safe.

    :param clock: seconds, monotonic (injectable so rate-limit tests need not sleep).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._limit: RateLimitRule | None = None
        self._window_start = 0.0
        self._window_count = 0
        self._blocked_until = 0.0
        self._block_retry_after: int | None = None
        self._block_message: str | None = None

    # --- arming ----------------------------------------------------------------------

    def _add(self, rule: FaultRule) -> FaultRule:
        if rule.on_request < 1:
            raise ValueError("on_request counts from 1 (the first matching request)")
        if rule.remaining is not None and rule.remaining < 1:
            raise ValueError("k must be at least 1 (or None for 'until cleared')")
        with self._lock:
            self._rules.append(rule)
        return rule

    def fail_next(
        self,
        k: int | None = 1,
        status: int = 500,
        *,
        html: bool = True,
        body: bytes | str | None = None,
        path: str | None = None,
        method: str | None = None,
        on_request: int = 1,
    ) -> FaultRule:
        """Answer the next ``k`` matching requests with ``status``.

        :param html: an HTML page like Cloudflare's edge (default) or, when False, the JSON
            envelope with code 5500/5503.
        :param body: an exact body instead (``b""`` for an empty one).
        """
        if not 400 <= status <= 599:
            raise ValueError(f"status must be 4xx or 5xx, got {status}")
        raw = body.encode() if isinstance(body, str) else body
        return self._add(
            FaultRule(
                "fail",
                k,
                path,
                method,
                on_request,
                status=status,
                html=html,
                body=raw,
            )
        )

    def fail_randomly(
        self,
        rate: float,
        statuses: tuple[int, ...] = (502, 503, 504),
        *,
        seed: int | None = 0,
        path: str | None = None,
        method: str | None = None,
    ) -> FaultRule:
        """Fail each matching request with probability ``rate`` (an HTML 5xx), until cleared."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {rate}")
        return self._add(
            FaultRule(
                "random_fail",
                None,
                path,
                method,
                rate=rate,
                statuses=tuple(statuses),
                rng=random.Random(seed),
            )
        )

    def drop_next(
        self,
        k: int | None = 1,
        *,
        path: str | None = None,
        method: str | None = None,
        on_request: int = 1,
    ) -> FaultRule:
        """Close the connection of the next ``k`` matching requests without any response."""
        return self._add(FaultRule("drop", k, path, method, on_request))

    def truncate_next(
        self,
        k: int | None = 1,
        *,
        path: str | None = None,
        method: str | None = None,
        on_request: int = 1,
        honest_length: bool = True,
    ) -> FaultRule:
        """Cut the body of the next ``k`` matching responses in half (status forced to 200).

        :param honest_length: send the Content-Length of the cut body, so the client gets a
            complete HTTP response holding invalid JSON (default); when False, announce the
            full length and close the connection half-way (an incomplete read).
        """
        return self._add(
            FaultRule("truncate", k, path, method, on_request, honest_length=honest_length)
        )

    def slow_next(
        self,
        k: int | None = 1,
        seconds: float = 1.0,
        *,
        path: str | None = None,
        method: str | None = None,
        on_request: int = 1,
    ) -> FaultRule:
        """Wait ``seconds`` before handling the next ``k`` matching requests."""
        return self._add(FaultRule("slow", k, path, method, on_request, seconds=seconds))

    def lose_answer_next(
        self,
        k: int | None = 1,
        *,
        path: str | None = None,
        method: str | None = None,
        on_request: int = 1,
    ) -> FaultRule:
        """Carry out the next ``k`` matching requests, then close without answering.

        The client sees a dropped connection for a request that did happen (a DELETE
        retried after it is then told "not found").
        """
        return self._add(FaultRule("lose_answer", k, path, method, on_request))

    def repeat_token(self, after_pages: int = 1, *, times: int | None = None) -> FaultRule:
        """After ``after_pages`` pages, List images V2 returns a token it already returned.

        The page answers with the token it was asked with (the first page: the first
        token this rule saw), so a client that follows tokens blindly loops for ever.

        :param times: how many pages get a repeated token; every page until cleared if None.
        """
        if after_pages < 0:
            raise ValueError("after_pages must be 0 or more")
        return self._add(
            FaultRule("repeat_token", times, "/images/v2", "GET", after_pages=after_pages)
        )

    def short_pages(self, max_items: int = 1000) -> FaultRule:
        """Make List images V2 pages hold at most ``max_items`` images, whatever ``per_page``.

        The live API documents pages of at most 1000; a client must follow the token,
        never infer the end of the listing from a short page.
        """
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        return self._add(FaultRule("short_pages", None, "/images/v2", "GET", max_items=max_items))

    def trailing_empty_page(self) -> FaultRule:
        """Give the last List images V2 page a token, whose page is then empty (and null).

        Some paginated APIs do this; a client must accept an empty final page.
        """
        return self._add(FaultRule("trailing", None, "/images/v2", "GET"))

    def rate_limit(
        self,
        requests: int = 1200,
        window_seconds: float = 300.0,
        retry_after: int | None = None,
        *,
        block_seconds: float | None = None,
        headers: bool = True,
        policy: str = "default",
    ) -> None:
        """Enforce Cloudflare's rule: ``requests`` authenticated API requests per window.

        The first request past the quota locks the user out: every request is refused (429,
        code 971, ``Retry-After``) for ``block_seconds`` (default: ``retry_after``, or what
        is left of the window), not only the excess, as the real API does for five minutes.
        Every answer then carries ``Ratelimit: "default";r=<left>;t=<seconds to reset>`` and
        ``Ratelimit-Policy: "default";q=<requests>;w=<window>`` (the real API's 1200 per
        300 s; scale both down for tests).

        :param retry_after: the ``Retry-After`` value; the seconds left of the lockout if None.
        :param block_seconds: the lockout's length.
        :param headers: send the two headers (False: a server from before they existed).
        :param policy: the policy name in the headers.
        """
        if requests < 0 or window_seconds <= 0:
            raise ValueError("requests must be >= 0 and window_seconds > 0")
        if block_seconds is not None and block_seconds < 0:
            raise ValueError("block_seconds must be >= 0")
        if not policy or not policy.isprintable() or not policy.isascii():
            raise ValueError("policy must be a printable ASCII name")
        rule = RateLimitRule(
            requests, float(window_seconds), retry_after, block_seconds, headers, policy
        )
        with self._lock:
            self._limit = rule
            self._window_start = self._clock()
            self._window_count = 0

    def block_for(self, seconds: float, retry_after: int | None = None) -> None:
        """Refuse every authenticated API request with 429 for the next ``seconds``."""
        with self._lock:
            self._blocked_until = self._clock() + seconds
            self._block_retry_after = retry_after
            self._block_message = None

    def clear(self) -> None:
        """Disarm every fault and lift any rate limit or block."""
        with self._lock:
            self._rules.clear()
            self._limit = None
            self._window_count = 0
            self._blocked_until = 0.0

    @property
    def rules(self) -> list[FaultRule]:
        """The armed rules (a copy of the list), oldest first."""
        with self._lock:
            return list(self._rules)

    def describe(self) -> dict[str, Any]:
        """The armed faults as JSON-friendly data (for the control API)."""
        with self._lock:
            limit = None if self._limit is None else self._limit.describe()
            blocked_for = max(0.0, self._blocked_until - self._clock())
            return {
                "rules": [rule.describe() for rule in self._rules],
                "rate_limit": limit,
                "blocked_for_seconds": round(blocked_for, 3),
            }

    # --- consulted by the server -----------------------------------------------------

    def edge(self, method: str, api_path: str, full_path: str) -> EdgeFault:
        """Decide what the edge does to a request (called once per API request)."""
        drop = False
        delay = 0.0
        fail: tuple[int, bool, bytes | None] | None = None
        truncate: Literal["honest", "lying"] | None = None
        names: list[str] = []
        lose_answer = False
        with self._lock:
            for rule in self._rules:
                if rule.kind in ("repeat_token", "short_pages", "trailing") or rule.exhausted:
                    continue
                if not rule.matches(method, api_path, full_path):
                    continue
                if rule.kind == "random_fail":
                    if rule.rng is not None and rule.rng.random() < rule.rate:
                        rule.fired += 1
                        fail = (rule.rng.choice(rule.statuses), True, None)
                        names.append(f"fail:{fail[0]}")
                        break
                    continue
                rule.seen += 1
                if rule.seen < rule.on_request:
                    continue
                rule.fired += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                if rule.kind == "drop":
                    drop = True
                    names.append("drop")
                    break
                if rule.kind == "lose_answer":
                    lose_answer = True
                    names.append("lose_answer")
                if rule.kind == "fail":
                    fail = (rule.status, rule.html, rule.body)
                    names.append(f"fail:{rule.status}")
                    break
                if rule.kind == "slow":
                    delay += rule.seconds
                    names.append("slow")
                elif rule.kind == "truncate":
                    truncate = "honest" if rule.honest_length else "lying"
                    names.append("truncate")
            self._rules = [
                rule for rule in self._rules if not rule.exhausted or rule.kind == "repeat_token"
            ]
        return EdgeFault(drop, delay, fail, truncate, tuple(names), lose_answer)

    def check_rate_limit(self) -> dict[str, str]:
        """Count an authenticated request; raise :class:`RateLimited` past the limit.

        Returns the ``Ratelimit`` headers the answer carries (none without a rule).
        """
        with self._lock:
            now = self._clock()
            rule = self._limit
            if now < self._blocked_until:
                headers = {} if rule is None else rule.quota_headers(0, self._blocked_until - now)
                raise self._rate_limited(now, headers)
            if rule is None:
                return {}
            if now - self._window_start >= rule.window_seconds:
                self._window_start = now
                self._window_count = 0
            self._window_count += 1
            window_left = rule.window_seconds - (now - self._window_start)
            if self._window_count <= rule.requests:
                return rule.quota_headers(rule.requests - self._window_count, window_left)
            block_seconds = rule.block_seconds
            if block_seconds is None:
                block_seconds = rule.retry_after if rule.retry_after is not None else window_left
            self._blocked_until = now + block_seconds
            # The quota starts afresh once the lockout is over.
            self._window_start = self._blocked_until
            self._window_count = 0
            self._block_retry_after = rule.retry_after
            self._block_message = (
                f"More than {rule.requests} requests per {rule.window_seconds:g} seconds "
                "reached. Please wait and consider throttling your request speed"
            )
            raise self._rate_limited(now, rule.quota_headers(0, block_seconds))

    def _rate_limited(self, now: float, headers: dict[str, str]) -> RateLimited:
        retry_after = self._block_retry_after
        if retry_after is None:
            retry_after = max(1, math.ceil(self._blocked_until - now))
        return RateLimited(self._block_message, retry_after=retry_after, headers=headers)

    def list_behaviour(self) -> tuple[int | None, bool]:
        """``(page_cap, trailing_empty_page)`` for the next List images V2 page."""
        with self._lock:
            caps = [rule.max_items for rule in self._rules if rule.kind == "short_pages"]
            trailing = any(rule.kind == "trailing" for rule in self._rules)
        return (min(caps) if caps else None), trailing

    def rewrite_token(self, request_token: str | None, issued_token: str | None) -> str | None:
        """Apply ``repeat_token`` to the token a List images V2 page is about to return."""
        with self._lock:
            token = issued_token
            for rule in self._rules:
                if rule.kind != "repeat_token" or rule.exhausted:
                    continue
                rule.seen += 1
                if rule.first_token is None:
                    rule.first_token = request_token or issued_token
                if rule.seen <= rule.after_pages:
                    continue
                replacement = request_token or rule.first_token
                if replacement is None:
                    continue
                rule.fired += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                token = replacement
            return token

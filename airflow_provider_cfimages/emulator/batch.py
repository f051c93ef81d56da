"""The Images batch API: batch tokens, and the rules of the batch host.

``GET /client/v4/accounts/{account_id}/images/v1/batch_token`` (normal auth, counted in the
account's quota) issues a token; the batch host, served by the same emulator under
``/batch`` (``<origin>/batch/images/v1/{id}`` for ``https://batch.imagedelivery.net/images/
v1/{id}``), accepts ``Authorization: Bearer <batch token>`` until the token expires, allows
each token ``requests_per_second``, and refuses ``/images/v2`` with code 103 as users
report the real one does. Batch calls never count toward the account's quota.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_cfimages.emulator.auth import Headers
from airflow_provider_cfimages.emulator.errors import (
    InvalidAccessToken,
    MissingAuthHeaders,
    RateLimited,
)

BATCH_ROOT = "/batch"
#: how long a token lasts unless configured otherwise
DEFAULT_TOKEN_LIFETIME = 30 * 60.0
DEFAULT_REQUESTS_PER_SECOND = 200


@dataclass
class _Token:
    account_id: str
    expires_at: float
    recent: deque[float] = field(default_factory=deque)


class BatchTokens:
    """Issues batch tokens and checks the batch host's requests; thread-safe.

    :param token_lifetime: seconds a token is accepted.
    :param requests_per_second: requests one token may make in any second.
    :param clock: seconds since the epoch (``expiresAt`` is a wall-clock time);
        injectable so tests can expire a token without sleeping.
    """

    def __init__(
        self,
        token_lifetime: float = DEFAULT_TOKEN_LIFETIME,
        requests_per_second: int = DEFAULT_REQUESTS_PER_SECOND,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self.token_lifetime = token_lifetime
        self.requests_per_second = requests_per_second
        #: tokens issued so far, and batch requests refused for going over a token's rate
        self.issued = 0
        self.throttled = 0
        self.configure(token_lifetime=token_lifetime, requests_per_second=requests_per_second)

    def configure(
        self,
        *,
        token_lifetime: float | None = None,
        requests_per_second: int | None = None,
        expire_tokens: bool = False,
    ) -> None:
        """Change the rules (from tests or the control API).

        :param token_lifetime: seconds a token issued from now on is accepted.
        :param requests_per_second: the per-token rate.
        :param expire_tokens: make every token issued so far expire now.
        """
        if token_lifetime is not None and not token_lifetime > 0:
            raise ValueError("token_lifetime must be > 0 seconds")
        if requests_per_second is not None and (
            isinstance(requests_per_second, bool)
            or not isinstance(requests_per_second, int)
            or requests_per_second < 1
        ):
            raise ValueError("requests_per_second must be a whole number >= 1")
        with self._lock:
            if token_lifetime is not None:
                self.token_lifetime = float(token_lifetime)
            if requests_per_second is not None:
                self.requests_per_second = requests_per_second
            if expire_tokens:
                now = self._clock()
                for token in self._tokens.values():
                    token.expires_at = min(token.expires_at, now)

    def issue(self, account_id: str) -> dict[str, Any]:
        """A new token for the account: ``{"token", "expiresAt"}``."""
        value = secrets.token_urlsafe(30)
        with self._lock:
            now = self._clock()
            expires_at = now + self.token_lifetime
            # Forget tokens long expired, so a long benchmark does not accumulate them.
            self._tokens = {k: t for k, t in self._tokens.items() if t.expires_at > now - 3600}
            self._tokens[value] = _Token(account_id, expires_at)
            self.issued += 1
        stamp = dt.datetime.fromtimestamp(expires_at, dt.timezone.utc)
        return {"token": value, "expiresAt": stamp.isoformat(timespec="seconds")}

    def admit(self, headers: Headers) -> str:
        """Check a batch-host request's token and rate; return the account it is for.

        :raises MissingAuthHeaders: no ``Authorization: Bearer`` header.
        :raises InvalidAccessToken: (401) an unknown or expired token.
        :raises RateLimited: (429) the token's per-second rate is used up.
        """
        authorization = (headers.get("Authorization") or "").strip()
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise MissingAuthHeaders()
        with self._lock:
            now = self._clock()
            token = self._tokens.get(value.strip())
            if token is None or now >= token.expires_at:
                raise InvalidAccessToken()
            recent = token.recent
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) >= self.requests_per_second:
                self.throttled += 1
                wait = max(1, math.ceil(recent[0] + 1.0 - now))
                raise RateLimited(
                    f"More than {self.requests_per_second} requests per second with one "
                    "batch token",
                    retry_after=wait,
                )
            recent.append(now)
            return token.account_id

    def describe(self) -> dict[str, Any]:
        """The rules and counters, JSON-friendly (for the control API)."""
        with self._lock:
            now = self._clock()
            return {
                "token_lifetime": self.token_lifetime,
                "requests_per_second": self.requests_per_second,
                "issued": self.issued,
                "live_tokens": sum(1 for t in self._tokens.values() if t.expires_at > now),
                "throttled": self.throttled,
            }

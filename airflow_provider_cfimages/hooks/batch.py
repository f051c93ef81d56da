"""The Images batch API: per-image calls outside the account-wide rate limit.

A short-lived batch token comes from ``GET /accounts/{account_id}/images/v1/batch_token``
(a normal, rate-limited call); the same paths, methods and bodies then go to the batch host
(``https://batch.imagedelivery.net``) with ``Authorization: Bearer <batch token>``. Those
calls do not count toward the global quota; each token allows 200 requests per second.
Listing stays on the global API: the batch host refuses ``/images/v2`` (code 103).

:class:`BatchImagesClient` gets a token on first use, shares it between threads, gets a
new one shortly before it expires and once when the batch host answers 401, and paces each
token to its per-second rate.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from airflow_provider_cfimages.exceptions import CloudflareImagesAPIError, image_not_found
from airflow_provider_cfimages.hooks.pacing import RequestBudget
from airflow_provider_cfimages.hooks.transport import ApiTransport
from airflow_provider_cfimages.utils.timestamps import parse_uploaded
from airflow_provider_cfimages.utils.validation import check_image_id

log = logging.getLogger(__name__)

#: requests per second Cloudflare allows each batch token
TOKEN_REQUESTS_PER_SECOND = 200.0
# Each token is paced a little below its rate: the batch host counts arrivals, and evenly
# spaced starts at exactly the rate put one second's last request on the boundary.
_RATE_HEADROOM = 0.9
# A token is replaced this long before it expires, so no request goes out with a token
# that expires on the way.
_REFRESH_MARGIN = 30.0


@dataclass(frozen=True)
class BatchToken:
    """A batch token and when it expires (seconds since the epoch; ``None`` if not said).

    :param value: the token (a credential: never shown).
    :param expires_at: when Cloudflare stops accepting it.
    """

    value: str = field(repr=False)
    expires_at: float | None

    @classmethod
    def from_result(cls, result: Any) -> BatchToken:
        """Read the ``result`` of the batch-token call: ``{"token", "expiresAt"}``."""
        token = result.get("token") if isinstance(result, Mapping) else None
        if not isinstance(token, str) or not token.strip():
            raise CloudflareImagesAPIError(
                "Images batch token: the response has no 'token' (got keys "
                f"{sorted(result)[:10] if isinstance(result, Mapping) else type(result).__name__})"
            )
        expires = parse_uploaded(result.get("expiresAt"))
        return cls(token.strip(), None if expires is None else expires.timestamp())

    def expiring(self, now: float) -> bool:
        """Whether the token expires within the refresh margin."""
        return self.expires_at is not None and now >= self.expires_at - _REFRESH_MARGIN


@dataclass
class _Session:
    """One batch token with the transport that sends with it."""

    token: BatchToken
    transport: ApiTransport


class BatchImagesClient:
    """Image details, updates and deletes through the Images batch API; thread-safe.

    :param issue_token: gets a new batch token (the global API's ``batch_token`` call).
    :param make_transport: builds the retrying transport for one token: called with the
        auth headers, the secret to redact, and the token's request budget.
    :param requests_per_second: the rate Cloudflare allows one token (each is paced to 90%
        of it).
    :param clock: seconds since the epoch (the token's ``expiresAt`` is wall-clock time).
    """

    def __init__(
        self,
        *,
        issue_token: Callable[[], BatchToken],
        make_transport: Callable[[Mapping[str, str], str, RequestBudget], ApiTransport],
        requests_per_second: float = TOKEN_REQUESTS_PER_SECOND,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issue_token = issue_token
        self._make_transport = make_transport
        self._per_minute = requests_per_second * 60 * _RATE_HEADROOM
        self._clock = clock
        self._lock = threading.Lock()
        self._current: _Session | None = None
        self._retired: list[ApiTransport] = []
        #: batch tokens obtained so far
        self.tokens_issued = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tokens_issued={self.tokens_issued})"

    def start(self) -> None:
        """Get the first token now, so a missing permission shows before any image is touched."""
        self._session()

    def get_image(self, image_id: str) -> dict[str, Any]:
        """Return one image's details (5404 if absent).

        :param image_id: the image id.
        """
        return self._request("GET", image_id, None, "image details (batch API)")

    def update_image(self, image_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Send an image update (``metadata``, ``requireSignedURLs``); return the image.

        :param image_id: the image id.
        :param body: the PATCH body, as for the global API.
        """
        return self._request("PATCH", image_id, dict(body), "image update (batch API)")

    def delete_image(self, image_id: str) -> bool:
        """Delete an image; return ``False`` if it was already gone (as the hook's does).

        :param image_id: the image id.
        """
        return deleted_unless_absent(
            lambda: self._request("DELETE", image_id, None, "image delete (batch API)")
        )

    def close(self) -> None:
        """Close every token's pooled connections."""
        with self._lock:
            transports = [*self._retired]
            if self._current is not None:
                transports.append(self._current.transport)
            self._retired.clear()
            self._current = None
        for transport in transports:
            transport.close()

    # -- internals -----------------------------------------------------------------------

    def _request(self, method: str, image_id: str, body: Any, what: str) -> Any:
        path = f"images/v1/{quote(check_image_id(image_id), safe='/')}"
        session = self._session()
        try:
            return session.transport.request(method, path, json_body=body, what=what)
        except CloudflareImagesAPIError as err:
            if err.status != 401:
                raise
            # The token expired early or was revoked: one new token, one more try.
            log.info("The batch host refused the batch token (HTTP 401); getting a new one")
            retried = self._session(replacing=session)
            try:
                return retried.transport.request(method, path, json_body=body, what=what)
            except CloudflareImagesAPIError as again:
                # The first try may have been carried out before its answer was lost.
                again.after_unanswered_attempt = (
                    again.after_unanswered_attempt or err.after_unanswered_attempt
                )
                raise

    def _session(self, replacing: _Session | None = None) -> _Session:
        """The current token's session; a new token if it is expiring or was refused."""
        with self._lock:
            current = self._current
            stale = current is None or current is replacing or current.token.expiring(self._clock())
            if not stale and current is not None:
                return current
            token = self._issue_token()
            self.tokens_issued += 1
            expires = (
                "no expiry given"
                if token.expires_at is None
                else "expires "
                + dt.datetime.fromtimestamp(token.expires_at, dt.timezone.utc).isoformat()
            )
            log.info("Got Images batch token #%d (%s)", self.tokens_issued, expires)
            transport = self._make_transport(
                {"Authorization": f"Bearer {token.value}"},
                token.value,
                RequestBudget(self._per_minute),
            )
            if current is not None:
                # Other threads may still be sending with it: closed at the end.
                self._retired.append(current.transport)
            self._current = _Session(token, transport)
            return self._current


def deleted_unless_absent(delete: Callable[[], Any]) -> bool:
    """Run a DELETE; ``True`` if it deleted the image, ``False`` if the image was gone.

    A DELETE whose earlier try went unanswered and that is then told "not found" deleted
    the image itself on that try: it counts as deleted, not as already gone.

    :param delete: sends the DELETE (with retries).
    """
    try:
        delete()
    except CloudflareImagesAPIError as err:
        if image_not_found(err):
            return err.after_unanswered_attempt
        raise
    return True

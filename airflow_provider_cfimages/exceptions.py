"""Errors raised by the provider.

Every error the API answered with is a :class:`CloudflareImagesAPIError`; it carries what a
person needs to act (HTTP status, Cloudflare's codes and messages, the ``cf-ray`` id to quote
to Cloudflare support) and never a credential.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_cfimages.version_compat import AirflowException, AirflowFailException

# Cloudflare's rate-limit code: it means "rate limited" whatever the HTTP status beside it.
RATE_LIMIT_CODE = 971
# Answers that may pass by themselves. 520/522/524 are Cloudflare's own edge pages (unknown
# error, connection timed out, a timeout occurred): as passing as a 502/503/504.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 522, 524})

# What to check for the codes Cloudflare documents; the hint is appended to the message.
_HINTS: dict[int, str] = {
    10000: "check the API token and that it has the Images Read (or Edit) permission "
    "for this account",
    9109: "the API token is invalid or expired: create a new one with Images permissions",
    9106: "the request carried no credentials: set the connection's password",
    6003: "the auth headers are malformed: check the token or, for api_key auth, the "
    "account email (login) and the global API key (password)",
    6102: "the X-Auth-Email header is malformed: check the account email in the login",
    6103: "the X-Auth-Key header is malformed: check the global API key in the password",
    9103: "unknown global API key or email: check the login (email) and password (key)",
    6111: "the Authorization header is malformed: check the API token in the password",
    5403: "this account is not authorized for Cloudflare Images (is Images enabled?)",
    5404: "no image with this id in this account",
    7003: "no such route: check the account id (extra account_id or the task's account_id)",
    7000: "no such route: check the connection's API base URL and the account id",
    5400: "the API rejected a request parameter",
    971: "rate limited by Cloudflare (1200 requests per 5 minutes per user)",
}
_STATUS_HINTS: dict[int, str] = {
    401: "check the API token and its Images permissions",
    403: "check the API token and its Images permissions for this account",
    404: "check the account id and the image id",
}


class CloudflareImagesError(AirflowException):
    """Base class of every error this provider raises on purpose."""


class CloudflareImagesConfigError(CloudflareImagesError, ValueError):
    """The connection or a task argument cannot work; raised before any request is sent."""


class CloudflareImagesUndefinedValueError(CloudflareImagesConfigError, AirflowFailException):
    """A templated argument uses a value this run does not have (such as ``ds`` in a run
    triggered by hand); the task fails without retries, which would render the same."""


class CloudflareImagesAPIError(CloudflareImagesError):
    """The Cloudflare Images API refused a request or answered with something unusable.

    :param message: what went wrong, in words a person can act on.
    :param status: the HTTP status, or ``None`` when no response came back.
    :param errors: Cloudflare's ``errors`` entries (``code`` and ``message``).
    :param cf_ray: the ``cf-ray`` response header, to quote to Cloudflare support.
    :param retry_after: seconds the API asked to wait (429), if it said.
    :param transient: the failure was of a kind that may pass by itself (rate limit, 5xx,
        a dropped connection, a cut-off body) and the retries ran out; a caller that can
        simply try later (a sensor) may treat it as "not yet".
    """

    #: an earlier try of the same call went unanswered (a lost connection, a 5xx), so the
    #: server may have carried it out: a retried DELETE told "not found" deleted the image.
    after_unanswered_attempt: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errors: Sequence[dict[str, Any]] = (),
        cf_ray: str | None = None,
        retry_after: float | None = None,
        transient: bool = False,
    ) -> None:
        self.status = status
        self.transient = transient
        self.errors = [dict(e) for e in errors]
        self.codes = [e["code"] for e in self.errors if isinstance(e.get("code"), int)]
        self.cf_ray = cf_ray
        self.retry_after = retry_after
        self.reason = message
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [self.reason]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        for error in self.errors:
            parts.append(f"Cloudflare error {error.get('code')}: {error.get('message')}")
        hint = self._hint()
        if hint:
            parts.append(f"Hint: {hint}")
        if self.cf_ray:
            parts.append(f"cf-ray {self.cf_ray}")
        return "; ".join(parts)

    def _hint(self) -> str | None:
        for code in self.codes:
            if code in _HINTS:
                return _HINTS[code]
        return _STATUS_HINTS.get(self.status or 0)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments need help to survive pickling (task runners pickle errors).
        return (_rebuild_api_error, (type(self), self.reason, self.__dict__))


def _rebuild_api_error(
    cls: type[CloudflareImagesAPIError], message: str, state: dict[str, Any]
) -> CloudflareImagesAPIError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    error.args = (error._render(),)
    return error


def image_not_found(err: CloudflareImagesAPIError) -> bool:
    """Whether an error means "no such image" (code 5404), not a wrong account or route.

    A 404 without Cloudflare's code (an HTML page from a proxy, a wrong base URL) is not
    taken as "not found": the delete operator would count the image as already gone.
    """
    return 5404 in err.codes


class CloudflareImagesRateLimitError(CloudflareImagesAPIError):
    """Rate limited (HTTP 429 / code 971) for longer than the retry budget allows."""


class CloudflareImagesPaginationError(CloudflareImagesAPIError):
    """The list endpoint broke the pagination contract (a repeated continuation token)."""


MAX_QUOTE = 80


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to a readable length, for quoting a bad record in an error."""
    try:
        text = repr(value)
    except RecursionError:
        return f"a {type(value).__name__} nested too deeply to print"
    return text if len(text) <= MAX_QUOTE else text[: MAX_QUOTE - 3] + "..."

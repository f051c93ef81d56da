"""The API errors the emulator answers with: one exception class per Cloudflare error code.

Each class carries the HTTP status and the message Cloudflare uses for its code, so the
backend raises a class and the HTTP layer turns it into the envelope
``{"success": false, "errors": [{"code", "message"}], "messages": [], "result": null}``.

Codes, messages and statuses come from Cloudflare's documented Images error codes
(5400..5503) and from API responses quoted in public bug reports (6003 with an
``error_chain`` of 6102/6103/6111, 7000, 7003, 9103, 9106, 9109, 10000, 971). Where the
HTTP status of a code is not documented, the choice is noted on the class.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CloudflareAPIError(Exception):
    """Base class: an API error with Cloudflare's code, message and HTTP status.

    :param message: replaces the class's default message (Cloudflare adds detail to some
        codes, e.g. 5400 "Bad request: ...").
    :param headers: extra response headers (e.g. ``Retry-After``).
    """

    code: ClassVar[int] = 1000
    status: ClassVar[int] = 400
    default_message: ClassVar[str] = "Error"

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None):
        self.message = message if message is not None else self.default_message
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(f"{self.code}: {self.message}")

    def errors(self) -> list[dict[str, Any]]:
        """The ``errors`` array of the response envelope."""
        return [{"code": self.code, "message": self.message}]

    def envelope(self) -> dict[str, Any]:
        """The whole failure envelope, as Cloudflare sends it."""
        return {"success": False, "errors": self.errors(), "messages": [], "result": None}


# --- Cloudflare Images service errors (documented codes) -----------------------------


class BadRequest(CloudflareAPIError):
    """5400: a parameter or form field is invalid; the message says which."""

    code = 5400
    status = 400
    default_message = "Bad request"

    def __init__(self, detail: str | None = None, **kwargs: Any):
        super().__init__(f"Bad request: {detail}" if detail else None, **kwargs)


class AccountNotAuthorized(CloudflareAPIError):
    """5403: the account exists but Images is not enabled for it (or not for this user)."""

    code = 5403
    status = 403
    default_message = "The given account is not valid or is not authorized to access this service"


class ImageNotFound(CloudflareAPIError):
    """5404: no image with that id in the account."""

    code = 5404
    status = 404
    default_message = "Image not found"


class ResourceAlreadyExists(CloudflareAPIError):
    """5409: an upload asked for a custom id that is already taken."""

    code = 5409
    status = 409
    default_message = "Resource already exists"


class ImagesMustBeUploadedAsForm(CloudflareAPIError):
    """5415: an upload was not ``multipart/form-data``."""

    code = 5415
    status = 415
    default_message = (
        "Images must be uploaded as a form, not as raw image data. "
        "Please use multipart/form-data format."
    )


class ServiceLimitReached(CloudflareAPIError):
    """5453: the account's image allowance (``stats.count.allowed``) is used up."""

    code = 5453
    status = 403
    default_message = "The given account has reached a service limit"


class InternalServerError(CloudflareAPIError):
    """5500: the JSON form of a server-side failure (``fail_next(..., html=False)``)."""

    code = 5500
    status = 500
    default_message = "Internal Server Error"


class ServerUnavailable(CloudflareAPIError):
    """5503: the JSON form of an unavailable backend (``fail_next(..., html=False)``)."""

    code = 5503
    status = 503
    default_message = "Server Unavailable"


# --- API gateway errors (shared by every Cloudflare API) --------------------------------


class InvalidRequestHeaders(CloudflareAPIError):
    """6003: an auth header is present but malformed; ``error_chain`` names the header.

    Cloudflare answers 400 with, inside the single error, an ``error_chain`` of
    6102 (X-Auth-Email), 6103 (X-Auth-Key) or 6111 (Authorization).
    """

    code = 6003
    status = 400
    default_message = "Invalid request headers"

    #: the error_chain entries, by header
    AUTHORIZATION: ClassVar[tuple[int, str]] = (6111, "Invalid format for Authorization header")
    X_AUTH_KEY: ClassVar[tuple[int, str]] = (6103, "Invalid format for X-Auth-Key header")
    X_AUTH_EMAIL: ClassVar[tuple[int, str]] = (6102, "Invalid format for X-Auth-Email header")

    def __init__(self, chain: list[tuple[int, str]], **kwargs: Any):
        super().__init__(**kwargs)
        self.chain = list(chain)

    def errors(self) -> list[dict[str, Any]]:
        """The error with its ``error_chain``, as Cloudflare nests it."""
        chain = [{"code": code, "message": message} for code, message in self.chain]
        return [{"code": self.code, "message": self.message, "error_chain": chain}]


class NoRoute(CloudflareAPIError):
    """7000: no API route matches the path (the HTTP status, 404, is our choice)."""

    code = 7000
    status = 404
    default_message = "No route for that URI"


class MethodNotAllowed(CloudflareAPIError):
    """7001: the route exists but not for this HTTP method."""

    code = 7001
    status = 405

    def __init__(self, method: str, allowed: list[str]):
        headers = {"Allow": ", ".join(allowed)}
        super().__init__(f"Method {method} not available for that URI.", headers=headers)


class InvalidObjectIdentifier(CloudflareAPIError):
    """7003 (+ 7000): the account id in the path is not a 32-hex identifier.

    Cloudflare lists 7003 and 7000 together for this case; the status (404) is our choice,
    matching :class:`NoRoute`.
    """

    code = 7003
    status = 404

    def __init__(self, path: str, **kwargs: Any):
        super().__init__(
            f"Could not route to {path}, perhaps your object identifier is invalid?", **kwargs
        )

    def errors(self) -> list[dict[str, Any]]:
        """7003 followed by 7000, as Cloudflare sends them."""
        return [*super().errors(), {"code": NoRoute.code, "message": NoRoute.default_message}]


class RateLimited(CloudflareAPIError):
    """971: more requests than the rate limit allows; ``Retry-After`` says when to retry."""

    code = 971
    status = 429
    default_message = "Please wait and consider throttling your request speed"

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: int,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(message, headers={**(headers or {}), "Retry-After": str(retry_after)})
        self.retry_after = retry_after


class UnknownAuthKey(CloudflareAPIError):
    """9103: a well-formed global API key / email pair that is not valid."""

    code = 9103
    status = 403
    default_message = "Unknown X-Auth-Key or X-Auth-Email"


class MissingAuthHeaders(CloudflareAPIError):
    """9106: no ``Authorization`` and no ``X-Auth-Key``/``X-Auth-Email`` headers."""

    code = 9106
    status = 400
    default_message = "Missing X-Auth-Key, X-Auth-Email or Authorization headers"


class InvalidAccessToken(CloudflareAPIError):
    """9109: a well-formed API token that is not valid (unknown, revoked or expired)."""

    code = 9109
    status = 401
    default_message = "Invalid access token"


class AuthenticationError(CloudflareAPIError):
    """10000: valid credentials that may not act on this account."""

    code = 10000
    status = 403
    default_message = "Authentication error"


class ForbiddenEndpoint(CloudflareAPIError):
    """103: a path the Images batch host does not serve (List images V2 among them)."""

    code = 103
    status = 403
    default_message = "forbidden endpoint"


#: every error class, by code (for documentation and for the tests)
ERRORS_BY_CODE: dict[int, type[CloudflareAPIError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        AccountNotAuthorized,
        ImageNotFound,
        ResourceAlreadyExists,
        ImagesMustBeUploadedAsForm,
        ServiceLimitReached,
        InternalServerError,
        ServerUnavailable,
        InvalidRequestHeaders,
        NoRoute,
        MethodNotAllowed,
        InvalidObjectIdentifier,
        RateLimited,
        UnknownAuthKey,
        MissingAuthHeaders,
        InvalidAccessToken,
        AuthenticationError,
        ForbiddenEndpoint,
    )
}

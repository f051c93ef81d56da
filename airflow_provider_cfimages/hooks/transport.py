"""HTTP transport for the Images API: one session, auth, retries, and envelope decoding.

Cloudflare answers with a JSON envelope ``{"success", "errors", "messages", "result"}``,
but its edge can also answer with an HTML page, an empty body, or a cut-off body. This
module turns all of that into either a decoded ``result`` or one
:class:`CloudflareImagesAPIError` a person can act on.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import msgspec
import requests
import urllib3
from requests.adapters import HTTPAdapter

from airflow_provider_cfimages.exceptions import (
    CloudflareImagesAPIError,
    CloudflareImagesError,
    CloudflareImagesRateLimitError,
)
from airflow_provider_cfimages.hooks.pacing import QuotaPacer, RequestBudget

log = logging.getLogger(__name__)

_Result = TypeVar("_Result")
_Image = TypeVar("_Image")

# 520/522/524 are Cloudflare's own edge pages (unknown error, connection timed out, a
# timeout occurred): as passing as a 502/503/504.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 522, 524})
CONNECT_TIMEOUT = 10.0
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
RATE_LIMIT_CODE = 971
# How much of an unreadable body an error quotes, and how far it is scanned for the secret.
_SNIPPET_CHARS = 120
_SNIPPET_SCAN = 4096
# A connection refused, reset or dropped mid-body, or a timeout: worth another try.
_TRANSIENT_TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class _ApiMessage(msgspec.Struct):
    code: Any = None
    message: Any = None


class _Envelope(msgspec.Struct, Generic[_Result]):
    success: bool = False
    errors: list[_ApiMessage] = []
    result: _Result | None = None


class _ListResult(msgspec.Struct, Generic[_Image]):
    images: list[_Image] | None = None
    continuation_token: str | None = None


class ImageKey(msgspec.Struct, gc=False):
    """The two keys of an image the provider itself reads; the others are not decoded.

    (``gc=False``: decoded from JSON it holds no reference cycle, and a page of them need
    not be tracked by the cyclic collector.)
    """

    id: Any = None
    uploaded: Any = None


# The same envelope, with a list page's images as dicts or left as the JSON the API sent.
_LIST_DECODER = msgspec.json.Decoder(_Envelope[_ListResult[dict[str, Any]]])
_JSON_LIST_DECODER = msgspec.json.Decoder(_Envelope[_ListResult[msgspec.Raw]])
_KEY_DECODER = msgspec.json.Decoder(ImageKey)
_DECODER = msgspec.json.Decoder(_Envelope[Any])


class ListPageBody(msgspec.Struct):
    """A decoded "List images V2" page: its images, next token and body size."""

    images: list[dict[str, Any]]
    continuation_token: str | None
    nbytes: int


class JsonListPageBody(msgspec.Struct):
    """A "List images V2" page whose images stay the JSON the API sent.

    :param images: each image's JSON object, byte for byte as sent (``msgspec.Raw``).
    :param keys: each image's ``id`` and ``uploaded``, in the same order.
    :param continuation_token: the next page's token.
    :param nbytes: size of the response body.
    """

    images: list[msgspec.Raw]
    keys: list[ImageKey]
    continuation_token: str | None
    nbytes: int


class _Retryable(Exception):
    """A response worth another try; carries the error to raise if tries run out."""

    def __init__(self, error: CloudflareImagesAPIError) -> None:
        super().__init__(str(error))
        self.error = error


class _BearerOrKeyAuth(requests.auth.AuthBase):
    """Sets Cloudflare's auth headers on each request.

    Set as the session's ``auth`` (not as default headers) so that ``requests`` never
    replaces them with ``.netrc`` credentials, and so the secret is absent from the
    session's printable state.
    """

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = dict(headers)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.update(self._headers)
        return request

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<redacted>)"


class ApiTransport:
    """Sends requests with retries and decodes Cloudflare's envelope.

    :param base_url: API base URL, e.g. ``https://api.cloudflare.com/client/v4``.
    :param auth_headers: the headers that authenticate a request.
    :param secret: the credential, only to redact it from anything the server echoes.
    :param user_agent: the User-Agent header.
    :param timeout: read timeout in seconds.
    :param max_retries: retries after the first try of one request.
    :param max_retry_wait: the longest ``Retry-After`` honoured before giving up.
    :param budget: an optional client-side request pacer.
    :param cancelled: set to abandon waits and further requests.
    :param pacer: paces requests by the ``Ratelimit`` headers of the answers.
    :param pool_size: connections kept open to the host (at least the threads sending).
    """

    def __init__(
        self,
        *,
        base_url: str,
        auth_headers: Mapping[str, str],
        secret: str,
        user_agent: str,
        timeout: float,
        max_retries: int,
        max_retry_wait: float,
        budget: RequestBudget | None = None,
        cancelled: threading.Event | None = None,
        pacer: QuotaPacer | None = None,
        pool_size: int = 4,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._secret = secret
        self.timeout = (min(CONNECT_TIMEOUT, timeout), timeout)
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.budget = budget
        self.cancelled = cancelled or threading.Event()
        self.pacer = pacer
        self.requests_sent = 0
        self.session = requests.Session()
        self.session.auth = _BearerOrKeyAuth(auth_headers)
        self.session.verify = True
        self.session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})
        self.session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=pool_size))
        self.session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=pool_size))
        self._settings: dict[str, Any] = {}
        self._settings_key: tuple[Any, ...] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    @property
    def _send_settings(self) -> dict[str, Any]:
        """``stream=True`` (bodies are read in one go by :func:`_read_body`), plus proxies and
        CA bundle from the session and the environment, as ``Session.request`` would find
        them.

        ``Session.request`` looks those up again for every request (5% of a listing's time,
        measured); every URL here shares one scheme and host, so they are looked up again
        only when the session's own settings change (``hook.get_conn().verify = ...``).
        """
        session = self.session
        key = (session.trust_env, session.verify, session.cert, dict(session.proxies))
        if key != self._settings_key:
            self._settings = session.merge_environment_settings(self.base_url, {}, True, None, None)
            self._settings_key = key
        return self._settings

    def close(self) -> None:
        """Release pooled connections."""
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        what: str,
    ) -> Any:
        """Send one API call with retries and return its decoded ``result``.

        :param method: the HTTP method.
        :param path: the path below the base URL (``accounts/<id>/images/...``).
        :param params: the query string.
        :param json_body: a JSON request body.
        :param what: the operation in words, used in errors.
        """
        envelope, _ = self._send_with_retries(method, path, params, json_body, what, _DECODER)
        return envelope.result

    def get_list_page(self, path: str, params: Mapping[str, Any], *, page: int) -> ListPageBody:
        """Fetch and check one "List images V2" page (retrying as :meth:`request` does)."""
        what = f"List images V2 page {page}"
        envelope, nbytes = self._send_with_retries("GET", path, params, None, what, _LIST_DECODER)
        images = _page_images(envelope.result, what)
        for index, image in enumerate(images):
            if not _is_image_id(image.get("id")):
                self._raise_missing_id(what, index, image)
        return ListPageBody(images, envelope.result.continuation_token, nbytes)

    def get_json_list_page(
        self, path: str, params: Mapping[str, Any], *, page: int
    ) -> JsonListPageBody:
        """Like :meth:`get_list_page`, but decode only each image's ``id`` and ``uploaded``.

        Skipping the rest makes the page about 3x cheaper to decode; for writing images out
        unchanged, which is what an export without ``fields`` does.
        """
        what = f"List images V2 page {page}"
        envelope, nbytes = self._send_with_retries(
            "GET", path, params, None, what, _JSON_LIST_DECODER
        )
        images = _page_images(envelope.result, what)
        keys: list[ImageKey] = []
        for index, image in enumerate(images):
            try:
                key = _KEY_DECODER.decode(image)
            except msgspec.ValidationError as err:
                raise CloudflareImagesAPIError(
                    f"{what}: the response does not have the expected shape (image "
                    f"#{index + 1} on the page: {err})"
                ) from None
            if not _is_image_id(key.id):
                self._raise_missing_id(what, index, msgspec.json.decode(image))
            keys.append(key)
        return JsonListPageBody(images, keys, envelope.result.continuation_token, nbytes)

    # -- internals -----------------------------------------------------------------------

    def _send_with_retries(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        what: str,
        decoder: msgspec.json.Decoder[Any],
    ) -> Any:
        url = f"{self.base_url}/{path}"
        attempt = 0
        unanswered = False
        while True:
            self._check_cancelled(what)
            if self.budget is not None:
                self.budget.acquire(self.cancelled)
            # -- rate-limit pacing (hooks/pacing.py) --
            if self.pacer is not None:
                self.pacer.before_request(self.cancelled)
                self._check_cancelled(what)
            try:
                return self._send_once(method, url, params, json_body, what, decoder)
            except _Retryable as retry:
                error = retry.error
            except CloudflareImagesAPIError as final:
                # An earlier try may have been carried out with its answer lost: a DELETE
                # then told "not found" deleted the image itself.
                final.after_unanswered_attempt = unanswered
                raise
            unanswered = unanswered or not _refused_unhandled(error)
            attempt += 1
            wait = self._wait_before_retry(error, attempt, what)
            log.warning(
                "%s; retry %d of %d in %.1f s",
                error,
                attempt,
                self.max_retries,
                wait,
            )
            if self.cancelled.wait(wait):
                self._check_cancelled(what)

    def _wait_before_retry(self, error: CloudflareImagesAPIError, attempt: int, what: str) -> float:
        """Seconds to wait before retry ``attempt``, or raise if retrying is pointless."""
        rate_limited = error.status == 429 or RATE_LIMIT_CODE in error.codes
        if (
            rate_limited
            and error.retry_after is not None
            and error.retry_after > self.max_retry_wait
        ):
            raise CloudflareImagesRateLimitError(
                f"{what}: rate limited by Cloudflare for {error.retry_after or 0:.0f} s "
                f"(Retry-After), longer than max_retry_wait={self.max_retry_wait:.0f} s",
                status=error.status,
                errors=error.errors,
                cf_ray=error.cf_ray,
                retry_after=error.retry_after,
            )
        if attempt > self.max_retries:
            if rate_limited:
                raise CloudflareImagesRateLimitError(
                    f"{what}: still rate limited by Cloudflare after {self.max_retries} "
                    f"retries; the API last asked to wait {error.retry_after or 0:.0f} s",
                    status=error.status,
                    errors=error.errors,
                    cf_ray=error.cf_ray,
                    retry_after=error.retry_after,
                    transient=True,
                )
            raise CloudflareImagesAPIError(
                f"{error.reason} (gave up after {self.max_retries} retries)",
                status=error.status,
                errors=error.errors,
                cf_ray=error.cf_ray,
                transient=True,
            )
        if rate_limited and error.retry_after is not None:
            return error.retry_after
        # Full jitter keeps many workers that failed together from retrying together.
        ceiling = min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _send_once(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        what: str,
        decoder: msgspec.json.Decoder[Any],
    ) -> Any:
        self.requests_sent += 1
        try:
            request = requests.Request(method, url, params=params, json=json_body)
            # Never follow a redirect: the API does not send them, and requests would
            # forward the X-Auth-Key header (it strips only Authorization) to any host.
            response = self.session.send(
                self.session.prepare_request(request),
                timeout=self.timeout,
                allow_redirects=False,
                **self._send_settings,
            )
            content = _read_body(response)
        except requests.exceptions.SSLError as err:
            rejected = _certificate_rejection(err)
            if rejected is None:  # a handshake cut short: as passing as a reset connection
                raise _Retryable(
                    CloudflareImagesAPIError(f"{what}: SSLError talking to {url}")
                ) from None
            raise CloudflareImagesAPIError(
                f"{what}: the TLS certificate of {_origin(url)} was rejected ({rejected}). "
                "TLS verification stays on: if a proxy or a private CA signs this "
                "certificate, point REQUESTS_CA_BUNDLE at that CA's bundle."
            ) from None
        except _TRANSIENT_TRANSPORT_ERRORS as err:
            raise _Retryable(
                CloudflareImagesAPIError(f"{what}: {type(err).__name__} talking to {url}")
            ) from None
        except ValueError as err:
            # requests reads a redirect's Location even when not following it, and raises
            # on a malformed one ("Invalid IPv6 URL").
            raise CloudflareImagesAPIError(
                f"{what}: the answer from {_origin(url)} could not be read "
                f"({self._redact(str(err))}); check the connection's host (API base URL)."
            ) from None
        # -- rate-limit pacing (hooks/pacing.py) --
        if self.pacer is not None:
            self.pacer.observe(response.headers)
        status = response.status_code
        cf_ray = response.headers.get("cf-ray")
        if cf_ray is not None:
            cf_ray = self._redact(cf_ray)
        if 300 <= status < 400:
            target = _origin(response.headers.get("Location", "")) or "the same host"
            raise CloudflareImagesAPIError(
                f"{what}: the server answered HTTP {status}, a redirect (to "
                f"{self._redact(target)}), which was not followed: the Cloudflare API does "
                "not redirect. Check the connection's host (API base URL).",
                status=status,
                cf_ray=cf_ray,
            )
        try:
            envelope = decoder.decode(content)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as err:
            problem = _describe_unreadable(response, content, err, self._redact)
            error = CloudflareImagesAPIError(
                f"{what}: {self._redact(problem)}",
                status=status,
                cf_ray=cf_ray,
                retry_after=_retry_after(response),
            )
            # Bodies that are not JSON at all come from the edge (HTML error pages) or from
            # cut-off transfers, both transient; JSON of the wrong shape (or nested deeper
            # than Python's recursion limit) will not improve.
            # (msgspec's ValidationError, a wrong shape, subclasses DecodeError.)
            transient = (
                isinstance(err, msgspec.DecodeError)
                and not isinstance(err, msgspec.ValidationError)
                and (status in RETRY_STATUSES or 200 <= status < 300)
            )
            if transient or status in RETRY_STATUSES:
                raise _Retryable(error) from None
            raise error from None
        errors = [self._redacted(e) for e in envelope.errors]
        if 200 <= status < 300 and envelope.success:
            return envelope, len(content)
        error = CloudflareImagesAPIError(
            f"{what} failed",
            status=status,
            errors=errors,
            cf_ray=cf_ray,
            retry_after=_retry_after(response),
        )
        if status in RETRY_STATUSES or RATE_LIMIT_CODE in error.codes:
            raise _Retryable(error)
        raise error

    def _raise_missing_id(self, what: str, index: int, image: dict[str, Any]) -> None:
        raise CloudflareImagesAPIError(
            f"{what}: image #{index + 1} on the page has no 'id' "
            f"(keys: {self._redact(str(sorted(image)[:10]))})"
        )

    def _redacted(self, message: _ApiMessage) -> dict[str, Any]:
        code = message.code
        if code is not None and not isinstance(code, int):
            code = self._redact(_text_of(code))  # Cloudflare's codes are numbers; keep it text
        text = _text_of(message.message) if message.message is not None else ""
        return {"code": code, "message": self._redact(text)}

    def _redact(self, text: str) -> str:
        """Remove the credential from text a server sent back (some echo what they got)."""
        return text.replace(self._secret, "***") if self._secret else text

    def _check_cancelled(self, what: str) -> None:
        if self.cancelled.is_set():
            raise CloudflareImagesError(f"{what}: cancelled")


def _refused_unhandled(error: CloudflareImagesAPIError) -> bool:
    """Whether a failed try was certainly refused before it was carried out (a 429)."""
    return error.status == 429 or RATE_LIMIT_CODE in error.codes


def _page_images(result: _ListResult[Any] | None, what: str) -> list[Any]:
    if result is None:
        raise CloudflareImagesAPIError(f"{what}: the response has no 'result'")
    if result.images is None:
        raise CloudflareImagesAPIError(f"{what}: the response's result has no 'images' list")
    return result.images


def _is_image_id(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _read_body(response: requests.Response) -> bytes:
    """The whole body in one read, with urllib3's errors as ``requests`` would raise them.

    ``response.content`` reads in 10 KB chunks, ~15% of a large page's time; one read
    lets the socket fill one buffer. A cut-off body still fails: urllib3 enforces
    Content-Length and chunk framing on this read as it does on chunked ones.
    """
    try:
        return response.raw.read(decode_content=True)
    except urllib3.exceptions.ProtocolError as err:  # includes IncompleteRead
        response.close()
        raise requests.exceptions.ChunkedEncodingError(err) from None
    except urllib3.exceptions.DecodeError as err:
        response.close()
        raise requests.exceptions.ContentDecodingError(err) from None
    except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.SSLError) as err:
        response.close()
        raise requests.ConnectionError(err) from None


def _certificate_rejection(err: BaseException) -> str | None:
    """Why certificate verification failed, if that is what ``err`` comes from."""
    seen: set[int] = set()
    pending: list[Any] = [err]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return str(current.verify_message or current.reason or "verification failed")
        # requests wraps urllib3's MaxRetryError, which holds the SSLError as its reason.
        pending.extend([*current.args, getattr(current, "reason", None)])
        pending.extend([current.__cause__, current.__context__])
    return None


def _origin(url: str) -> str:
    """Scheme and host of a URL: never its path or query, which may carry anything."""
    # (A Location that cannot be parsed never gets here: requests raises on it first.)
    parts = urlsplit(url)
    if not parts.netloc:
        return ""
    scheme = f"{parts.scheme}:" if parts.scheme else ""
    return f"{scheme}//{parts.netloc.rpartition('@')[2]}"


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # An HTTP-date; Cloudflare sends seconds, so back off normally.


def _describe_unreadable(
    response: requests.Response, content: bytes, err: Exception, redact: Callable[[str], str]
) -> str:
    content_type = redact(response.headers.get("Content-Type", "unknown content type"))
    if not content:
        return "the response body is empty"
    if isinstance(err, RecursionError):
        return f"the response nests JSON too deeply to decode ({len(content)} bytes)"
    if isinstance(err, msgspec.ValidationError):
        return f"the response does not have the expected shape ({err})"
    # Redacted before it is cut, so a credential across the cut cannot leak in part.
    head = redact(content[:_SNIPPET_SCAN].decode("utf-8", "replace"))
    snippet = head[:_SNIPPET_CHARS].replace("\n", " ")
    return f"the response is not valid JSON ({content_type}, {len(content)} bytes: {snippet!r})"


def _text_of(value: Any) -> str:
    """``str(value)`` of an error field a server sent, even if nested too deeply to print."""
    try:
        return str(value)
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply to print>"

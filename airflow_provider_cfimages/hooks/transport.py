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
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import msgspec
import requests
from requests.adapters import HTTPAdapter

from airflow_provider_cfimages.exceptions import (
    RATE_LIMIT_CODE,
    RETRY_STATUSES,
    CloudflareImagesAPIError,
    CloudflareImagesError,
    CloudflareImagesRateLimitError,
)
from airflow_provider_cfimages.hooks.pacing import QuotaPacer, RequestBudget

log = logging.getLogger(__name__)

_Result = TypeVar("_Result")
_Image = TypeVar("_Image")

CONNECT_TIMEOUT = 10.0
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
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
_RAW_LIST_DECODER = msgspec.json.Decoder(_Envelope[_ListResult[msgspec.Raw]])
_KEY_DECODER = msgspec.json.Decoder(ImageKey)
_DECODER = msgspec.json.Decoder(_Envelope[Any])


class ListPageBody(msgspec.Struct):
    """A checked "List images V2" page.

    :param images: the images, as dicts, or (``raw``) each one's JSON object byte for byte
        as sent (``msgspec.Raw``).
    :param keys: each image's ``id`` and ``uploaded``, in the same order.
    :param continuation_token: the next page's token.
    :param nbytes: size of the response body.
    """

    images: list[Any]
    keys: list[ImageKey]
    continuation_token: str | None
    nbytes: int


@dataclass(frozen=True)
class _Call:
    """One API call: what to send, how to decode the answer, and its name for errors."""

    method: str
    url: str
    what: str
    decoder: msgspec.json.Decoder[Any]
    params: Mapping[str, Any] | None = None
    json_body: Any = None


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

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

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
        url = f"{self.base_url}/{path}"
        call = _Call(method, url, what, _DECODER, params, json_body)
        envelope, _ = self._send_with_retries(call)
        return envelope.result

    def get_list_page(
        self, path: str, params: Mapping[str, Any], *, page: int, raw: bool = False
    ) -> ListPageBody:
        """Fetch and check one "List images V2" page (retrying as :meth:`request` does).

        :param path: the list path below the base URL.
        :param params: the query string.
        :param page: the page's number, used in errors.
        :param raw: keep each image as the JSON the API sent and decode only its ``id`` and
            ``uploaded`` (cheaper, for writing images out unchanged); else decode to dicts.
        """
        what = f"List images V2 page {page}"
        decoder = _RAW_LIST_DECODER if raw else _LIST_DECODER
        call = _Call("GET", f"{self.base_url}/{path}", what, decoder, params)
        envelope, nbytes = self._send_with_retries(call)
        images = _page_images(envelope.result, what)
        keys = [self._image_key(image, index, what) for index, image in enumerate(images)]
        return ListPageBody(images, keys, envelope.result.continuation_token, nbytes)

    # -- internals -----------------------------------------------------------------------

    def _send_with_retries(self, call: _Call) -> tuple[Any, int]:
        """The decoded envelope and the body's size, after as many tries as it takes."""
        attempt = 0
        unanswered = False
        while True:
            self._check_cancelled(call.what)
            if self.budget is not None:
                self.budget.acquire(self.cancelled)
            # -- rate-limit pacing (hooks/pacing.py) --
            if self.pacer is not None:
                self.pacer.before_request(self.cancelled)
                self._check_cancelled(call.what)
            try:
                return self._send_once(call)
            except _Retryable as retry:
                error = retry.error
            except CloudflareImagesAPIError as final:
                # An earlier try may have been carried out with its answer lost: a DELETE
                # then told "not found" deleted the image itself.
                final.after_unanswered_attempt = unanswered
                raise
            unanswered = unanswered or not _rate_limited(error)
            if attempt == self.max_retries:
                gave_up = _gave_up(error, attempt, call.what)
                gave_up.after_unanswered_attempt = unanswered
                raise gave_up
            attempt += 1
            wait = _retry_wait(error, attempt)
            log.warning("%s; retry %d of %d in %.1f s", error, attempt, self.max_retries, wait)
            self.cancelled.wait(wait)

    def _send_once(self, call: _Call) -> tuple[Any, int]:
        """One try: the decoded envelope and the body's size, or an error to raise.

        Raises :class:`_Retryable` for an answer worth another try.
        """
        what = call.what
        response = self._exchange(call)
        # -- rate-limit pacing (hooks/pacing.py) --
        if self.pacer is not None:
            self.pacer.observe(response.headers)
        status = response.status_code
        content = response.content
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
            envelope = call.decoder.decode(content)
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
            not_json = isinstance(err, msgspec.DecodeError) and not isinstance(
                err, msgspec.ValidationError
            )
            if status in RETRY_STATUSES or (not_json and 200 <= status < 300):
                raise self._retry(error, what) from None
            raise error from None
        if 200 <= status < 300 and envelope.success:
            return envelope, len(content)
        error = CloudflareImagesAPIError(
            f"{what} failed",
            status=status,
            errors=[self._redacted(e) for e in envelope.errors],
            cf_ray=cf_ray,
            retry_after=_retry_after(response),
        )
        if status in RETRY_STATUSES or _rate_limited(error):
            raise self._retry(error, what)
        raise error

    def _exchange(self, call: _Call) -> requests.Response:
        """Send the request and read the response, with transport failures as errors."""
        what, url = call.what, call.url
        self.requests_sent += 1
        try:
            # Never follow a redirect: the API does not send them, and requests would
            # forward the X-Auth-Key header (it strips only Authorization) to any host.
            return self.session.request(
                call.method,
                url,
                params=call.params,
                json=call.json_body,
                timeout=self.timeout,
                allow_redirects=False,
            )
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

    def _retry(self, error: CloudflareImagesAPIError, what: str) -> Exception:
        """What to raise for a failure that may pass: :class:`_Retryable`, or a final error.

        A rate limit that asks to wait longer than ``max_retry_wait`` is final.
        """
        too_long = error.retry_after is not None and error.retry_after > self.max_retry_wait
        if _rate_limited(error) and too_long:
            return _restated(
                error,
                CloudflareImagesRateLimitError,
                f"{what}: rate limited by Cloudflare for {error.retry_after:.0f} s "
                f"(Retry-After), longer than max_retry_wait={self.max_retry_wait:.0f} s",
                transient=False,
            )
        return _Retryable(error)

    def _image_key(self, image: Any, index: int, what: str) -> ImageKey:
        """An image's ``id`` and ``uploaded``; raise if the image has no usable id."""
        if isinstance(image, msgspec.Raw):
            try:
                key = _KEY_DECODER.decode(image)
            except msgspec.ValidationError as err:
                raise CloudflareImagesAPIError(
                    f"{what}: the response does not have the expected shape (image "
                    f"#{index + 1} on the page: {err})"
                ) from None
        else:
            key = ImageKey(image.get("id"), image.get("uploaded"))
        if not _is_image_id(key.id):
            fields = image if isinstance(image, dict) else msgspec.json.decode(image)
            raise CloudflareImagesAPIError(
                f"{what}: image #{index + 1} on the page has no 'id' "
                f"(keys: {self._redact(str(sorted(fields)[:10]))})"
            )
        return key

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


def _rate_limited(error: CloudflareImagesAPIError) -> bool:
    return error.status == 429 or RATE_LIMIT_CODE in error.codes


def _retry_wait(error: CloudflareImagesAPIError, attempt: int) -> float:
    """Seconds before retry number ``attempt``: what the API asked, else a backoff."""
    if _rate_limited(error) and error.retry_after is not None:
        return error.retry_after
    # Jitter keeps many workers that failed together from retrying together.
    ceiling = min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def _gave_up(error: CloudflareImagesAPIError, retries: int, what: str) -> CloudflareImagesAPIError:
    """The error to raise when the retries ran out on ``error``."""
    if _rate_limited(error):
        return _restated(
            error,
            CloudflareImagesRateLimitError,
            f"{what}: still rate limited by Cloudflare after {retries} retries; the API last "
            f"asked to wait {error.retry_after or 0:.0f} s",
        )
    return _restated(
        error, CloudflareImagesAPIError, f"{error.reason} (gave up after {retries} retries)"
    )


def _restated(
    error: CloudflareImagesAPIError,
    kind: type[CloudflareImagesAPIError],
    message: str,
    *,
    transient: bool = True,
) -> CloudflareImagesAPIError:
    """``error`` told again as a ``kind`` with a new message, keeping what the API said."""
    return kind(
        message,
        status=error.status,
        errors=error.errors,
        cf_ray=error.cf_ray,
        retry_after=error.retry_after,
        transient=transient,
    )


def _page_images(result: _ListResult[Any] | None, what: str) -> list[Any]:
    if result is None:
        raise CloudflareImagesAPIError(f"{what}: the response has no 'result'")
    if result.images is None:
        raise CloudflareImagesAPIError(f"{what}: the response's result has no 'images' list")
    return result.images


def _is_image_id(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


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

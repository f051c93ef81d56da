"""The hook: connection, auth, retries, rate limits and pagination of the Images API."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import msgspec
import requests
from airflow.sdk import BaseHook

from airflow_provider_cfimages import __version__
from airflow_provider_cfimages.exceptions import (
    CloudflareImagesAPIError,
    CloudflareImagesConfigError,
    CloudflareImagesError,
    CloudflareImagesPaginationError,
)
from airflow_provider_cfimages.get_provider_info import (
    CONN_FIELDS,
    CONN_TYPE,
    DEFAULT_CONN_ID,
    HOOK_NAME,
    UI_FIELD_BEHAVIOUR,
)
from airflow_provider_cfimages.hooks.batch import (
    BatchImagesClient,
    BatchToken,
    deleted_unless_absent,
)
from airflow_provider_cfimages.hooks.connection import (
    ConnectionSettings,
    settings_from_connection,
    validate_account_id,
)
from airflow_provider_cfimages.hooks.pacing import QuotaPacer, RequestBudget
from airflow_provider_cfimages.hooks.query import ImageQuery, Verdict
from airflow_provider_cfimages.hooks.transport import ApiTransport, ImageKey, ListPageBody
from airflow_provider_cfimages.utils.timestamps import parse_uploaded
from airflow_provider_cfimages.utils.validation import (
    check_image_id,
    check_positive,
    check_whole,
)
from airflow_provider_cfimages.version_compat import mask_secret

log = logging.getLogger(__name__)

_Page = TypeVar("_Page", "ImagePage", "JsonImagePage")
_Item = TypeVar("_Item")


@dataclass
class ImagePage:
    """One page of "List images V2", after the upload-time window and the limit.

    :param number: 1-based page number within this listing.
    :param images: the images kept from this page, as the API returned them.
    :param received: how many images the API returned on this page.
    :param nbytes: size of the response body.
    :param continuation_token: the token for the next page, ``None`` on the last one.
    """

    number: int
    images: list[dict[str, Any]]
    received: int
    nbytes: int
    continuation_token: str | None = field(repr=False)
    #: whether the transport leaves the images as the JSON the API sent
    raw: ClassVar[bool] = False

    @classmethod
    def of(cls, number: int, body: ListPageBody, kept: range | list[int]) -> ImagePage:
        """The page of ``body``'s images at the positions ``kept``."""
        token = body.continuation_token or None
        return cls(number, _pick(body.images, kept), len(body.images), body.nbytes, token)


@dataclass
class JsonImagePage:
    """One page of "List images V2" whose images stay the JSON the API sent.

    For copying images out unchanged (an export without ``fields`` does): only two keys
    of each image are decoded, and nothing is re-encoded.

    :param number: 1-based page number within this listing.
    :param images: the images kept from this page, each a bytes-like ``msgspec.Raw``
        holding one JSON object byte for byte as the API sent it. Each refers into the
        page's response body, which stays in memory while any of them does: keep
        ``bytes(image)`` for an image that should outlive its page.
    :param uploaded: each kept image's ``uploaded`` value, in the same order.
    :param received: how many images the API returned on this page.
    :param nbytes: size of the response body.
    :param continuation_token: the token for the next page, ``None`` on the last one.
    """

    number: int
    images: list[msgspec.Raw]
    uploaded: list[Any]
    received: int
    nbytes: int
    continuation_token: str | None = field(repr=False)
    raw: ClassVar[bool] = True

    @classmethod
    def of(cls, number: int, body: ListPageBody, kept: range | list[int]) -> JsonImagePage:
        """The page of ``body``'s images (and their upload times) at the positions ``kept``."""
        uploaded = [key.uploaded for key in _pick(body.keys, kept)]
        token = body.continuation_token or None
        return cls(number, _pick(body.images, kept), uploaded, len(body.images), body.nbytes, token)


class CloudflareImagesHook(BaseHook):
    """Talk to the Cloudflare Images API with a ``cloudflare_images`` connection.

    One ``requests.Session`` is built lazily and reused (keep-alive). Requests that fail
    transiently (429 honouring ``Retry-After``, 500/502/503/504, dropped connections,
    timeouts, bodies that are not JSON) are retried with exponential backoff and jitter;
    400/401/403/404 never are. A retried list page re-sends the same continuation token, so
    no image is skipped or repeated.

    Every request is paced by the ``Ratelimit`` / ``Ratelimit-Policy`` headers of the answers
    before it: once what is left of Cloudflare's account-wide quota falls to the
    connection's ``rate_limit_reserve`` (a tenth of it by default), the next request waits
    for the window to reset, so the account is never locked out. :meth:`batch_images` gives
    per-image calls through the Images batch API, outside that quota.

    :param cloudflare_images_conn_id: the Airflow connection id.
    :param account_id: the 32-hex account id; overrides the connection's ``account_id`` extra.
    :param max_retries: retries per request; overrides the connection's ``max_retries`` extra.
    :param timeout: read timeout in seconds; overrides the connection's ``timeout`` extra.
    :param max_requests_per_minute: a client-side request budget (Cloudflare allows 1200
        requests per 5 minutes per user); overrides the connection extra of that name.
    :param max_retry_wait: the longest single wait, in seconds, the hook accepts from a
        ``Retry-After`` header before giving up with a rate-limit error.
    :param max_connections: connections kept open per host: at least the number of
        threads that use the hook at once.
    """

    conn_name_attr = "cloudflare_images_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = HOOK_NAME

    def __init__(
        self,
        cloudflare_images_conn_id: str = default_conn_name,
        *,
        account_id: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        max_requests_per_minute: float | None = None,
        max_retry_wait: float = 300.0,
        max_connections: int = 4,
    ) -> None:
        super().__init__()
        self.cloudflare_images_conn_id = cloudflare_images_conn_id
        self._account_id_override = validate_account_id(account_id, source="account_id")
        self._max_retries_override = _check_retries(max_retries)
        self._timeout_override = _check_positive("timeout", timeout)
        self._rate_override = _check_positive("max_requests_per_minute", max_requests_per_minute)
        self.max_retry_wait = _check_positive("max_retry_wait", max_retry_wait) or 0.0
        self.max_connections = check_whole("max_connections", max_connections, minimum=1)
        self._cancelled = threading.Event()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(cloudflare_images_conn_id={self.cloudflare_images_conn_id!r})"
        )

    # -- connection ----------------------------------------------------------------------

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The connection's checked settings (read once)."""
        return self._checked_settings(self.get_connection(self.cloudflare_images_conn_id))

    async def aload_settings(self) -> ConnectionSettings:
        """Read the connection from async code, such as a trigger, before using the hook.

        The hook's calls are synchronous, so a trigger runs them in a worker thread; on
        Airflow 3.1 a connection cannot be read from such a thread in the triggerer (its
        channel to the supervisor belongs to the event loop), so it is read here, on the loop.
        """
        if "settings" not in self.__dict__:
            conn = await self.aget_connection(self.cloudflare_images_conn_id)
            self.__dict__["settings"] = self._checked_settings(conn)
        return self.settings

    def _checked_settings(self, conn: Any) -> ConnectionSettings:
        settings = settings_from_connection(
            conn_id=self.cloudflare_images_conn_id,
            host=conn.host,
            login=conn.login,
            password=conn.password,
            extra=conn.extra_dejson,
        )
        mask_secret(settings.secret)
        return settings

    @property
    def account_id(self) -> str:
        """The account every request goes to: the hook's override, else the connection's."""
        account = self._account_id_override or self.settings.account_id
        if not account:
            raise CloudflareImagesConfigError(
                f"No Cloudflare account id: set the extra 'account_id' on connection "
                f"{self.cloudflare_images_conn_id!r} or pass account_id to the task."
            )
        return account

    @cached_property
    def transport(self) -> ApiTransport:
        """The retrying HTTP transport, built once per hook."""
        settings = self.settings
        rate = self._rate_override or settings.max_requests_per_minute
        return ApiTransport(
            base_url=settings.base_url,
            auth_headers=settings.auth_headers(),
            secret=settings.secret,
            user_agent=f"airflow-provider-cfimages/{__version__} python-requests/"
            f"{requests.__version__}",
            timeout=self._timeout_override or settings.timeout,
            max_retries=(
                settings.max_retries
                if self._max_retries_override is None
                else self._max_retries_override
            ),
            max_retry_wait=self.max_retry_wait,
            budget=RequestBudget(rate) if rate else None,
            cancelled=self._cancelled,
            pacer=QuotaPacer(settings.rate_limit_reserve),
            pool_size=self.max_connections,
        )

    def _transport_to(
        self, base_url: str, auth_headers: Mapping[str, str], secret: str, budget: RequestBudget
    ) -> ApiTransport:
        """A transport like :attr:`transport`'s, to another host with other credentials."""
        return ApiTransport(
            base_url=base_url,
            auth_headers=auth_headers,
            secret=secret,
            user_agent=self.transport.session.headers["User-Agent"],
            timeout=self.transport.timeout[1],
            max_retries=self.transport.max_retries,
            max_retry_wait=self.max_retry_wait,
            budget=budget,
            cancelled=self._cancelled,
            pool_size=self.max_connections,
        )

    # -- the Images batch API -------------------------------------------------------------

    def issue_batch_token(self) -> BatchToken:
        """Get a new Images batch token (one call to the global, rate-limited API)."""
        result = self.transport.request(
            "GET", f"accounts/{self.account_id}/images/v1/batch_token", what="Images batch token"
        )
        token = BatchToken.from_result(result)
        mask_secret(token.value)  # Airflow's log redaction hides it like the API token
        return token

    def batch_images(self) -> BatchImagesClient:
        """The batch-API client for per-image calls, with its first token already obtained.

        Its calls go to the connection's ``batch_base_url`` and do not count toward the
        account's rate limit. Raises the API's error (401/403) when no token can be issued.
        """
        if "_batch" not in self.__dict__:
            client = BatchImagesClient(
                issue_token=self.issue_batch_token,
                make_transport=lambda headers, secret, budget: self._transport_to(
                    self.settings.batch_base_url, headers, secret, budget
                ),
            )
            client.start()
            self.__dict__["_batch"] = client
        return self.__dict__["_batch"]

    def get_conn(self) -> requests.Session:
        """Return the hook's cached ``requests.Session``."""
        return self.transport.session

    def cancel(self) -> None:
        """Stop a listing in progress at the next request or retry wait (used by on_kill)."""
        self._cancelled.set()

    def close(self) -> None:
        """Close the session's pooled connections."""
        if "_batch" in self.__dict__:
            self.__dict__.pop("_batch").close()
        if "transport" in self.__dict__:
            self.transport.close()

    # -- listing -------------------------------------------------------------------------

    def iter_pages(
        self,
        *,
        per_page: Any = 1000,
        sort_order: Any = "desc",
        uploaded_after: Any = None,
        uploaded_before: Any = None,
        creator: Any = None,
        limit: Any = None,
        query: ImageQuery | None = None,
        meta_filters: Any = None,
    ) -> Iterator[ImagePage]:
        """Yield the pages of "List images V2", following ``continuation_token`` to the end.

        Only one page is held at a time. With an upload-time window, listing stops as soon
        as the sort order puts every later image outside it (``desc`` with
        ``uploaded_after``, ``asc`` with ``uploaded_before``).

        :param per_page: images per request, 10..10000 (a page may hold fewer).
        :param sort_order: ``desc`` (newest first, the API default) or ``asc``.
        :param uploaded_after: keep images uploaded at or after this instant.
        :param uploaded_before: keep images uploaded strictly before this instant.
        :param creator: only images with this creator (``""``: images without one).
        :param limit: stop after this many images.
        :param query: an already checked :class:`ImageQuery`, instead of the arguments above.
        :param meta_filters: metadata filters the API applies, a mapping of field path to a
            value, a list (``in``) or a mapping of operators to values; see
            :mod:`~airflow_provider_cfimages.hooks.meta_filters`.
        """
        query = query or ImageQuery.build(
            per_page=per_page,
            sort_order=sort_order,
            uploaded_after=uploaded_after,
            uploaded_before=uploaded_before,
            creator=creator,
            limit=limit,
            meta_filters=meta_filters,
        )
        return self._paginate(query, ImagePage)

    def iter_json_pages(
        self,
        *,
        per_page: Any = 1000,
        sort_order: Any = "desc",
        uploaded_after: Any = None,
        uploaded_before: Any = None,
        creator: Any = None,
        limit: Any = None,
        query: ImageQuery | None = None,
        meta_filters: Any = None,
    ) -> Iterator[JsonImagePage]:
        """Like :meth:`iter_pages`, but each image stays the JSON text the API sent.

        Takes the arguments of :meth:`iter_pages`, with the same meaning. Only ``id`` and
        ``uploaded`` are decoded (to check each image and apply the window), so writing
        images out unchanged skips building a dict per image.
        """
        query = query or ImageQuery.build(
            per_page=per_page,
            sort_order=sort_order,
            uploaded_after=uploaded_after,
            uploaded_before=uploaded_before,
            creator=creator,
            limit=limit,
            meta_filters=meta_filters,
        )
        return self._paginate(query, JsonImagePage)

    def _paginate(self, query: ImageQuery, page_kind: type[_Page]) -> Iterator[_Page]:
        """Follow ``continuation_token`` to the end (or the query's stop), a page at a time."""
        path = f"accounts/{self.account_id}/images/v2"
        pages_by_token: dict[str, int] = {}
        token: str | None = None
        kept = 0
        number = 0
        while True:
            number += 1
            params = query.api_params(token)
            body = self.transport.get_list_page(path, params, page=number, raw=page_kind.raw)
            positions, stop = _select(query, body.keys, page=number, room=_room(query, kept))
            page = page_kind.of(number, body, positions)
            kept += len(page.images)
            next_token = body.continuation_token or None
            # Drop this page before fetching the next, so at most one is held here.
            del body
            yield page
            del page
            if stop or next_token is None:
                return
            if next_token in pages_by_token:
                raise CloudflareImagesPaginationError(
                    f"List images V2 returned on page {number} the continuation token it "
                    f"already returned on page {pages_by_token[next_token]}; stopped to avoid "
                    "an endless loop"
                )
            pages_by_token[next_token] = number
            token = next_token

    def iter_images(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yield each image as the API returned it; takes the arguments of :meth:`iter_pages`."""
        for page in self.iter_pages(**kwargs):
            yield from page.images

    def list_images(self, **kwargs: Any) -> list[dict[str, Any]]:
        """Return the images as a list; takes the arguments of :meth:`iter_pages`.

        Holds every image in memory: prefer :meth:`iter_images` for whole inventories.
        """
        return list(self.iter_images(**kwargs))

    # -- single images -------------------------------------------------------------------

    def get_image(self, image_id: str) -> dict[str, Any]:
        """Return one image's details; raises :class:`CloudflareImagesAPIError` (5404) if absent.

        :param image_id: the image id.
        """
        return self.transport.request("GET", self._image_path(image_id), what="image details")

    def update_image(
        self,
        image_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        require_signed_urls: bool | None = None,
    ) -> dict[str, Any]:
        """Change an image's metadata and/or ``requireSignedURLs``; return the updated image.

        :param image_id: the image id.
        :param metadata: the new ``meta`` object (replaces the old one; at most 1024 bytes).
        :param require_signed_urls: whether the image needs signed URLs.
        """
        body: dict[str, Any] = {}
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise ValueError(f"metadata must be a dict; got {type(metadata).__name__}.")
            body["metadata"] = metadata
        if require_signed_urls is not None:
            body["requireSignedURLs"] = bool(require_signed_urls)
        if not body:
            raise ValueError("update_image needs metadata and/or require_signed_urls.")
        return self.transport.request(
            "PATCH", self._image_path(image_id), json_body=body, what="image update"
        )

    def delete_image(self, image_id: str) -> bool:
        """Delete an image; return ``False`` if it was already gone (so re-runs are safe).

        :param image_id: the image id.
        """
        return deleted_unless_absent(
            lambda: self.transport.request(
                "DELETE", self._image_path(image_id), what="image delete"
            )
        )

    def get_stats(self) -> dict[str, Any]:
        """Return the account's image counts: ``{"count": {"current": n, "allowed": m}}``."""
        return self.transport.request(
            "GET", f"accounts/{self.account_id}/images/v1/stats", what="usage statistics"
        )

    def test_connection(self) -> tuple[bool, str]:
        """Check credentials and account with one cheap authenticated call; never raises."""
        try:
            count = self.get_stats().get("count") or {}
        except (CloudflareImagesError, ValueError) as err:
            return False, str(err)
        except Exception as err:
            return False, f"{type(err).__name__}: {err}"
        return True, (
            f"Connected to Cloudflare Images account {self.account_id}: "
            f"{count.get('current', '?')} of {count.get('allowed', '?')} images stored."
        )

    # -- connection form (Airflow < 3.2; newer versions read get_provider_info) -----------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's hidden, relabelled and placeholder fields."""
        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The connection form's extra fields, for Airflow versions that build it from wtforms."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import StringField

        return {
            name: StringField(
                lazy_gettext(spec["label"]),
                widget=BS3TextFieldWidget(),
                description=spec.get("description", ""),
            )
            for name, spec in CONN_FIELDS.items()
        }

    def _image_path(self, image_id: str) -> str:
        return f"accounts/{self.account_id}/images/v1/{quote(check_image_id(image_id), safe='/')}"


def _room(query: ImageQuery, kept: int) -> int | None:
    return None if query.limit is None else query.limit - kept


def _select(
    query: ImageQuery, keys: list[ImageKey], *, page: int, room: int | None
) -> tuple[range | list[int], bool]:
    """The positions of the page's images that the query keeps; and whether listing is done."""
    kept: range | list[int] = range(len(keys))
    stop = False
    if query.has_window:
        kept = []
        for position, key in enumerate(keys):
            uploaded = parse_uploaded(key.uploaded)
            if uploaded is None:
                raise CloudflareImagesAPIError(
                    f"List images V2 page {page}: image {key.id!r} has no readable "
                    f"'uploaded' time ({key.uploaded!r}), so the upload-time window cannot "
                    "be applied"
                )
            verdict = query.verdict(uploaded)
            if verdict is Verdict.STOP:
                stop = True
                break
            if verdict is Verdict.KEEP:
                kept.append(position)
    if room is not None and len(kept) >= room:
        return kept[:room], True
    return kept, stop


def _pick(items: list[_Item], positions: range | list[int]) -> list[_Item]:
    if isinstance(positions, range):
        return items if len(positions) == len(items) else items[: len(positions)]
    return [items[position] for position in positions]


def _check_retries(value: int | None) -> int | None:
    return None if value is None else check_whole("max_retries", value, minimum=0)


def _check_positive(name: str, value: float | None) -> float | None:
    return None if value is None else check_positive(name, value)

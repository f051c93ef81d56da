"""The state of one emulated Cloudflare Images account, and the API operations on it.

:class:`ImagesBackend` is usable without HTTP: its methods are named after the API
operations, take the API's parameters and raise the exceptions of
:mod:`airflow_provider_cfimages.emulator.errors`. The HTTP layer
(:mod:`airflow_provider_cfimages.emulator.server`) only parses requests and calls it.

How it stays fast at a million images:

- every image is kept as its JSON encoding (``bytes``, made once with msgspec when the
  image is seeded, uploaded or updated), so a list page is a ``b",".join`` of a slice;
- images are kept sorted by a string key that orders as ``(uploaded, id)``, in parallel
  ``keys``/``blobs`` lists (plus one pair per creator for the ``creator`` filter), so a
  page is a binary search and a slice;
- continuation tokens name a keyset position (the key of the last image served), not an
  offset, so images uploaded or deleted between two pages never make an image that
  existed for the whole listing appear twice or not at all.

A token is 32 URL-safe characters (the schema's ``maxLength``): a keyed hash of
``(sort_order, creator, position)`` that the backend remembers. The same position always
gets the same token; a token that was edited, forged, issued by another emulator, or used
with another ``sort_order`` or ``creator`` is answered 400 (5400).
"""

from __future__ import annotations

import base64
import gc
import hashlib
import os
import re
import secrets
import threading
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, NamedTuple

import msgspec

from airflow_provider_cfimages.emulator.errors import (
    AccountNotAuthorized,
    BadRequest,
    ImageNotFound,
    ResourceAlreadyExists,
    ServiceLimitReached,
)
from airflow_provider_cfimages.emulator.meta_filters import QueryFilter
from airflow_provider_cfimages.emulator.seed import (
    DEFAULT_VARIANTS,
    MAX_METADATA_BYTES,
    account_hash_for,
    cloudflare_uuid,
    generate_inventory,
    read_seed_file,
    variant_urls,
)
from airflow_provider_cfimages.emulator.timestamps import epoch_micros, format_uploaded, now_ms

SortOrder = Literal["asc", "desc"]

PER_PAGE_MIN = 10
PER_PAGE_MAX = 10_000
PER_PAGE_DEFAULT = 1000
DEFAULT_ALLOWED = 100_000
#: continuation tokens remembered at most (the oldest are forgotten first)
MAX_TOKENS = 1_000_000
ACCOUNT_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
_UUID_PATTERN = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
# Keys order as (uploaded, id): a fixed-width count of microseconds since year 1, then the id.
_KEY_OFFSET_US = 62_135_596_800 * 1_000_000
_KEY_WIDTH = 18

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_decode_images = msgspec.json.Decoder(list[dict[str, Any]]).decode
_decode_image = msgspec.json.Decoder(dict[str, Any]).decode


def sort_key(uploaded: str, image_id: str) -> str:
    """The string whose order is the ``(uploaded, id)`` order of images."""
    return f"{epoch_micros(uploaded) + _KEY_OFFSET_US:0{_KEY_WIDTH}d}|{image_id}"


def _id_of(key: str) -> str:
    return key[_KEY_WIDTH + 1 :]


@dataclass
class _SortedImages:
    """Images sorted by key: parallel lists of keys and of encoded images."""

    keys: list[str] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)

    def insert(self, key: str, blob: bytes) -> None:
        position = bisect_left(self.keys, key)
        self.keys.insert(position, key)
        self.blobs.insert(position, blob)

    def position(self, key: str) -> int:
        position = bisect_left(self.keys, key)
        if position == len(self.keys) or self.keys[position] != key:
            raise KeyError(key)
        return position

    def remove(self, key: str) -> None:
        position = self.position(key)
        del self.keys[position]
        del self.blobs[position]

    def replace(self, key: str, blob: bytes) -> None:
        self.blobs[self.position(key)] = blob

    def copy(self) -> _SortedImages:
        return _SortedImages(list(self.keys), list(self.blobs))


class V2Page(NamedTuple):
    """One page of List images V2, with the images still encoded (the HTTP fast path)."""

    blobs: list[bytes]
    continuation_token: str | None


@dataclass(frozen=True)
class _Cursor:
    sort_order: SortOrder
    creator: str | None
    last_key: str
    #: the metadata filters listed, as canonical text ("" for none)
    filters: str = ""


@dataclass
class _State:
    """Everything :meth:`ImagesBackend.reset` restores."""

    all: _SortedImages = field(default_factory=_SortedImages)
    by_creator: dict[str, _SortedImages] = field(default_factory=dict)
    by_id: dict[str, str] = field(default_factory=dict)  # id -> key
    creator_of: dict[str, str] = field(default_factory=dict)  # id -> creator

    def copy(self) -> _State:
        return _State(
            self.all.copy(),
            {creator: images.copy() for creator, images in self.by_creator.items()},
            dict(self.by_id),
            dict(self.creator_of),
        )


def _parse_int(name: str, value: int | str | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        raise BadRequest(f"{name} must be a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,9}\s*", value):
        return int(value)
    raise BadRequest(f"{name} must be a number, got {value!r}")


def _parse_per_page(value: int | str | None) -> int:
    per_page = _parse_int("per_page", value, PER_PAGE_DEFAULT)
    if not PER_PAGE_MIN <= per_page <= PER_PAGE_MAX:
        raise BadRequest(
            f"per_page must be between {PER_PAGE_MIN} and {PER_PAGE_MAX}, got {per_page}"
        )
    return per_page


def _parse_bool(name: str, value: bool | str | None) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise BadRequest(f"{name} must be true or false, got {value!r}")


def _parse_metadata(value: dict[str, Any] | str | bytes | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        try:
            value = _decode(value)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"metadata must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("metadata must be a JSON object")
    if len(_encode(value)) > MAX_METADATA_BYTES:
        raise BadRequest(f"metadata must not exceed {MAX_METADATA_BYTES} bytes")
    return value


def _uploaded_string(value: str | int | datetime | None) -> str:
    if value is None:
        return format_uploaded(now_ms())
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return format_uploaded(int(value.timestamp() * 1000))
    if isinstance(value, int):
        return format_uploaded(value)
    epoch_micros(value)  # raises ValueError when it is not RFC 3339
    return value


class ImagesBackend:
    """One Cloudflare Images account: its images and the API operations on them.

    Thread-safe: every operation holds one lock for the few microseconds it needs; building
    a page body (joining up to 10,000 encoded images) happens outside it.

    :param account_id: the 32-hex account id; random when not given.
    :param account_hash: the delivery hash in variant URLs; derived from the id when not given.
    :param variants: the account's variant names (every image lists all of them).
    :param allowed: ``stats.count.allowed``; uploads beyond it fail with 5453. When not given,
        100,000 or the inventory size, whichever is larger, and uploads are never refused.
    """

    def __init__(
        self,
        account_id: str | None = None,
        *,
        account_hash: str | None = None,
        variants: tuple[str, ...] = DEFAULT_VARIANTS,
        allowed: int | None = None,
    ) -> None:
        self.account_id = account_id or os.urandom(16).hex()
        if not ACCOUNT_ID_PATTERN.match(self.account_id):
            raise ValueError(f"account_id must be 32 lowercase hex characters: {account_id!r}")
        self.account_hash = account_hash or account_hash_for(self.account_id)
        self.variants = tuple(variants)
        self.allowed = allowed
        #: False makes every operation fail with 5403, like an account without Images.
        self.images_enabled = True
        #: where direct-upload URLs point; the HTTP server points it at itself.
        self.direct_upload_base_url = f"https://upload.imagedelivery.net/{self.account_hash}"
        self._lock = threading.RLock()
        self._state = _State()
        self._baseline = self._state
        # The state is shared with the baseline until the first write copies it, so a
        # million-image inventory that is only read is held once, and reset() is instant.
        self._shared = True
        self._drafts: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, _Cursor] = {}
        # Tokens are a keyed hash of the cursor: the same position always gets the same token,
        # and a token that was not issued here cannot be forged or edited into another one.
        self._token_key = hashlib.sha256(f"tokens:{self.account_id}".encode()).digest()[:32]

    # --- inventory -------------------------------------------------------------------

    def seed(self, count: int, seed: int = 0) -> int:
        """Add ``count`` generated images (see :mod:`~.seed`) and make them the baseline.

        :returns: the number of images added.
        """
        inventory = generate_inventory(
            count, seed, account_hash=self.account_hash, variants=self.variants
        )
        columns = _Columns()
        with _gc_paused():
            for uploaded_ms, image in inventory:
                # The generator knows the instant: no need to parse the text back.
                image_id = image["id"]
                columns.keys.append(
                    f"{uploaded_ms * 1000 + _KEY_OFFSET_US:0{_KEY_WIDTH}d}|{image_id}"
                )
                columns.blobs.append(_encode(image))
                columns.ids.append(image_id)
                columns.creators.append(image.get("creator"))
            # Generated images come in upload-time order; only ties need ordering by id.
            columns.sort_nearly_sorted()
            return self._load_columns(columns, as_baseline=True)

    def seed_from_file(self, path: str | Path) -> int:
        """Add the images of a JSON / JSON Lines file (kept as written) as the baseline."""
        return self.load(read_seed_file(path))

    def load(self, images: Iterable[dict[str, Any]], *, as_baseline: bool = True) -> int:
        """Add images given as API dicts, kept exactly as given (unknown keys included).

        :param images: each needs a string ``id`` and an RFC 3339 ``uploaded``.
        :param as_baseline: make the resulting inventory what :meth:`reset` returns to.
        :returns: the number of images added.
        :raises ValueError: on a duplicate id or a bad ``uploaded``.
        """
        columns = _Columns()
        with _gc_paused():
            for image in images:
                creator = image.get("creator")
                columns.keys.append(sort_key(image["uploaded"], image["id"]))
                columns.blobs.append(_encode(image))
                columns.ids.append(image["id"])
                columns.creators.append(creator if isinstance(creator, str) else None)
            columns.sort()
            return self._load_columns(columns, as_baseline=as_baseline)

    def _load_columns(self, new: _Columns, *, as_baseline: bool) -> int:
        with self._lock:
            current = self._state
            if current.all.keys:
                # Merging into an existing inventory: rare (tests), so simply sort again.
                new.extend(_Columns.of(current))
                new.sort()
            state = _build_state(new)
            if len(state.by_id) != len(new.keys):
                counts = Counter(new.ids)
                duplicate = next(image_id for image_id, n in counts.items() if n > 1)
                raise ValueError(f"duplicate image id {duplicate!r}")
            self._state = state
            self._shared = as_baseline
            if as_baseline:
                self._baseline = state
            return len(new.keys) - len(current.all.keys)

    def reset(self) -> None:
        """Go back to the inventory as it was seeded; forget drafts and continuation tokens."""
        with self._lock:
            self._state = self._baseline
            self._shared = True
            self._drafts.clear()
            self._tokens.clear()

    def clear(self) -> None:
        """Remove every image (the seeded baseline is kept for :meth:`reset`)."""
        with self._lock:
            self._state = _State()
            self._shared = False
            self._drafts.clear()
            self._tokens.clear()

    @property
    def count(self) -> int:
        """How many images the account holds."""
        return len(self._state.all.keys)

    def __len__(self) -> int:
        return self.count

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._state.by_id

    def images_sorted(self) -> list[dict[str, Any]]:
        """Every image, in ``(uploaded, id)`` ascending order, as API dicts."""
        with self._lock:
            blobs = list(self._state.all.blobs)
        return _decode_images(b"[" + b",".join(blobs) + b"]")

    def ids_sorted(self) -> list[str]:
        """Every image id, in ``(uploaded, id)`` ascending order."""
        with self._lock:
            return [_id_of(key) for key in self._state.all.keys]

    # --- API operations ------------------------------------------------------------

    def list_images_v2_page(
        self,
        per_page: int | str | None = None,
        sort_order: str | None = None,
        continuation_token: str | None = None,
        creator: str | None = None,
        *,
        page_cap: int | None = None,
        token_on_last_page: bool = False,
        meta_filters: Sequence[QueryFilter] = (),
    ) -> V2Page:
        """List images V2, returning the page's images still JSON-encoded.

        :param creator: only images with this ``creator``; ``""`` for images without one.
        :param meta_filters: metadata filters (see :mod:`~.meta_filters`), AND-combined.
        :param page_cap: serve at most this many images even when ``per_page`` asks for more
            (the live API may cap pages at 1000); the page still carries a token.
        :param token_on_last_page: give the last non-empty page a token too (its next page
            is then empty, with a null token).
        """
        self._check_enabled()
        size = _parse_per_page(per_page)
        if page_cap is not None:
            size = min(size, page_cap)
        order: SortOrder
        if sort_order is None:
            order = "desc"
        elif sort_order in ("asc", "desc"):
            order = sort_order  # type: ignore[assignment]
        else:
            raise BadRequest(f"sort_order must be 'asc' or 'desc', got {sort_order!r}")
        filters = "&".join(f.canonical() for f in meta_filters)
        with self._lock:
            cursor_key: str | None = None
            if continuation_token:
                cursor = self._tokens.get(continuation_token)
                if cursor is None:
                    raise BadRequest("invalid continuation_token")
                if cursor.sort_order != order:
                    raise BadRequest(
                        f"continuation_token was issued for sort_order={cursor.sort_order}, "
                        f"not {order}"
                    )
                if cursor.creator != creator:
                    raise BadRequest("continuation_token was issued for another creator filter")
                if cursor.filters != filters:
                    raise BadRequest("continuation_token was issued for other metadata filters")
                cursor_key = cursor.last_key
            if meta_filters or creator == "":
                blobs, last_key, more = self._scan_page(
                    order, creator, meta_filters, cursor_key, size
                )
                token = None
                if (more or token_on_last_page) and last_key is not None:
                    token = self._issue_token(_Cursor(order, creator, last_key, filters))
                return V2Page(blobs, token)
            if creator is None:
                images = self._state.all
            else:
                images = self._state.by_creator.get(creator, _SortedImages())
            total = len(images.keys)
            if order == "asc":
                start = 0 if cursor_key is None else bisect_right(images.keys, cursor_key)
                end = min(start + size, total)
                blobs = images.blobs[start:end]
                more = end < total
                last_key = images.keys[end - 1] if end > start else None
            else:
                end = total if cursor_key is None else bisect_left(images.keys, cursor_key)
                start = max(0, end - size)
                blobs = images.blobs[start:end]
                blobs.reverse()
                more = start > 0
                last_key = images.keys[start] if end > start else None
            token = None
            if (more or token_on_last_page) and last_key is not None:
                token = self._issue_token(_Cursor(order, creator, last_key))
        return V2Page(blobs, token)

    def _scan_page(
        self,
        order: SortOrder,
        creator: str | None,
        meta_filters: Sequence[QueryFilter],
        cursor_key: str | None,
        size: int,
    ) -> tuple[list[bytes], str | None, bool]:
        """A filtered page: walk from the cursor in order, keeping the images that pass.

        Returns the page's images, the key of the last one, and whether another image
        passes after it (call with the lock held).
        """
        images = self._state.all if not creator else self._state.by_creator.get(creator)
        if images is None:
            return [], None, False
        keys = images.keys
        if order == "asc":
            start = 0 if cursor_key is None else bisect_right(keys, cursor_key)
            positions: Iterable[int] = range(start, len(keys))
        else:
            end = len(keys) if cursor_key is None else bisect_left(keys, cursor_key)
            positions = range(end - 1, -1, -1)
        blobs: list[bytes] = []
        last_key: str | None = None
        for position in positions:
            image = _decode_image(images.blobs[position])
            if creator == "" and image.get("creator"):
                continue
            if not all(f.matches(image.get("meta")) for f in meta_filters):
                continue
            if len(blobs) == size:
                return blobs, last_key, True
            blobs.append(images.blobs[position])
            last_key = keys[position]
        return blobs, last_key, False

    def list_images_v2(
        self,
        per_page: int | str | None = None,
        sort_order: str | None = None,
        continuation_token: str | None = None,
        creator: str | None = None,
    ) -> dict[str, Any]:
        """List images V2: ``{"images": [...], "continuation_token": str | None}``.

        :param per_page: 10..10000, default 1000.
        :param sort_order: ``asc`` or ``desc`` (default) by upload time, ties by id.
        :param continuation_token: the token of the previous page.
        :param creator: only images with this ``creator``.
        :raises BadRequest: on a bad parameter, an unknown token, or a token issued for
            another ``sort_order`` or ``creator``.
        """
        page = self.list_images_v2_page(per_page, sort_order, continuation_token, creator)
        images = _decode_images(b"[" + b",".join(page.blobs) + b"]")
        return {"images": images, "continuation_token": page.continuation_token}

    def list_images_v1_page(
        self, page: int | str | None = None, per_page: int | str | None = None
    ) -> list[bytes]:
        """List images (v1, deprecated), newest first, returning encoded images."""
        self._check_enabled()
        number = _parse_int("page", page, 1)
        if number < 1:
            raise BadRequest(f"page must be 1 or more, got {number}")
        size = _parse_per_page(per_page)
        with self._lock:
            blobs = self._state.all.blobs
            end = max(0, len(blobs) - (number - 1) * size)
            chunk = blobs[max(0, end - size) : end]
        chunk.reverse()
        return chunk

    def list_images_v1(
        self, page: int | str | None = None, per_page: int | str | None = None
    ) -> dict[str, Any]:
        """List images (v1, deprecated): page-numbered, newest first: ``{"images": [...]}``."""
        blobs = self.list_images_v1_page(page, per_page)
        return {"images": _decode_images(b"[" + b",".join(blobs) + b"]")}

    def get_image_blob(self, image_id: str) -> bytes:
        """Image details, still JSON-encoded."""
        self._check_enabled()
        with self._lock:
            key = self._state.by_id.get(image_id)
            if key is None:
                draft = self._drafts.get(image_id)
                if draft is None:
                    raise ImageNotFound()
                return _encode(draft)
            return self._state.all.blobs[self._state.all.position(key)]

    def get_image(self, image_id: str) -> dict[str, Any]:
        """Image details (a pending direct upload shows ``"draft": true``).

        :raises ImageNotFound: when there is no such image.
        """
        return _decode_image(self.get_image_blob(image_id))

    def update_image(
        self,
        image_id: str,
        metadata: dict[str, Any] | str | None = None,
        require_signed_urls: bool | str | None = None,
    ) -> dict[str, Any]:
        """Update an image's ``meta`` (replaced whole) and/or ``requireSignedURLs``.

        The id is kept when ``requireSignedURLs`` changes (the schema says a new one is
        returned; the emulator does not reproduce that).

        :raises ImageNotFound: when there is no such image.
        :raises BadRequest: when the metadata is not an object of at most 1024 bytes.
        """
        self._check_enabled()
        meta = _parse_metadata(metadata)
        signed = _parse_bool("requireSignedURLs", require_signed_urls)
        with self._lock:
            key = self._state.by_id.get(image_id)
            if key is None:
                raise ImageNotFound()
            image = _decode_image(self._state.all.blobs[self._state.all.position(key)])
            if meta is not None:
                image["meta"] = meta
            if signed is not None:
                image["requireSignedURLs"] = signed
            blob = _encode(image)
            state = self._writable()
            state.all.replace(key, blob)
            creator = state.creator_of.get(image_id)
            if creator is not None:
                state.by_creator[creator].replace(key, blob)
        return image

    def delete_image(self, image_id: str) -> dict[str, Any]:
        """Delete an image. Returns ``{}`` (the API's ``result``).

        :raises ImageNotFound: when there is no such image.
        """
        self._check_enabled()
        with self._lock:
            if image_id not in self._state.by_id:
                if self._drafts.pop(image_id, None) is not None:
                    return {}
                raise ImageNotFound()
            state = self._writable()
            key = state.by_id.pop(image_id)
            state.all.remove(key)
            creator = state.creator_of.pop(image_id, None)
            if creator is not None:
                state.by_creator[creator].remove(key)
        return {}

    def upload_image(
        self,
        *,
        file: bytes | None = None,
        url: str | None = None,
        filename: str | None = None,
        metadata: dict[str, Any] | str | None = None,
        require_signed_urls: bool | str | None = None,
        id: str | None = None,
        creator: str | None = None,
    ) -> dict[str, Any]:
        """Upload an image from a file or a URL (only its metadata is kept).

        :param file: the image bytes (not stored); exactly one of ``file`` and ``url``.
        :param url: a URL to fetch the image from (not fetched).
        :param filename: the file name; from the URL's last path segment when not given.
        :param metadata: a JSON object (or its JSON text) of at most 1024 bytes.
        :param require_signed_urls: ``True``/``False`` or ``"true"``/``"false"``.
        :param id: a custom id: no leading/trailing ``/``, not a UUID, at most 1024 chars.
        :param creator: an opaque creator tag, usable as the list ``creator`` filter.
        :raises BadRequest: on a bad field. :raises ResourceAlreadyExists: when the custom
            id is taken.
        """
        if (file is None) == (url is None):
            raise BadRequest("upload exactly one of a 'file' or a 'url'")
        if url is not None and not re.match(r"^https?://[^\s/]+", url):
            raise BadRequest(f"url must be an http(s) URL, got {url!r}")
        if filename is None:
            filename = (url or "").rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "image"
        return self.upload(
            filename,
            id=id,
            metadata=_parse_metadata(metadata),
            require_signed_urls=bool(_parse_bool("requireSignedURLs", require_signed_urls)),
            creator=creator,
        )

    def upload(
        self,
        filename: str = "image.jpg",
        *,
        id: str | None = None,
        metadata: dict[str, Any] | None = None,
        require_signed_urls: bool = False,
        creator: str | None = None,
        uploaded: str | int | datetime | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Add an image directly (for tests): like an upload, with the upload time settable.

        :param uploaded: RFC 3339 text, epoch milliseconds or a datetime; now when not given.
        :param extra: further keys to store on the image as they are.
        :returns: the image, as the API would return it.
        """
        self._check_enabled()
        if id is not None:
            _check_custom_id(id)
        meta = _parse_metadata(metadata)
        with self._lock:
            if self.allowed is not None and self.count >= self.allowed:
                raise ServiceLimitReached()
            image_id = id or cloudflare_uuid(secrets.randbits(128))
            if image_id in self._state.by_id or image_id in self._drafts:
                raise ResourceAlreadyExists()
            image: dict[str, Any] = {"id": image_id, "filename": filename}
            if meta is not None:
                image["meta"] = meta
            image["uploaded"] = _uploaded_string(uploaded)
            image["requireSignedURLs"] = require_signed_urls
            image["variants"] = variant_urls(self.account_hash, image_id, self.variants)
            if creator is not None:
                image["creator"] = creator
            image.update(extra or {})
            self._insert(image)
        return image

    def stats(self) -> dict[str, Any]:
        """Images usage statistics: ``{"count": {"current": n, "allowed": m}}``."""
        self._check_enabled()
        current = self.count
        allowed = self.allowed if self.allowed is not None else max(DEFAULT_ALLOWED, current)
        return {"count": {"current": current, "allowed": allowed}}

    def create_direct_upload(
        self,
        *,
        id: str | None = None,
        metadata: dict[str, Any] | str | None = None,
        require_signed_urls: bool | str | None = None,
        creator: str | None = None,
        expiry: str | None = None,
    ) -> dict[str, Any]:
        """Create an authenticated direct upload URL (v2): a draft until a file is posted.

        The draft shows in image details with ``"draft": true`` and is not listed; posting a
        file to ``uploadURL`` (no auth, as on upload.imagedelivery.net) makes it an image.
        """
        self._check_enabled()
        if id is not None:
            _check_custom_id(id)
        if expiry is not None:
            try:
                epoch_micros(expiry)
            except ValueError:
                raise BadRequest(f"expiry must be an RFC 3339 date-time, got {expiry!r}") from None
        meta = _parse_metadata(metadata)
        signed = bool(_parse_bool("requireSignedURLs", require_signed_urls))
        with self._lock:
            image_id = id or cloudflare_uuid(secrets.randbits(128))
            if image_id in self._state.by_id or image_id in self._drafts:
                raise ResourceAlreadyExists()
            draft: dict[str, Any] = {"id": image_id}
            if meta is not None:
                draft["meta"] = meta
            draft["uploaded"] = format_uploaded(now_ms())
            draft["requireSignedURLs"] = signed
            draft["variants"] = variant_urls(self.account_hash, image_id, self.variants)
            if creator is not None:
                draft["creator"] = creator
            draft["draft"] = True
            self._drafts[image_id] = draft
        return {"id": image_id, "uploadURL": f"{self.direct_upload_base_url}/{image_id}"}

    def complete_direct_upload(self, image_id: str, filename: str = "image.jpg") -> dict[str, Any]:
        """Finish a direct upload: the draft becomes an image, uploaded now.

        :raises ImageNotFound: when there is no draft with that id.
        """
        with self._lock:
            draft = self._drafts.pop(image_id, None)
            if draft is None:
                raise ImageNotFound()
            image: dict[str, Any] = {"id": image_id, "filename": filename}
            image.update((k, v) for k, v in draft.items() if k not in ("id", "draft"))
            image["uploaded"] = format_uploaded(now_ms())
            self._insert(image)
        return image

    # --- internals ---------------------------------------------------------------------

    def _check_enabled(self) -> None:
        if not self.images_enabled:
            raise AccountNotAuthorized()

    def _writable(self) -> _State:
        """The current state, copied first if it is still the baseline (call with the lock)."""
        if self._shared:
            self._state = self._state.copy()
            self._shared = False
        return self._state

    def _insert(self, image: dict[str, Any]) -> None:
        key = sort_key(image["uploaded"], image["id"])
        blob = _encode(image)
        state = self._writable()
        state.all.insert(key, blob)
        state.by_id[image["id"]] = key
        creator = image.get("creator")
        if isinstance(creator, str):
            state.creator_of[image["id"]] = creator
            state.by_creator.setdefault(creator, _SortedImages()).insert(key, blob)

    def _issue_token(self, cursor: _Cursor) -> str:
        material = f"{cursor.sort_order}\x00{cursor.creator or ''}\x00{cursor.last_key}"
        if cursor.creator == "" or cursor.filters:
            # Distinct from the unfiltered listing's token at the same position.
            material += f"\x00{cursor.creator!r}\x00{cursor.filters}"
        digest = hashlib.blake2b(material.encode(), key=self._token_key, digest_size=24).digest()
        # 24 bytes -> 32 URL-safe characters: the schema's maxLength for the token.
        token = base64.urlsafe_b64encode(digest).decode()
        if token not in self._tokens:
            if len(self._tokens) >= MAX_TOKENS:
                del self._tokens[next(iter(self._tokens))]
            self._tokens[token] = cursor
        return token


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many containers at once.

    A million tuples and dicts would otherwise trigger dozens of full collections, each
    walking everything built so far; none of these objects form cycles.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class _Columns:
    """Images being loaded, as parallel lists (tuples per image would cost 64 bytes each)."""

    keys: list[str] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    creators: list[str | None] = field(default_factory=list)

    @classmethod
    def of(cls, state: _State) -> _Columns:
        ids = [_id_of(key) for key in state.all.keys]
        creators = [state.creator_of.get(image_id) for image_id in ids]
        return cls(list(state.all.keys), list(state.all.blobs), ids, creators)

    def extend(self, other: _Columns) -> None:
        self.keys += other.keys
        self.blobs += other.blobs
        self.ids += other.ids
        self.creators += other.creators

    def sort(self) -> None:
        order = sorted(range(len(self.keys)), key=self.keys.__getitem__)
        self.keys = [self.keys[i] for i in order]
        self.blobs = [self.blobs[i] for i in order]
        self.ids = [self.ids[i] for i in order]
        self.creators = [self.creators[i] for i in order]

    def sort_nearly_sorted(self) -> None:
        """Insertion sort: linear for lists where few items are out of place."""
        keys, blobs, ids, creators = self.keys, self.blobs, self.ids, self.creators
        for i in range(1, len(keys)):
            key = keys[i]
            if key >= keys[i - 1]:
                continue
            blob, image_id, creator = blobs[i], ids[i], creators[i]
            j = i - 1
            while j >= 0 and keys[j] > key:
                keys[j + 1], blobs[j + 1], ids[j + 1], creators[j + 1] = (
                    keys[j],
                    blobs[j],
                    ids[j],
                    creators[j],
                )
                j -= 1
            keys[j + 1], blobs[j + 1], ids[j + 1], creators[j + 1] = key, blob, image_id, creator


def _build_state(columns: _Columns) -> _State:
    """A state from columns already sorted by key."""
    state = _State()
    state.all.keys = columns.keys
    state.all.blobs = columns.blobs
    state.by_id = dict(zip(columns.ids, columns.keys, strict=True))
    for key, blob, image_id, creator in zip(
        columns.keys, columns.blobs, columns.ids, columns.creators, strict=True
    ):
        if creator is not None:
            state.creator_of[image_id] = creator
            images = state.by_creator.get(creator)
            if images is None:
                images = state.by_creator[creator] = _SortedImages()
            images.keys.append(key)
            images.blobs.append(blob)
    return state


def _check_custom_id(image_id: str) -> None:
    if not image_id or len(image_id) > 1024:
        raise BadRequest("custom id must be 1 to 1024 characters")
    if image_id.startswith("/") or image_id.endswith("/"):
        raise BadRequest("custom id cannot start or end with a /")
    if _UUID_PATTERN.match(image_id):
        raise BadRequest("custom id cannot be a UUID")

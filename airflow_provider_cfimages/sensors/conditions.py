"""What :class:`CloudflareImagesSensor` and its trigger wait for, and one check of it.

Both the sensor (in ``poke``/``reschedule`` mode) and :class:`CloudflareImagesTrigger` (in
the triggerer, through ``asyncio.to_thread``) run the same :class:`ImageConditionChecker`,
so auth, retries, pagination and the "is it there yet" logic live in one place.

A check is cheap by construction: image ids are looked up one by one and the first missing
one ends the check; the listing conditions page newest first, stop at ``uploaded_after``
(the hook does), stop as soon as ``min_count`` images matched, and never read more than
``max_pages`` pages.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from airflow_provider_cfimages.exceptions import (
    RATE_LIMIT_CODE,
    RETRY_STATUSES,
    CloudflareImagesAPIError,
    CloudflareImagesConfigError,
    CloudflareImagesRateLimitError,
    image_not_found,
)
from airflow_provider_cfimages.hooks.meta_filters import NO_FILTERS, MetaFilters
from airflow_provider_cfimages.hooks.query import API_PAGE_CAP, DEFAULT_PER_PAGE, ImageQuery
from airflow_provider_cfimages.utils.validation import check_whole, is_absent, list_from_text

if TYPE_CHECKING:
    # Not imported at run time: the trigger imports this module on the triggerer's event
    # loop, and the hook brings in requests, which takes the loop too long to import.
    from airflow_provider_cfimages.hooks.images import CloudflareImagesHook, ImagePage

log = logging.getLogger(__name__)

DEFAULT_MAX_PAGES = 10
DEFAULT_MAX_IMAGES = 100
MAX_ID_LENGTH = 1024


@dataclass(frozen=True)
class ImageConditions:
    """The checked conditions of one wait; every condition given must hold.

    Build it with :meth:`build`, which accepts what DAG authors pass (rendered templates,
    comma-separated ids, date-time strings) and names the parameter in every error.

    :param image_ids: every one of these images exists (and is not a pending direct-upload
        draft).
    :param filename: an ``fnmatch`` pattern (case-sensitive) that matching images' filenames
        must match.
    :param uploaded_after: matching images were uploaded at or after this instant.
    :param min_count: at least this many images match the listing filters
        (``uploaded_after``, ``creator``, ``filename``, ``meta_filters``).
    :param creator: matching images have this creator (``""``: have none).
    :param per_page: images per list request.
    :param max_pages: list requests allowed per check; ``None`` for no cap.
    :param meta_filters: matching images' metadata passes these filters (applied by the API).
    """

    image_ids: tuple[str, ...] = ()
    filename: str | None = None
    uploaded_after: dt.datetime | None = None
    min_count: int = 1
    creator: str | None = None
    per_page: int = DEFAULT_PER_PAGE
    max_pages: int | None = DEFAULT_MAX_PAGES
    meta_filters: MetaFilters = NO_FILTERS

    @classmethod
    def build(
        cls,
        *,
        image_ids: Any = None,
        filename: Any = None,
        uploaded_after: Any = None,
        min_count: Any = 1,
        creator: Any = None,
        per_page: Any = DEFAULT_PER_PAGE,
        max_pages: Any = DEFAULT_MAX_PAGES,
        meta_filters: Any = None,
    ) -> ImageConditions:
        """Check and normalise the conditions; raise ``CloudflareImagesConfigError`` if wrong.

        :param image_ids: a list of ids, or one string of comma-separated ids, or the text of
            a list (what Jinja renders an XCom list to).
        :param filename: an ``fnmatch`` pattern such as ``"batch-42-*.jpg"``.
        :param uploaded_after: anything :func:`~airflow_provider_cfimages.hooks.query.parse_instant`
            accepts.
        :param min_count: a whole number >= 1.
        :param creator: a creator id.
        :param per_page: images per list request, 10..10000.
        :param max_pages: a whole number >= 1, or ``None`` for no cap.
        :param meta_filters: metadata filters (see
            :mod:`~airflow_provider_cfimages.hooks.meta_filters`).
        """
        ids = parse_image_ids(image_ids)
        pattern = _filename_pattern(filename)
        try:
            query = ImageQuery.build(
                per_page=per_page,
                uploaded_after=uploaded_after,
                creator=creator,
                meta_filters=meta_filters,
            )
        except ValueError as err:
            raise CloudflareImagesConfigError(str(err)) from None
        conditions = cls(
            image_ids=ids,
            filename=pattern,
            uploaded_after=query.uploaded_after,
            min_count=check_whole("min_count", min_count, minimum=1),
            creator=query.creator,
            per_page=query.per_page,
            max_pages=None if max_pages is None else check_whole("max_pages", max_pages, minimum=1),
            meta_filters=query.meta_filters,
        )
        conditions._check_combination(given_uploaded_after=uploaded_after)
        return conditions

    @classmethod
    def from_attributes(cls, holder: Any) -> ImageConditions:
        """:meth:`build` the conditions from ``holder``'s attributes of the same names.

        :param holder: an object (the sensor, the trigger) with an attribute for each field,
            holding what was given for it.
        """
        return cls.build(**{item.name: getattr(holder, item.name) for item in fields(cls)})

    @property
    def lists_images(self) -> bool:
        """Whether ``filename``, ``uploaded_after`` or ``meta_filters`` is set."""
        return (
            self.filename is not None or self.uploaded_after is not None or bool(self.meta_filters)
        )

    def to_kwargs(self) -> dict[str, Any]:
        """The :meth:`build` arguments that give these conditions again, all JSON-safe.

        The sensor defers with them, so its trigger checks the same conditions.
        """
        after = self.uploaded_after
        return {
            "image_ids": list(self.image_ids) or None,
            "filename": self.filename,
            "uploaded_after": after.isoformat() if after is not None else None,
            "min_count": self.min_count,
            "creator": self.creator,
            "per_page": self.per_page,
            "max_pages": self.max_pages,
            "meta_filters": self.meta_filters.to_mapping() or None,
        }

    def listing_query(self) -> ImageQuery:
        """The newest-first listing that the listing conditions search."""
        return ImageQuery(
            per_page=self.per_page,
            sort_order="desc",
            uploaded_after=self.uploaded_after,
            creator=self.creator,
            meta_filters=self.meta_filters,
        )

    def matches(self, image: dict[str, Any]) -> bool:
        """Whether a listed image passes the client-side filter (the filename pattern)."""
        if self.filename is None:
            return True
        name = image.get("filename")
        return isinstance(name, str) and fnmatch.fnmatchcase(name, self.filename)

    def describe(self) -> str:
        """The conditions in words, for logs and messages."""
        parts = []
        if self.image_ids:
            parts.append(f"{len(self.image_ids)} image id(s) exist")
        if self.lists_images:
            what = f"at least {self.min_count} image(s)"
            if self.uploaded_after is not None:
                what += f" uploaded at or after {self.uploaded_after.isoformat()}"
            if self.creator is not None:
                what += f" by creator {self.creator!r}"
            if self.filename is not None:
                what += f" with a filename matching {self.filename!r}"
            if self.meta_filters:
                what += f" where {self.meta_filters.describe()}"
            parts.append(what)
        return " and ".join(parts)

    def _check_combination(self, *, given_uploaded_after: Any) -> None:
        if not self.image_ids and not self.lists_images:
            rendered = (
                f" (uploaded_after rendered to {given_uploaded_after!r})"
                if given_uploaded_after is not None
                else ""
            )
            raise CloudflareImagesConfigError(
                "CloudflareImagesSensor needs at least one condition: image_ids, filename, "
                f"uploaded_after or meta_filters{rendered}."
            )
        if not self.lists_images and self.creator is not None:
            raise CloudflareImagesConfigError(
                "creator narrows the search of filename / uploaded_after / meta_filters; give "
                "one of them (creator does not apply to image_ids)."
            )
        if not self.lists_images and self.min_count != 1:
            raise CloudflareImagesConfigError(
                "min_count counts the images found by filename / uploaded_after / "
                "meta_filters; give one of them (image_ids always waits for every listed id)."
            )
        # What a page really holds: the API caps pages at 1000 whatever per_page asks.
        page_holds = min(self.per_page, API_PAGE_CAP)
        reachable = None if self.max_pages is None else self.max_pages * page_holds
        if reachable is not None and self.min_count > reachable:
            raise CloudflareImagesConfigError(
                f"min_count={self.min_count} can never be reached: one check reads at most "
                f"max_pages={self.max_pages} pages of at most {page_holds} images (the API "
                f"serves at most {API_PAGE_CAP} a page), {reachable} images; raise max_pages."
            )


@dataclass
class ConditionCheck:
    """The outcome of one check.

    :param satisfied: whether every condition holds.
    :param images: the matching images in compact form (see :func:`compact_image`), capped.
    :param message: what was found, in words.
    :param requests: API requests this check sent (retries included).
    """

    satisfied: bool
    images: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    requests: int = 0


class ImageConditionChecker:
    """Checks :class:`ImageConditions` through the hook, remembering the ids already found.

    One instance lives for the whole wait (the sensor's pokes in ``poke`` mode, the
    trigger's loop), so an id that exists is not asked for again.

    :param hook: the hook that sends the requests.
    :param conditions: what to wait for.
    :param max_images: the most images a satisfied check returns (XCom stays small).
    """

    def __init__(
        self,
        hook: CloudflareImagesHook,
        conditions: ImageConditions,
        *,
        max_images: int = DEFAULT_MAX_IMAGES,
    ) -> None:
        self.hook = hook
        self.conditions = conditions
        self.max_images = max_images
        self._found: dict[str, dict[str, Any]] = {}
        self._warned_cut_short = False

    def check(self) -> ConditionCheck:
        """Check every condition once; transient API failures count as "not yet".

        Errors that waiting cannot fix (auth, a wrong account id, a bad argument) propagate.
        """
        sent_before = self._requests_sent()
        try:
            outcome = self._check_all()
        except CloudflareImagesAPIError as err:
            if not is_transient(err):
                raise
            log.warning("Cloudflare Images is not answering well; will check again: %s", err)
            outcome = ConditionCheck(False, message=f"not checked this time: {err}")
        outcome.requests = self._requests_sent() - sent_before
        return outcome

    def _check_all(self) -> ConditionCheck:
        missing = self._first_missing_id()
        if missing is not None:
            found = len(self._found)
            total = len(self.conditions.image_ids)
            return ConditionCheck(
                False, message=f"image {missing!r} does not exist yet ({found} of {total} found)"
            )
        found_by_id = [self._found[image_id] for image_id in self.conditions.image_ids]
        listed: list[dict[str, Any]] = []
        if self.conditions.lists_images:
            listed, enough, searched = self._search()
            if not enough:
                return ConditionCheck(
                    False,
                    message=f"{len(listed)} of {self.conditions.min_count} image(s) found "
                    f"({searched})",
                )
        images = _unique_by_id([*found_by_id, *listed])
        return ConditionCheck(
            True,
            images=[compact_image(image) for image in images[: self.max_images]],
            message=self._success_message(len(images)),
        )

    def _first_missing_id(self) -> str | None:
        """Look up the ids not yet found, in order; return the first one that is missing."""
        for image_id in self.conditions.image_ids:
            if image_id in self._found:
                continue
            try:
                image = self.hook.get_image(image_id)
            except CloudflareImagesAPIError as err:
                if image_not_found(err):
                    return image_id
                raise
            # A direct creator upload shows in image details as a draft until the file arrives.
            if image.get("draft") is True:
                return image_id
            self._found[image_id] = image
        return None

    def _search(self) -> tuple[list[dict[str, Any]], bool, str]:
        """Page newest first until ``min_count`` images match, the cutoff, or ``max_pages``.

        Returns the matching images seen, whether there are enough, and what was searched.
        """
        conditions = self.conditions
        matched: list[dict[str, Any]] = []
        pages = scanned = 0
        last: ImagePage | None = None
        for page in self.hook.iter_pages(query=conditions.listing_query()):
            pages += 1
            scanned += len(page.images)
            last = page
            matched.extend(image for image in page.images if conditions.matches(image))
            if len(matched) >= conditions.min_count:
                return matched, True, f"{scanned} image(s) read in {pages} page(s)"
            if conditions.max_pages is not None and pages >= conditions.max_pages:
                break
        searched = f"{scanned} image(s) read in {pages} page(s)"
        if last is not None and _cut_short(last, pages, conditions.max_pages):
            searched += f", stopped at max_pages={conditions.max_pages}"
            self._warn_cut_short_once()
        return matched, False, searched

    def _warn_cut_short_once(self) -> None:
        # Every poke of a long wait would repeat it; once per wait is enough to act on.
        if self._warned_cut_short:
            return
        self._warned_cut_short = True
        log.warning(
            "A check stops after max_pages=%d page(s), before %s; images older than that "
            "are not searched. Set uploaded_after (or raise max_pages) to search further back.",
            self.conditions.max_pages,
            "the uploaded_after cutoff" if self.conditions.uploaded_after else "the oldest image",
        )

    def _success_message(self, count: int) -> str:
        returned = min(count, self.max_images)
        capped = f" (the first {returned} returned)" if returned < count else ""
        return f"Condition met: {self.conditions.describe()}; {count} image(s) matched{capped}."

    def _requests_sent(self) -> int:
        transport = self.hook.__dict__.get("transport")
        return transport.requests_sent if transport is not None else 0


def _cut_short(page: ImagePage, pages: int, max_pages: int | None) -> bool:
    """Whether the listing stopped at ``max_pages`` with older images left to read."""
    if max_pages is None or pages < max_pages or page.continuation_token is None:
        return False
    # The hook drops the images past the cutoff and stops; nothing was left unread then.
    return page.received == len(page.images)


def compact_image(image: dict[str, Any]) -> dict[str, Any]:
    """The XCom form of an image: its id, filename and upload time."""
    return {
        "id": image.get("id"),
        "filename": image.get("filename"),
        "uploaded": image.get("uploaded"),
    }


def is_transient(err: CloudflareImagesAPIError) -> bool:
    """Whether an API error may pass by itself (rate limit, 5xx, network) rather than fail."""
    if err.transient:
        return True
    if isinstance(err, CloudflareImagesRateLimitError) or RATE_LIMIT_CODE in err.codes:
        return True
    return err.status in RETRY_STATUSES


def parse_image_ids(value: Any) -> tuple[str, ...]:
    """Read ``image_ids`` as a tuple of unique ids, in order; ``()`` when not given.

    Accepts a list/tuple of strings, one string of comma-separated ids, or the text of a
    list (JSON or Python, which is how Jinja renders an XCom list).

    :param value: what the DAG passed, after templates were rendered.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if is_absent(text):
            return ()
        value = list_from_text("image_ids", text) if text.startswith("[") else text.split(",")
    if not isinstance(value, (list, tuple)):
        raise CloudflareImagesConfigError(
            f"image_ids must be a list of image ids or a comma-separated string; got "
            f"{type(value).__name__} {value!r}."
        )
    ids = [_one_id(item) for item in value]
    if not ids:
        raise CloudflareImagesConfigError(
            "image_ids is empty; give at least one image id, or leave image_ids unset."
        )
    return tuple(dict.fromkeys(ids))


def _one_id(item: Any) -> str:
    if not isinstance(item, str) or not item.strip() or len(item.strip()) > MAX_ID_LENGTH:
        raise CloudflareImagesConfigError(
            f"image_ids must hold non-empty image ids of at most {MAX_ID_LENGTH} characters; "
            f"got {item!r}."
        )
    return item.strip()


def _filename_pattern(value: Any) -> str | None:
    if is_absent(value):
        return None
    if not isinstance(value, str):
        raise CloudflareImagesConfigError(
            f"filename must be a glob pattern string such as 'batch-42-*.jpg'; got "
            f"{type(value).__name__} {value!r}."
        )
    return value


def _unique_by_id(images: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop repeats (an id both listed in image_ids and found by the search), keeping order."""
    unique: dict[str, dict[str, Any]] = {}
    for image in images:
        unique.setdefault(image["id"], image)
    return list(unique.values())

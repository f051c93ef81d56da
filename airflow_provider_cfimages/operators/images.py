"""Operators that list a Cloudflare Images account's inventory."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow.sdk import BaseOperator

from airflow_provider_cfimages.checks import check_positive, check_whole
from airflow_provider_cfimages.connection import validate_account_id
from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError, CloudflareImagesError
from airflow_provider_cfimages.gc_pause import paused_gc
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook
from airflow_provider_cfimages.inventory import (
    InventoryManifest,
    InventoryTarget,
    InventoryWriter,
    check_fields,
    keep_fields,
)
from airflow_provider_cfimages.operators.arguments import is_unrendered
from airflow_provider_cfimages.query import DEFAULT_PER_PAGE, ImageQuery

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_MAX_XCOM_IMAGES = 10_000
DEFAULT_LOG_EVERY_SECONDS = 10.0
# What a templated listing argument stands for while it is still unrendered (in __init__).
_QUERY_PLACEHOLDERS: dict[str, Any] = {
    "per_page": DEFAULT_PER_PAGE,
    "sort_order": "desc",
    "uploaded_after": None,
    "uploaded_before": None,
    "creator": None,
    "max_images": None,
}


class _ListingPlan(NamedTuple):
    """Checked arguments: what to list, which keys to keep, and where to write (if anywhere)."""

    query: ImageQuery
    fields: tuple[str, ...] | None
    target: InventoryTarget | None


class CloudflareImagesListOperator(BaseOperator):
    """List a Cloudflare Images account's images: into XCom, or exported to a file.

    Without ``output_path`` the images (after ``fields``) are returned to XCom; past
    ``max_xcom_images`` the task fails before listing further and says to set
    ``output_path``. With ``output_path`` the inventory is streamed page by page into a
    temporary object next to it, renamed into place at the end (so the path only ever
    holds a complete file, and a re-run replaces it), and a manifest is returned:
    ``path``, ``format``, ``compression``, ``count``, ``pages``, ``bytes``,
    ``uncompressed_bytes``, ``sha256``, ``oldest_uploaded``, ``newest_uploaded``,
    ``account_id``, ``sort_order``, ``per_page``, ``creator``, ``uploaded_after``,
    ``uploaded_before``, ``max_images``, ``fields``, ``requests`` and ``listed_at``.

    The upload-time window is half-open, ``uploaded_after <= uploaded < uploaded_before``,
    so ``{{ data_interval_start }}`` .. ``{{ data_interval_end }}`` gives consecutive runs
    that neither overlap nor leave gaps.

    :param cloudflare_images_conn_id: the ``cloudflare_images`` connection. (templated)
    :param account_id: the 32-hex account id, instead of the connection's. (templated)
    :param per_page: images per request, 10..10000. (templated)
    :param sort_order: ``desc`` (newest first) or ``asc``; the order of the output.
        (templated)
    :param uploaded_after: keep images uploaded at or after this instant. (templated)
    :param uploaded_before: keep images uploaded strictly before this instant. (templated)
    :param creator: only images with this creator. (templated)
    :param max_images: stop after this many images. (templated)
    :param fields: keep only these keys of each image, in this order (a list, or
        comma-separated text); in CSV they are the columns. (templated)
    :param output_path: write the inventory here instead of returning it: an absolute
        local path or any URI ``airflow.sdk.ObjectStoragePath`` accepts, such as
        ``s3://aws_default@bucket/cf/{{ ds }}.jsonl.gz``; a ``.gz`` suffix gzips it.
        (templated)
    :param output_format: ``jsonl``, ``csv`` or ``json``; by default inferred from
        ``output_path``'s suffix, else ``jsonl``. (templated)
    :param max_xcom_images: without ``output_path``, the most images returned to XCom.
    :param log_every_seconds: log progress at most this often (the first page always).
    :param max_requests_per_minute: a client-side request budget: requests are spaced evenly
        so that at most this many start per minute (Cloudflare allows 1200 requests per 5
        minutes per user, shared by every client of that user); overrides the connection
        extra of the same name. ``None`` (the default) uses the connection's, if any.
    """

    template_fields: Sequence[str] = (
        "cloudflare_images_conn_id",
        "account_id",
        "per_page",
        "sort_order",
        "uploaded_after",
        "uploaded_before",
        "creator",
        "max_images",
        "fields",
        "output_path",
        "output_format",
    )
    template_fields_renderers = {"fields": "json"}
    ui_color = "#f6821f"

    def __init__(
        self,
        *,
        cloudflare_images_conn_id: str = CloudflareImagesHook.default_conn_name,
        account_id: str | None = None,
        per_page: int | str = DEFAULT_PER_PAGE,
        sort_order: str = "desc",
        uploaded_after: str | dt.datetime | None = None,
        uploaded_before: str | dt.datetime | None = None,
        creator: str | None = None,
        max_images: int | str | None = None,
        fields: Sequence[str] | str | None = None,
        output_path: str | None = None,
        output_format: str | None = None,
        max_xcom_images: int = DEFAULT_MAX_XCOM_IMAGES,
        log_every_seconds: float = DEFAULT_LOG_EVERY_SECONDS,
        max_requests_per_minute: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cloudflare_images_conn_id = cloudflare_images_conn_id
        self.account_id = account_id
        self.per_page = per_page
        self.sort_order = sort_order
        self.uploaded_after = uploaded_after
        self.uploaded_before = uploaded_before
        self.creator = creator
        self.max_images = max_images
        self.fields = fields
        self.output_path = output_path
        self.output_format = output_format
        self.max_xcom_images = check_whole("max_xcom_images", max_xcom_images, minimum=1)
        self.log_every_seconds = _check_seconds(log_every_seconds)
        self.max_requests_per_minute = _check_rate(max_requests_per_minute)
        # Whatever is already known is checked now, so a broken DAG fails at parse time.
        self._plan(rendered=False)

    @cached_property
    def hook(self) -> CloudflareImagesHook:
        """The hook, built on first use (after templates are rendered)."""
        return CloudflareImagesHook(
            self.cloudflare_images_conn_id,
            account_id=self.account_id or None,
            max_requests_per_minute=self.max_requests_per_minute,
        )

    def execute(self, context: Context) -> list[dict[str, Any]] | dict[str, Any]:
        plan = self._plan(rendered=True)
        if plan.target is not None:
            plan.target.check_filesystem()
        try:
            with paused_gc():
                if plan.target is None:
                    return self._list_into_xcom(plan)
                return self._export(plan, plan.target)
        finally:
            if "hook" in self.__dict__:
                self.hook.close()

    def on_kill(self) -> None:
        # Only a hook that exists can be listing; building one here would be pointless.
        if "hook" in self.__dict__:
            self.log.info("Kill requested: stopping the listing at the next request.")
            self.hook.cancel()

    # -- the two modes -------------------------------------------------------------------

    def _list_into_xcom(self, plan: _ListingPlan) -> list[dict[str, Any]]:
        images: list[dict[str, Any]] = []
        progress = ListingProgress(self.log, self.log_every_seconds)
        for page in self.hook.iter_pages(query=plan.query):
            if plan.fields:
                images.extend(keep_fields(image, plan.fields) for image in page.images)
            else:
                images.extend(page.images)
            progress.page(page.number, len(images))
            if len(images) > self.max_xcom_images:
                raise CloudflareImagesError(
                    f"The listing reached {len(images)} images after {page.number} page(s), "
                    f"more than max_xcom_images={self.max_xcom_images} can return through "
                    "XCom; stopped listing. Set output_path to export the "
                    "inventory to a file or object store (for example "
                    "output_path='s3://aws_default@bucket/cf/{{ ds }}.jsonl.gz'), or narrow "
                    "the listing with max_images, uploaded_after/uploaded_before or creator."
                )
        progress.summary(len(images), self.hook.transport.requests_sent, "XCom")
        return images

    def _export(self, plan: _ListingPlan, target: InventoryTarget) -> dict[str, Any]:
        listed_at = dt.datetime.now(dt.timezone.utc).isoformat()
        progress = ListingProgress(self.log, self.log_every_seconds)
        with InventoryWriter(target, fields=plan.fields) as writer:
            self.log.info("Exporting to %s via %s", target.uri, writer.temp_path)
            if writer.copies_json:
                for json_page in self.hook.iter_json_pages(query=plan.query):
                    writer.write_json_page(json_page.images, json_page.uploaded)
                    progress.page(json_page.number, writer.count)
            else:
                for page in self.hook.iter_pages(query=plan.query):
                    writer.write_page(page.images)
                    progress.page(page.number, writer.count)
            written = writer.commit()
        requests = self.hook.transport.requests_sent
        progress.summary(written.count, requests, written.path, nbytes=written.bytes)
        manifest = InventoryManifest.describe(
            written,
            query=plan.query,
            account_id=self.hook.account_id,
            fields=plan.fields,
            requests=requests,
            listed_at=listed_at,
        )
        return manifest.to_dict()

    # -- arguments -----------------------------------------------------------------------

    def _plan(self, *, rendered: bool) -> _ListingPlan:
        """Check the arguments; before rendering, those still templated are skipped."""

        def known(value: Any) -> bool:
            return rendered or not is_unrendered(value)

        if known(self.account_id):
            validate_account_id(self.account_id, source="account_id")
        if known(self.cloudflare_images_conn_id):
            _check_conn_id(self.cloudflare_images_conn_id)
        query_args = {
            name: getattr(self, name) if known(getattr(self, name)) else placeholder
            for name, placeholder in _QUERY_PLACEHOLDERS.items()
        }
        max_images = query_args.pop("max_images")
        query = ImageQuery.build(**query_args, limit=max_images, limit_name="max_images")
        fields = check_fields(self.fields) if known(self.fields) else None
        target = self._target() if known(self.output_path) and known(self.output_format) else None
        return _ListingPlan(query, fields, target)

    def _target(self) -> InventoryTarget | None:
        if self.output_path is None:
            if self.output_format is not None:
                raise CloudflareImagesConfigError(
                    f"output_format={self.output_format!r} needs output_path: without it the "
                    "images are returned to XCom, not written to a file."
                )
            return None
        return InventoryTarget.parse(self.output_path, self.output_format)


class ListingProgress:
    """Progress lines for the task log: per page at most every few seconds, then a summary.

    :param logger: the task's logger.
    :param every_seconds: the least time between two page lines (the first page always logs).
    :param clock: a monotonic clock, replaceable in tests.
    """

    def __init__(
        self,
        logger: logging.Logger | Any,
        every_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.every_seconds = every_seconds
        self.clock = clock
        self.started = clock()
        self._last_logged: float | None = None

    def page(self, number: int, images: int) -> None:
        """Note that page ``number`` is done, with ``images`` kept so far.

        :param number: the page number (1-based).
        :param images: images kept so far.
        """
        now = self.clock()
        if self._last_logged is not None and now - self._last_logged < self.every_seconds:
            return
        self._last_logged = now
        self.logger.info(
            "Listed page %d: %d images so far (%.0f images/s)",
            number,
            images,
            images / max(now - self.started, 1e-9),
        )

    def summary(self, images: int, requests: int, destination: str, nbytes: int = 0) -> None:
        """Log the final line.

        :param images: images kept.
        :param requests: HTTP requests sent.
        :param destination: where the images went (a path, or ``XCom``).
        :param nbytes: bytes written, for exports.
        """
        elapsed = self.clock() - self.started
        written = f", {nbytes} bytes" if nbytes else ""
        self.logger.info(
            "Listed %d images with %d requests in %.1f s (%.0f images/s) into %s%s",
            images,
            requests,
            elapsed,
            images / max(elapsed, 1e-9),
            destination,
            written,
        )


def _check_conn_id(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise CloudflareImagesConfigError(
            f"cloudflare_images_conn_id must be a connection id; got {value!r}."
        )


def _check_rate(value: Any) -> float | None:
    if value is None:
        return None
    return check_positive(
        "max_requests_per_minute",
        value,
        expected="a positive number of requests per minute (Cloudflare allows 1200 per 5 "
        "minutes, 240 a minute) or None",
    )


def _check_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise CloudflareImagesConfigError(
            f"log_every_seconds must be a number of seconds >= 0; got {value!r}."
        )
    return float(value)


# The reconcile and delete operators live in their own module; this is their public path
# (``airflow_provider_cfimages.operators.images``), next to the list operator.
from airflow_provider_cfimages.operators.reconcile import (  # noqa: E402
    CloudflareImagesDeleteOperator,
    CloudflareImagesReconcileOperator,
    ReconcileMismatchError,
)

__all__ = [
    "CloudflareImagesDeleteOperator",
    "CloudflareImagesListOperator",
    "CloudflareImagesReconcileOperator",
    "ReconcileMismatchError",
]

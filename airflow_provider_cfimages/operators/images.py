"""Operators that list, reconcile and clean up a Cloudflare Images account's inventory.

:class:`CloudflareImagesListOperator` lists (or exports) the inventory.
:class:`CloudflareImagesReconcileOperator` compares the keys a user's database or manifest
expects with the live inventory (listed fresh, or read from a list operator's export) and
reports what is missing, unexpected (orphans, still billed), drifted (metadata) or
duplicated. :class:`CloudflareImagesDeleteOperator` deletes the orphans it reported, behind a
required cap, a dry run and an upload-time guard.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from airflow.sdk import BaseOperator

from airflow_provider_cfimages.exceptions import (
    CloudflareImagesAPIError,
    CloudflareImagesConfigError,
    CloudflareImagesError,
    CloudflareImagesRateLimitError,
    image_not_found,
    short_repr,
)
from airflow_provider_cfimages.hooks.connection import validate_account_id
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook
from airflow_provider_cfimages.hooks.query import (
    DEFAULT_PER_PAGE,
    EmptyWindowError,
    ImageQuery,
    parse_instant,
)
from airflow_provider_cfimages.inventory import (
    InventoryManifest,
    InventoryTarget,
    InventoryWriter,
    check_fields,
    keep_fields,
)
from airflow_provider_cfimages.inventory.reader import (
    InventoryReader,
    InventorySource,
    export_from_manifest,
    looks_like_path,
)
from airflow_provider_cfimages.reconcile.engine import (
    DEFAULT_SAMPLE_SIZE,
    UNEXPECTED,
    Reconciler,
    ReconcileSummary,
    actual_records,
    expected_records,
)
from airflow_provider_cfimages.reconcile.sql import (
    ExpectedQuery,
    check_expected_sql,
    check_parameters,
)
from airflow_provider_cfimages.utils.asset_events import attach_to_outlets
from airflow_provider_cfimages.utils.openlineage import (
    account_dataset,
    operator_lineage,
    storage_dataset,
)
from airflow_provider_cfimages.utils.templates import ExplainsUndefinedTemplates
from airflow_provider_cfimages.utils.timestamps import parse_uploaded
from airflow_provider_cfimages.utils.validation import (
    check_flag,
    check_positive,
    check_whole,
    is_unrendered,
)

if TYPE_CHECKING:
    import datetime as dt

    from airflow.sdk import Context

DEFAULT_MAX_XCOM_IMAGES = 1000
DEFAULT_MAX_CONCURRENCY = 16
MAX_CONCURRENCY = 64
# Images handed to the thread pool ahead of the one whose outcome is awaited, per thread:
# enough to keep every thread busy, few enough that a stop leaves little queued.
_QUEUED_PER_THREAD = 2
# Codes of a batch-token refusal that are about the credentials themselves (the global API
# would refuse every delete the same way), not about a missing permission.
_BAD_CREDENTIAL_CODES = frozenset({9109, 9106, 9103, 6003, 6103, 6111})
DEFAULT_LOG_EVERY_SECONDS = 10.0
# What a templated listing argument stands for while it is still unrendered (in __init__).
_QUERY_PLACEHOLDERS: dict[str, Any] = {
    "per_page": DEFAULT_PER_PAGE,
    "sort_order": "desc",
    "uploaded_after": None,
    "uploaded_before": None,
    "creator": None,
    "max_images": None,
    "meta_filters": None,
}


class _ListingPlan(NamedTuple):
    """Checked arguments: what to list, which keys to keep, and where to write (if anywhere)."""

    query: ImageQuery
    fields: tuple[str, ...] | None
    target: InventoryTarget | None


class CloudflareImagesListOperator(ExplainsUndefinedTemplates, BaseOperator):
    """List a Cloudflare Images account's images: into XCom, or exported to a file.

    Without ``output_path`` the images (after ``fields``) are returned to XCom; past
    ``max_xcom_images`` the task fails before listing further and says to set
    ``output_path``. With ``output_path`` the inventory is streamed page by page into a
    temporary object next to it, renamed into place at the end (so the path only ever
    holds a complete file, and a re-run replaces it), and a manifest is returned:
    ``path``, ``format``, ``compression``, ``count``, ``pages``, ``bytes``,
    ``uncompressed_bytes``, ``sha256``, ``oldest_uploaded``, ``newest_uploaded``,
    ``account_id``, ``sort_order``, ``per_page``, ``creator``, ``uploaded_after``,
    ``uploaded_before``, ``max_images``, ``fields``, ``requests``, ``listed_at`` and
    ``meta_filters``.

    The upload-time window is half-open, ``uploaded_after <= uploaded < uploaded_before``,
    so ``{{ data_interval_start }}`` .. ``{{ data_interval_end }}`` gives consecutive runs
    that neither overlap nor leave gaps, on a data-interval timetable
    (``CronDataIntervalTimetable``): a cron string schedule has zero-length intervals in
    Airflow 3, and equal bounds are rejected with an error that says so. A run triggered
    by hand has no data interval: a bound templated from a value the run does not have
    fails the task (without retries) naming the argument. With ``settle``, the window is held
    back by that much (both bounds, so consecutive runs still tile time): an image that shows up in
    listings after its ``uploaded`` time (a direct creator upload completes later) is still
    inside a window that has not been exported yet.

    When the task has ``outlets``, each ``Asset`` event it emits carries the manifest (or,
    without ``output_path``, ``count`` and ``account_id``) as its ``extra``. With the
    OpenLineage provider installed, the task reports the account as its input and the
    exported file (never its temporary object) as its output.

    :param cloudflare_images_conn_id: the ``cloudflare_images`` connection. (templated)
    :param account_id: the 32-hex account id, instead of the connection's. (templated)
    :param per_page: images per request, 10..10000; the API's pages hold at most 1000
        whatever is asked, so the default 1000 means 1,000 requests per million images.
        (templated)
    :param sort_order: ``desc`` (newest first) or ``asc``; the order of the output.
        (templated)
    :param uploaded_after: keep images uploaded at or after this instant. (templated)
    :param uploaded_before: keep images uploaded strictly before this instant. (templated)
    :param creator: only images with this creator; ``""`` for images without a creator.
        (templated)
    :param max_images: stop after this many images. (templated)
    :param meta_filters: only images whose metadata matches, filtered by the API: a mapping
        of field path to a value (equality), a list (``in``, at most 10 values) or a mapping
        of operators (``eq``, ``gt``, ``gte``, ``lt``, ``lte``, ``in``) to values; at most 5
        filters, e.g. ``{"status": "ready", "size": {"gte": 100, "lt": 1300}}``. (templated)
    :param fields: keep only these keys of each image, in this order (a list, or
        comma-separated text); in CSV they are the columns. (templated)
    :param output_path: write the inventory here instead of returning it: an absolute
        local path or any URI ``airflow.sdk.ObjectStoragePath`` accepts, such as
        ``s3://aws_default@bucket/cf/{{ ds }}.jsonl.gz``; a ``.gz`` suffix gzips it; a
        ``.parquet`` suffix writes Parquet with typed columns (needs the ``parquet`` extra;
        see :mod:`airflow_provider_cfimages.inventory.parquet`). (templated)
    :param output_format: ``jsonl``, ``csv``, ``json`` or ``parquet``; by default inferred
        from ``output_path``'s suffix, else ``jsonl``. (templated)
    :param max_xcom_images: without ``output_path``, the most images returned to XCom.
    :param log_every_seconds: log progress at most this often (the first page always).
    :param max_requests_per_minute: a client-side request budget: requests are spaced evenly
        so that at most this many start per minute (Cloudflare allows 1200 requests per 5
        minutes per user, shared by every client of that user); overrides the connection
        extra of the same name. ``None`` (the default) uses the connection's, if any.
    :param settle: hold the upload-time window back by this much (a ``timedelta`` or
        seconds): ``uploaded_after - settle <= uploaded < uploaded_before - settle``. Needs
        ``uploaded_after`` or ``uploaded_before``. The manifest records the window listed.
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
        "meta_filters",
        "fields",
        "output_path",
        "output_format",
    )
    template_fields_renderers = {"fields": "json", "meta_filters": "json"}
    bound_fields = ("uploaded_after", "uploaded_before")
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
        meta_filters: Mapping[str, Any] | str | None = None,
        fields: Sequence[str] | str | None = None,
        output_path: str | None = None,
        output_format: str | None = None,
        max_xcom_images: int = DEFAULT_MAX_XCOM_IMAGES,
        log_every_seconds: float = DEFAULT_LOG_EVERY_SECONDS,
        max_requests_per_minute: float | None = None,
        settle: dt.timedelta | float | None = None,
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
        self.meta_filters = meta_filters
        self.fields = fields
        self.output_path = output_path
        self.output_format = output_format
        self.max_xcom_images = check_whole("max_xcom_images", max_xcom_images, minimum=1)
        self.log_every_seconds = _check_seconds(log_every_seconds)
        self.max_requests_per_minute = _check_rate(max_requests_per_minute)
        self.settle = check_settle(settle)
        self._lineage: tuple[str, str | None] | None = None
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
        try:
            plan = self._plan(rendered=True)
        except EmptyWindowError as err:
            raise CloudflareImagesConfigError(
                str(EmptyWindowError(err.instant, timetable=_timetable_of(self)))
            ) from None
        if plan.target is not None:
            plan.target.check_filesystem()
        try:
            if plan.target is None:
                images = self._list_into_xcom(plan)
                self._lineage = (self.hook.account_id, None)
                summary = {"count": len(images), "account_id": self.hook.account_id}
                attach_to_outlets(context, self.outlets, summary)
                return images
            manifest = self._export(plan, plan.target)
            self._lineage = (manifest["account_id"], manifest["path"])
            attach_to_outlets(context, self.outlets, manifest)
            return manifest
        finally:
            if "hook" in self.__dict__:
                self.hook.close()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the account listed is the input, the exported file the output.

        :param task_instance: the finished task instance (unused: the run is described by
            what ``execute`` recorded).
        """
        if self._lineage is None:
            return operator_lineage([], [])
        account_id, path = self._lineage
        outputs = [storage_dataset(path)] if path else []
        return operator_lineage([account_dataset(account_id)], outputs)

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
                    "the listing with max_images, uploaded_after/uploaded_before, creator or "
                    "meta_filters."
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
        if self.settle is not None and (
            rendered or (known(self.uploaded_after) and known(self.uploaded_before))
        ):
            query = settled(query, self.settle)
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


def _timetable_of(task: BaseOperator) -> str | None:
    """The task's DAG's timetable in words (``CronTriggerTimetable('0 * * * *')``)."""
    timetable = getattr(task.dag, "timetable", None) if task.has_dag() else None
    if timetable is None:
        return None
    expression = getattr(timetable, "expression", None) or getattr(timetable, "_expression", None)
    name = type(timetable).__name__
    return f"{name}({expression!r})" if isinstance(expression, str) else name


def _check_conn_id(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise CloudflareImagesConfigError(
            f"cloudflare_images_conn_id must be a connection id; got {value!r}."
        )


def check_settle(value: Any) -> dt.timedelta | None:
    """Check ``settle``: ``None``, a ``timedelta`` or a number of seconds, not negative.

    :param value: the argument.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = dt.timedelta(seconds=value)
    if not isinstance(value, dt.timedelta) or value < dt.timedelta(0):
        raise CloudflareImagesConfigError(
            "settle must be a timedelta or a number of seconds >= 0 (how long images may "
            f"take to show up in listings after their upload time); got {value!r}."
        )
    return value


def settled(query: ImageQuery, settle: dt.timedelta) -> ImageQuery:
    """The query with its upload-time window held back by ``settle`` (both bounds).

    :param query: a query with ``uploaded_after`` and/or ``uploaded_before``.
    :param settle: how far back to move the window.
    """
    if not query.has_window:
        raise CloudflareImagesConfigError(
            "settle holds the upload-time window back, but there is no window: set "
            "uploaded_after and/or uploaded_before (e.g. {{ data_interval_start }} and "
            "{{ data_interval_end }})."
        )
    return dataclasses.replace(
        query,
        uploaded_after=None if query.uploaded_after is None else query.uploaded_after - settle,
        uploaded_before=None if query.uploaded_before is None else query.uploaded_before - settle,
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


RECONCILE_KEYS = ("id", "filename")
# Manifest entries that say an export holds part of the account only.
_NARROWING_ARGUMENTS = (
    "creator",
    "uploaded_after",
    "uploaded_before",
    "max_images",
    "meta_filters",
)
EXPORT_FORMATS = ("jsonl", "csv", "json", "parquet")
# Cloudflare error codes that fail every request the same way, not just one image's.
_ACCOUNT_WIDE_CODES = frozenset({10000, 9109, 9106, 6003, 6103, 6111, 5403, 7003})


class ReconcileMismatchError(CloudflareImagesError):
    """``fail_on_drift`` is set and the inventory differs from what was expected."""


class CloudflareImagesReconcileOperator(BaseOperator):
    """Compare the images a system of record expects with those the account holds.

    The expected side is a list of keys (or records, or SQL result rows), an upstream task's
    XCom, or a file; the live side is listed fresh through the hook (newest first, so an
    upload made while it lists is not taken for an orphan), or read from an export made by
    ``CloudflareImagesListOperator`` (pass its manifest), so a DAG lists only once.
    Up to millions of keys a side are compared in bounded memory (see
    :mod:`airflow_provider_cfimages.reconcile.engine`).

    With ``expected_sql`` the expected side is a query on any database connection whose hook
    is a ``common.sql`` ``DbApiHook`` (the ``sql`` extra), its rows streamed (see
    :mod:`airflow_provider_cfimages.reconcile.sql`): the first column is the key unless
    ``expected_field`` names one, and ``expected_meta`` may name the column holding the meta.

    Returns a small summary: ``key``, ``expected`` and ``actual`` (records read),
    ``matched``, ``missing_count``, ``unexpected_count``, ``drifted_count``,
    ``duplicate_expected_count``, ``duplicate_actual_count``, ``in_sync``, the first
    ``sample_size`` keys (sorted) of each kind under ``missing``, ``unexpected``,
    ``drifted``, ``duplicate_expected`` and ``duplicate_actual``, and ``report_path`` /
    ``report_rows``. With ``report_path``, every difference is written there as a JSON
    line with a ``kind`` (written atomically: the path holds a complete report or nothing).

    When the task has ``outlets``, each ``Asset`` event carries the summary as its
    ``extra``. With the OpenLineage provider installed, the task reports the expected file
    (when ``expected`` is one) and the inventory (the export read, or the account listed) as
    its inputs and the report as its output.

    :param expected: the keys to expect: a list (of keys, of dicts holding the key under
        ``expected_field``, or of SQL rows whose first column is the key), an ``XComArg``,
        or an absolute path / ``ObjectStoragePath`` URI to a ``.txt`` (one key per line),
        ``.csv``, ``.jsonl`` or ``.json`` file, optionally ``.gz``. Give either this or
        ``expected_sql``. (templated)
    :param expected_sql: the expected side as a query (or a ``.sql`` file) run on
        ``expected_conn_id``, instead of ``expected``. (templated)
    :param expected_conn_id: the database connection ``expected_sql`` runs on: any connection
        whose hook is a ``common.sql`` ``DbApiHook``. (templated)
    :param parameters: bind parameters of ``expected_sql``, in the driver's paramstyle
        (``%(name)s`` for PostgreSQL and MySQL, ``:name`` for SQLite). (templated)
    :param key: what identifies an image on both sides: ``id`` or ``filename``.
    :param expected_field: the field or CSV column holding the key in expected records;
        defaults to ``key`` (with ``expected_sql``: the column; the first by default).
        (templated)
    :param expected_meta: compare metadata too: a mapping of key to the ``meta`` object the
        image should have, or the name of the field / CSV column of the expected records
        holding it (a JSON object, or its text; with ``expected_sql``, a JSON or text column).
        Keys without an expected meta are not compared. (templated)
    :param actual_from: the live side, instead of listing: the manifest a
        ``CloudflareImagesListOperator`` with ``output_path`` returns (its XCom), the path
        of such an export, or the list of images it returns without ``output_path``.
        (templated)
    :param report_path: write the full report (JSON Lines, ``.gz`` to gzip) here: an
        absolute local path or an ``ObjectStoragePath`` URI. (templated)
    :param sample_size: keys of each kind kept in the summary.
    :param fail_on_drift: fail the task, after writing the report and pushing the summary,
        when anything differs, so Airflow's failure callbacks and alerts fire.
    :param allow_empty_expected: accept an empty expected side. By default it fails the
        task before listing, since an upstream query that returned nothing would make every
        image look unexpected.
    :param cloudflare_images_conn_id: the ``cloudflare_images`` connection. (templated)
    :param account_id: the 32-hex account id, instead of the connection's. (templated)
    :param creator: when listing, only images with this creator; ``""`` for images
        without one. (templated)
    :param meta_filters: when listing, only images whose metadata matches, filtered by the
        API (as on :class:`CloudflareImagesListOperator`); expected keys outside the filter
        are reported missing. (templated)
    :param per_page: when listing, images per request, 10..10000 (pages hold at most 1000).
    """

    template_fields: Sequence[str] = (
        "expected",
        "expected_sql",
        "expected_conn_id",
        "parameters",
        "expected_field",
        "expected_meta",
        "actual_from",
        "report_path",
        "cloudflare_images_conn_id",
        "account_id",
        "creator",
        "meta_filters",
    )
    template_fields_renderers = {
        "expected": "json",
        "expected_sql": "sql",
        "parameters": "json",
        "expected_meta": "json",
        "actual_from": "json",
        "meta_filters": "json",
    }
    template_ext: Sequence[str] = (".sql",)
    ui_color = "#f6821f"

    def __init__(
        self,
        *,
        expected: Any = None,
        expected_sql: str | None = None,
        expected_conn_id: str | None = None,
        parameters: Mapping[str, Any] | Sequence[Any] | None = None,
        key: str = "id",
        expected_field: str | None = None,
        expected_meta: Mapping[str, Any] | str | None = None,
        actual_from: Any = None,
        report_path: str | None = None,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        fail_on_drift: bool = False,
        allow_empty_expected: bool = False,
        cloudflare_images_conn_id: str = CloudflareImagesHook.default_conn_name,
        account_id: str | None = None,
        creator: str | None = None,
        meta_filters: Mapping[str, Any] | str | None = None,
        per_page: int = DEFAULT_PER_PAGE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.expected = expected
        self.expected_sql = expected_sql
        self.expected_conn_id = expected_conn_id
        self.parameters = parameters
        self.key = key
        self.expected_field = expected_field
        self.expected_meta = expected_meta
        self.actual_from = actual_from
        self.report_path = report_path
        self.sample_size = check_whole("sample_size", sample_size, minimum=0)
        self.fail_on_drift = check_flag("fail_on_drift", fail_on_drift)
        self.allow_empty_expected = check_flag("allow_empty_expected", allow_empty_expected)
        self.cloudflare_images_conn_id = cloudflare_images_conn_id
        self.account_id = account_id
        self.creator = creator
        self.meta_filters = meta_filters
        self.per_page = per_page
        if key not in RECONCILE_KEYS:
            raise CloudflareImagesConfigError(
                f"key must be 'id' or 'filename' (what identifies an image on both sides); "
                f"got {key!r}."
            )
        # Whatever is already known is checked now, so a broken DAG fails at parse time.
        self._check_arguments(rendered=False)

    @cached_property
    def hook(self) -> CloudflareImagesHook:
        """The hook, built on first use (after templates are rendered)."""
        return CloudflareImagesHook(
            self.cloudflare_images_conn_id, account_id=self.account_id or None
        )

    def execute(self, context: Context) -> dict[str, Any]:
        query = self._check_arguments(rendered=True)
        target = _report_target(self.report_path)
        if target is not None:
            target.check_filesystem()
        reconciler = Reconciler(
            key=self.key, compare_meta=self._meta_mode is not None, sample_size=self.sample_size
        )
        if self.expected_sql:
            self._expected_query.check_connection()
        expected = _NonEmpty(self._expected_records())
        actual = self._actual_records(query, expected)
        try:
            if target is None:
                summary = reconciler.run(expected, actual)
                result = _summary_dict(summary, None, None)
            else:
                with InventoryWriter(target) as writer:
                    summary = reconciler.run(expected, actual, sink=writer.write_page)
                    written = writer.commit()
                result = _summary_dict(summary, written.path, written.count)
        finally:
            if "hook" in self.__dict__:
                self.hook.close()
        self._log_summary(result, reconciler.disk_bytes)
        self._lineage = self._lineage_datasets(result)
        attach_to_outlets(context, self.outlets, result)
        if self.fail_on_drift and not summary.in_sync:
            # Pushed before failing, so callbacks and all_done tasks can still read it.
            if ti := context.get("ti"):
                ti.xcom_push(key="return_value", value=result)
            raise ReconcileMismatchError(_mismatch_message(result))
        return result

    def on_kill(self) -> None:
        if "hook" in self.__dict__:
            self.log.info("Kill requested: stopping the listing at the next request.")
            self.hook.cancel()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the expected file or table and the inventory in, the report out.

        :param task_instance: the finished task instance (unused: the run is described by
            what ``execute`` recorded).
        """
        inputs, outputs = getattr(self, "_lineage", None) or ((), ())
        return operator_lineage(
            [*self.expected_lineage_inputs(), *(_lineage_dataset(item) for item in inputs)],
            [_lineage_dataset(item) for item in outputs],
        )

    def _lineage_datasets(
        self, result: Mapping[str, Any]
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """What the run read and wrote, as ``("file", uri)`` / ``("account", id)`` pairs."""
        inputs: list[tuple[str, str]] = []
        if looks_like_path(self.expected):
            inputs.append(("file", str(self.expected)))
        source = self.actual_from
        if isinstance(source, Mapping) and source.get("path"):
            inputs.append(("file", str(source["path"])))
        elif looks_like_path(source):
            inputs.append(("file", str(source)))
        elif "hook" in self.__dict__:  # listed live, or given the images of a listing
            inputs.append(("account", self.hook.account_id))
        outputs = [("file", result["report_path"])] if result.get("report_path") else []
        return inputs, outputs

    # -- the two sides -------------------------------------------------------------------

    @property
    def _meta_mode(self) -> str | None:
        """``mapping``, ``field``, or ``None`` when metadata is not compared."""
        if self.expected_meta is None or self.expected_meta == "":
            return None
        return "mapping" if isinstance(self.expected_meta, Mapping) else "field"

    @cached_property
    def _expected_query(self) -> ExpectedQuery:
        """The ``expected_sql`` side, from the rendered arguments."""
        return ExpectedQuery(
            conn_id=self.expected_conn_id or "",
            sql=self.expected_sql or "",
            parameters=self.parameters,
            key_column=self.expected_field or None,
            meta_column=self.expected_meta if self._meta_mode == "field" else None,
        )

    def expected_lineage_inputs(self) -> list[Any]:
        """OpenLineage input datasets of the expected side: the tables ``expected_sql`` reads
        (empty for other expected sides, or when they cannot be told)."""
        if not self.expected_sql or not self.expected_conn_id:
            return []
        return self._expected_query.lineage_inputs()

    def _expected_records(self) -> Iterator[tuple[str, bytes | None]]:
        meta_field = self.expected_meta if self._meta_mode == "field" else None
        metas = self.expected_meta if self._meta_mode == "mapping" else None
        if self.expected_sql:
            self.log.info("Reading the expected keys: expected_sql on %s", self.expected_conn_id)
            return self._expected_query.records(metas=metas)
        values = self._expected_values(meta_field)
        return expected_records(
            values,
            key_field=self.expected_field or self.key,
            meta_field=meta_field,
            metas=metas,
            parameter="expected",
        )

    def _expected_values(self, meta_field: str | None) -> Iterable[Any]:
        if looks_like_path(self.expected):
            source = InventorySource.parse(self.expected, parameter="expected")
            if meta_field is not None and source.format == "txt":
                raise CloudflareImagesConfigError(
                    f"expected_meta={meta_field!r} names a field, but expected is a .txt file "
                    "of bare keys; use a .csv, .jsonl or .json file with that field, or pass "
                    "expected_meta as a mapping of key to meta."
                )
            self.log.info("Reading the expected keys from %s", source.uri)
            return InventoryReader(source).records()
        return self.expected

    def _actual_records(
        self, query: ImageQuery, expected: _NonEmpty
    ) -> Iterator[tuple[str, str | None, str | None, bytes | None]]:
        # The engine reads the expected side to its end before it starts on this one.
        if not expected.seen_any and not self.allow_empty_expected:
            source = "expected_sql returned no rows" if self.expected_sql else "expected is empty"
            raise CloudflareImagesConfigError(
                f"{source}: an upstream query or file that returned nothing would make "
                "every image look unexpected. Fix the source, or set allow_empty_expected=True "
                "if an empty inventory is really expected."
            )
        yield from actual_records(
            self._live_images(query), key=self.key, compare_meta=self._meta_mode is not None
        )

    def _live_images(self, query: ImageQuery) -> Iterator[dict[str, Any]]:
        source = self.actual_from
        if source is None:
            self.log.info("Listing the account's images (per_page=%d)", query.per_page)
            yield from self.hook.iter_images(query=query)
        elif isinstance(source, Mapping):
            export, expectation = export_from_manifest(source, parameter="actual_from")
            self._check_export_manifest(source)
            self.log.info("Reading the live inventory from the export %s", export.uri)
            yield from InventoryReader(export).images(expectation)
        elif looks_like_path(source):
            export = InventorySource.parse(source, parameter="actual_from", allowed=EXPORT_FORMATS)
            self.log.info("Reading the live inventory from %s", export.uri)
            yield from InventoryReader(export).images()
        else:
            yield from source

    def _check_export_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Refuse an export that lacks needed fields; warn about one that lists a part only."""
        fields = manifest.get("fields")
        needed = {"id", self.key} | ({"meta"} if self._meta_mode else set())
        if fields and not needed <= set(fields):
            raise CloudflareImagesConfigError(
                f"actual_from: the export kept only the fields {list(fields)}, but this "
                f"reconcile needs {sorted(needed)}; add them to the list task's fields."
            )
        narrowed = {
            name: manifest.get(name)
            for name in _NARROWING_ARGUMENTS
            if manifest.get(name) is not None
        }
        if narrowed:
            self.log.warning(
                "actual_from is an export of part of the account (%s): expected keys outside "
                "it will be reported as missing.",
                ", ".join(f"{name}={value}" for name, value in narrowed.items()),
            )

    # -- arguments -----------------------------------------------------------------------

    def _check_arguments(self, *, rendered: bool) -> ImageQuery:
        """Check the arguments; before rendering, those still templated are skipped."""

        def known(value: Any) -> bool:
            return rendered or not is_unrendered(value)

        if known(self.account_id):
            validate_account_id(self.account_id, source="account_id")
        if known(self.expected) and known(self.expected_sql):
            _check_one_expected_side(self.expected, self.expected_sql)
        if known(self.expected) and self.expected is not None:
            _check_expected(self.expected)
        if known(self.expected_sql) and known(self.expected_conn_id):
            check_expected_sql(self.expected_sql, self.expected_conn_id)
        if known(self.parameters):
            check_parameters(self.parameters)
        if known(self.expected_field) and self.expected_field is not None:
            _check_name("expected_field", self.expected_field)
        if known(self.expected_meta):
            _check_expected_meta(self.expected_meta)
        if known(self.actual_from):
            _check_actual_from(self.actual_from)
        if known(self.report_path):
            _report_target(self.report_path)
        creator = self.creator if known(self.creator) else None
        meta_filters = self.meta_filters if known(self.meta_filters) else None
        # Newest first: an image uploaded while the listing runs lands behind the cursor and
        # is not listed, so it cannot look unexpected (and be deleted) before the system of
        # record catches up; at worst a reference to it looks missing, which deletes nothing.
        return ImageQuery.build(
            per_page=self.per_page,
            sort_order="desc",
            creator=creator,
            meta_filters=meta_filters,
        )

    def _log_summary(self, result: dict[str, Any], disk_bytes: int) -> None:
        self.log.info(
            "Reconciled %d expected %s(s) with %d live images%s: %d matched, %d missing, "
            "%d unexpected, %d drifted, %d duplicated in expected, %d duplicated in actual.",
            result["expected"],
            self.key,
            result["actual"],
            f" ({disk_bytes // 1_000_000} MB of temporary disk)" if disk_bytes >= 1_000_000 else "",
            result["matched"],
            result["missing_count"],
            result["unexpected_count"],
            result["drifted_count"],
            result["duplicate_expected_count"],
            result["duplicate_actual_count"],
        )
        if result["report_path"]:
            self.log.info(
                "Wrote %d report rows to %s", result["report_rows"], result["report_path"]
            )


class _NonEmpty:
    """Passes records through, noting whether there was any."""

    def __init__(self, records: Iterable[Any]) -> None:
        self.records = records
        self.seen_any = False

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.records)
        for first in iterator:
            self.seen_any = True
            yield first
            # Delegating the rest costs nothing per record, unlike a loop here.
            yield from iterator


def _lineage_dataset(item: tuple[str, str]) -> Any:
    kind, value = item
    return account_dataset(value) if kind == "account" else storage_dataset(value)


def _summary_dict(
    summary: ReconcileSummary, report_path: str | None, report_rows: int | None
) -> dict[str, Any]:
    return {**summary.to_dict(), "report_path": report_path, "report_rows": report_rows}


def _mismatch_message(result: dict[str, Any]) -> str:
    where = f"; the report is at {result['report_path']}" if result["report_path"] else ""
    return (
        f"The inventory differs from what was expected: {result['missing_count']} missing "
        f"(e.g. {result['missing'][:3]}), {result['unexpected_count']} unexpected "
        f"(e.g. {result['unexpected'][:3]}), {result['drifted_count']} drifted, "
        f"{result['duplicate_expected_count']} duplicated in expected, "
        f"{result['duplicate_actual_count']} duplicated in the account{where}."
    )


def _report_target(report_path: Any) -> InventoryTarget | None:
    if report_path is None or report_path == "":
        return None
    try:
        target = InventoryTarget.parse(report_path, None)
    except CloudflareImagesConfigError as err:
        raise CloudflareImagesConfigError(str(err).replace("output_path", "report_path")) from None
    if target.format != "jsonl":
        raise CloudflareImagesConfigError(
            f"report_path is written as JSON Lines: end it in .jsonl or .jsonl.gz; "
            f"got {report_path!r}."
        )
    return target


def _check_expected(expected: Any) -> None:
    if looks_like_path(expected):
        InventorySource.parse(expected, parameter="expected")
        return
    if expected is None or isinstance(expected, (Mapping, bytes)) or not _iterable(expected):
        raise CloudflareImagesConfigError(
            "expected must be a list of keys (or of records, or SQL rows), an XComArg, or a "
            f"path to a .txt/.csv/.jsonl/.json file; got {type(expected).__name__}."
        )


def _check_one_expected_side(expected: Any, expected_sql: Any) -> None:
    given = expected is not None, expected_sql is not None and expected_sql != ""
    if all(given) or not any(given):
        raise CloudflareImagesConfigError(
            "Give exactly one expected side: expected (keys, records, an XComArg or a file) "
            "or expected_sql (a query on expected_conn_id); got "
            f"{'both' if all(given) else 'neither'}."
        )


def _check_expected_meta(expected_meta: Any) -> None:
    if expected_meta is None or isinstance(expected_meta, (Mapping, str)):
        return
    raise CloudflareImagesConfigError(
        "expected_meta must be a mapping of key to meta object, or the name of the field "
        f"holding each key's meta in the expected records; got {type(expected_meta).__name__}."
    )


def _check_actual_from(actual_from: Any) -> None:
    if actual_from is None or isinstance(actual_from, Mapping):
        return
    if looks_like_path(actual_from):
        InventorySource.parse(actual_from, parameter="actual_from", allowed=EXPORT_FORMATS)
        return
    if not _iterable(actual_from) or isinstance(actual_from, bytes):
        raise CloudflareImagesConfigError(
            "actual_from must be a list operator's manifest, the path of its export, or the "
            f"list of images it returned; got {type(actual_from).__name__}."
        )


@dataclasses.dataclass
class DeleteOutcome:
    """What happened to each image, with capped id samples for XCom.

    :param dry_run: nothing was deleted.
    :param sample_size: ids kept per outcome.
    """

    dry_run: bool
    sample_size: int
    requested: int = 0
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    samples: dict[str, list[Any]] = dataclasses.field(default_factory=dict)

    def note(self, outcome: str, sample: Any) -> None:
        """Count one image's outcome and keep it in the sample if there is room.

        :param outcome: ``deleted``, ``would_delete``, ``already_absent``, ``protected``
            or ``failed``.
        :param sample: the id (or, for failures, ``{"id", "error"}``).
        """
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        kept = self.samples.setdefault(outcome, [])
        if len(kept) < self.sample_size:
            kept.append(sample)

    def to_dict(self) -> dict[str, Any]:
        """The XCom value."""
        counts, samples = self.counts, self.samples
        return {
            "dry_run": self.dry_run,
            "requested": self.requested,
            "deleted": counts.get("deleted", 0),
            "would_delete": counts.get("would_delete", 0),
            "already_absent": counts.get("already_absent", 0),
            "protected": counts.get("protected", 0),
            "failed": counts.get("failed", 0),
            "deleted_ids": samples.get("deleted", []),
            "would_delete_ids": samples.get("would_delete", []),
            "already_absent_ids": samples.get("already_absent", []),
            "protected_ids": samples.get("protected", []),
            "failures": samples.get("failed", []),
        }


class ImageCalls(Protocol):
    """The per-image calls the delete operator makes: the hook's, or the batch API's."""

    def get_image(self, image_id: str) -> dict[str, Any]: ...

    def delete_image(self, image_id: str) -> bool: ...


#: images handed to the pool, oldest first, with their outcome to come
_Queue = deque[tuple[str, "Future[tuple[str, Any]]"]]


class _Stop(Exception):
    """An error that ends the whole task (raised again once the requests in flight end)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class CloudflareImagesDeleteOperator(BaseOperator):
    """Delete images by id, safely: a required cap, a dry run, and an upload-time guard.

    The ids come from a list, an upstream XCom, a reconcile report (its ``unexpected``
    rows), or the reconcile operator's summary (whose ``report_path`` is read). Every
    argument is checked and the ids collected before the first request; if there are more
    than ``max_deletes`` the task fails without deleting anything. An image already gone
    (404) counts as ``already_absent``, so re-runs are safe. Other per-image errors are
    counted in ``failed`` and, after the rest were tried, fail the task (unless
    ``fail_on_error`` is off); errors that would fail every image (authentication, a wrong
    account, a rate limit outlasting the retries) stop the task at once.

    Returns ``dry_run``, ``requested``, the counts ``deleted``, ``would_delete`` (dry run),
    ``already_absent``, ``protected`` and ``failed``, the first ``sample_size`` ids of each
    (``deleted_ids``, ...), and ``failures`` (``{"id", "error"}``).

    With ``older_than``, an image is deleted only if it was uploaded strictly before that
    instant; newer ones are counted as ``protected`` (in-flight uploads the system of record
    has not caught up with). The upload time is read live, with one "image details"
    request per image, never taken from a report row: an image deleted and uploaded again
    under the same custom id since the report was written is new, and is kept.

    The details and delete calls go through Cloudflare's Images batch API by default: they
    then do not count toward the account's rate limit (1200 requests per 5 minutes, shared
    with every other client), and up to ``max_concurrency`` run at once. If no batch token
    can be issued (the token lacks the permission), the task warns once and uses the global
    API, paced by its rate-limit headers. The first image is handled alone, so a wrong
    connection fails on one request rather than on ``max_concurrency`` of them.

    :param image_ids: the images to delete: a list of ids (or of report rows), an
        ``XComArg``, the path of a reconcile report (``.jsonl``, ``.csv``, ``.json``,
        optionally ``.gz``; rows with a ``kind`` are used only if it is ``unexpected``) or of
        a ``.txt`` of ids, or a reconcile summary. (templated)
    :param max_deletes: required: the most images this task may delete; with more ids than
        that (counting those ``older_than`` would protect) the task fails before deleting
        anything. (templated)
    :param dry_run: log and return what would be deleted, deleting nothing. (templated)
    :param older_than: never delete an image uploaded at or after this instant (anything
        pendulum parses, a datetime, or a template such as ``{{ data_interval_start }}``).
        (templated)
    :param fail_on_error: fail the task at the end when any image could not be deleted.
    :param sample_size: ids kept per outcome in the returned summary.
    :param cloudflare_images_conn_id: the ``cloudflare_images`` connection. (templated)
    :param account_id: the 32-hex account id, instead of the connection's. (templated)
    :param use_batch_api: send the per-image calls through the Images batch API (falling
        back to the global API when no batch token can be issued).
    :param max_concurrency: per-image calls in flight at once, 1..64.

    With the OpenLineage provider installed, the task reports the account (and the
    reconcile report it read, if any) as its inputs.
    """

    template_fields: Sequence[str] = (
        "image_ids",
        "max_deletes",
        "dry_run",
        "older_than",
        "cloudflare_images_conn_id",
        "account_id",
    )
    template_fields_renderers = {"image_ids": "json"}
    ui_color = "#f6821f"

    def __init__(
        self,
        *,
        image_ids: Any,
        max_deletes: int | str,
        dry_run: bool | str = False,
        older_than: str | dt.datetime | None = None,
        fail_on_error: bool = True,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        cloudflare_images_conn_id: str = CloudflareImagesHook.default_conn_name,
        account_id: str | None = None,
        use_batch_api: bool = True,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.use_batch_api = check_flag("use_batch_api", use_batch_api)
        self.max_concurrency = _check_concurrency(max_concurrency)
        self._stopping = threading.Event()
        self.image_ids = image_ids
        self.max_deletes = max_deletes
        self.dry_run = dry_run
        self.older_than = older_than
        self.fail_on_error = check_flag("fail_on_error", fail_on_error)
        self.sample_size = check_whole("sample_size", sample_size, minimum=0)
        self.cloudflare_images_conn_id = cloudflare_images_conn_id
        self.account_id = account_id
        self._check_arguments(rendered=False)

    @cached_property
    def hook(self) -> CloudflareImagesHook:
        """The hook, built on first use (after templates are rendered)."""
        return CloudflareImagesHook(
            self.cloudflare_images_conn_id,
            account_id=self.account_id or None,
            max_connections=self.max_concurrency,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        max_deletes, dry_run, cutoff = self._check_arguments(rendered=True)
        image_ids = self._collect_ids()
        if len(image_ids) > max_deletes:
            raise CloudflareImagesError(
                f"{len(image_ids)} images to delete is more than max_deletes={max_deletes}; "
                "nothing was deleted. Check the reconcile report (a wrong or empty expected "
                "set makes every image look unexpected), then raise max_deletes if the "
                "deletion is intended."
            )
        outcome = DeleteOutcome(dry_run=dry_run, sample_size=self.sample_size)
        outcome.requested = len(image_ids)
        self.log.info(
            "%s %d image(s) (max_deletes=%d%s)",
            "Dry run: checking" if dry_run else "Deleting",
            len(image_ids),
            max_deletes,
            f", only those uploaded before {cutoff.isoformat()}" if cutoff else "",
        )
        if cutoff is None and not dry_run:
            self.log.warning(
                "older_than is not set: an image uploaded after the expected side was read "
                "(an upload your system of record has not caught up with) looks unexpected "
                "and will be deleted."
            )
        try:
            # Requests are needed to delete, or to read upload times: not for a plain dry run.
            needs_requests = bool(image_ids) and (cutoff is not None or not dry_run)
            calls = self._image_calls() if needs_requests else None
            stop = self._handle_all(image_ids, calls, cutoff, dry_run, outcome)
        finally:
            if "hook" in self.__dict__:
                self.hook.close()
        result = outcome.to_dict()
        self.log.info(
            "%s: %d deleted, %d would be deleted (dry run), %d already absent, %d protected, "
            "%d failed.",
            "Done" if stop is None else "Stopped",
            result["deleted"],
            result["would_delete"],
            result["already_absent"],
            result["protected"],
            result["failed"],
        )
        if stop is not None:
            raise stop
        if result["failed"] and self.fail_on_error:
            raise CloudflareImagesError(
                f"{result['failed']} of {len(image_ids)} image(s) could not be deleted (e.g. "
                f"{result['failures'][:3]}); the others were handled. Re-running is safe."
            )
        return result

    def on_kill(self) -> None:
        self._stopping.set()
        if "hook" in self.__dict__:
            self.log.info("Kill requested: no new request is sent.")
            self.hook.cancel()

    # -- which API -----------------------------------------------------------------------

    def _image_calls(self) -> ImageCalls:
        """The batch API's client, or the hook when it is off or no token can be issued."""
        if not self.use_batch_api:
            return self.hook
        try:
            return self.hook.batch_images()
        except CloudflareImagesAPIError as err:
            if err.status not in (401, 403) or _BAD_CREDENTIAL_CODES.intersection(err.codes):
                raise
            self.log.warning(
                "Could not get an Images batch token (%s): the connection's API token needs "
                "the Images Edit permission (Account > Cloudflare Images > Edit) for the batch "
                "API. Using the global API instead, whose calls count toward the account's "
                "rate limit (1200 requests per 5 minutes, shared with its other clients).",
                err,
            )
            return self.hook

    # -- all images ----------------------------------------------------------------------

    def _handle_all(
        self,
        image_ids: list[str],
        calls: ImageCalls | None,
        cutoff: dt.datetime | None,
        dry_run: bool,
        outcome: DeleteOutcome,
    ) -> BaseException | None:
        """Handle every image, ``max_concurrency`` at a time; note outcomes in id order.

        Returns the error that stopped the task (an account-wide error, a kill), or None.
        Once stopped, no new image is started; those in flight are waited for and counted,
        and the others get no outcome (the summary counts only images handled).
        """
        queue: _Queue = deque()
        remaining = iter(image_ids)
        stop: BaseException | None = None
        # The first image alone: a wrong connection fails one request, not a poolful.
        room = 1
        with ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="cfimages-delete") as pool:

            def start(image_id: str) -> Future[tuple[str, Any]]:
                return pool.submit(self._handle, image_id, calls, cutoff, dry_run)

            try:
                while True:
                    if stop is None and not self._stopping.is_set():
                        _fill(queue, room, remaining, start)
                    if not queue:
                        break
                    stop = self._settle_oldest(queue, outcome, stop)
                    room = self.max_concurrency * _QUEUED_PER_THREAD
            except BaseException:
                self._abandon(queue)
                raise
        if stop is None and self._stopping.is_set():
            stop = CloudflareImagesError(
                f"Killed: {len(image_ids) - sum(outcome.counts.values())} image(s) were not "
                "handled; re-running is safe."
            )
        return stop

    def _settle_oldest(
        self, queue: _Queue, outcome: DeleteOutcome, stop: BaseException | None
    ) -> BaseException | None:
        """Wait for the oldest image's outcome and note it; return the error that stops."""
        image_id, future = queue.popleft()
        if (stop is not None or self._stopping.is_set()) and future.cancel():
            return stop  # queued, not started: no request is sent for it
        try:
            outcome.note(*future.result())
        except _Stop as err:
            outcome.note("failed", {"id": image_id, "error": str(err.error)})
            return stop or err.error
        return stop

    def _abandon(self, queue: _Queue) -> None:
        """On a task timeout or an interrupt: send nothing more on the way out."""
        self._stopping.set()
        for _, queued in queue:
            queued.cancel()
        if "hook" in self.__dict__:
            self.hook.cancel()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the account deleted from (and the report read, if any) as inputs.

        :param task_instance: the finished task instance (unused).
        """
        inputs = []
        report = self.image_ids.get("report_path") if isinstance(self.image_ids, Mapping) else None
        if report or looks_like_path(self.image_ids):
            inputs.append(storage_dataset(str(report or self.image_ids)))
        try:
            inputs.append(account_dataset(self.hook.account_id))
        except CloudflareImagesError:
            self.log.debug("No account id for OpenLineage", exc_info=True)
        return operator_lineage(inputs, [])

    # -- per image -----------------------------------------------------------------------

    def _handle(
        self,
        image_id: str,
        calls: ImageCalls | None,
        cutoff: dt.datetime | None,
        dry_run: bool,
    ) -> tuple[str, Any]:
        """One image's outcome and its sample; raises :class:`_Stop` to end the task."""
        try:
            if cutoff is not None and calls is not None:
                kept = self._kept(image_id, calls, cutoff)
                if kept is not None:
                    return kept, image_id
            if dry_run or calls is None:
                self.log.info("Would delete image %s (dry run)", image_id)
                return "would_delete", image_id
            if calls.delete_image(image_id):
                self.log.info("Deleted image %s", image_id)
                return "deleted", image_id
            self.log.info("Image %s was already absent", image_id)
            return "already_absent", image_id
        except CloudflareImagesAPIError as err:
            if _affects_every_image(err):
                raise _Stop(err) from None
            return self._failed(image_id, err)
        except CloudflareImagesConfigError as err:
            raise _Stop(err) from None  # a bad connection or account id fails every image
        except ValueError as err:
            return self._failed(image_id, err)
        except CloudflareImagesError as err:
            raise _Stop(err) from None  # cancelled by a kill

    def _kept(self, image_id: str, calls: ImageCalls, cutoff: dt.datetime) -> str | None:
        """Why the image must be kept (``protected``, ``already_absent``), or None."""
        try:
            uploaded_text = calls.get_image(image_id).get("uploaded")
        except CloudflareImagesAPIError as err:
            if not image_not_found(err):
                raise
            self.log.info("Image %s was already absent", image_id)
            return "already_absent"
        uploaded = parse_uploaded(uploaded_text)
        if uploaded is not None and uploaded < cutoff:
            return None
        # An unreadable upload time is kept too: when in doubt, do not delete.
        self.log.info(
            "Kept image %s: uploaded %s, not before older_than %s",
            image_id,
            uploaded_text,
            cutoff.isoformat(),
        )
        return "protected"

    def _failed(self, image_id: str, err: Exception) -> tuple[str, Any]:
        self.log.warning("Could not delete image %s: %s", image_id, err)
        return "failed", {"id": image_id, "error": str(err)}

    # -- collecting ids ------------------------------------------------------------------

    def _collect_ids(self) -> list[str]:
        """Every image to delete, once each, in the order given; checked before any request."""
        unique: dict[str, None] = {}
        for number, image_id in enumerate(self._ids_from(self.image_ids), start=1):
            if not isinstance(image_id, str) or not image_id.strip():
                raise CloudflareImagesConfigError(
                    f"image_ids entry {number} is not an image id: {image_id!r}."
                )
            unique.setdefault(image_id)
        return list(unique)

    def _ids_from(self, source: Any) -> Iterator[Any]:
        if isinstance(source, Mapping):
            yield from self._ids_from_summary(source)
        elif looks_like_path(source):
            report = InventorySource.parse(source, parameter="image_ids")
            self.log.info("Reading the images to delete from %s", report.uri)
            yield from _ids_from_rows(InventoryReader(report).records())
        else:
            yield from _ids_from_rows(source)

    def _ids_from_summary(self, summary: Mapping[str, Any]) -> Iterator[Any]:
        if "unexpected_count" not in summary:
            raise CloudflareImagesConfigError(
                "image_ids as a dict must be the summary CloudflareImagesReconcileOperator "
                f"returns; got a dict with keys {sorted(summary)[:10]}."
            )
        report_path = summary.get("report_path")
        if not report_path:
            if summary["unexpected_count"] == 0:
                return
            raise CloudflareImagesConfigError(
                "image_ids is a reconcile summary without a report_path, so the full list of "
                "unexpected images is unknown: set report_path on the reconcile task."
            )
        # All ids are collected before the first request, so a mismatch deletes nothing.
        found = 0
        for image_id in self._ids_from(report_path):
            found += 1
            yield image_id
        if found != summary["unexpected_count"]:
            raise CloudflareImagesConfigError(
                f"image_ids: the reconcile report {report_path!r} holds {found} unexpected "
                f"image(s), but the summary given says {summary['unexpected_count']}: the file "
                "changed since that reconcile (did another run write the same report_path?). "
                "Nothing was deleted; give each run its own report_path, e.g. with {{ run_id }}."
            )

    # -- arguments -----------------------------------------------------------------------

    def _check_arguments(self, *, rendered: bool) -> tuple[int, bool, dt.datetime | None]:
        """Check the arguments; before rendering, those still templated are skipped."""

        def known(value: Any) -> bool:
            return rendered or not is_unrendered(value)

        max_deletes = _check_max_deletes(self.max_deletes) if known(self.max_deletes) else 0
        dry_run = check_flag("dry_run", self.dry_run) if known(self.dry_run) else True
        cutoff = (
            parse_instant(self.older_than, name="older_than") if known(self.older_than) else None
        )
        if known(self.account_id):
            validate_account_id(self.account_id, source="account_id")
        if known(self.image_ids):
            _check_image_ids(self.image_ids)
        return max_deletes, dry_run, cutoff


def _fill(
    queue: _Queue,
    room: int,
    remaining: Iterator[str],
    start: Callable[[str], Future[tuple[str, Any]]],
) -> None:
    """Start images from ``remaining`` until ``room`` are queued or none are left."""
    while len(queue) < room:
        image_id = next(remaining, None)
        if image_id is None:
            return
        queue.append((image_id, start(image_id)))


def _ids_from_rows(rows: Iterable[Any]) -> Iterator[Any]:
    """Ids from plain ids, or from report rows (only ``unexpected`` ones when they say)."""
    for row in rows:
        if isinstance(row, Mapping):
            kind = row.get("kind")
            if kind not in (None, "", UNEXPECTED):
                continue
            if "id" not in row:
                raise CloudflareImagesConfigError(
                    f"image_ids: a record has no 'id' field: {short_repr(row)}."
                )
            yield row["id"]
        else:
            yield row


def _affects_every_image(err: CloudflareImagesAPIError) -> bool:
    """Whether an error is about the account or credentials, not the one image."""
    if isinstance(err, CloudflareImagesRateLimitError):
        return True
    if err.status in (401, 403):
        return True
    if err.status is not None and 300 <= err.status < 400:
        return True  # a redirect: the base URL is wrong (the API never redirects)
    if err.status == 404 and not err.codes:
        return True  # not Cloudflare's "no such image" (5404): a wrong base URL or a proxy
    return bool(_ACCOUNT_WIDE_CODES.intersection(err.codes))


def _check_image_ids(image_ids: Any) -> None:
    if isinstance(image_ids, Mapping) or looks_like_path(image_ids):
        if looks_like_path(image_ids):
            InventorySource.parse(image_ids, parameter="image_ids")
        return
    if image_ids is None or isinstance(image_ids, bytes) or not _iterable(image_ids):
        raise CloudflareImagesConfigError(
            "image_ids must be a list of image ids (or report rows), an XComArg, the path of a "
            f"reconcile report, or a reconcile summary; got {type(image_ids).__name__}."
        )


def _check_concurrency(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise CloudflareImagesConfigError(
            f"max_concurrency must be a whole number from 1 to {MAX_CONCURRENCY} (calls in "
            f"flight at once; default {DEFAULT_MAX_CONCURRENCY}); got {value!r}."
        )
    return value


def _check_max_deletes(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CloudflareImagesConfigError(
            "max_deletes is required: the most images this task may delete, a whole number "
            f">= 0 (the task fails before deleting anything above it); got {value!r}."
        )
    return value


def _check_name(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise CloudflareImagesConfigError(f"{name} must be a field or column name; got {value!r}.")


def _iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True

"""The sensor that waits for images to exist in Cloudflare Images."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_cfimages.exceptions import CloudflareImagesError
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook
from airflow_provider_cfimages.hooks.query import DEFAULT_PER_PAGE, ImageQuery
from airflow_provider_cfimages.sensors.conditions import (
    DEFAULT_MAX_IMAGES,
    DEFAULT_MAX_PAGES,
    ImageConditionChecker,
    ImageConditions,
)
from airflow_provider_cfimages.triggers.images import CloudflareImagesTrigger
from airflow_provider_cfimages.utils.templates import ExplainsUndefinedTemplates
from airflow_provider_cfimages.utils.validation import check_whole, is_absent, is_unrendered
from airflow_provider_cfimages.version_compat import AirflowSkipException, conf

if TYPE_CHECKING:
    from airflow.sdk import Context

# What an unset Jinja value renders to; treated as "not given".


class CloudflareImagesSensor(ExplainsUndefinedTemplates, BaseSensorOperator):
    """Wait until images exist in Cloudflare Images; every condition given must hold.

    Conditions: every id in ``image_ids`` exists (a direct creator upload still waiting for
    its file does not count); and/or at least ``min_count`` images uploaded at or after
    ``uploaded_after``, by ``creator``, whose filename matches the ``filename`` pattern.
    The listing conditions page newest first and stop at the ``uploaded_after`` cutoff, as
    soon as ``min_count`` images matched, or after ``max_pages`` pages, so a poke stays a few
    requests even on an account with millions of images.

    Returns (to XCom) the matching images as ``{"id", "filename", "uploaded"}`` dicts, ids
    from ``image_ids`` first, then the newest listed matches, at most ``max_images_in_xcom``.

    Authentication errors, a wrong account id and bad arguments fail the task at once,
    deferred or not and even with ``soft_fail``, which skips only on a timeout. Rate
    limiting (429) and server errors (5xx) are retried by the hook; if they persist, the poke
    counts as "not yet" and the sensor keeps waiting until ``timeout``.

    :param cloudflare_images_conn_id: the Airflow connection id.
    :param account_id: the 32-hex account id; overrides the connection's extra. (templated)
    :param image_ids: ids that must all exist: a list, or one string of comma-separated ids,
        or the rendered text of a list (e.g. ``"{{ ti.xcom_pull('upload') }}"``).
        (templated)
    :param filename: an ``fnmatch`` pattern (case-sensitive) that a matching image's filename
        matches, e.g. ``"batch-42-*.jpg"``. Without ``uploaded_after`` it searches the newest
        ``max_pages`` pages (at most 1000 images each). (templated)
    :param uploaded_after: matching images were uploaded at or after this instant, e.g.
        ``"{{ dag_run.run_after }}"`` (every run has it; ``data_interval_start`` is undefined
        in a run triggered by hand, and such a template fails the task naming this
        argument). (templated)
    :param min_count: at least this many images must match ``uploaded_after`` / ``creator`` /
        ``filename``.
    :param creator: matching images have this creator (narrows ``uploaded_after`` /
        ``filename`` / ``meta_filters``); ``""`` for images without a creator. (templated)
    :param meta_filters: matching images' metadata passes these filters, applied by the API
        (as on ``CloudflareImagesListOperator``), e.g. ``{"status": "ready"}``; a listing
        condition by itself. (templated)
    :param per_page: images per list request, 10..10000 (a page holds at most 1000).
    :param max_pages: list requests allowed per poke; ``None`` lifts the cap.
    :param max_images_in_xcom: the most images returned to XCom.
    :param deferrable: wait in the triggerer instead of a worker slot; defaults to
        ``[operators] default_deferrable``.
    """

    template_fields: Sequence[str] = (
        "account_id",
        "image_ids",
        "filename",
        "uploaded_after",
        "creator",
        "meta_filters",
    )
    template_fields_renderers = {"image_ids": "json", "meta_filters": "json"}
    bound_fields = ("uploaded_after",)
    ui_color = "#f6821f"

    def __init__(
        self,
        *,
        cloudflare_images_conn_id: str = CloudflareImagesHook.default_conn_name,
        account_id: str | None = None,
        image_ids: list[str] | str | None = None,
        filename: str | None = None,
        uploaded_after: str | dt.datetime | None = None,
        min_count: int = 1,
        creator: str | None = None,
        meta_filters: Mapping[str, Any] | str | None = None,
        per_page: int = DEFAULT_PER_PAGE,
        max_pages: int | None = DEFAULT_MAX_PAGES,
        max_images_in_xcom: int = DEFAULT_MAX_IMAGES,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cloudflare_images_conn_id = cloudflare_images_conn_id
        self.account_id = account_id
        self.image_ids = image_ids
        self.filename = filename
        self.uploaded_after = uploaded_after
        self.min_count = check_whole("min_count", min_count, minimum=1)
        self.creator = creator
        self.meta_filters = meta_filters
        self.per_page = ImageQuery.build(per_page=per_page).per_page
        self.max_pages = (
            None if max_pages is None else check_whole("max_pages", max_pages, minimum=1)
        )
        self.max_images_in_xcom = check_whole("max_images_in_xcom", max_images_in_xcom, minimum=1)
        self.deferrable = deferrable
        self._check_conditions_early()

    @cached_property
    def conditions(self) -> ImageConditions:
        """The conditions, from the rendered template fields (checked on first use)."""
        return self._build_conditions()

    @cached_property
    def hook(self) -> CloudflareImagesHook:
        """The hook, built once per task run."""
        return CloudflareImagesHook(
            self.cloudflare_images_conn_id, account_id=_given(self.account_id)
        )

    @cached_property
    def checker(self) -> ImageConditionChecker:
        """Checks the conditions; remembers the ids already found across pokes."""
        return ImageConditionChecker(self.hook, self.conditions, max_images=self.max_images_in_xcom)

    def execute(self, context: Context) -> Any:
        """Check the rendered arguments, then poke (classic) or poke once and defer."""
        self.log.info("Waiting until %s.", self.conditions.describe())
        if not self.deferrable:
            return super().execute(context)
        result = self.poke(context)
        if isinstance(result, PokeReturnValue) and result.is_done:
            return result.xcom_value
        self.defer(
            trigger=self._trigger(),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Context) -> PokeReturnValue | bool:
        """Check every condition once; ``False`` while something is missing."""
        check = self.checker.check()
        if not check.satisfied:
            self.log.info("Not yet: %s [%d request(s)]", check.message, check.requests)
            return False
        self.log.info("%s [%d request(s)]", check.message, check.requests)
        return PokeReturnValue(is_done=True, xcom_value=check.images)

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Resume after the trigger fired: return its images, or fail with its message.

        :param context: the task context.
        :param event: the trigger's event payload.
        """
        if event and event.get("status") == "success":
            self.log.info("%s", event.get("message"))
            return list(event.get("images") or [])
        message = event.get("message") if event else "the trigger ended without an event"
        raise CloudflareImagesError(f"Waiting for Cloudflare Images failed: {message}")

    def resume_execution(
        self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context
    ) -> Any:
        """Resume after deferral; an error event fails the task even with ``soft_fail``.

        ``BaseSensorOperator`` turns any error on resume into a skip under ``soft_fail``, so
        a deferred sensor would skip on a wrong token where a poking one fails. Here only a
        timeout (or a trigger that failed) is left to ``soft_fail``, as when poking;
        ``never_fail`` still skips on anything.

        :param next_method: the method to resume in.
        :param next_kwargs: its keyword arguments (the trigger's event).
        :param context: the task context.
        """
        if next_method != "execute_complete":
            return super().resume_execution(next_method, next_kwargs, context)
        try:
            # BaseOperator's resume: it calls execute_complete, with no soft_fail handling.
            return super(BaseSensorOperator, self).resume_execution(
                next_method, next_kwargs, context
            )
        except CloudflareImagesError as err:
            if self.never_fail:
                raise AirflowSkipException("Skipping due to never_fail is set to True.") from err
            raise

    def on_kill(self) -> None:
        """Stop a poke in progress at its next request."""
        if "hook" in self.__dict__:
            self.hook.cancel()

    def _trigger(self) -> CloudflareImagesTrigger:
        return CloudflareImagesTrigger(
            cloudflare_images_conn_id=self.cloudflare_images_conn_id,
            account_id=_given(self.account_id),
            max_images=self.max_images_in_xcom,
            poke_interval=self.poke_interval,
            **self.conditions.to_kwargs(),
        )

    def _build_conditions(self) -> ImageConditions:
        return ImageConditions.from_attributes(self)

    def _check_conditions_early(self) -> None:
        """Check the conditions when the DAG is parsed, if no value waits for a template."""
        values = (self.image_ids, self.filename, self.uploaded_after, self.creator)
        if not any(is_unrendered(value) for value in values) and not is_unrendered(
            self.meta_filters
        ):
            self._build_conditions()


def _given(value: str | None) -> str | None:
    return None if is_absent(value) else value

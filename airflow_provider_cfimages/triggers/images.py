"""The trigger that waits for images on behalf of a deferred :class:`CloudflareImagesSensor`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_cfimages.get_provider_info import DEFAULT_CONN_ID
from airflow_provider_cfimages.hooks.query import DEFAULT_PER_PAGE
from airflow_provider_cfimages.sensors.conditions import (
    DEFAULT_MAX_IMAGES,
    DEFAULT_MAX_PAGES,
    ConditionCheck,
    ImageConditionChecker,
    ImageConditions,
)

if TYPE_CHECKING:
    from airflow_provider_cfimages.hooks.images import CloudflareImagesHook


class CloudflareImagesTrigger(BaseTrigger):
    """Check the sensor's conditions every ``poke_interval`` seconds until they hold.

    The triggerer's event loop is never blocked: the hook is imported and built, and each
    check runs the hook's synchronous code (auth, retries, pagination), in a worker thread
    through ``asyncio.to_thread``; only the connection is read on the loop
    (``aget_connection``).
    Fires one event: ``{"status": "success", "images": [...], "message": ...}`` when the
    conditions hold, or ``{"status": "error", "message": ...}`` on an error that waiting
    cannot fix (bad credentials, a wrong account id, bad arguments). Rate limiting and 5xx
    answers only delay the next check.

    :param cloudflare_images_conn_id: the Airflow connection id.
    :param account_id: the 32-hex account id; overrides the connection's extra.
    :param image_ids: ids that must all exist.
    :param filename: an ``fnmatch`` pattern that matching images' filenames match.
    :param uploaded_after: ISO 8601 instant; matching images were uploaded at or after it.
    :param min_count: how many images must match the listing conditions.
    :param creator: matching images have this creator.
    :param per_page: images per list request.
    :param max_pages: list requests allowed per check; ``None`` for no cap.
    :param meta_filters: matching images' metadata passes these filters (field -> operator
        -> value, as ``MetaFilters.to_mapping()`` gives them).
    :param max_images: the most images the success event carries.
    :param poke_interval: seconds between checks.
    """

    def __init__(
        self,
        *,
        cloudflare_images_conn_id: str = DEFAULT_CONN_ID,
        account_id: str | None = None,
        image_ids: list[str] | None = None,
        filename: str | None = None,
        uploaded_after: str | None = None,
        min_count: int = 1,
        creator: str | None = None,
        per_page: int = DEFAULT_PER_PAGE,
        max_pages: int | None = DEFAULT_MAX_PAGES,
        max_images: int = DEFAULT_MAX_IMAGES,
        poke_interval: float = 60.0,
        meta_filters: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.cloudflare_images_conn_id = cloudflare_images_conn_id
        self.account_id = account_id
        self.image_ids = list(image_ids) if image_ids else None
        self.filename = filename
        self.uploaded_after = uploaded_after
        self.min_count = min_count
        self.creator = creator
        self.per_page = per_page
        self.max_pages = max_pages
        self.max_images = max_images
        self.poke_interval = float(poke_interval)
        self.meta_filters = meta_filters
        # Checked here so a bad value fails the task when it defers, not later in the triggerer.
        self.conditions = ImageConditions.from_attributes(self)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the import path and the ``__init__`` arguments (all JSON-safe)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "cloudflare_images_conn_id": self.cloudflare_images_conn_id,
                "account_id": self.account_id,
                "image_ids": self.image_ids,
                "filename": self.filename,
                "uploaded_after": self.uploaded_after,
                "min_count": self.min_count,
                "creator": self.creator,
                "per_page": self.per_page,
                "max_pages": self.max_pages,
                "max_images": self.max_images,
                "poke_interval": self.poke_interval,
                "meta_filters": self.meta_filters or None,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Check until the conditions hold or an error that waiting cannot fix occurs."""
        # Hooks are not serializable: build one per run, and reuse its session across checks.
        hook = await asyncio.to_thread(self._build_hook)
        checker = ImageConditionChecker(hook, self.conditions, max_images=self.max_images)
        try:
            while True:
                try:
                    await hook.aload_settings()  # on the loop: see its docstring
                    check = await asyncio.to_thread(checker.check)
                except Exception as err:
                    yield TriggerEvent(self._error_payload(err))
                    return
                if check.satisfied:
                    yield TriggerEvent(self._success_payload(check))
                    return
                self.log.info("Not yet: %s; next check in %g s", check.message, self.poke_interval)
                await asyncio.sleep(self.poke_interval)
        finally:
            # A check still running in its thread (the trigger was cancelled) stops at its
            # next request instead of paging on for nobody.
            hook.cancel()
            hook.close()

    def _build_hook(self) -> CloudflareImagesHook:
        # Imported here, in a worker thread: the triggerer imports this module on its event
        # loop, where importing the hook (and requests with it) would stall every trigger.
        from airflow_provider_cfimages.hooks.images import CloudflareImagesHook

        return CloudflareImagesHook(self.cloudflare_images_conn_id, account_id=self.account_id)

    @staticmethod
    def _success_payload(check: ConditionCheck) -> dict[str, Any]:
        return {"status": "success", "images": check.images, "message": check.message}

    @staticmethod
    def _error_payload(err: Exception) -> dict[str, Any]:
        # The message never holds the credential: the transport redacts what the API echoes.
        return {"status": "error", "message": f"{type(err).__name__}: {err}"}

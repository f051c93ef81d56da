"""The manifest an export returns to XCom: what was written, from which listing, and when."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_cfimages.hooks.query import ImageQuery
from airflow_provider_cfimages.inventory.writer import WrittenInventory


@dataclass(frozen=True)
class InventoryManifest(WrittenInventory):
    """Describes one exported inventory file; ``to_dict()`` is the XCom value (JSON only).

    The fields of :class:`WrittenInventory` (``path``, ``format``, ``compression``,
    ``count``, ``pages``, ``bytes``, ``uncompressed_bytes``, ``sha256``,
    ``oldest_uploaded``, ``newest_uploaded``), then the listing that produced the file:

    :param account_id: the account listed.
    :param sort_order: ``asc`` or ``desc``, the order of the images in the file.
    :param per_page: images asked for per request.
    :param creator: the creator filter, or ``None``.
    :param uploaded_after: the window's inclusive lower bound (ISO 8601), or ``None``.
    :param uploaded_before: the window's exclusive upper bound (ISO 8601), or ``None``.
    :param max_images: the limit on images, or ``None``.
    :param fields: the keys kept, or ``None`` for all.
    :param requests: HTTP requests sent, retries included.
    :param listed_at: when listing started (ISO 8601, UTC).
    :param meta_filters: the metadata filters the API applied (field -> operator -> value),
        or ``None``.
    """

    account_id: str
    sort_order: str
    per_page: int
    creator: str | None
    uploaded_after: str | None
    uploaded_before: str | None
    max_images: int | None
    fields: list[str] | None
    requests: int
    listed_at: str
    meta_filters: dict[str, Any] | None = None

    @classmethod
    def describe(
        cls,
        written: WrittenInventory,
        *,
        query: ImageQuery,
        account_id: str,
        fields: Sequence[str] | None,
        requests: int,
        listed_at: str,
    ) -> InventoryManifest:
        """Combine what the writer wrote with the listing that produced it.

        :param written: the writer's result.
        :param query: the checked listing parameters.
        :param account_id: the account listed.
        :param fields: the keys kept, or ``None``.
        :param requests: HTTP requests sent.
        :param listed_at: when listing started (ISO 8601, UTC).
        """
        return cls(
            **dataclasses.asdict(written),
            account_id=account_id,
            sort_order=query.sort_order,
            per_page=query.per_page,
            creator=query.creator,
            **query.window_as_strings(),
            max_images=query.limit,
            fields=list(fields) if fields else None,
            requests=requests,
            listed_at=listed_at,
            meta_filters=query.meta_filters.to_mapping() or None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The manifest as plain JSON-serialisable data (the XCom value)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InventoryManifest:
        """Read a manifest back from XCom; keys it does not know are ignored.

        :param data: a manifest as returned by :meth:`to_dict`.
        """
        fields = dataclasses.fields(cls)
        required = {f.name for f in fields if f.default is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"Not an inventory manifest: it lacks {missing}.")
        return cls(**{f.name: data[f.name] for f in fields if f.name in data})

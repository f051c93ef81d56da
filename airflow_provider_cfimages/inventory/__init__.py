"""Image inventories as files: writing exports (and their manifests) and reading them back."""

from __future__ import annotations

from airflow_provider_cfimages.inventory.manifest import InventoryManifest
from airflow_provider_cfimages.inventory.writer import (
    CSV_COLUMNS,
    INVENTORY_FORMATS,
    InventoryFormat,
    InventoryTarget,
    InventoryWriter,
    WrittenInventory,
    check_fields,
    keep_fields,
)

__all__ = [
    "CSV_COLUMNS",
    "INVENTORY_FORMATS",
    "InventoryFormat",
    "InventoryManifest",
    "InventoryTarget",
    "InventoryWriter",
    "WrittenInventory",
    "check_fields",
    "keep_fields",
]

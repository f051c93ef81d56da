"""Parquet exports: typed columns, streamed row groups, unknown keys, reading them back."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.emulator.backend import ImagesBackend
from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError
from airflow_provider_cfimages.inventory import parquet as parquet_module
from airflow_provider_cfimages.operators.images import (
    CloudflareImagesListOperator,
    CloudflareImagesReconcileOperator,
)

pa = pytest.importorskip("pyarrow", reason="Parquet needs the 'parquet' extra (pyarrow)")
pq = pytest.importorskip("pyarrow.parquet")

COUNT = 2500


def image(n: int) -> dict[str, Any]:
    """Image ``n``; some carry a key the provider does not know, some lack optional keys."""
    item: dict[str, Any] = {
        "id": f"img-{n:05d}",
        "filename": f"photo {n}.jpg",
        "uploaded": (dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=n))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "requireSignedURLs": n % 7 == 0,
        "variants": [f"https://imagedelivery.net/h/img-{n:05d}/public"],
    }
    if n % 3 == 0:
        item["meta"] = {"n": n, "tags": ["a", "b"], "nested": {"ok": True}}
    if n % 5 == 0:
        item["creator"] = "ann"
    if n % 11 == 0:
        item["draft"] = False  # a key the API added later
        item["future"] = {"x": [1, 2]}
    return item


IMAGES = [image(n) for n in range(COUNT)]


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Any:
    backend = ImagesBackend("0" * 32)
    backend.load(IMAGES)
    with EmulatorServer(backend=backend) as server:
        monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", server.connection_json())
        yield server


def export(path: Path, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("sort_order", "asc")
    return CloudflareImagesListOperator(task_id="x", output_path=str(path), **kwargs).execute(
        context={}
    )


def test_columns_are_typed_and_unknown_keys_kept_as_json(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "inventory.parquet"
    manifest = CloudflareImagesListOperator(
        task_id="x", output_path=str(path), sort_order="asc", per_page=500
    ).execute(context={})

    stored = path.read_bytes()
    assert manifest["format"] == "parquet"
    assert manifest["compression"] is None
    assert manifest["count"] == COUNT
    assert manifest["bytes"] == len(stored)
    assert manifest["sha256"] == hashlib.sha256(stored).hexdigest()
    table = pq.read_table(path)
    assert table.schema.names == [*parquet_module.TYPED_COLUMNS, "extra"]
    assert table.schema.field("uploaded").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("requireSignedURLs").type == pa.bool_()
    assert table.schema.field("variants").type == pa.list_(pa.string())
    assert table.schema.field("meta").type == pa.string()
    rows = table.to_pylist()
    assert [row["id"] for row in rows] == [i["id"] for i in IMAGES]
    first, eleventh = rows[0], rows[11]
    assert first["uploaded"] == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert json.loads(first["meta"]) == IMAGES[0]["meta"]
    assert json.loads(first["extra"]) == {"draft": False, "future": {"x": [1, 2]}}
    assert (rows[1]["meta"], rows[1]["creator"], rows[1]["extra"]) == (None, None, None)
    assert eleventh["requireSignedURLs"] is False
    assert rows[7]["requireSignedURLs"] is True
    assert list(tmp_path.iterdir()) == [path]  # no temporary object left


def test_row_groups_stream_the_inventory(emu: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "inventory.parquet"
    encoder_rows = 1000
    original = parquet_module.ParquetPageEncoder.__init__

    def small_groups(self: Any, fields: Any, *, row_group_rows: int = 0) -> None:
        original(self, fields, row_group_rows=encoder_rows)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parquet_module.ParquetPageEncoder, "__init__", small_groups)
        export(path, per_page=500)
    metadata = pq.ParquetFile(path).metadata
    # 500-image pages, a group written as soon as 1000 images are buffered.
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [
        1000,
        1000,
        500,
    ]


def test_an_export_reads_back_as_the_images_the_api_sent(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    from airflow_provider_cfimages.inventory.reader import InventoryReader, export_from_manifest

    manifest = export(tmp_path / "inventory.parquet")
    source, expectation = export_from_manifest(manifest, parameter="actual_from")
    assert list(InventoryReader(source).images(expectation)) == IMAGES


def test_fields_choose_the_columns(emu: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "few.parquet"
    manifest = export(path, fields=["id", "uploaded", "draft"])
    table = pq.read_table(path)
    assert table.schema.names == ["id", "uploaded", "draft"]
    assert table.schema.field("draft").type == pa.string()
    drafts = table.column("draft").to_pylist()
    assert (drafts[0], drafts[1]) == ("false", None)
    assert manifest["fields"] == ["id", "uploaded", "draft"]


def test_reconcile_reads_parquet_exports_and_expected_files(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    manifest = export(tmp_path / "inventory.parquet")
    expected = tmp_path / "expected.parquet"
    ids = [i["id"] for i in IMAGES[1:]] + ["missing-1"]
    pq.write_table(pa.table({"id": ids, "owner": ["x"] * len(ids)}), expected)
    emu.reset_requests()
    summary = CloudflareImagesReconcileOperator(
        task_id="r", expected=str(expected), actual_from=manifest
    ).execute(context={})
    assert (summary["matched"], summary["missing"], summary["unexpected"]) == (
        COUNT - 1,
        ["missing-1"],
        [IMAGES[0]["id"]],
    )
    assert emu.requests == []  # both sides came from files


def test_a_changed_parquet_export_is_refused(emu: EmulatorServer, tmp_path: Path) -> None:
    from airflow_provider_cfimages.inventory.reader import InventoryIntegrityError

    manifest = export(tmp_path / "inventory.parquet")
    pq.write_table(pq.read_table(tmp_path / "inventory.parquet").slice(1), manifest["path"])
    with pytest.raises(InventoryIntegrityError, match="manifest says 2500"):
        CloudflareImagesReconcileOperator(
            task_id="r", expected=["x"], actual_from=manifest
        ).execute(context={})


def test_without_pyarrow_the_error_names_the_extra_before_any_request(
    emu: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import now raises
    with pytest.raises(CloudflareImagesConfigError) as err:
        export(tmp_path / "inventory.parquet")
    assert "airflow-provider-cfimages[parquet]" in str(err.value)
    assert "output_path" in str(err.value)
    assert emu.requests == []
    assert list(tmp_path.iterdir()) == []


def test_gzipped_parquet_is_refused_at_parse_time(tmp_path: Path) -> None:
    with pytest.raises(CloudflareImagesConfigError, match="compresses its columns itself"):
        CloudflareImagesListOperator(task_id="x", output_path=str(tmp_path / "a.parquet.gz"))


def test_a_value_that_does_not_fit_its_column_fails_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = ImagesBackend("0" * 32)
    backend.load([{**IMAGES[0], "requireSignedURLs": "yes"}])
    with EmulatorServer(backend=backend) as server:
        monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", server.connection_json())
        with pytest.raises(ValueError, match=r"typed Parquet column .*requireSignedURLs"):
            export(tmp_path / "inventory.parquet")
    assert list(tmp_path.iterdir()) == []

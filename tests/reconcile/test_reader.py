"""Reading key files and exports back: every format, gzip, streaming, integrity checks."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError
from airflow_provider_cfimages.inventory.reader import (
    InventoryIntegrityError,
    InventoryReader,
    InventorySource,
    export_from_manifest,
)
from airflow_provider_cfimages.inventory.writer import InventoryTarget, InventoryWriter

IMAGES: list[dict[str, Any]] = [
    {
        "id": "2cdc28f0-017a-49c4-9ed7-87056c83901",
        "filename": 'café, "menu".jpg',
        "uploaded": "2024-01-01T00:00:00.000Z",
        "requireSignedURLs": False,
        "meta": {"sku": "A-1", "tags": ["x", "y"]},
        "variants": ["https://imagedelivery.net/h/2cdc/public"],
    },
    {
        "id": "products/12/front",
        "filename": "line one\nline two.jpg",
        "uploaded": "2024-01-02T00:00:00.000Z",
        "requireSignedURLs": True,
        "creator": "cms-sync",
        "variants": [],
    },
]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def read(path: Path | str, **kwargs: Any) -> list[Any]:
    source = InventorySource.parse(str(path), parameter="expected", **kwargs)
    return list(InventoryReader(source).records())


@pytest.mark.parametrize("name", ["keys.txt", "keys.txt.gz"])
def test_txt_gives_one_key_per_line_keeping_inner_whitespace(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, b"a\r\n  spaced key \n\nlast-without-newline")

    assert read(path) == ["a", "  spaced key ", "last-without-newline"]


@pytest.mark.parametrize("name", ["keys.csv", "keys.csv.gz"])
def test_csv_gives_rows_as_dicts_with_quoted_newlines(tmp_path: Path, name: str) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerows([["id", "meta"], ["a", '{"v": 1}'], ["b\nc", ""]])
    path = write(tmp_path / name, text.getvalue().encode())

    assert read(path) == [{"id": "a", "meta": '{"v": 1}'}, {"id": "b\nc", "meta": ""}]


@pytest.mark.parametrize("name", ["keys.jsonl", "keys.ndjson", "keys.jsonl.gz"])
def test_jsonl_gives_one_value_per_line_skipping_blank_lines(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, b'{"id": "a"}\n\n"b"\n{"id": "c"}\n')

    assert read(path) == [{"id": "a"}, "b", {"id": "c"}]


@pytest.mark.parametrize("name", ["keys.json", "keys.json.gz"])
def test_json_array_gives_its_elements(tmp_path: Path, name: str) -> None:
    values = [{"id": f"k{n}", "n": n * 1.5} for n in range(25_000)] + ["plain", 12345, None]
    values += [-0.5e10, 'a "quoted" ] , string', {"k": [1, {"x": None}]}, True, []]
    path = write(tmp_path / name, json.dumps(values, indent=1).encode())

    assert read(path) == values


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"id": "a"}', "holds {'id': 'a'}"),
        ('["a" "b"]', "Expecting ',' delimiter"),
        ('["a", ', "Expecting value"),
        ('["a"] x', "Extra data"),
        ("", "Expecting value"),
    ],
)
def test_json_that_is_not_one_array_is_refused_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path / "keys.json", text.encode())

    with pytest.raises(CloudflareImagesConfigError) as caught:
        read(path)
    assert f"expected {str(path)!r} must hold one JSON array" in str(caught.value)
    assert message in str(caught.value)


def test_empty_json_array(tmp_path: Path) -> None:
    assert read(write(tmp_path / "k.json", b" [ ] ")) == []


def test_bad_jsonl_line_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "k.jsonl", b'{"id": "a"}\n{"id": \n')

    with pytest.raises(CloudflareImagesConfigError, match="line 2 is not valid JSON"):
        read(path)


def test_not_gzip_or_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "k.txt.gz").write_bytes(b"plain text, not gzip")
    (tmp_path / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    (tmp_path / "latin1.json").write_bytes('["café"]'.encode("latin-1"))

    with pytest.raises(CloudflareImagesConfigError, match="not a readable UTF-8 gzip txt"):
        read(tmp_path / "k.txt.gz")
    with pytest.raises(CloudflareImagesConfigError, match="not a readable UTF-8 txt"):
        read(tmp_path / "latin1.txt")
    with pytest.raises(CloudflareImagesConfigError, match=r"latin1\.json' is not a readable UTF-8"):
        read(tmp_path / "latin1.json")


def corrupt(data: bytes, damage: str) -> bytes:
    if damage == "deflate block":  # the first block claims the reserved type 3
        return data[:10] + b"\x07" + data[11:]
    if damage == "crc":
        return data[:-8] + bytes(4) + data[-4:]
    return data[: len(data) // 2]  # "cut short"


@pytest.mark.parametrize("damage", ["deflate block", "crc", "cut short"])
def test_a_damaged_gzip_file_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    lines = b"".join(b'{"id": "img-%d"}\n' % i for i in range(5000))
    path = tmp_path / "k.jsonl.gz"
    path.write_bytes(corrupt(gzip.compress(lines), damage))

    with pytest.raises(CloudflareImagesConfigError, match="not a readable UTF-8 gzip jsonl"):
        read(path)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("relative/keys.txt", "absolute local path"),
        ("", "absolute local path or a URI"),
        (42, "absolute local path or a URI"),
        ("/data/keys.avro", "cannot tell the file format"),
        ("/data/keys.txt.bz2", "cannot tell the file format"),
    ],
)
def test_source_paths_are_checked_naming_the_parameter(path: Any, message: str) -> None:
    with pytest.raises(CloudflareImagesConfigError, match=f"expected.*{message}"):
        InventorySource.parse(path, parameter="expected")


def test_source_accepts_pathlib_and_object_storage_paths(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    path = write(tmp_path / "k.txt", b"a\nb\n")

    assert read(path) == ["a", "b"]
    storage = ObjectStoragePath(f"file://{path}")
    source = InventorySource.parse(storage, parameter="expected")
    assert source.path() is storage
    assert list(InventoryReader(source).records()) == ["a", "b"]


# -- exports written by the list operator's writer --------------------------------------------


def export(tmp_path: Path, name: str) -> dict[str, Any]:
    target = InventoryTarget.parse(str(tmp_path / name))
    with InventoryWriter(target) as writer:
        writer.write_page(IMAGES[:1])
        writer.write_page(IMAGES[1:])
        written = writer.commit()
    return dataclasses.asdict(written)  # the manifest fields a reader checks, and more


@pytest.mark.parametrize(
    "name", ["inv.jsonl", "inv.jsonl.gz", "inv.csv", "inv.csv.gz", "inv.json", "inv.json.gz"]
)
def test_an_export_reads_back_as_the_images_written(tmp_path: Path, name: str) -> None:
    manifest = export(tmp_path, name)
    source, expectation = export_from_manifest(manifest, parameter="actual_from")
    reader = InventoryReader(source)

    images = list(reader.images(expectation))

    assert images == IMAGES
    assert reader.sha256 == manifest["sha256"]


def test_an_export_that_changed_since_its_manifest_is_refused(tmp_path: Path) -> None:
    manifest = export(tmp_path, "inv.jsonl")
    Path(manifest["path"]).write_bytes(Path(manifest["path"]).read_bytes().replace(b"A-1", b"A-2"))
    source, expectation = export_from_manifest(manifest, parameter="actual_from")

    with pytest.raises(InventoryIntegrityError, match="sha256"):
        list(InventoryReader(source).images(expectation))


def test_a_truncated_export_is_refused_by_its_count(tmp_path: Path) -> None:
    manifest = export(tmp_path, "inv.jsonl")
    path = Path(manifest["path"])
    path.write_bytes(path.read_bytes().splitlines(keepends=True)[0])
    source, expectation = export_from_manifest(manifest, parameter="actual_from")

    with pytest.raises(InventoryIntegrityError, match="holds 1 images but its manifest says 2"):
        list(InventoryReader(source).images(expectation))


def test_a_manifest_without_a_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CloudflareImagesConfigError, match="actual_from must be the manifest"):
        export_from_manifest({"count": 3}, parameter="actual_from")


def test_images_refuse_a_txt_file_and_non_objects(tmp_path: Path) -> None:
    txt = InventorySource.parse(str(write(tmp_path / "k.txt", b"a\n")), parameter="actual_from")
    jsonl = InventorySource.parse(
        str(write(tmp_path / "k.jsonl", b'"just a string"\n')), parameter="actual_from"
    )

    with pytest.raises(CloudflareImagesConfigError, match=r"is a \.txt file"):
        list(InventoryReader(txt).images())
    with pytest.raises(CloudflareImagesConfigError, match="record 1 is not an image object"):
        list(InventoryReader(jsonl).images())


def test_bad_jsonl_line_is_numbered_across_read_blocks(tmp_path: Path) -> None:
    good = b'{"id": "a-fairly-long-image-id-to-fill-the-read-blocks-quickly"}\n'
    path = write(tmp_path / "k.jsonl.gz", good * 40_000 + b"{oops\n" + good)

    with pytest.raises(CloudflareImagesConfigError, match="line 40001 is not valid JSON"):
        read(path)

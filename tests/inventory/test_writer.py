"""InventoryWriter and InventoryTarget: formats, hashing, atomic writes, argument checks."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError
from airflow_provider_cfimages.hooks.query import ImageQuery
from airflow_provider_cfimages.inventory import (
    CSV_COLUMNS,
    InventoryManifest,
    InventoryTarget,
    InventoryWriter,
    check_fields,
)
from airflow_provider_cfimages.inventory.writer import _HashingSink

# More images than a page of the API holds (1000 by default).
BIG_PAGE = 2007

IMAGES: list[dict[str, Any]] = [
    {
        "id": "img-new",
        "filename": 'cats, "the best"\nvol. 2 — été.png',
        "uploaded": "2024-03-02T10:00:00.500Z",
        "requireSignedURLs": False,
        "meta": {"owner": "ann", "tags": ["a", "b"]},
        "variants": ["https://imagedelivery.net/h/img-new/public"],
        "creator": "ann",
        "unknownKey": {"kept": True},
    },
    {
        "id": "img-mid",
        "filename": "plain.jpg",
        "uploaded": "2024-03-01T00:00:00Z",
        "requireSignedURLs": True,
        "variants": [],
    },
    {
        "id": "img-old",
        "filename": "old.gif",
        "uploaded": "2023-12-31T23:59:59.999Z",
        "requireSignedURLs": False,
        "meta": {},
        "variants": ["https://imagedelivery.net/h/img-old/public"],
    },
]


def write(path: Path, pages: list[list[dict[str, Any]]], **kwargs: Any) -> Any:
    target = InventoryTarget.parse(str(path), kwargs.pop("output_format", None))
    with InventoryWriter(target, **kwargs) as writer:
        for page in pages:
            writer.write_page(page)
        return writer.commit()


def stored_text(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.name.endswith(".gz") else data).decode("utf-8")


def read_back(path: Path, fmt: str) -> list[Any]:
    text = stored_text(path)
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines()]
    if fmt == "json":
        return json.loads(text)
    return list(csv.reader(io.StringIO(text, newline="")))


# -- target ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output_path", "output_format", "expected"),
    [
        ("/data/images.jsonl", None, ("jsonl", False)),
        ("/data/images.jsonl.gz", None, ("jsonl", True)),
        ("/data/images.ndjson", None, ("jsonl", False)),
        ("/data/images.CSV.GZ", None, ("csv", True)),
        ("/data/images.json", None, ("json", False)),
        ("/data/images", None, ("jsonl", False)),
        ("/data/images.txt.gz", "csv", ("csv", True)),
        ("/data/images.json", " JSON ", ("json", False)),
        ("file:///data/images.csv", None, ("csv", False)),
        ("s3://aws_default@bucket/cf/2024-01-01.jsonl.gz", None, ("jsonl", True)),
    ],
)
def test_target_infers_format_and_gzip_from_the_suffix(
    output_path: str, output_format: str | None, expected: tuple[str, bool]
) -> None:
    target = InventoryTarget.parse(output_path, output_format)
    assert (target.format, target.compressed) == expected
    assert target.uri == output_path


@pytest.mark.parametrize(
    ("output_path", "output_format", "message"),
    [
        ("images.jsonl", None, "output_path must be an absolute local path"),
        ("~/images.jsonl", None, "output_path must be an absolute local path"),
        ("", None, "output_path must be a local path or a URI"),
        (None, None, "output_path must be a local path or a URI"),
        ("/data/exports/", None, "output_path must name a file, not a directory"),
        ("s3://bucket", None, "output_path must name a file inside the bucket"),
        ("/data/images.jsonl.bz2", None, "only gzip compression is supported"),
        ("/data/images.jsonl.zst", None, "only gzip compression is supported"),
        ("/data/images.jsonl", "avro", "output_format must be one of"),
        ("/data/images.jsonl", "csv", "output_format is 'csv' but output_path"),
        ("/data/images.csv.gz", "json", "output_format is 'json' but output_path"),
    ],
)
def test_target_rejects_bad_destinations_by_parameter_name(
    output_path: Any, output_format: Any, message: str
) -> None:
    with pytest.raises(CloudflareImagesConfigError, match=message):
        InventoryTarget.parse(output_path, output_format)


def test_scheme_without_filesystem_names_output_path_and_the_provider() -> None:
    target = InventoryTarget.parse("gs://bucket/cf/images.jsonl")
    with pytest.raises(CloudflareImagesConfigError) as info:
        target.check_filesystem()
    assert "output_path 'gs://bucket/cf/images.jsonl'" in str(info.value)
    assert "apache-airflow-providers-google" in str(info.value)


def test_local_and_s3_schemes_have_filesystems() -> None:
    InventoryTarget.parse("/tmp/x.jsonl").check_filesystem()
    InventoryTarget.parse("file:///tmp/x.jsonl").check_filesystem()
    InventoryTarget.parse("s3://aws_default@bucket/x.jsonl").check_filesystem()


# -- fields ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (None, None),
        (["id", "uploaded"], ("id", "uploaded")),
        (("id",), ("id",)),
        ("id, filename ,uploaded", ("id", "filename", "uploaded")),
        # A list param rendered by "{{ params.fields }}", and JSON text.
        ("['id', 'filename']", ("id", "filename")),
        (' ["id", "meta"] ', ("id", "meta")),
    ],
)
def test_fields_accepts_lists_and_comma_separated_text(fields: Any, expected: Any) -> None:
    assert check_fields(fields) == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([], "fields must be a non-empty list"),
        ("", "fields must hold only non-empty key names"),
        ({"id": 1}, "fields must be a non-empty list"),
        (["id", ""], "fields must hold only non-empty key names"),
        (["id", 3], "fields must hold only non-empty key names"),
        (["id", "id"], r"fields must name each key once; \['id'\]"),
        ("[id, filename]", "fields looks like a list but could not be read"),
        ("[]", "fields must be a non-empty list"),
        ("[1, 2]", "fields must hold only non-empty key names"),
    ],
)
def test_fields_rejects_empty_or_repeated_keys(fields: Any, message: str) -> None:
    with pytest.raises(CloudflareImagesConfigError, match=message):
        check_fields(fields)


# -- formats --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.jsonl", "out.json", "out.jsonl.gz", "out.json.gz"])
def test_json_formats_keep_every_image_exactly_across_pages(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    written = write(path, [IMAGES[:2], [], IMAGES[2:]])
    fmt = "json" if ".json." in name or name.endswith(".json") else "jsonl"
    assert read_back(path, fmt) == IMAGES
    assert (written.format, written.count, written.pages) == (fmt, 3, 3)


@pytest.mark.parametrize("name", ["out.csv", "out.csv.gz"])
def test_csv_has_a_header_and_quotes_awkward_text(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write(path, [IMAGES])
    rows = read_back(path, "csv")
    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == 1 + len(IMAGES)
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["filename"] == IMAGES[0]["filename"]
    assert first["requireSignedURLs"] == "false"
    assert json.loads(first["meta"]) == IMAGES[0]["meta"]
    assert json.loads(first["variants"]) == IMAGES[0]["variants"]
    second = dict(zip(rows[0], rows[2], strict=True))
    assert (second["creator"], second["meta"], second["requireSignedURLs"]) == ("", "", "true")


@pytest.mark.parametrize(("name", "fmt"), [("e.jsonl", "jsonl"), ("e.json", "json")])
def test_empty_inventory_is_still_a_valid_file(tmp_path: Path, name: str, fmt: str) -> None:
    written = write(tmp_path / name, [[]])
    assert read_back(tmp_path / name, fmt) == []
    assert (written.count, written.oldest_uploaded, written.newest_uploaded) == (0, None, None)


def test_empty_csv_holds_only_the_header(tmp_path: Path) -> None:
    write(tmp_path / "e.csv", [])
    assert read_back(tmp_path / "e.csv", "csv") == [list(CSV_COLUMNS)]


def test_fields_project_json_and_choose_csv_columns(tmp_path: Path) -> None:
    write(tmp_path / "f.jsonl", [IMAGES], fields=("uploaded", "id", "creator"))
    assert read_back(tmp_path / "f.jsonl", "jsonl") == [
        {"uploaded": IMAGES[0]["uploaded"], "id": "img-new", "creator": "ann"},
        {"uploaded": IMAGES[1]["uploaded"], "id": "img-mid"},
        {"uploaded": IMAGES[2]["uploaded"], "id": "img-old"},
    ]
    write(tmp_path / "f.csv", [IMAGES], fields=("id", "unknownKey"))
    assert read_back(tmp_path / "f.csv", "csv") == [
        ["id", "unknownKey"],
        ["img-new", '{"kept":true}'],
        ["img-mid", ""],
        ["img-old", ""],
    ]


# -- what the writer reports ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["s.jsonl", "s.csv.gz", "s.json.gz"])
def test_sha256_and_sizes_are_of_the_stored_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    written = write(path, [IMAGES, IMAGES[:1]])
    stored = path.read_bytes()
    assert written.sha256 == hashlib.sha256(stored).hexdigest()
    assert written.bytes == len(stored)
    assert written.uncompressed_bytes == len(stored_text(path).encode("utf-8"))
    assert written.compression == ("gzip" if name.endswith(".gz") else None)
    assert written.path == str(path)


def test_oldest_and_newest_come_from_either_sort_order(tmp_path: Path) -> None:
    newest_first = write(tmp_path / "d.jsonl", [IMAGES[:2], IMAGES[2:]])
    oldest_first = write(tmp_path / "a.jsonl", [IMAGES[::-1]])
    for written in (newest_first, oldest_first):
        assert written.oldest_uploaded == "2023-12-31T23:59:59.999Z"
        assert written.newest_uploaded == "2024-03-02T10:00:00.500Z"


def test_same_inventory_gives_the_same_gzip_bytes(tmp_path: Path) -> None:
    first = write(tmp_path / "one.jsonl.gz", [IMAGES])
    second = write(tmp_path / "two.jsonl.gz", [IMAGES])
    assert first.sha256 == second.sha256
    stored = (tmp_path / "one.jsonl.gz").read_bytes()
    assert stored == (tmp_path / "two.jsonl.gz").read_bytes()
    assert stored[4:8] == bytes(4)  # gzip's mtime field: no time of writing in the file


# -- atomicity ------------------------------------------------------------------------------


def test_failure_mid_write_keeps_the_previous_file_and_removes_the_temp(tmp_path: Path) -> None:
    path = tmp_path / "inventory.jsonl.gz"
    write(path, [IMAGES[:1]])
    previous = path.read_bytes()
    target = InventoryTarget.parse(str(path))
    temp_paths = []

    def export_that_breaks() -> None:
        with InventoryWriter(target) as writer:
            writer.write_page(IMAGES)
            temp_paths.append(writer.temp_path)
            assert writer.temp_path.exists()
            raise RuntimeError("listing broke")

    with pytest.raises(RuntimeError, match="listing broke"):
        export_that_breaks()
    assert not temp_paths[0].exists()
    assert path.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inventory.jsonl.gz"]


def test_final_path_appears_only_at_commit(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "inventory.csv"
    target = InventoryTarget.parse(str(path))
    with InventoryWriter(target) as writer:
        writer.write_page(IMAGES)
        assert not path.exists()
        assert writer.temp_path.name.startswith("inventory.csv.tmp-")
        writer.commit()
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == ["inventory.csv"]


def test_a_rerun_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "inventory.json"
    write(path, [IMAGES])
    written = write(path, [IMAGES[:1]])
    assert read_back(path, "json") == IMAGES[:1]
    assert written.count == 1


# -- CSV round trip and manifest ------------------------------------------------------------

# Any text a filename or creator can hold (no NUL, no lone surrogates: not valid in JSON text
# from the API nor encodable as UTF-8).
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    filenames=st.lists(_TEXT, min_size=1, max_size=5),
    meta=st.dictionaries(_TEXT, _TEXT | st.integers() | st.booleans(), max_size=3),
)
def test_any_text_round_trips_through_the_csv_module(
    tmp_path: Path, filenames: list[str], meta: dict[str, Any]
) -> None:
    images = [
        {"id": f"id{i}", "filename": name, "creator": name, "meta": meta, "uploaded": None}
        for i, name in enumerate(filenames)
    ]
    write(tmp_path / "rt.csv.gz", [images])
    rows = read_back(tmp_path / "rt.csv.gz", "csv")
    assert rows[0] == list(CSV_COLUMNS)
    for image, row in zip(images, rows[1:], strict=True):
        cells = dict(zip(CSV_COLUMNS, row, strict=True))
        assert cells["filename"] == image["filename"] == cells["creator"]
        assert json.loads(cells["meta"]) == meta


@pytest.mark.parametrize(
    ("value", "cell"),
    [(None, ""), ("text", "text"), (True, "true"), (False, "false"), (3, "3"), ([], "[]")],
)
def test_csv_cells_are_text_or_json(tmp_path: Path, value: Any, cell: str) -> None:
    write(tmp_path / "cells.csv", [[{"id": "a", "value": value}]], fields=("id", "value"))
    assert read_back(tmp_path / "cells.csv", "csv") == [["id", "value"], ["a", cell]]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.fixed_dictionaries({"id": _TEXT}, optional={"filename": _TEXT, "meta": st.just({})}),
        max_size=4,
    )
)
def test_csv_is_what_the_csv_module_writes(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    write(tmp_path / "same.csv", [rows], fields=("id", "filename", "meta"))
    expected = io.StringIO(newline="")
    csv.writer(expected).writerows(
        [["id", "filename", "meta"]]
        + [[r["id"], r.get("filename", ""), "{}" if "meta" in r else ""] for r in rows]
    )
    assert (tmp_path / "same.csv").read_bytes() == expected.getvalue().encode("utf-8")


def test_manifest_is_json_and_reads_back(tmp_path: Path) -> None:
    written = write(tmp_path / "m.jsonl.gz", [IMAGES])
    query = ImageQuery.build(
        per_page=500, sort_order="asc", uploaded_after="2024-01-01", creator="ann", limit=9
    )
    manifest = InventoryManifest.describe(
        written,
        query=query,
        account_id="0" * 32,
        fields=("id",),
        requests=2,
        listed_at="2024-06-01T00:00:00+00:00",
    )
    data = json.loads(json.dumps(manifest.to_dict()))
    assert data["uploaded_after"] == "2024-01-01T00:00:00+00:00"
    assert data["uploaded_before"] is None
    assert (data["sort_order"], data["per_page"], data["max_images"]) == ("asc", 500, 9)
    assert (data["fields"], data["creator"], data["requests"]) == (["id"], "ann", 2)
    assert (data["count"], data["sha256"]) == (3, written.sha256)
    assert InventoryManifest.from_dict({**data, "added_later": 1}) == manifest
    with pytest.raises(ValueError, match="lacks"):
        InventoryManifest.from_dict({"path": "/x"})


@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("inventory.jsonl.gz", 0),  # open() writing the gzip header
        ("inventory.jsonl", 1000),  # a page
        ("inventory.jsonl.gz", 1000),  # commit() flushing gzip's last block
    ],
)
def test_a_storage_error_anywhere_fails_the_export_and_removes_the_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, limit: int
) -> None:
    path = tmp_path / name
    write(path, [IMAGES[:1]])
    previous = path.read_bytes()
    stored = _HashingSink.write
    failed_in: list[str] = []

    def fill_disk(self: _HashingSink, data: bytes) -> int:
        if self.nbytes + len(data) > limit:
            failed_in.append(threading.current_thread().name)
            raise OSError(28, "No space left on device")
        return stored(self, data)

    monkeypatch.setattr(_HashingSink, "write", fill_disk)
    with pytest.raises(OSError, match="No space left"):
        write(path, [IMAGES] * 500)
    assert failed_in[0] == "MainThread"  # written synchronously, in the task's own thread
    assert path.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("name", ["big.jsonl", "big.json.gz", "big.csv"])
def test_large_pages_keep_every_image(tmp_path: Path, name: str) -> None:
    page = [{**IMAGES[0], "id": f"img-{i}"} for i in range(BIG_PAGE)]
    written = write(tmp_path / name, [page, page[:3]])
    fmt = name.split(".")[1]
    stored = read_back(tmp_path / name, fmt)
    if fmt == "csv":
        assert [row[0] for row in stored[1:]] == [i["id"] for i in page + page[:3]]
    else:
        assert stored == page + page[:3]
    assert written.count == len(page) + 3


# -- pages given as the JSON the API sent ---------------------------------------------------


def write_json(path: Path, pages: list[list[bytes]], **kwargs: Any) -> Any:
    target = InventoryTarget.parse(str(path), kwargs.pop("output_format", None))
    with InventoryWriter(target, **kwargs) as writer:
        assert writer.copies_json
        for page in pages:
            uploaded = [json.loads(text).get("uploaded") for text in page]
            writer.write_json_page([msgspec.Raw(text) for text in page], uploaded)
        return writer.commit()


def compact(images: list[dict[str, Any]]) -> list[bytes]:
    return [msgspec.json.encode(image) for image in images]


@pytest.mark.parametrize("name", ["out.jsonl", "out.json", "out.jsonl.gz", "out.json.gz"])
def test_json_texts_are_stored_exactly_as_the_same_images_given_as_dicts(
    tmp_path: Path, name: str
) -> None:
    big = [{**IMAGES[0], "id": f"img-{i}"} for i in range(BIG_PAGE)]
    pages = [IMAGES[:2], [], IMAGES[2:], big]
    from_dicts = write(tmp_path / "dicts" / name, pages)
    from_texts = write_json(tmp_path / "texts" / name, [compact(page) for page in pages])
    assert (tmp_path / "texts" / name).read_bytes() == (tmp_path / "dicts" / name).read_bytes()
    assert {**vars(from_texts), "path": ""} == {**vars(from_dicts), "path": ""}
    assert from_texts.count == 3 + len(big)
    assert from_texts.oldest_uploaded == "2023-12-31T23:59:59.999Z"
    assert from_texts.newest_uploaded == "2024-03-02T10:00:00.500Z"


@pytest.mark.parametrize("name", ["pretty.jsonl", "pretty.json.gz"])
def test_pretty_printed_json_texts_are_compacted_to_one_line_each(
    tmp_path: Path, name: str
) -> None:
    texts = [
        json.dumps(IMAGES[0], indent=2).encode(),
        json.dumps(IMAGES[1]).replace(", ", ",\r ").encode(),  # a bare CR: no line count
        msgspec.json.encode(IMAGES[2]),
    ]
    assert b"\n" in texts[0]
    assert b"\r" in texts[1]
    written = write_json(tmp_path / name, [texts])
    text = stored_text(tmp_path / name)
    if name.startswith("pretty.jsonl"):
        assert len(text.splitlines()) == len(IMAGES)
        assert [json.loads(line) for line in text.splitlines()] == IMAGES
    else:
        assert len(text.splitlines()) == len(IMAGES) + 2  # "[", one line per image, "]"
        assert json.loads(text) == IMAGES
    assert written.count == len(IMAGES)


@pytest.mark.parametrize(
    ("name", "fields", "copies"),
    [
        ("a.jsonl", None, True),
        ("a.json.gz", None, True),
        ("a.jsonl", ("id",), False),
        ("a.csv", None, False),
        ("a.csv.gz", ("id",), False),
    ],
)
def test_json_texts_are_refused_where_images_must_be_reshaped(
    tmp_path: Path, name: str, fields: tuple[str, ...] | None, copies: bool
) -> None:
    with InventoryWriter(InventoryTarget.parse(str(tmp_path / name)), fields=fields) as writer:
        assert writer.copies_json is copies
        if not copies:
            with pytest.raises(ValueError, match="use write_page"):
                writer.write_json_page(compact(IMAGES), [i["uploaded"] for i in IMAGES])
            assert writer.count == 0

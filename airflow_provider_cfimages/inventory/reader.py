"""Reading key lists and exported inventories back from a file or object store, streamed.

A source is anything ``airflow.sdk.ObjectStoragePath`` opens (an absolute local path,
``file://``, ``s3://conn_id@bucket/key``, ...), in one of these formats, chosen by suffix
and optionally gzipped (``.gz``):

- ``.txt``: one key per line (line ends stripped, blank lines skipped; other whitespace is
  kept, since filenames may start or end with spaces);
- ``.csv``: a header row, then one record per row (a ``dict`` of column -> text);
- ``.jsonl`` / ``.ndjson``: one JSON value per line, read a block of lines at a time;
- ``.json``: one JSON array, decoded whole, so memory grows with the file: for large
  inventories use JSON Lines (the list operator's default format), which is streamed.

Exports written by :class:`~airflow_provider_cfimages.inventory.writer.InventoryWriter`
are read back as image dicts by :meth:`InventoryReader.images` (CSV cells turned back into
JSON values), and checked against their manifest's ``count`` and ``sha256`` when one is
given, so a reconcile never runs on a file that changed or was cut short.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import IO, Any, Literal
from urllib.parse import urlsplit

import msgspec
from airflow.sdk import ObjectStoragePath

from airflow_provider_cfimages.exceptions import (
    CloudflareImagesConfigError,
    CloudflareImagesError,
    short_repr,
)
from airflow_provider_cfimages.inventory.location import open_unrecorded, storage_path
from airflow_provider_cfimages.inventory.parquet import (
    check_uncompressed,
    file_digest,
    parquet_batches,
    require_pyarrow,
)
from airflow_provider_cfimages.inventory.writer import CSV_COLUMNS, GZIP_SUFFIX

# What a file that is not the text or gzip it claims to be raises while it is read: a bad
# gzip header or CRC, a cut-short stream, a corrupt deflate block, bytes that are not UTF-8.
_UNREADABLE = (UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error, csv.Error)

SourceFormat = Literal["txt", "csv", "jsonl", "json", "parquet"]
SOURCE_FORMATS: tuple[SourceFormat, ...] = ("txt", "csv", "jsonl", "json", "parquet")
_SUFFIX_FORMATS: dict[str, SourceFormat] = {
    ".txt": "txt",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",  # see inventory/parquet.py
}
# CSV exports hold these columns as JSON text: decode them back.
_JSON_COLUMNS = frozenset(CSV_COLUMNS) - {"id", "filename", "uploaded", "creator"}
_CHUNK = 1 << 20
_BATCH = 10_000

_json_decoder = msgspec.json.Decoder()


class InventoryIntegrityError(CloudflareImagesError):
    """An export does not match its manifest (changed, truncated or replaced since)."""


@dataclass(frozen=True)
class InventorySource:
    """A checked source file: where it is, its format, and whether it is gzipped.

    :param uri: an absolute local path or a URI ``ObjectStoragePath`` accepts.
    :param format: ``txt``, ``csv``, ``jsonl`` or ``json``.
    :param compressed: the file is gzipped.
    :param parameter: the task argument it came from, for error messages.
    """

    uri: str
    format: SourceFormat
    compressed: bool
    parameter: str = "path"
    original: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(
        cls,
        path: Any,
        *,
        parameter: str,
        file_format: Any = None,
        compressed: bool | None = None,
        allowed: tuple[SourceFormat, ...] = SOURCE_FORMATS,
    ) -> InventorySource:
        """Check a path and work out its format, without touching any storage.

        :param path: a path or URI (a ``str`` or an ``ObjectStoragePath``).
        :param parameter: the task argument's name, for error messages.
        :param file_format: the format when known (a manifest says it), else from the suffix.
        :param compressed: whether it is gzipped when known, else from a ``.gz`` suffix.
        :param allowed: the formats this caller reads.
        """
        uri = _check_uri(path, parameter)
        name = uri.rstrip("/").rsplit("/", 1)[-1].lower()
        gzipped = name.endswith(GZIP_SUFFIX)
        stem = name[: -len(GZIP_SUFFIX)] if gzipped else name
        if file_format is None:
            file_format = next(
                (fmt for suffix, fmt in _SUFFIX_FORMATS.items() if stem.endswith(suffix)), None
            )
        if file_format not in allowed:
            suffixes = ", ".join(s for s, f in _SUFFIX_FORMATS.items() if f in allowed)
            raise CloudflareImagesConfigError(
                f"{parameter} {uri!r}: cannot tell the file format; the path must end in one "
                f"of {suffixes} (optionally followed by .gz)."
            )
        gzipped = gzipped if compressed is None else compressed
        if file_format == "parquet":
            check_uncompressed(parameter, uri, gzipped)
        # An ObjectStoragePath is kept as given, with its filesystem options.
        original = path if isinstance(path, ObjectStoragePath) else None
        return cls(uri, file_format, gzipped, parameter, original)

    def path(self) -> Any:
        """The source: a ``pathlib.Path`` or an ``airflow.sdk.ObjectStoragePath``."""
        if self.original is not None:
            return self.original
        return storage_path(self.uri)


def looks_like_path(value: Any) -> bool:
    """Whether a task argument is a path or URI (text, an ``ObjectStoragePath``, a ``Path``).

    :param value: the argument after rendering.
    """
    return isinstance(value, (str, ObjectStoragePath, os.PathLike))


class _HashingReader(io.RawIOBase):
    """Reads a binary stream while counting its bytes and computing their sha256."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.nbytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.sha256.update(data)
        self.nbytes += size
        return size

    def drain(self) -> None:
        """Read what is left, so the digest covers the whole file."""
        while self.read(_CHUNK):
            pass


class InventoryReader:
    """Streams the records of one source file; see the module docstring for the formats.

    :param source: the checked source.
    """

    def __init__(self, source: InventorySource) -> None:
        self.source = source
        #: the sha256 and size of the file as stored, once it has been read to the end
        self.sha256: str | None = None
        self.nbytes = 0

    def records(self) -> Iterator[Any]:
        """Yield each record: text for ``.txt``, a dict per CSV row, JSON values otherwise."""
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[Any]]:
        """Yield the records in lists of a few thousand (cheaper than one at a time)."""
        if self.source.format == "parquet":
            yield from self._parquet_batches()
            return
        # The operators report what they read to OpenLineage themselves, named without the
        # connection id that ObjectStoragePath.open would record as hook lineage.
        with open_unrecorded(self.source.path(), "rb") as raw:
            hashing = _HashingReader(raw)
            binary: IO[bytes] = io.BufferedReader(hashing, _CHUNK)
            if self.source.compressed:
                binary = gzip.GzipFile(fileobj=binary, mode="rb")
            try:
                _skip_byte_order_mark(binary)
                yield from self._parse(binary)
            except _UNREADABLE as err:
                raise self._unreadable(err) from err
            except RecursionError:
                raise CloudflareImagesConfigError(
                    f"{self.source.parameter} {self.source.uri!r}: a value in the file is "
                    "nested too deeply to read."
                ) from None
            hashing.drain()
            self.sha256 = hashing.sha256.hexdigest()
            self.nbytes = hashing.nbytes

    def _parquet_batches(self) -> Iterator[list[Any]]:
        """Parquet needs random access: hash the file in one pass, then read its rows."""
        source = self.source
        require_pyarrow(source.parameter, source.uri)
        with open_unrecorded(source.path(), "rb") as raw:
            self.sha256, self.nbytes = file_digest(raw)
            raw.seek(0)
            yield from parquet_batches(raw, parameter=source.parameter, uri=source.uri)

    def images(self, expected: ExportExpectation | None = None) -> Iterator[dict[str, Any]]:
        """Yield the images of an export, as the API returned them.

        :param expected: the manifest's ``count`` and ``sha256``, checked at the end.
        """
        if self.source.format == "txt":
            raise CloudflareImagesConfigError(
                f"{self.source.parameter} {self.source.uri!r} is a .txt file; an inventory "
                "export is .jsonl, .csv or .json (as CloudflareImagesListOperator writes it)."
            )
        count = 0
        for batch in self.batches():
            if self.source.format == "csv":
                images = [_image_from_csv_row(row) for row in batch]
            else:
                images = self._checked_images(batch, count)
            count += len(images)
            yield from images
        if expected is not None:
            expected.check(self, count)

    # -- formats ---------------------------------------------------------------------------

    def _parse(self, binary: IO[bytes]) -> Iterator[list[Any]]:
        fmt = self.source.format
        if fmt == "txt":
            return _txt_batches(binary)
        if fmt == "jsonl":
            return self._json_line_batches(binary)
        if fmt == "json":
            return self._json_array_batches(binary)
        rows = csv.DictReader(io.TextIOWrapper(binary, encoding="utf-8", newline=""))
        return iter(lambda: list(islice(rows, _BATCH)), [])

    def _json_line_batches(self, binary: IO[bytes]) -> Iterator[list[Any]]:
        lines_before = 0
        for block in _line_blocks(binary):
            try:
                # One call decodes the whole block in C; blank lines are skipped.
                yield _json_decoder.decode_lines(block)
            except msgspec.DecodeError:
                self._raise_bad_line(block, lines_before)
            lines_before += block.count(b"\n")

    def _raise_bad_line(self, block: bytes, lines_before: int) -> None:
        for number, line in enumerate(block.split(b"\n"), start=lines_before + 1):
            if not line.strip():
                continue
            try:
                _json_decoder.decode(line)
            except msgspec.DecodeError as err:
                raise CloudflareImagesConfigError(
                    f"{self.source.parameter} {self.source.uri!r}: line {number} is not "
                    f"valid JSON ({err})."
                ) from None

    def _json_array_batches(self, binary: IO[bytes]) -> Iterator[list[Any]]:
        """The elements of the file's one JSON array, decoded in one ``json.loads`` (see the
        module docstring: JSON Lines is the format to stream)."""
        text = binary.read().decode("utf-8")
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise self._not_an_array(str(err)) from None
        if not isinstance(values, list):
            raise self._not_an_array(f"it holds {short_repr(values)}")
        for start in range(0, len(values), _BATCH):
            yield values[start : start + _BATCH]

    def _not_an_array(self, reason: str) -> CloudflareImagesConfigError:
        return CloudflareImagesConfigError(
            f"{self.source.parameter} {self.source.uri!r} must hold one JSON array: {reason}"
        )

    def _checked_images(self, batch: list[Any], count: int) -> list[dict[str, Any]]:
        for number, record in enumerate(batch, start=count + 1):
            if type(record) is not dict:
                raise CloudflareImagesConfigError(
                    f"{self.source.parameter} {self.source.uri!r}: record {number} is not an "
                    f"image object but {type(record).__name__} {short_repr(record)}."
                )
        return batch

    def _unreadable(self, err: Exception) -> CloudflareImagesConfigError:
        gz = " gzip" if self.source.compressed else ""
        return CloudflareImagesConfigError(
            f"{self.source.parameter} {self.source.uri!r} is not a readable UTF-8"
            f"{gz} {self.source.format} file: {err}"
        )


@dataclass(frozen=True)
class ExportExpectation:
    """What a manifest says its export holds, to check the file against.

    :param count: images written, or ``None`` to skip the check.
    :param sha256: hex sha256 of the file as stored, or ``None`` to skip the check.
    """

    count: int | None
    sha256: str | None

    def check(self, reader: InventoryReader, count: int) -> None:
        """Raise :class:`InventoryIntegrityError` if the file read differs from the manifest.

        :param reader: the reader, after reading to the end.
        :param count: images read.
        """
        uri = reader.source.uri
        if self.count is not None and count != self.count:
            raise InventoryIntegrityError(
                f"The export {uri!r} holds {count} images but its manifest says {self.count}: "
                "it changed since it was written (or was cut short); re-run the list task."
            )
        if self.sha256 is not None and reader.sha256 != self.sha256:
            raise InventoryIntegrityError(
                f"The export {uri!r} has sha256 {reader.sha256} but its manifest says "
                f"{self.sha256}: it changed since it was written; re-run the list task."
            )


def export_from_manifest(
    manifest: Mapping[str, Any], *, parameter: str
) -> tuple[InventorySource, ExportExpectation]:
    """The export a list operator's manifest describes, and what to check it against.

    :param manifest: the list operator's XCom value (``path``, ``format``, ``count``,
        ``sha256``, ...).
    :param parameter: the task argument it came from, for error messages.
    """
    path = manifest.get("path")
    if not path:
        raise CloudflareImagesConfigError(
            f"{parameter} must be the manifest CloudflareImagesListOperator returns with "
            f"output_path set (it has 'path', 'format', 'count', 'sha256'); got a dict with "
            f"keys {sorted(manifest)}."
        )
    compression = manifest.get("compression", ...)
    source = InventorySource.parse(
        path,
        parameter=parameter,
        file_format=manifest.get("format"),
        compressed=None if compression is ... else compression == "gzip",
        allowed=("jsonl", "csv", "json", "parquet"),
    )
    count = manifest.get("count")
    sha256 = manifest.get("sha256")
    return source, ExportExpectation(
        count if isinstance(count, int) and not isinstance(count, bool) else None,
        sha256 if isinstance(sha256, str) else None,
    )


def _line_blocks(binary: IO[bytes]) -> Iterator[bytes]:
    """The stream in blocks of about a megabyte that end at a line end (the last may not)."""
    rest = b""
    while chunk := binary.read(_CHUNK):
        block = rest + chunk
        cut = block.rfind(b"\n") + 1
        if cut:
            yield block[:cut]
            rest = block[cut:]
        else:
            rest = block
    if rest:
        yield rest


def _skip_byte_order_mark(binary: IO[bytes]) -> None:
    """Skip a UTF-8 byte order mark (spreadsheets and Windows editors write one).

    Left in place it would become part of the first key, or of the first CSV column's name.
    """
    bom = codecs.BOM_UTF8
    if binary.peek(len(bom))[: len(bom)] == bom:  # type: ignore[attr-defined]
        binary.read(len(bom))


def _txt_batches(binary: IO[bytes]) -> Iterator[list[str]]:
    for block in _line_blocks(binary):
        text = block.decode("utf-8")
        lines = text.split("\n")
        if "\r" in text:
            lines = [line.rstrip("\r") for line in lines]
        yield [line for line in lines if line]


def _image_from_csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """An image back from an export's CSV row: empty cells dropped, JSON cells decoded."""
    image: dict[str, Any] = {}
    for column, cell in row.items():
        if column is None or cell is None or cell == "":
            continue
        if column in _JSON_COLUMNS:
            try:
                image[column] = _json_decoder.decode(cell)
            except msgspec.DecodeError:
                image[column] = cell
        else:
            image[column] = cell
    return image


def _check_uri(path: Any, parameter: str) -> str:
    if isinstance(path, ObjectStoragePath):
        return str(path)
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path.strip():
        raise CloudflareImagesConfigError(
            f"{parameter} must be an absolute local path or a URI such as "
            f"'s3://aws_default@bucket/keys.txt'; got {path!r}."
        )
    uri = path.strip()
    if not urlsplit(uri).scheme and not uri.startswith("/"):
        # A worker's current directory is arbitrary, so a relative path would read anything.
        raise CloudflareImagesConfigError(
            f"{parameter} must be an absolute local path (starting with '/') or a URI such as "
            f"'file:///data/keys.txt' or 's3://conn_id@bucket/keys.csv'; got {uri!r}."
        )
    return uri

"""Writing an image inventory to a file or object store: streamed, hashed and atomic.

The data path is ``page -> fields -> encoder -> gzip (for .gz) -> hashing sink -> temporary
object``, one page at a time; :meth:`InventoryWriter.commit` then renames the temporary
object to the final path. So memory holds one page whatever the inventory size, the sha256
and byte count are of the bytes as stored without reading them back, and the final path only
ever holds a complete file: a failed, killed or retried try leaves either the previous file
or none.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Literal
from urllib.parse import urlsplit

import msgspec

from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError
from airflow_provider_cfimages.inventory.location import (
    LOCAL_PROTOCOLS,
    open_unrecorded,
    protocol_of,
    storage_path,
)
from airflow_provider_cfimages.inventory.parquet import (
    TYPED_COLUMNS,
    check_uncompressed,
    require_pyarrow,
)
from airflow_provider_cfimages.utils.timestamps import parse_uploaded
from airflow_provider_cfimages.utils.validation import check_choice, list_from_text

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

log = logging.getLogger(__name__)

InventoryFormat = Literal["jsonl", "csv", "json", "parquet"]
INVENTORY_FORMATS: tuple[InventoryFormat, ...] = ("jsonl", "csv", "json", "parquet")
#: The CSV columns, in order, when ``fields`` does not choose them: the image fields the
#: API sends, the same ones Parquet gives typed columns.
CSV_COLUMNS: tuple[str, ...] = TYPED_COLUMNS
GZIP_SUFFIX = ".gz"
# Level 3 makes files a little larger than zlib's default level 6 in about half its CPU
# (the writes are synchronous, so that CPU adds to each page). The header has no file name
# and mtime=0, so the same images always give the same bytes (and sha256).
GZIP_LEVEL = 3
_SUFFIX_FORMATS: dict[str, InventoryFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".json": "json",
    ".parquet": "parquet",  # see inventory/parquet.py
}
_OTHER_COMPRESSIONS = (".bz2", ".xz", ".zst", ".zstd", ".lz4", ".zip", ".br", ".snappy", ".gzip")
# Schemes whose ObjectStoragePath filesystem comes from a provider, for the error message.
_SCHEME_PROVIDERS = {
    "s3": "apache-airflow-providers-amazon[s3fs]",
    "s3a": "apache-airflow-providers-amazon[s3fs]",
    "s3n": "apache-airflow-providers-amazon[s3fs]",
    "gs": "apache-airflow-providers-google",
    "gcs": "apache-airflow-providers-google",
    "abfs": "apache-airflow-providers-microsoft-azure",
    "abfss": "apache-airflow-providers-microsoft-azure",
    "adl": "apache-airflow-providers-microsoft-azure",
    "az": "apache-airflow-providers-microsoft-azure",
    "wasb": "apache-airflow-providers-microsoft-azure",
    "sftp": "apache-airflow-providers-sftp",
    "ftp": "apache-airflow-providers-ftp",
}

_encoder = msgspec.json.Encoder()


# -- arguments ------------------------------------------------------------------------------


def check_fields(fields: Any) -> tuple[str, ...] | None:
    """Check ``fields``: ``None``, or a non-empty list (or comma-separated text) of keys.

    :param fields: the image keys to keep, in order.
    """
    if fields is None:
        return None
    if isinstance(fields, str):
        text = fields.strip()
        if text.startswith("["):  # a list param rendered by a template
            fields = list_from_text("fields", text)
        else:
            fields = [part.strip() for part in text.split(",")]
    if not isinstance(fields, (list, tuple)) or not fields:
        raise CloudflareImagesConfigError(
            "fields must be a non-empty list of image keys such as ['id', 'filename', "
            f"'uploaded'] (or None for every key); got {fields!r}."
        )
    if not all(isinstance(name, str) and name.strip() for name in fields):
        raise CloudflareImagesConfigError(
            f"fields must hold only non-empty key names (strings); got {list(fields)!r}."
        )
    names = tuple(name.strip() for name in fields)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise CloudflareImagesConfigError(
            f"fields must name each key once; {repeated} appear more than once."
        )
    return names


def keep_fields(image: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """The image with only ``fields``, in that order; keys the image lacks are left out.

    :param image: an image as the API returned it.
    :param fields: the keys to keep.
    """
    return {name: image[name] for name in fields if name in image}


@dataclass(frozen=True)
class InventoryTarget:
    """A checked destination: where to write, in which format, and whether gzipped.

    :param uri: an absolute local path, or a URI ``ObjectStoragePath`` accepts.
    :param format: ``jsonl``, ``csv`` or ``json``.
    :param compressed: gzip the file (the path ends in ``.gz``).
    """

    uri: str
    format: InventoryFormat
    compressed: bool

    @classmethod
    def parse(cls, output_path: Any, output_format: Any = None) -> InventoryTarget:
        """Check ``output_path`` and ``output_format`` without touching any storage.

        The format is ``output_format`` when given, else inferred from the suffix before an
        optional ``.gz`` (``.jsonl``/``.ndjson``, ``.csv``, ``.json``), else ``jsonl``.

        :param output_path: the destination (templated on the operator).
        :param output_format: ``jsonl``, ``csv``, ``json`` or ``None`` to infer it.
        """
        uri = _check_output_path(output_path)
        name = uri.rstrip("/").rsplit("/", 1)[-1].lower()
        compressed = name.endswith(GZIP_SUFFIX)
        stem = name[: -len(GZIP_SUFFIX)] if compressed else name
        _reject_other_compression(stem if compressed else name, uri)
        suffix_format = next(
            (fmt for suffix, fmt in _SUFFIX_FORMATS.items() if stem.endswith(suffix)), None
        )
        if output_format is None:
            fmt = suffix_format or "jsonl"
            if fmt == "parquet":
                check_uncompressed("output_path", uri, compressed)
            return cls(uri, fmt, compressed)
        fmt = _check_format(output_format)
        if fmt == "parquet":
            check_uncompressed("output_path", uri, compressed)
        if suffix_format is not None and suffix_format != fmt:
            raise CloudflareImagesConfigError(
                f"output_format is {fmt!r} but output_path {uri!r} ends like a "
                f"{suffix_format!r} file: make them agree (or leave output_format unset to "
                "use the suffix)."
            )
        return cls(uri, fmt, compressed)

    @property
    def protocol(self) -> str:
        """The URI scheme, ``file`` for a plain local path."""
        return protocol_of(self.uri)

    def check_filesystem(self) -> None:
        """Raise, naming ``output_path`` and the provider to install, if no filesystem serves it."""
        if self.format == "parquet":
            require_pyarrow("output_path", self.uri)
        # Local files are built into Airflow; asking has_fs would load every provider's
        # filesystem list first (seconds), for nothing.
        if self.protocol in LOCAL_PROTOCOLS:
            return
        from airflow.sdk.io import has_fs

        if has_fs(self.protocol):
            return
        provider = _SCHEME_PROVIDERS.get(self.protocol)
        advice = (
            f"install {provider}"
            if provider
            else "install the Airflow provider that supports it, or use a local path"
        )
        raise CloudflareImagesConfigError(
            f"output_path {self.uri!r}: no filesystem is registered for {self.protocol}:// "
            f"in this Airflow installation; {advice}."
        )

    def path(self) -> Any:
        """The destination: a ``pathlib.Path`` or an ``airflow.sdk.ObjectStoragePath``."""
        return storage_path(self.uri)


def _check_output_path(output_path: Any) -> str:
    if not isinstance(output_path, str) or not output_path.strip():
        raise CloudflareImagesConfigError(
            "output_path must be a local path or a URI such as "
            f"'s3://aws_default@bucket/cf/{{{{ ds }}}}.jsonl.gz'; got {output_path!r}."
        )
    uri = output_path.strip()
    if uri.endswith("/"):
        raise CloudflareImagesConfigError(
            f"output_path must name a file, not a directory; got {uri!r}."
        )
    parts = urlsplit(uri)
    if parts.scheme and parts.path.strip("/") == "":
        raise CloudflareImagesConfigError(
            f"output_path must name a file inside the bucket or container; got {uri!r}."
        )
    if not parts.scheme and not uri.startswith("/"):
        # A worker's current directory is arbitrary, so a relative path would land anywhere.
        raise CloudflareImagesConfigError(
            f"output_path must be an absolute local path (starting with '/') or a URI such "
            f"as 'file:///data/images.jsonl' or 's3://conn_id@bucket/key.jsonl'; got {uri!r}."
        )
    return uri


def _check_format(output_format: Any) -> InventoryFormat:
    expected = f"one of {list(INVENTORY_FORMATS)} (or None to infer it from output_path's suffix)"
    return check_choice("output_format", output_format, INVENTORY_FORMATS, expected=expected)


def _reject_other_compression(name: str, uri: str) -> None:
    for suffix in _OTHER_COMPRESSIONS:
        if name.endswith(suffix):
            raise CloudflareImagesConfigError(
                f"output_path {uri!r} ends in {suffix!r}, but only gzip compression is "
                "supported: end the path in '.gz' (or drop the suffix for no compression)."
            )


# -- encoding -------------------------------------------------------------------------------


def json_lines(images: Sequence[Buffer]) -> bytes:
    """JSON texts (one object each, as an API sent them), one per line.

    A compact JSON text holds no raw line break (one inside a string is escaped), so this
    is a join; a text sent pretty-printed, the one case with line breaks, is compacted first.

    :param images: the JSON texts, bytes-like.
    """
    if not images:
        return b""
    together = b"".join(images)
    if b"\n" in together or b"\r" in together:
        images = [msgspec.json.format(image, indent=-1) for image in images]
    return b"\n".join(images) + b"\n"


def _csv_cell(value: Any) -> str:
    """How a value appears in a CSV cell: text as is, ``None`` empty, anything else as JSON.

    So ``requireSignedURLs`` is ``true``/``false`` and ``meta``/``variants`` are JSON text.

    :param value: an image's value for one column.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return _encoder.encode(value).decode("utf-8")


class _PageEncoder:
    """Turns a page of images into the bytes of one format, with its header and trailer.

    :meth:`encode` takes images as dicts; :meth:`encode_json` takes them as JSON texts,
    for the formats that can copy those (JSON Lines and JSON without ``fields``).
    """

    header = b""
    trailer = b""
    copies_json = False

    def encode(self, images: list[dict[str, Any]]) -> bytes:
        raise NotImplementedError

    def encode_json(self, images: Sequence[Buffer]) -> bytes:
        raise NotImplementedError


class _JsonLinesEncoder(_PageEncoder):
    copies_json = True

    def encode(self, images: list[dict[str, Any]]) -> bytes:
        return _encoder.encode_lines(images)

    def encode_json(self, images: Sequence[Buffer]) -> bytes:
        return json_lines(images)


class _JsonArrayEncoder(_PageEncoder):
    """One JSON array, one image per line, streamed page by page (never the whole list)."""

    header = b"[\n"
    trailer = b"\n]\n"
    copies_json = True

    def __init__(self) -> None:
        self._first = True

    def encode(self, images: list[dict[str, Any]]) -> bytes:
        return self._items(_encoder.encode_lines(images))

    def encode_json(self, images: Sequence[Buffer]) -> bytes:
        return self._items(json_lines(images))

    def _items(self, lines: bytes) -> bytes:
        if not lines:
            return b""
        # The line breaks of JSON Lines are exactly the boundaries between images.
        items = lines[:-1].replace(b"\n", b",\n")
        if self._first:
            self._first = False
            return items
        return b",\n" + items


class _CsvEncoder(_PageEncoder):
    """CSV rows by ``csv.writer`` (its default dialect: minimal quoting, CRLF line ends),
    one row per image, cells as :func:`_csv_cell` shows them."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)
        self._text = io.StringIO(newline="")
        self._rows = csv.writer(self._text)
        self.header = self._encode_rows([self.columns])

    def encode(self, images: list[dict[str, Any]]) -> bytes:
        return self._encode_rows(
            [_csv_cell(image.get(name)) for name in self.columns] for image in images
        )

    def _encode_rows(self, rows: Iterable[Sequence[str]]) -> bytes:
        self._rows.writerows(rows)
        text = self._text.getvalue()
        self._text.seek(0)
        self._text.truncate()
        return text.encode("utf-8")


def _encoder_for(fmt: InventoryFormat, fields: Sequence[str] | None) -> _PageEncoder:
    if fmt == "parquet":
        from airflow_provider_cfimages.inventory.parquet import ParquetPageEncoder

        return ParquetPageEncoder(fields)  # type: ignore[return-value]
    if fmt == "csv":
        return _CsvEncoder(fields or CSV_COLUMNS)
    if fmt == "json":
        return _JsonArrayEncoder()
    return _JsonLinesEncoder()


class _HashingSink:
    """Passes bytes to the stored file while counting them and computing their sha256."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.nbytes = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.nbytes += len(data)
        self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


# -- the writer -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WrittenInventory:
    """What :meth:`InventoryWriter.commit` wrote.

    :param path: the final path, as a string ``ObjectStoragePath`` accepts.
    :param format: ``jsonl``, ``csv`` or ``json``.
    :param compression: ``gzip`` or ``None``.
    :param count: images written.
    :param pages: pages written (list pages the API returned, including empty ones).
    :param bytes: size of the file as stored (after gzip).
    :param uncompressed_bytes: size before gzip (equal to ``bytes`` without it).
    :param sha256: hex sha256 of the file as stored.
    :param oldest_uploaded: the earliest ``uploaded`` written, as the API gave it.
    :param newest_uploaded: the latest ``uploaded`` written, as the API gave it.
    """

    path: str
    format: InventoryFormat
    compression: str | None
    count: int
    pages: int
    bytes: int
    uncompressed_bytes: int
    sha256: str
    oldest_uploaded: str | None
    newest_uploaded: str | None


class _UploadRange:
    """The earliest and latest upload time seen, from each page's first and last image.

    The API sorts a listing by upload time (the hook's early stop relies on it too), so a
    page's extremes are its ends; this keeps the per-image loop out of the fast path.
    """

    def __init__(self) -> None:
        self.oldest: tuple[dt.datetime, str] | None = None
        self.newest: tuple[dt.datetime, str] | None = None

    def add(self, uploaded: Sequence[Any]) -> None:
        """Take in a page's ``uploaded`` values (only its first and last are read).

        :param uploaded: the page's upload times as the API gave them, in listing order.
        """
        if not uploaded:
            return
        for text in (uploaded[0], uploaded[-1]):
            instant = parse_uploaded(text)
            if instant is None:
                continue
            if self.oldest is None or instant < self.oldest[0]:
                self.oldest = (instant, text)
            if self.newest is None or instant > self.newest[0]:
                self.newest = (instant, text)


class InventoryWriter:
    """Streams pages of images into one file, atomically, computing count, size and sha256.

    Use it as a context manager and call :meth:`commit` at the end; leaving the block
    without committing (an error, a kill) removes the temporary object instead::

        with InventoryWriter(target) as writer:
            for page in hook.iter_pages(...):
                writer.write_page(page.images)
            written = writer.commit()

    :param target: the checked destination.
    :param fields: keep only these keys (and, in CSV, these columns in this order).
    """

    def __init__(self, target: InventoryTarget, *, fields: Sequence[str] | None = None) -> None:
        self.target = target
        self.fields = tuple(fields) if fields else None
        self.count = 0
        self.pages = 0
        self.temp_path: Any = None
        self._final_path: Any = None
        self._raw: Any = None
        self._sink: _HashingSink | None = None
        self._stream: Any = None
        self._uncompressed = 0
        self._range = _UploadRange()
        self._encoder = _encoder_for(target.format, self.fields)
        self._committed = False

    def __enter__(self) -> InventoryWriter:
        try:
            self.open()
        except BaseException:
            # __exit__ does not run when __enter__ fails; the temp object may exist already.
            self.abort()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._committed:
            self.abort()

    def open(self) -> None:
        """Create the temporary object next to the final path and write the header."""
        self._final_path = self.target.path()
        # A fresh uuid per try: concurrent or retried tries never write the same object.
        self.temp_path = self._final_path.with_name(
            f"{self._final_path.name}.tmp-{uuid.uuid4().hex}"
        )
        if self.target.protocol in LOCAL_PROTOCOLS:
            self.temp_path.parent.mkdir(parents=True, exist_ok=True)
        # Not through ObjectStoragePath.open: that would record the temp object as lineage.
        self._raw = open_unrecorded(self.temp_path, "wb")
        self._sink = _HashingSink(self._raw)
        self._stream = (
            gzip.GzipFile(
                filename="", mode="wb", fileobj=self._sink, compresslevel=GZIP_LEVEL, mtime=0
            )
            if self.target.compressed
            else self._sink
        )
        self._write(self._encoder.header)

    def write_page(self, images: list[dict[str, Any]]) -> None:
        """Append one page of images (as the API returned them).

        :param images: the page's images; ``fields`` is applied here.
        """
        if images:
            self._range.add([images[0].get("uploaded"), images[-1].get("uploaded")])
        if self.fields and self.target.format != "csv":
            images = [keep_fields(image, self.fields) for image in images]
        self._append(self._encoder.encode(images), len(images))

    @property
    def copies_json(self) -> bool:
        """Whether :meth:`write_json_page` can be used: JSON Lines or JSON, without ``fields``."""
        return self._encoder.copies_json and not self.fields

    def write_json_page(self, images: Sequence[Buffer], uploaded: Sequence[Any]) -> None:
        """Append one page of images given as the JSON the API sent, written unchanged.

        :param images: each image's JSON object, bytes-like (as
            :meth:`~airflow_provider_cfimages.hooks.images.CloudflareImagesHook.iter_json_pages`
            yields them).
        :param uploaded: each image's ``uploaded`` value, in the same order.
        """
        if not self.copies_json:
            raise ValueError(
                "write_json_page needs a JSON Lines or JSON target without fields; use "
                "write_page for CSV or when fields are chosen."
            )
        self._range.add(uploaded)
        self._append(self._encoder.encode_json(images), len(images))

    def commit(self) -> WrittenInventory:
        """Finish the file and move it to the final path; return what was written."""
        sink = self._sink
        if sink is None:
            raise ValueError("commit() needs an open writer: use InventoryWriter in a with block.")
        self._write(self._encoder.trailer)
        if self._stream is not sink:
            self._stream.close()  # gzip's last block and trailer
        self._raw.close()
        self.temp_path.rename(self._final_path)
        self._committed = True
        return WrittenInventory(
            path=str(self._final_path),
            format=self.target.format,
            compression="gzip" if self.target.compressed else None,
            count=self.count,
            pages=self.pages,
            bytes=sink.nbytes,
            uncompressed_bytes=self._uncompressed,
            sha256=sink.sha256.hexdigest(),
            oldest_uploaded=self._range.oldest[1] if self._range.oldest else None,
            newest_uploaded=self._range.newest[1] if self._range.newest else None,
        )

    def abort(self) -> None:
        """Close and delete the temporary object; the final path is left as it was."""
        for stream in (self._stream, self._raw):
            if stream is None or stream is self._sink:
                continue
            try:
                stream.close()
            except Exception:  # the write already failed; removing the temp matters more
                log.debug("Closing %s after a failure also failed", self.temp_path, exc_info=True)
        if self.temp_path is None:
            return
        try:
            self.temp_path.unlink(missing_ok=True)
        except Exception:
            log.warning(
                "Could not remove the temporary export %s; delete it by hand (the final "
                "path %s was not touched).",
                self.temp_path,
                self._final_path,
                exc_info=True,
            )
        else:
            log.info("Removed the unfinished temporary export %s", self.temp_path)

    def _append(self, data: bytes, count: int) -> None:
        """Write one encoded page and count the page and its ``count`` images."""
        self._write(data)
        self.count += count
        self.pages += 1

    def _write(self, data: bytes) -> None:
        if data:
            self._uncompressed += len(data)
            self._stream.write(data)

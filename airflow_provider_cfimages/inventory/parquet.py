"""Parquet inventories, through pyarrow (the optional extra ``parquet``).

An ``output_path`` ending in ``.parquet`` writes one Parquet file with typed columns:

==================== ===================================== ==============================
column               Parquet type                          from the API's
==================== ===================================== ==============================
``id``               string                                ``id``
``filename``         string                                ``filename``
``uploaded``         timestamp (microseconds, UTC)         ``uploaded`` (RFC 3339)
``requireSignedURLs`` boolean                              ``requireSignedURLs``
``creator``          string                                ``creator``
``meta``             string: the ``meta`` object as JSON   ``meta``
``variants``         list of strings                       ``variants``
``extra``            string: a JSON object, or null        every other key
==================== ===================================== ==============================

Keys the API adds later are kept, not dropped: they go, with their values, into the JSON
object of the ``extra`` column (null when an image has none), e.g.
``{"draft": false}``; in DuckDB ``json_extract(extra, '$.draft')``. With ``fields`` the
file has exactly those columns, in that order: the ones above typed as shown, any other
as JSON text of that key's value (and no ``extra``). A key an image lacks is null.

Images are streamed: each page becomes an Arrow record batch at once, and once the batches
hold :data:`ROW_GROUP_BYTES` of Arrow data (or :data:`ROW_GROUP_ROWS` images) they are
written out as one row group, so memory holds at most one row group whatever the
inventory's size (about 7,500 images a group for typical images). The bytes go through the same
hashing sink and temporary object as the other formats, so the manifest's ``sha256`` and
``bytes`` describe the file as stored. The file is written once, front to back; Parquet's
columns are compressed inside (Snappy), so a ``.gz`` suffix is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Sequence
from typing import IO, Any

import msgspec

from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError
from airflow_provider_cfimages.utils.timestamps import parse_uploaded

PARQUET_EXTRA = "parquet"
INSTALL_HINT = f'pip install "airflow-provider-cfimages[{PARQUET_EXTRA}]"'
#: A row group is written once its images hold this much Arrow data: writing one takes
#: about 2.5 times that in memory on top, so the export's peak stays bounded.
ROW_GROUP_BYTES = 3_000_000
#: ... or once it holds this many images (small images).
ROW_GROUP_ROWS = 100_000
#: The image fields the API sends, each a typed column (and, in order, the CSV columns).
TYPED_COLUMNS: tuple[str, ...] = (
    "id",
    "filename",
    "uploaded",
    "requireSignedURLs",
    "creator",
    "meta",
    "variants",
)
EXTRA_COLUMN = "extra"
_TYPED_NAMES = frozenset(TYPED_COLUMNS)
#: File metadata naming the columns that hold JSON text, so a reader decodes only those.
JSON_COLUMNS_KEY = b"cfimages.json_columns"
_TEXT_COLUMNS = frozenset({"id", "filename", "creator"})
_READ_BATCH = 10_000
_CHUNK = 1 << 20

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_NULL = msgspec.Raw(b"null")


class _TypedImage(msgspec.Struct):
    """The typed columns of one image, decoded in C straight from the API's JSON."""

    id: str | None = None
    filename: str | None = None
    uploaded: str | None = None
    requireSignedURLs: bool | None = None
    creator: str | None = None
    meta: msgspec.Raw = _NULL
    variants: list[str] | None = None


_decode_typed = msgspec.json.Decoder(list[_TypedImage]).decode
_decode_keys = msgspec.json.Decoder(list[dict[str, msgspec.Raw]]).decode


def require_pyarrow(parameter: str, uri: str) -> None:
    """Raise, naming ``parameter`` and the extra to install, if pyarrow is missing.

    :param parameter: the task argument (``output_path``, ``actual_from``, ...).
    :param uri: the path given.
    """
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise CloudflareImagesConfigError(
            f"{parameter} {uri!r} is a Parquet file, which needs pyarrow: install the "
            f"provider's {PARQUET_EXTRA!r} extra ({INSTALL_HINT}), or use .jsonl/.csv."
        ) from None


def check_uncompressed(parameter: str, uri: str, compressed: bool) -> None:
    """Refuse ``.parquet.gz``: Parquet compresses its columns itself.

    :param parameter: the task argument.
    :param uri: the path given.
    :param compressed: whether the path asks for gzip.
    """
    if compressed:
        raise CloudflareImagesConfigError(
            f"{parameter} {uri!r}: Parquet compresses its columns itself and readers do not "
            "open gzipped Parquet; end the path in .parquet (no .gz)."
        )


def _schema(columns: Sequence[str]) -> Any:
    import pyarrow as pa

    types = {
        "uploaded": pa.timestamp("us", tz="UTC"),
        "requireSignedURLs": pa.bool_(),
        "variants": pa.list_(pa.string()),
    }
    json_columns = [name for name in columns if name not in types and name not in _TEXT_COLUMNS]
    return pa.schema(
        [pa.field(name, types.get(name, pa.string())) for name in columns],
        metadata={JSON_COLUMNS_KEY: _encode(json_columns)},
    )


class _Collected:
    """A write-only file for pyarrow that keeps what it is given until taken."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


class ParquetPageEncoder:
    """Turns pages of images into the bytes of one Parquet file (see the module docstring).

    Used by the inventory writer like its other page encoders: :meth:`encode` (images as
    dicts) or :meth:`encode_json` (images as the API's JSON, the faster way) per page, then
    :attr:`trailer` once, which writes the last row group and the footer.

    :param fields: the columns, in order; ``None`` for the typed columns and ``extra``.
    :param row_group_rows: images per row group; ``None`` for :data:`ROW_GROUP_ROWS`.
    """

    header = b""
    #: Takes pages as the API's JSON (without ``fields``; the writer decides).
    copies_json = True

    def __init__(self, fields: Sequence[str] | None, *, row_group_rows: int | None = None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        # The system allocator for the Arrow arrays, passed per call (not set process-wide).
        self.pool = pa.system_memory_pool()
        self.columns = tuple(fields) if fields else (*TYPED_COLUMNS, EXTRA_COLUMN)
        self.with_extra = not fields
        self.schema = _schema(self.columns)
        self.row_group_rows = row_group_rows or ROW_GROUP_ROWS
        self._sink = _Collected()
        self._writer = pq.ParquetWriter(
            self._sink,
            self.schema,
            compression="snappy",
            use_dictionary=[name for name in ("creator",) if name in self.columns],
            memory_pool=self.pool,
        )
        self._batches: list[Any] = []
        self._rows = 0
        self._bytes = 0

    def encode(self, images: list[dict[str, Any]]) -> bytes:
        """Take in one page; return the bytes of the row group it completes, if any.

        :param images: the page's images, as the API returned them.
        """
        import pyarrow as pa

        if images:
            columns = [self._column(name, images) for name in self.columns]
            self._add(pa.RecordBatch.from_arrays(columns, schema=self.schema))
        return self._flush() if self._full() else b""

    def encode_json(self, images: Sequence[Any]) -> bytes:
        """Like :meth:`encode`, for a page given as the API's JSON texts (every column).

        :param images: each image's JSON object, bytes-like.
        """
        import pyarrow as pa

        if images and not self.with_extra:
            raise ValueError("encode_json writes every column; use encode with fields.")
        if images:
            page = b"[" + b",".join(images) + b"]"
            try:
                typed = _decode_typed(page)
            except msgspec.ValidationError as err:
                raise ValueError(
                    f"An image has a value that does not fit its typed Parquet column ({err}); "
                    "export as JSON Lines to keep it as sent."
                ) from None
            extra = [_extra_from_raw(keys) for keys in _decode_keys(page)]
            self._add(
                pa.RecordBatch.from_arrays(self._typed_columns(typed, extra), schema=self.schema)
            )
        return self._flush() if self._full() else b""

    def _typed_columns(self, typed: list[_TypedImage], extra: list[str | None]) -> list[Any]:
        import pyarrow as pa

        pool = self.pool

        def text(values: list[Any]) -> Any:
            return pa.array(values, type=pa.string(), memory_pool=pool)

        uploaded = text([image.uploaded for image in typed])
        try:
            uploaded = uploaded.cast(pa.timestamp("us", tz="UTC"), memory_pool=pool)
        except pa.ArrowInvalid:
            # The per-image parser, for what Arrow's ISO 8601 reader rejects (and its error).
            uploaded = pa.array(
                [_timestamp({"id": i.id, "uploaded": i.uploaded}) for i in typed],
                type=pa.timestamp("us", tz="UTC"),
                memory_pool=pool,
            )
        meta = [None if image.meta == _NULL else bytes(image.meta).decode() for image in typed]
        return [
            text([image.id for image in typed]),
            text([image.filename for image in typed]),
            uploaded,
            pa.array([i.requireSignedURLs for i in typed], type=pa.bool_(), memory_pool=pool),
            text([image.creator for image in typed]),
            text(meta),
            pa.array(
                [image.variants for image in typed], type=pa.list_(pa.string()), memory_pool=pool
            ),
            text(extra),
        ]

    def _add(self, batch: Any) -> None:
        self._batches.append(batch)
        self._rows += batch.num_rows
        self._bytes += batch.nbytes

    def _full(self) -> bool:
        return self._rows >= self.row_group_rows or self._bytes >= ROW_GROUP_BYTES

    @property
    def trailer(self) -> bytes:
        """The last row group and the Parquet footer (closes the file)."""
        data = self._flush()
        self._writer.close()
        return data + self._sink.take()

    def _flush(self) -> bytes:
        import pyarrow as pa

        if self._batches:
            table = pa.Table.from_batches(self._batches, schema=self.schema)
            self._batches, self._rows, self._bytes = [], 0, 0
            self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
            del table
            # The Parquet column encoders allocate from pyarrow's default pool, which keeps
            # freed memory for reuse; handing it back after each row group keeps the peak
            # at one row group (this frees unused memory only, it changes no setting).
            pa.default_memory_pool().release_unused()
        return self._sink.take()

    def _column(self, name: str, images: list[dict[str, Any]]) -> Any:
        import pyarrow as pa

        values = [image.get(name) for image in images]
        if name == EXTRA_COLUMN and self.with_extra:
            values = [_extra_json(image) for image in images]
        elif name == "uploaded":
            values = [_timestamp(image) for image in images]
        elif name == "requireSignedURLs":
            _check_all(values, bool, name, images)
        elif name == "variants":
            _check_all(values, list, name, images)
        elif name in _TEXT_COLUMNS:
            _check_all(values, str, name, images)
        else:  # meta, and keys chosen with fields that have no type of their own
            values = [None if value is None else _encode(value).decode() for value in values]
        return pa.array(values, type=self.schema.field(name).type, memory_pool=self.pool)


def _extra_from_raw(keys: dict[str, msgspec.Raw]) -> str | None:
    """The JSON object of an image's keys beyond the typed columns, copied as sent."""
    if len(keys) <= len(TYPED_COLUMNS) and keys.keys() <= _TYPED_NAMES:
        return None
    others = [(name, raw) for name, raw in keys.items() if name not in _TYPED_NAMES]
    if not others:
        return None
    return _encode(dict(others)).decode()


def _extra_json(image: dict[str, Any]) -> str | None:
    others = {key: value for key, value in image.items() if key not in TYPED_COLUMNS}
    return _encode(others).decode() if others else None


def _timestamp(image: dict[str, Any]) -> dt.datetime | None:
    text = image.get("uploaded")
    if text is None:
        return None
    instant = parse_uploaded(text)
    if instant is None:
        raise ValueError(
            f"Image {image.get('id')!r} has an 'uploaded' of {text!r}, not an RFC 3339 time, "
            "so it has no place in the Parquet timestamp column; export as JSON Lines to "
            "keep it as sent."
        )
    return instant


def _check_all(values: list[Any], kind: type, name: str, images: list[dict[str, Any]]) -> None:
    for value, image in zip(values, images, strict=True):
        if value is not None and not isinstance(value, kind):
            raise ValueError(
                f"Image {image.get('id')!r} has {name}={value!r}, not a {kind.__name__}, so it "
                f"has no place in the typed Parquet column {name!r}; export as JSON Lines to "
                "keep it as sent."
            )
        if kind is list and value is not None and not all(isinstance(v, str) for v in value):
            raise ValueError(
                f"Image {image.get('id')!r} has variants that are not all strings: {value!r}."
            )


# -- reading ---------------------------------------------------------------------------------


def file_digest(raw: IO[bytes]) -> tuple[str, int]:
    """The sha256 and size of a stream read to its end.

    :param raw: a binary stream at its start.
    """
    digest = hashlib.sha256()
    size = 0
    while chunk := raw.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def parquet_batches(raw: IO[bytes], *, parameter: str, uri: str) -> Iterator[list[dict[str, Any]]]:
    """The rows of a Parquet file in lists of a few thousand, as image dicts.

    Typed columns come back as the API's JSON values (``uploaded`` as RFC 3339 text with
    ``Z``, ``meta`` and the JSON-text columns decoded); ``extra``'s keys are merged into
    the image; null cells are left out, as a key the image lacked.

    :param raw: the file, opened for binary reading (Parquet needs to seek).
    :param parameter: the task argument, for errors.
    :param uri: the path, for errors.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(raw)
        # Only this provider's exports say which columns hold JSON; others stay as they are.
        listed = (parquet.schema_arrow.metadata or {}).get(JSON_COLUMNS_KEY)
        json_columns = _decode(listed) if listed else []
        for batch in parquet.iter_batches(batch_size=_READ_BATCH):
            yield [_image_from_row(row, json_columns) for row in batch.to_pylist()]
    except (pa.ArrowException, OSError) as err:
        raise CloudflareImagesConfigError(
            f"{parameter} {uri!r} is not a readable Parquet file: {err}"
        ) from None


def _image_from_row(row: dict[str, Any], json_columns: list[str]) -> dict[str, Any]:
    image: dict[str, Any] = {}
    for name, value in row.items():
        if value is None:
            continue
        if name == EXTRA_COLUMN and EXTRA_COLUMN in json_columns:
            image.update(_decode(value))
        elif name in json_columns:
            image[name] = _json_or_text(value)
        elif isinstance(value, dt.datetime):
            image[name] = _rfc3339(value)
        else:
            image[name] = value
    return image


def _json_or_text(text: str) -> Any:
    try:
        return _decode(text)
    except msgspec.DecodeError:
        return text


def _rfc3339(value: dt.datetime) -> str:
    """The API's form: UTC with ``Z`` and milliseconds (microseconds only when present)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    text = value.astimezone(dt.timezone.utc).isoformat(timespec=spec)
    return text.replace("+00:00", "Z")

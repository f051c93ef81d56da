"""The reconcile engine: compare the keys a system of record expects with those Cloudflare has.

Two streams of records go in; counts, bounded samples and report rows come out. The
operators in :mod:`airflow_provider_cfimages.operators.images` feed it and write its rows.

Memory stays bounded at millions of keys a side because the comparison runs in SQLite
(the standard library's :mod:`sqlite3`), in a private database file in ``temp_dir``: both
sides are inserted, indexed by key, and compared with ``NOT EXISTS`` (missing, unexpected),
``GROUP BY ... HAVING count(*) > 1`` (duplicates) and a join on the key (metadata drift).
The file is unlinked as soon as it is open, so nothing is left behind even if the task
is killed. SQLite's own spill files for sorting go to its temporary directory
(``SQLITE_TMPDIR``, else ``TMPDIR``, else ``/var/tmp`` or ``/tmp``), also unlinked at once.

Keys are compared as given, byte for byte (case and whitespace included), and sorted as
Python sorts text. Rows are emitted kind by kind (in :data:`ROW_KINDS` order), each kind
sorted by key (and image id), so the same inputs always give the same report, row for row.

Records are tuples, to keep a million of them cheap:

- expected: ``(key, meta)``, where ``meta`` is :func:`canonical_meta` bytes of the meta the
  image should have, or ``None`` when this key's meta is not checked;
- actual: ``(key, image_id, uploaded, meta)``, where ``image_id`` is ``None`` when it equals
  the key (reconciling by id), ``uploaded`` is the image's upload time as the API gave it,
  and ``meta`` its canonical meta (only needed when comparing meta).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import chain, groupby, islice
from operator import itemgetter
from typing import Any

import msgspec

ExpectedRecord = tuple[str, bytes | None]
ActualRecord = tuple[str, str | None, str | None, bytes | None]
Row = dict[str, Any]
RowSink = Callable[[list[Row]], None]

MISSING = "missing"
UNEXPECTED = "unexpected"
DRIFTED = "drifted"
DUPLICATE_EXPECTED = "duplicate_expected"
DUPLICATE_ACTUAL = "duplicate_actual"
#: Every row kind, in the order the report lists them.
ROW_KINDS: tuple[str, ...] = (
    DUPLICATE_EXPECTED,
    DUPLICATE_ACTUAL,
    MISSING,
    UNEXPECTED,
    DRIFTED,
)
DEFAULT_SAMPLE_SIZE = 20
#: Report rows handed to the sink per call.
DEFAULT_BATCH_SIZE = 10_000
# The meta of an image without metadata: the API leaves the key out.
NO_META = b"{}"

_meta_encoder = msgspec.json.Encoder(order="sorted")
_json_decoder = msgspec.json.Decoder()


def canonical_meta(meta: Any) -> bytes:
    """The JSON of a meta object with keys sorted, so equal metas give equal bytes.

    An absent meta (``None``) is the empty object, as the API omits ``meta`` when an image
    has none.

    :param meta: an image's ``meta`` (or an expected one).
    """
    return NO_META if meta is None else _meta_encoder.encode(meta)


def decode_meta(meta: bytes) -> Any:
    """The meta object back from :func:`canonical_meta` bytes.

    :param meta: canonical meta bytes.
    """
    return _json_decoder.decode(meta)


def expected_records(
    values: Iterable[Any],
    *,
    key_field: str,
    meta_field: str | None = None,
    metas: Mapping[str, Any] | None = None,
    parameter: str = "expected",
) -> Iterator[ExpectedRecord]:
    """Turn the values a user gave as the expected side into ``(key, meta)`` records.

    A value is a key (``str``), a record (a ``dict`` holding the key under ``key_field``, as a
    CSV row or JSON object is), or a row of a SQL result (a list or tuple whose first
    column is the key).

    :param values: the expected values, streamed.
    :param key_field: the key's field in ``dict`` records.
    :param meta_field: the field of ``dict`` records that holds the expected meta (an
        object, or its JSON text as in CSV); ``None`` or empty for "not checked".
    :param metas: expected metas by key, instead of ``meta_field``.
    :param parameter: the task argument, for error messages.
    """
    for number, value in enumerate(values, start=1):
        if type(value) is str and meta_field is None and metas is None:
            yield value, None  # the common case, kept cheap
            continue
        key = _key_of(value, key_field, number, parameter)
        if metas is not None:
            meta = _meta_of(metas.get(key), key, "expected_meta")
        elif meta_field is not None:
            if not isinstance(value, dict):
                raise ValueError(
                    f"expected_meta names the field {meta_field!r}, but {parameter} record "
                    f"{number} is not a record with fields: {_quote(value)}."
                )
            meta = _meta_of(value.get(meta_field), key, f"{parameter} field {meta_field!r}")
        else:
            meta = None
        yield key, meta


def actual_records(
    images: Iterable[dict[str, Any]], *, key: str, compare_meta: bool
) -> Iterator[ActualRecord]:
    """Turn live images (as the API returns them) into ``(key, id, uploaded, meta)`` records.

    An image without a ``filename`` has the key ``""`` when reconciling by filename.

    :param images: the images, streamed.
    :param key: ``id`` or ``filename``.
    :param compare_meta: keep each image's canonical meta.
    """
    for image in images:
        try:
            image_id = image["id"]
        except (KeyError, TypeError):
            raise ValueError(f"An image record has no 'id': {_quote(image)}") from None
        if type(image_id) is not str:
            raise ValueError(f"An image record's 'id' is not text: {_quote(image)}")
        meta = canonical_meta(image.get("meta")) if compare_meta else None
        if key == "id":
            yield image_id, None, image.get("uploaded"), meta
        else:
            filename = image.get(key)
            yield (
                filename if isinstance(filename, str) else "",
                image_id,
                image.get("uploaded"),
                meta,
            )


def _key_of(value: Any, field: str, number: int, parameter: str) -> str:
    if isinstance(value, dict):
        if field not in value:
            raise ValueError(
                f"{parameter} record {number} has no field {field!r} (it has "
                f"{sorted(map(str, value))[:10]}); set expected_field to the field holding "
                "the key."
            )
        key = value[field]
    elif isinstance(value, (list, tuple)) and value:
        key = value[0]
    else:
        key = value
    if not isinstance(key, str):
        raise ValueError(
            f"{parameter} record {number}: the key must be text (an image id or filename); "
            f"got {type(key).__name__} {_quote(key)}."
        )
    return key


def _meta_of(value: Any, key: str, source: str) -> bytes | None:
    """The canonical expected meta, or ``None`` when this key's meta is not checked.

    Absent, ``None``, empty text and JSON ``null`` all mean "not checked"; ``{}`` means
    "the image must have no meta".
    """
    if value is None or value == "":
        return None
    meta = value
    if isinstance(value, str):
        try:
            meta = _json_decoder.decode(value)
        except msgspec.DecodeError:
            meta = ...
        if meta is None:  # JSON null, as a NULL database column exports
            return None
    if not isinstance(meta, dict):
        raise ValueError(
            f"{source} for key {key!r} must be a JSON object (the image's meta), or JSON "
            f"text of one; got {_quote(value)}."
        )
    return canonical_meta(meta)


@dataclass
class ReconcileSummary:
    """What a reconcile found: counts, and the first keys of each kind in sorted order.

    ``expected`` and ``actual`` count records as read (duplicates included); ``matched``,
    ``missing_count`` and the duplicate counts count distinct keys; ``unexpected_count``
    and ``drifted_count`` count images (with ``key="filename"`` one key may name several).

    :param key: what identifies an image on both sides, ``id`` or ``filename``.
    :param sample_size: how many keys each sample list keeps.
    """

    key: str
    sample_size: int = DEFAULT_SAMPLE_SIZE
    expected: int = 0
    actual: int = 0
    matched: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROW_KINDS, 0))
    samples: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in ROW_KINDS})

    @property
    def in_sync(self) -> bool:
        """Whether nothing differs: no missing, unexpected, drifted or duplicated key."""
        return not any(self.counts.values())

    def add(self, kind: str, keys: list[str]) -> None:
        """Count rows of one kind and keep the first keys as the sample.

        :param kind: one of :data:`ROW_KINDS`.
        :param keys: the rows' keys; over all calls for one kind, in sorted order.
        """
        self.counts[kind] += len(keys)
        sample = self.samples[kind]
        sample.extend(keys[: self.sample_size - len(sample)])

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON data (the XCom value, without ``report_path``)."""
        counts = self.counts
        return {
            "key": self.key,
            "expected": self.expected,
            "actual": self.actual,
            "matched": self.matched,
            "missing_count": counts[MISSING],
            "unexpected_count": counts[UNEXPECTED],
            "drifted_count": counts[DRIFTED],
            "duplicate_expected_count": counts[DUPLICATE_EXPECTED],
            "duplicate_actual_count": counts[DUPLICATE_ACTUAL],
            "in_sync": self.in_sync,
            **{kind: list(self.samples[kind]) for kind in ROW_KINDS},
        }


class Reconciler:
    """Compares an expected key stream with the live inventory's and reports the differences.

    Usage::

        summary = Reconciler(key="id").run(expected_records, actual_records, sink=rows.extend)

    :param key: what identifies an image, ``id`` or ``filename`` (used in the summary).
    :param compare_meta: compare metas of matched keys whose expected meta is not ``None``.
    :param sample_size: keys kept per kind in the summary.
    :param temp_dir: directory for the temporary database (the system default when ``None``).
    :param batch_size: report rows handed to ``sink`` per call.
    """

    def __init__(
        self,
        *,
        key: str = "id",
        compare_meta: bool = False,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        temp_dir: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.key = key
        self.compare_meta = compare_meta
        self.sample_size = _whole("sample_size", sample_size, minimum=0)
        self.temp_dir = temp_dir
        self.batch_size = _whole("batch_size", batch_size, minimum=1)
        #: size in bytes of the temporary database the last run used
        self.disk_bytes = 0

    def run(
        self,
        expected: Iterable[ExpectedRecord],
        actual: Iterable[ActualRecord],
        sink: RowSink | None = None,
    ) -> ReconcileSummary:
        """Read both sides, compare them, and pass report rows to ``sink``.

        The expected side is read completely before the actual side is started.

        :param expected: ``(key, meta)`` records; see the module docstring.
        :param actual: ``(key, image_id, uploaded, meta)`` records.
        :param sink: called with each batch of report rows (rows of one kind, in order).
        """
        summary = ReconcileSummary(key=self.key, sample_size=self.sample_size)
        with _scratch_database(self.temp_dir) as database:
            comparison = _Comparison(database, compare_meta=self.compare_meta)
            summary.expected = comparison.load_expected(expected)
            summary.actual = comparison.load_actual(actual)
            comparison.index()
            findings = {
                DUPLICATE_EXPECTED: comparison.duplicate_expected(),
                DUPLICATE_ACTUAL: comparison.duplicate_actual(),
                MISSING: comparison.missing(),
                UNEXPECTED: comparison.unexpected(),
                DRIFTED: comparison.drifted() if self.compare_meta else iter(()),
            }
            for kind in ROW_KINDS:
                self._report(kind, findings[kind], summary, sink)
            summary.matched = comparison.distinct_expected() - summary.counts[MISSING]
            self.disk_bytes = comparison.size()
        return summary

    def _report(
        self, kind: str, rows: Iterator[Row], summary: ReconcileSummary, sink: RowSink | None
    ) -> None:
        while batch := list(islice(rows, self.batch_size)):
            summary.add(kind, [row["key"] for row in batch])
            if sink is not None:
                sink(batch)


# SQLite settings of this connection only: the file is scratch space (no journal, no fsync,
# nothing to recover after a crash), with a bounded page cache and sorts spilled to files.
_PRAGMAS = (
    "journal_mode = OFF",
    "synchronous = OFF",
    "locking_mode = EXCLUSIVE",
    "temp_store = FILE",
    "cache_size = -16384",  # KiB
)
# Rows per INSERT statement: 4 values a row stays under SQLite's oldest parameter limit (999).
_ROWS_PER_INSERT = 200
# Bound as text (see _sql_text) and stored as blobs.
_TEXT_COLUMNS = frozenset({"key", "id"})
_SCHEMA = (
    "CREATE TABLE expected (key BLOB NOT NULL, meta BLOB)",
    "CREATE TABLE actual (key BLOB NOT NULL, id BLOB, uploaded, meta BLOB)",
)


@contextmanager
def _scratch_database(temp_dir: str | None) -> Iterator[sqlite3.Connection]:
    """A connection to a new, private SQLite file that is deleted whatever happens.

    :param temp_dir: the directory for the file (the system default when ``None``).
    """
    handle, path = tempfile.mkstemp(prefix="cfimages-reconcile-", suffix=".sqlite3", dir=temp_dir)
    os.close(handle)
    try:
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            # The connection holds the file open: unlinked now, a killed task leaves nothing.
            # (Windows cannot unlink an open file; it is deleted below instead.)
            with suppress(PermissionError):
                os.unlink(path)
            for pragma in _PRAGMAS:
                connection.execute(f"PRAGMA {pragma}")
            yield connection
        finally:
            connection.close()
    finally:
        with suppress(FileNotFoundError):
            os.unlink(path)


class _Comparison:
    """Both sides in SQLite tables, and the queries that find each kind of difference.

    Text is stored as UTF-8 blobs (``surrogatepass``, as JSON may carry lone surrogates),
    which SQLite compares byte for byte and orders as Python orders the text. An actual
    record's ``id`` is ``NULL`` when the image id is the key.

    :param connection: an empty database.
    :param compare_meta: store the metas too.
    """

    def __init__(self, connection: sqlite3.Connection, *, compare_meta: bool) -> None:
        self.connection = connection
        self.compare_meta = compare_meta
        for statement in _SCHEMA:
            connection.execute(statement)

    def load_expected(self, records: Iterable[ExpectedRecord]) -> int:
        """Insert the expected records; returns how many there were."""
        if self.compare_meta:
            pairs = ((_sql_text(key), meta) for key, meta in records)
            return self._insert("expected", ("key", "meta"), pairs)
        return self._insert("expected", ("key",), ((_sql_text(key),) for key, _ in records))

    def load_actual(self, records: Iterable[ActualRecord]) -> int:
        """Insert the live records; returns how many there were."""
        columns = ("key", "id", "uploaded") + (("meta",) if self.compare_meta else ())
        return self._insert("actual", columns, self._actual_rows(records))

    def index(self) -> None:
        """Index both sides by key (call once both are loaded)."""
        # Built once both sides are in: one sort each, much faster than growing them row by
        # row. With the metas in them, the drift join reads only the indexes, in key order.
        meta = ", meta" if self.compare_meta else ""
        with self._transaction():
            self.connection.execute(f"CREATE INDEX expected_by_key ON expected (key{meta})")
            self.connection.execute(f"CREATE INDEX actual_by_key ON actual (key, id{meta})")

    def duplicate_expected(self) -> Iterator[Row]:
        """Expected keys given more than once, with how often, by key."""
        query = "SELECT key, count(*) FROM expected GROUP BY key HAVING count(*) > 1 ORDER BY key"
        for key, count in self.connection.execute(query):
            yield {"kind": DUPLICATE_EXPECTED, "key": _text(key), "count": count}

    def duplicate_actual(self) -> Iterator[Row]:
        """Keys that several live records share, with how often and their distinct ids."""
        query = (
            "SELECT key, id FROM actual WHERE key IN "
            "(SELECT key FROM actual GROUP BY key HAVING count(*) > 1) ORDER BY key"
        )
        for stored_key, records in groupby(self.connection.execute(query), itemgetter(0)):
            key = _text(stored_key)
            ids = [key if image_id is None else _text(image_id) for _, image_id in records]
            yield {
                "kind": DUPLICATE_ACTUAL,
                "key": key,
                "count": len(ids),
                "ids": sorted(set(ids)),
            }

    def missing(self) -> Iterator[Row]:
        """Expected keys that no live record has, by key."""
        query = (
            "SELECT key FROM expected AS e "
            "WHERE NOT EXISTS (SELECT 1 FROM actual AS a WHERE a.key = e.key) "
            "GROUP BY key ORDER BY key"
        )
        for (key,) in self.connection.execute(query):
            yield {"kind": MISSING, "key": _text(key)}

    def unexpected(self) -> Iterator[Row]:
        """Live images whose key is not expected, by key and id (each image once)."""
        # With min(rowid), SQLite takes the other columns from the image's first record.
        query = (
            "SELECT key, id, uploaded, min(rowid) FROM actual AS a "
            "WHERE NOT EXISTS (SELECT 1 FROM expected AS e WHERE e.key = a.key) "
            "GROUP BY key, id ORDER BY key, coalesce(id, key)"
        )
        for stored_key, image_id, uploaded, _ in self.connection.execute(query):
            yield _live_row(UNEXPECTED, stored_key, image_id, uploaded)

    def drifted(self) -> Iterator[Row]:
        """Live images whose meta differs from their key's expected one, by key and id.

        A key's expected meta is its first one that is not ``None``; an image listed more
        than once is reported once, with its first differing record.
        """
        query = (
            "SELECT a.key, a.id, a.uploaded, a.meta, w.meta, min(a.rowid) FROM "
            "(SELECT key, meta, min(rowid) FROM expected WHERE meta IS NOT NULL GROUP BY key)"
            " AS w JOIN actual AS a ON a.key = w.key WHERE a.meta != w.meta "
            "GROUP BY a.key, a.id ORDER BY a.key, coalesce(a.id, a.key)"
        )
        for stored_key, image_id, uploaded, meta, wanted, _ in self.connection.execute(query):
            row = _live_row(DRIFTED, stored_key, image_id, uploaded)
            row["expected_meta"] = decode_meta(wanted)
            row["actual_meta"] = decode_meta(meta)
            yield row

    def distinct_expected(self) -> int:
        """How many distinct keys the expected side holds."""
        (count,) = self.connection.execute("SELECT count(DISTINCT key) FROM expected").fetchone()
        return int(count)

    def size(self) -> int:
        """The database's size in bytes."""
        (pages,) = self.connection.execute("PRAGMA page_count").fetchone()
        (page_size,) = self.connection.execute("PRAGMA page_size").fetchone()
        return int(pages) * int(page_size)

    def _actual_rows(self, records: Iterable[ActualRecord]) -> Iterator[tuple[Any, ...]]:
        compare_meta = self.compare_meta
        for key, image_id, uploaded, meta in records:
            stored_id = None if not image_id or image_id == key else _sql_text(image_id)
            if compare_meta:
                yield _sql_text(key), stored_id, _sql_value(uploaded), meta or NO_META
            else:
                yield _sql_text(key), stored_id, _sql_value(uploaded)

    def _insert(self, table: str, columns: tuple[str, ...], rows: Iterator[tuple[Any, ...]]) -> int:
        """Insert rows, a batch per statement (far fewer calls than one per row)."""
        row = ", ".join("CAST(? AS BLOB)" if name in _TEXT_COLUMNS else "?" for name in columns)
        into = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        batch_statement = into + ", ".join([f"({row})"] * _ROWS_PER_INSERT)
        count = 0
        with self._transaction():
            while batch := list(islice(rows, _ROWS_PER_INSERT)):
                count += len(batch)
                if len(batch) == _ROWS_PER_INSERT:
                    self.connection.execute(batch_statement, list(chain.from_iterable(batch)))
                else:
                    self.connection.executemany(f"{into}({row})", batch)
        return count

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # One transaction per step; without one SQLite would commit every row.
        self.connection.execute("BEGIN")
        yield
        self.connection.execute("COMMIT")


def _sql_text(text: str) -> str | bytes:
    """Text to bind for a ``CAST(? AS BLOB)``: as is, or UTF-8 if SQLite could not take it."""
    # SQLite takes text as UTF-8, which lone surrogates (JSON may carry them) are not.
    return text if text.isascii() else text.encode("utf-8", "surrogatepass")


def _text(blob: bytes) -> str:
    """The text :func:`_sql_text` stored."""
    return blob.decode("utf-8", "surrogatepass")


def _live_row(kind: str, stored_key: bytes, image_id: bytes | None, uploaded: Any) -> Row:
    """The result row of a live image, by its stored key, id and upload time.

    An image listed without an id is reported under its key.
    """
    key = _text(stored_key)
    return {
        "kind": kind,
        "key": key,
        "id": key if image_id is None else _text(image_id),
        "uploaded": _value(uploaded),
    }


def _sql_value(value: Any) -> str | bytes | None:
    """A JSON value (the upload time), stored exactly: text as text, anything else as JSON."""
    if type(value) is str and value.isascii():
        return value
    if value is None:
        return None
    # The stdlib encoder, as it writes lone surrogates (as escapes) and integers of any size.
    return json.dumps(value).encode()


def _value(stored: str | bytes | None) -> Any:
    """The value :func:`_sql_value` stored."""
    return json.loads(stored) if isinstance(stored, bytes) else stored


def _whole(name: str, value: Any, *, minimum: int) -> int:
    # Not utils.validation.check_whole: that module, like exceptions, imports Airflow, and
    # the engine needs nothing from it (a task has it loaded anyway; a benchmark need not).
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}; got {value!r}.")
    return value


def _quote(value: Any) -> str:
    """A bad record, shortened for an error message."""
    # Imported only when there is an error to report, for the reason given in _whole.
    from airflow_provider_cfimages.exceptions import short_repr

    return short_repr(value)

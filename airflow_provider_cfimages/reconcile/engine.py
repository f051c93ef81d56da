"""The reconcile engine: compare the keys a system of record expects with those Cloudflare has.

Pure and I/O-free apart from its own temporary files: two streams of records go in, counts,
bounded samples and report rows come out. The operators in
:mod:`airflow_provider_cfimages.operators.images` feed it and write its rows.

How it stays fast and bounded at a million keys a side (a Grace hash join):

- each side is split into :data:`PARTITIONS` buckets by a CRC-32 of the key, so every key
  of one bucket on one side can only match keys of the same bucket on the other side;
- buckets are kept as plain lists, and once a side holds ``spill_at`` records they are
  appended to an anonymous temporary file as msgpack blocks and the lists are emptied;
- then each bucket pair is loaded alone (one 64th of the data) and compared with set
  operations, which run in C; only the keys that differ cost Python work.

So memory holds ``spill_at`` records plus one bucket pair, whatever the input size, and the
output is the same whether or not anything was spilled (CRC-32 is stable across runs,
unlike ``hash()``), so the same inputs always give the same report, row for row.

Records are tuples, to keep a million of them cheap:

- expected: ``(key, meta)``, where ``meta`` is :func:`canonical_meta` bytes of the meta the
  image should have, or ``None`` when this key's meta is not checked;
- actual: ``(key, image_id, uploaded, meta)``, where ``image_id`` is ``None`` when it equals
  the key (reconciling by id), ``uploaded`` is the image's upload time as the API gave it,
  and ``meta`` its canonical meta (only needed when comparing meta).
"""

from __future__ import annotations

import heapq
import operator
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import compress, count, islice, repeat
from typing import IO, Any, NamedTuple

import msgspec

from airflow_provider_cfimages.exceptions import short_repr

ExpectedRecord = tuple[str, bytes | None]
ActualRecord = tuple[str, str | None, str | None, bytes | None]
Row = dict[str, Any]
RowSink = Callable[[list[Row]], None]

MISSING = "missing"
UNEXPECTED = "unexpected"
DRIFTED = "drifted"
DUPLICATE_EXPECTED = "duplicate_expected"
DUPLICATE_ACTUAL = "duplicate_actual"
#: Every row kind, in the order rows of one bucket are emitted.
ROW_KINDS: tuple[str, ...] = (
    DUPLICATE_EXPECTED,
    DUPLICATE_ACTUAL,
    MISSING,
    UNEXPECTED,
    DRIFTED,
)
#: Buckets per side; a power of two so the bucket is a bit mask of the CRC.
PARTITIONS = 64
#: Records a side holds in memory before spilling them to its temporary file.
DEFAULT_SPILL_AT = 100_000
DEFAULT_SAMPLE_SIZE = 20
# The meta of an image without metadata: the API leaves the key out.
NO_META = b"{}"

_meta_encoder = msgspec.json.Encoder(order="sorted")
_block_encoder = msgspec.msgpack.Encoder()
_block_decoder = msgspec.msgpack.Decoder()
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
                    f"{number} is not a record with fields: {short_repr(value)}."
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
            raise ValueError(f"An image record has no 'id': {short_repr(image)}") from None
        if type(image_id) is not str:
            raise ValueError(f"An image record's 'id' is not text: {short_repr(image)}")
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
            f"got {type(key).__name__} {short_repr(key)}."
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
            f"text of one; got {short_repr(value)}."
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
        """Count rows of one kind and keep the smallest keys as the sample.

        :param kind: one of :data:`ROW_KINDS`.
        :param keys: the rows' keys, sorted.
        """
        if not keys:
            return
        self.counts[kind] += len(keys)
        sample = self.samples[kind]
        # Buckets are visited in hash order, so merge to keep the globally smallest keys.
        self.samples[kind] = heapq.nsmallest(self.sample_size, sample + keys[: self.sample_size])

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


class _Spool:
    """One side's records split into buckets, spilled to a temporary file past a threshold.

    Spilled buckets are stored by column (keys, ids, ...), so the set operations read only
    the keys, and the other columns are decoded only for buckets where something differs.

    :param width: how many leading fields of each record to keep (1: only the key).
    :param spill_at: records held in memory before spilling.
    :param temp_dir: where the temporary file goes (the system default when ``None``).
    """

    def __init__(self, *, width: int, spill_at: int, temp_dir: str | None) -> None:
        self.width = width
        self.spill_at = spill_at
        self.temp_dir = temp_dir
        self.count = 0
        # In memory: keys (width 1) or record tuples, per bucket.
        self.rows: list[list[Any]] = [[] for _ in range(PARTITIONS)]
        # Spilled: per bucket, per block, the (offset, length) of each column.
        self.blocks: list[list[list[tuple[int, int]]]] = [[] for _ in range(PARTITIONS)]
        self.file: IO[bytes] | None = None

    @property
    def spilled_bytes(self) -> int:
        """Size of the temporary file (0 when nothing was spilled)."""
        return 0 if self.file is None else self.file.seek(0, 2)

    def extend(self, records: Iterable[tuple[Any, ...]]) -> None:
        """Add records, spilling whenever ``spill_at`` of them are held.

        :param records: tuples whose first item is the key (a ``str``).
        """
        iterator = iter(records)
        while batch := list(islice(iterator, self.spill_at)):
            self._split(batch)
            self.count += len(batch)
            if len(batch) == self.spill_at:
                self._spill()

    def column(self, bucket: int, index: int) -> list[Any]:
        """One field of every record of a bucket, spilled or not, in input order.

        :param bucket: the bucket number.
        :param index: the field (0 is the key).
        """
        values: list[Any] = []
        for block in self.blocks[bucket]:
            assert self.file is not None
            offset, length = block[index]
            self.file.seek(offset)
            values.extend(_block_decoder.decode(self.file.read(length)))
        rows = self.rows[bucket]
        if self.width == 1:
            values.extend(rows)
        else:
            values.extend(row[index] for row in rows)
        return values

    def close(self) -> None:
        """Delete the temporary file."""
        if self.file is not None:
            self.file.close()
            self.file = None

    def _split(self, batch: list[tuple[Any, ...]]) -> None:
        mask = PARTITIONS - 1
        crc32 = zlib.crc32
        rows = self.rows
        keys_only = self.width == 1
        for record in batch:
            key = record[0]
            # surrogatepass: keys decoded from JSON may hold lone surrogates.
            bucket = crc32(key.encode("utf-8", "surrogatepass")) & mask
            rows[bucket].append(key if keys_only else record)

    def _spill(self) -> None:
        if self.file is None:
            # Open for the spool's lifetime (closed, and so deleted, by close()).
            self.file = tempfile.TemporaryFile(  # noqa: SIM115
                prefix="cfimages-reconcile-", dir=self.temp_dir
            )
        for bucket, rows in enumerate(self.rows):
            if not rows:
                continue
            columns = [rows] if self.width == 1 else list(zip(*rows, strict=True))[: self.width]
            self.blocks[bucket].append([self._write(column) for column in columns])
            rows.clear()

    def _write(self, values: Any) -> tuple[int, int]:
        assert self.file is not None
        data = _block_encoder.encode(values)
        offset = self.file.seek(0, 2)
        self.file.write(data)
        return offset, len(data)


class Reconciler:
    """Compares an expected key stream with the live inventory's and reports the differences.

    Usage::

        summary = Reconciler(key="id").run(expected_records, actual_records, sink=rows.extend)

    :param key: what identifies an image, ``id`` or ``filename`` (used in the summary).
    :param compare_meta: compare metas of matched keys whose expected meta is not ``None``.
    :param sample_size: keys kept per kind in the summary.
    :param spill_at: records per side held in memory before spilling to a temporary file.
    :param temp_dir: directory for the temporary files (the system default when ``None``).
    """

    def __init__(
        self,
        *,
        key: str = "id",
        compare_meta: bool = False,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        spill_at: int = DEFAULT_SPILL_AT,
        temp_dir: str | None = None,
    ) -> None:
        if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 0:
            raise ValueError(f"sample_size must be a whole number >= 0; got {sample_size!r}.")
        if isinstance(spill_at, bool) or not isinstance(spill_at, int) or spill_at < 1:
            raise ValueError(f"spill_at must be a whole number >= 1; got {spill_at!r}.")
        self.key = key
        self.compare_meta = compare_meta
        self.sample_size = sample_size
        self.spill_at = spill_at
        self.temp_dir = temp_dir
        #: bytes the last run spilled to temporary files (0: it all fitted in memory)
        self.spilled_bytes = 0

    def run(
        self,
        expected: Iterable[ExpectedRecord],
        actual: Iterable[ActualRecord],
        sink: RowSink | None = None,
    ) -> ReconcileSummary:
        """Read both sides, compare them bucket by bucket, and pass report rows to ``sink``.

        The expected side is read completely before the actual side is started.

        :param expected: ``(key, meta)`` records; see the module docstring.
        :param actual: ``(key, image_id, uploaded, meta)`` records.
        :param sink: called with each batch of report rows (rows of one kind and bucket).
        """
        summary = ReconcileSummary(key=self.key, sample_size=self.sample_size)
        # Metas are only kept when compared: they are most of the bytes.
        expected_side = _Spool(
            width=2 if self.compare_meta else 1, spill_at=self.spill_at, temp_dir=self.temp_dir
        )
        actual_side = _Spool(
            width=4 if self.compare_meta else 3, spill_at=self.spill_at, temp_dir=self.temp_dir
        )
        try:
            expected_side.extend(expected)
            actual_side.extend(actual)
            summary.expected = expected_side.count
            summary.actual = actual_side.count
            self.spilled_bytes = expected_side.spilled_bytes + actual_side.spilled_bytes
            emit = _Emitter(summary, sink)
            for bucket in range(PARTITIONS):
                self._compare_bucket(bucket, expected_side, actual_side, summary, emit)
        finally:
            expected_side.close()
            actual_side.close()
        return summary

    def _compare_bucket(
        self,
        bucket: int,
        expected_side: _Spool,
        actual_side: _Spool,
        summary: ReconcileSummary,
        emit: _Emitter,
    ) -> None:
        expected_keys = expected_side.column(bucket, 0)
        live = _LiveBucket(actual_side, bucket)
        expected_set = set(expected_keys)
        actual_set = set(live.keys)
        missing = sorted(expected_set - actual_set)
        unexpected = actual_set - expected_set
        summary.matched += len(expected_set) - len(missing)

        if len(expected_set) != len(expected_keys):
            emit.duplicate_expected(_repeated(expected_keys))
        if len(actual_set) != len(live.keys):
            repeated = _repeated(live.keys)
            emit.duplicate_actual(repeated, live.ids_by_key({key for key, _ in repeated}))
        emit.missing(missing)
        if unexpected:
            emit.unexpected(live.images_at(live.indices_of(unexpected)))
        if self.compare_meta:
            wanted = _expected_metas(expected_keys, expected_side.column(bucket, 1))
            if wanted:
                emit.drifted(live.drifted_from(wanted), wanted)


class _Image(NamedTuple):
    """One live image of a report row."""

    key: str
    id: str
    uploaded: str | None
    meta: bytes | None


class _LiveBucket:
    """One bucket of the live side; columns besides the keys are decoded on first use."""

    def __init__(self, spool: _Spool, bucket: int) -> None:
        self.spool = spool
        self.bucket = bucket
        self.keys: list[str] = spool.column(bucket, 0)

    @cached_property
    def ids(self) -> list[str | None]:
        return self.spool.column(self.bucket, 1)

    @cached_property
    def metas(self) -> list[bytes | None]:
        return self.spool.column(self.bucket, 3)

    def ids_by_key(self, keys: set[str]) -> dict[str, list[str]]:
        """The distinct image ids of each of these keys, sorted."""
        found: dict[str, set[str]] = {key: set() for key in keys}
        ids = self.ids
        for index in self.indices_of(keys):
            key = self.keys[index]
            found[key].add(ids[index] or key)
        return {key: sorted(values) for key, values in found.items()}

    def indices_of(self, keys: set[str] | frozenset[str]) -> list[int]:
        """Where these keys are in the bucket."""
        # compress/map keep the scan over every key of the bucket in C.
        return list(compress(count(), map(keys.__contains__, self.keys)))

    def drifted_from(self, wanted: dict[str, bytes]) -> list[_Image]:
        """The images whose meta differs from their key's expected one, sorted."""
        indices = [
            index
            for index, (key, meta) in enumerate(zip(self.keys, self.metas, strict=True))
            if (expected := wanted.get(key)) is not None and (meta or NO_META) != expected
        ]
        return self.images_at(indices)

    def images_at(self, indices: list[int]) -> list[_Image]:
        """The distinct images (by key and id) at these indices, sorted by key and id."""
        if not indices:
            return []
        ids = self.ids
        uploaded = self.spool.column(self.bucket, 2)
        metas = self.metas if self.spool.width > 3 else None
        images: dict[tuple[str, str], _Image] = {}
        for index in indices:
            key = self.keys[index]
            image_id = ids[index] or key
            if (key, image_id) not in images:
                meta = metas[index] if metas is not None else None
                images[(key, image_id)] = _Image(key, image_id, uploaded[index], meta)
        return [images[pair] for pair in sorted(images)]


class _Emitter:
    """Turns one bucket's findings into report rows, counts them and passes them on."""

    def __init__(self, summary: ReconcileSummary, sink: RowSink | None) -> None:
        self.summary = summary
        self.sink = sink

    def duplicate_expected(self, repeated: list[tuple[str, int]]) -> None:
        self._emit(
            DUPLICATE_EXPECTED,
            [key for key, _ in repeated],
            lambda: [
                {"kind": DUPLICATE_EXPECTED, "key": key, "count": count} for key, count in repeated
            ],
        )

    def duplicate_actual(self, repeated: list[tuple[str, int]], ids: dict[str, list[str]]) -> None:
        self._emit(
            DUPLICATE_ACTUAL,
            [key for key, _ in repeated],
            lambda: [
                {"kind": DUPLICATE_ACTUAL, "key": key, "count": count, "ids": ids[key]}
                for key, count in repeated
            ],
        )

    def missing(self, keys: list[str]) -> None:
        self._emit(MISSING, keys, lambda: [{"kind": MISSING, "key": key} for key in keys])

    def unexpected(self, images: list[_Image]) -> None:
        self._emit(
            UNEXPECTED,
            [image.key for image in images],
            lambda: [
                {"kind": UNEXPECTED, "key": i.key, "id": i.id, "uploaded": i.uploaded}
                for i in images
            ],
        )

    def drifted(self, images: list[_Image], wanted: dict[str, bytes]) -> None:
        self._emit(
            DRIFTED,
            [image.key for image in images],
            lambda: [
                {
                    "kind": DRIFTED,
                    "key": i.key,
                    "id": i.id,
                    "uploaded": i.uploaded,
                    "expected_meta": decode_meta(wanted[i.key]),
                    "actual_meta": decode_meta(i.meta or NO_META),
                }
                for i in images
            ],
        )

    def _emit(self, kind: str, keys: list[str], rows: Callable[[], list[Row]]) -> None:
        if not keys:
            return
        self.summary.add(kind, keys)
        if self.sink is not None:
            self.sink(rows())


def _repeated(keys: list[str]) -> list[tuple[str, int]]:
    """The keys that occur more than once, with how often, sorted by key."""
    counts = Counter(keys)
    # compress/map keep the scan over every distinct key in C.
    repeated = compress(counts.keys(), map(operator.lt, repeat(1), counts.values()))
    return sorted((key, counts[key]) for key in repeated)


def _expected_metas(keys: list[str], metas: list[bytes | None]) -> dict[str, bytes]:
    """Each key's expected meta, for keys that have one; with duplicates the first wins."""
    wanted: dict[str, bytes] = {}
    for key, meta in zip(keys, metas, strict=True):
        if meta is not None and key not in wanted:
            wanted[key] = meta
    return wanted

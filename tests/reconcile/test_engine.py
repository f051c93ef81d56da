"""The reconcile engine: counts, rows, duplicates, drift, its temporary file, against a model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_cfimages.reconcile.engine import (
    ROW_KINDS,
    ActualRecord,
    ExpectedRecord,
    Reconciler,
    actual_records,
    canonical_meta,
    expected_records,
)

UPLOADED = "2024-01-01T00:00:00.000Z"


def run(
    expected: list[ExpectedRecord], actual: list[ActualRecord], **kwargs: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    summary = Reconciler(**kwargs).run(expected, actual, sink=rows.extend)
    return summary.to_dict(), rows


def image(key: str, meta: dict[str, Any] | None = None, uploaded: str = UPLOADED) -> ActualRecord:
    return key, None, uploaded, canonical_meta(meta) if meta is not None else None


def by_kind(rows: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [row for row in rows if row["kind"] == kind]


def test_counts_missing_and_unexpected_keys() -> None:
    expected = [(k, None) for k in ("a", "b", "c", "d")]
    actual = [image(k) for k in ("c", "d", "e")]

    summary, rows = run(expected, actual)

    assert summary["expected"] == 4
    assert summary["actual"] == 3
    assert summary["matched"] == 2
    assert summary["missing_count"] == 2
    assert summary["unexpected_count"] == 1
    assert summary["missing"] == ["a", "b"]
    assert summary["unexpected"] == ["e"]
    assert summary["in_sync"] is False
    assert by_kind(rows, "missing") == [
        {"kind": "missing", "key": "a"},
        {"kind": "missing", "key": "b"},
    ]
    assert by_kind(rows, "unexpected") == [
        {"kind": "unexpected", "key": "e", "id": "e", "uploaded": UPLOADED}
    ]


def test_identical_sides_are_in_sync_with_no_rows() -> None:
    keys = [f"id-{n}" for n in range(500)]

    summary, rows = run([(k, None) for k in keys], [image(k) for k in reversed(keys)])

    assert summary["matched"] == 500
    assert summary["in_sync"] is True
    assert rows == []


def test_duplicates_are_reported_with_their_counts_not_merged() -> None:
    expected = [("a", None), ("a", None), ("a", None), ("b", None)]
    actual = [image("a"), image("b"), image("b"), image("z"), image("z")]

    summary, rows = run(expected, actual)

    assert summary["duplicate_expected_count"] == 1
    assert summary["duplicate_actual_count"] == 2
    assert by_kind(rows, "duplicate_expected") == [
        {"kind": "duplicate_expected", "key": "a", "count": 3}
    ]
    assert sorted(
        (row["key"], row["count"], row["ids"]) for row in by_kind(rows, "duplicate_actual")
    ) == [("b", 2, ["b"]), ("z", 2, ["z"])]
    # Each key is matched or unexpected once, whatever its multiplicity.
    assert summary["matched"] == 2
    assert summary["unexpected_count"] == 1
    assert summary["expected"] == 4
    assert summary["actual"] == 5


def test_by_filename_each_unexpected_image_is_its_own_row_with_its_id() -> None:
    images = [
        {"id": "id-1", "filename": "cat.jpg", "uploaded": UPLOADED},
        {"id": "id-2", "filename": "dog.jpg", "uploaded": UPLOADED},
        {"id": "id-3", "filename": "dog.jpg", "uploaded": "2024-02-02T00:00:00Z"},
        {"id": "id-4", "uploaded": UPLOADED},
    ]
    expected = list(expected_records(["cat.jpg", "bird.jpg"], key_field="filename"))
    actual = list(actual_records(images, key="filename", compare_meta=False))

    summary, rows = run(expected, actual, key="filename")

    assert summary["key"] == "filename"
    assert summary["missing"] == ["bird.jpg"]
    assert summary["unexpected_count"] == 3
    assert [(row["key"], row["id"], row["uploaded"]) for row in by_kind(rows, "unexpected")] == [
        ("", "id-4", UPLOADED),
        ("dog.jpg", "id-2", UPLOADED),
        ("dog.jpg", "id-3", "2024-02-02T00:00:00Z"),
    ]
    assert by_kind(rows, "duplicate_actual") == [
        {"kind": "duplicate_actual", "key": "dog.jpg", "count": 2, "ids": ["id-2", "id-3"]}
    ]


def test_drift_compares_metas_as_json_ignoring_key_order() -> None:
    expected = [
        ("same", canonical_meta({"a": 1, "b": [1, 2]})),
        ("changed", canonical_meta({"v": 1})),
        ("unchecked", None),
        ("absent-is-empty", canonical_meta({})),
        ("absent-vs-some", canonical_meta({"x": 1})),
    ]
    actual = [
        image("same", {"b": [1, 2], "a": 1}),
        image("changed", {"v": 2}),
        image("unchecked", {"anything": True}),
        image("absent-is-empty"),
        image("absent-vs-some"),
    ]

    summary, rows = run(expected, actual, compare_meta=True)

    assert summary["drifted_count"] == 2
    assert summary["drifted"] == ["absent-vs-some", "changed"]
    drifted = {row["key"]: row for row in by_kind(rows, "drifted")}
    assert drifted["changed"]["expected_meta"] == {"v": 1}
    assert drifted["changed"]["actual_meta"] == {"v": 2}
    assert drifted["absent-vs-some"]["actual_meta"] == {}


def test_without_compare_meta_metas_are_ignored() -> None:
    summary, _ = run([("k", canonical_meta({"v": 1}))], [image("k", {"v": 2})])

    assert summary["drifted_count"] == 0
    assert summary["in_sync"] is True


def test_samples_are_the_smallest_keys_across_buckets() -> None:
    keys = [f"k{n:05d}" for n in range(1000)]

    summary, rows = run([(k, None) for k in keys], [], sample_size=5)

    assert summary["missing"] == keys[:5]
    assert summary["missing_count"] == 1000
    assert len(rows) == 1000


def test_rows_come_kind_by_kind_sorted_whatever_the_batch_size() -> None:
    expected = [(f"k{n}", canonical_meta({"n": n})) for n in range(3000)] + [("k7", None)]
    actual = [image(f"k{n}", {"n": n if n % 97 else -1}) for n in range(1500, 4500)]
    actual.append(image("k4000"))
    batches: list[list[dict[str, Any]]] = []

    summary, rows = run(expected, actual, compare_meta=True)
    small = Reconciler(compare_meta=True, batch_size=7).run(expected, actual, sink=batches.append)

    assert [row for batch in batches for row in batch] == rows
    assert max(map(len, batches)) == 7
    assert all(len({row["kind"] for row in batch}) == 1 for batch in batches)
    assert small.to_dict() == summary
    assert [row["kind"] for row in rows] == sorted(
        (row["kind"] for row in rows), key=ROW_KINDS.index
    )
    for kind in ROW_KINDS:
        keys = [row["key"] for row in by_kind(rows, kind)]
        assert keys == sorted(keys)
    assert summary["missing_count"] == 1500
    assert summary["duplicate_expected_count"] == 1
    assert summary["duplicate_actual_count"] == 1
    assert summary["drifted_count"] == len(range(1552, 3000, 97))


def test_samples_sort_as_python_sorts_text() -> None:
    odd = ["b", "a", "\ud800", "\U0001f600", "\uffff", "\ue000", "Z", "", " a", "é"]

    summary, rows = run([(k, None) for k in odd], [], sample_size=len(odd))

    assert summary["missing"] == sorted(odd)
    assert [row["key"] for row in rows] == sorted(odd)


def test_the_temporary_database_goes_in_temp_dir_and_is_deleted(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def sink(rows: list[dict[str, Any]]) -> None:
        seen.append(sorted(path.name for path in tmp_path.iterdir()))

    reconciler = Reconciler(temp_dir=str(tmp_path))
    reconciler.run([("a", None)], [image("b")], sink=sink)

    # Unlinked as soon as it is open: not even visible while the run is under way.
    assert seen == [[], []]
    assert list(tmp_path.iterdir()) == []
    assert reconciler.disk_bytes > 0


def test_an_error_in_a_side_or_the_sink_propagates_and_leaves_no_file(tmp_path: Path) -> None:
    def failing() -> Any:
        yield image("a")
        raise ValueError("the listing broke")

    def sink(rows: list[dict[str, Any]]) -> None:
        raise ValueError("the sink broke")

    with pytest.raises(ValueError, match="the listing broke"):
        Reconciler(temp_dir=str(tmp_path)).run([("a", None)], failing())
    with pytest.raises(ValueError, match="the sink broke"):
        Reconciler(temp_dir=str(tmp_path)).run([("a", None)], [], sink=sink)

    assert list(tmp_path.iterdir()) == []


KILLED_RUN = """
import sys, time
from airflow_provider_cfimages.reconcile.engine import Reconciler

def listing():
    for n in range(5000):
        yield f"k{n}", None, None, None
    print("listing", flush=True)
    time.sleep(120)

Reconciler(temp_dir=sys.argv[1]).run(((f"k{n}", None) for n in range(5000)), listing())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads the open files in /proc (Linux)")
def test_a_killed_run_leaves_no_file(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "listing\n"
        open_files = [os.readlink(fd) for fd in Path(f"/proc/{child.pid}/fd").iterdir()]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)

    # The database was open, in temp_dir, and already unlinked, so the kill left nothing.
    assert any(
        name.startswith(str(tmp_path / "cfimages-reconcile-")) and name.endswith(" (deleted)")
        for name in open_files
    ), open_files
    assert list(tmp_path.iterdir()) == []


def test_odd_upload_times_come_back_as_given() -> None:
    values = ["2024-01-01T00:00:00Z", "\udfff", None, 12, 2**70, 1.5, True, {"a": [1]}]
    actual = [(f"k{n}", None, value, None) for n, value in enumerate(values)]

    _, rows = run([], actual)

    assert [row["uploaded"] for row in rows] == values
    assert type(rows[6]["uploaded"]) is bool


def test_an_image_listed_twice_is_reported_once_from_its_first_record() -> None:
    first, later = "2024-01-01T00:00:00Z", "2024-02-02T00:00:00Z"
    actual = [
        ("x", None, first, canonical_meta({"v": 1})),
        ("x", None, later, canonical_meta({"v": 2})),
        ("d", None, first, canonical_meta({"v": 1})),
        ("d", None, later, canonical_meta({"v": 2})),
        ("d", None, first, canonical_meta({"v": 3})),
    ]
    expected = [("d", None), ("d", canonical_meta({"v": 1})), ("d", canonical_meta({"v": 9}))]

    summary, rows = run(expected, actual, compare_meta=True)

    assert by_kind(rows, "unexpected") == [
        {"kind": "unexpected", "key": "x", "id": "x", "uploaded": first}
    ]
    # The expected meta is the key's first one given; the image's first differing record.
    assert by_kind(rows, "drifted") == [
        {
            "kind": "drifted",
            "key": "d",
            "id": "d",
            "uploaded": later,
            "expected_meta": {"v": 1},
            "actual_meta": {"v": 2},
        }
    ]
    assert summary["duplicate_actual_count"] == 2


def test_keys_with_lone_surrogates_and_newlines_are_compared_as_given() -> None:
    odd = ["line\nbreak.jpg", "\ud800lone.png", " spaced .jpg", "ünï.png"]

    summary, _ = run([(k, None) for k in odd], [image(k) for k in odd[1:]])

    assert summary["missing"] == ["line\nbreak.jpg"]
    assert summary["matched"] == 3


def test_expected_records_accept_keys_dicts_and_sql_rows() -> None:
    values = ["a", {"id": "b", "other": 1}, ("c", "ignored"), ["d"]]

    assert list(expected_records(values, key_field="id")) == [
        ("a", None),
        ("b", None),
        ("c", None),
        ("d", None),
    ]


def test_expected_records_read_metas_from_a_field_or_a_mapping() -> None:
    rows = [{"id": "a", "m": '{"v": 1}'}, {"id": "b", "m": ""}, {"id": "c", "m": {"w": 2}}]

    from_field = dict(expected_records(rows, key_field="id", meta_field="m"))
    from_mapping = dict(expected_records(["a", "b"], key_field="id", metas={"a": {"v": 1}}))

    assert from_field == {"a": b'{"v":1}', "b": None, "c": b'{"w":2}'}
    assert from_mapping == {"a": b'{"v":1}', "b": None}


@pytest.mark.parametrize(
    ("values", "kwargs", "message"),
    [
        ([{"name": "x"}], {}, "record 1 has no field 'id'"),
        (["ok", 42], {}, "record 2: the key must be text"),
        ([None], {}, "record 1: the key must be text"),
        ([{"id": "a", "m": "not json"}], {"meta_field": "m"}, "field 'm' for key 'a'"),
        ([{"id": "a", "m": [1]}], {"meta_field": "m"}, "must be a JSON object"),
        (["a"], {"metas": {"a": "x"}}, "expected_meta for key 'a'"),
        (["a"], {"meta_field": "m"}, "record 1 is not a record with fields"),
    ],
)
def test_expected_records_reject_bad_values_naming_the_record(
    values: list[Any], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        list(expected_records(values, key_field="id", **kwargs))


def test_reconciler_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="sample_size"):
        Reconciler(sample_size=-1)
    with pytest.raises(ValueError, match="batch_size"):
        Reconciler(batch_size=0)


# -- against a plain model ------------------------------------------------------------------

keys = st.text(alphabet="abcdef\n ", min_size=0, max_size=3)
metas = st.one_of(st.none(), st.dictionaries(st.sampled_from("xy"), st.integers(0, 2), max_size=2))


def model(expected: list[tuple[str, Any]], actual: list[tuple[str, str, Any]]) -> list[str]:
    """The rows the engine should write, computed the obvious way, as sorted JSON lines."""
    rows: list[dict[str, Any]] = []
    expected_keys = Counter(key for key, _ in expected)
    actual_keys = Counter(key for key, _, _ in actual)
    rows += [
        {"kind": "duplicate_expected", "key": k, "count": c}
        for k, c in expected_keys.items()
        if c > 1
    ]
    for k, c in actual_keys.items():
        if c > 1:
            ids = sorted({i for key, i, _ in actual if key == k})
            rows.append({"kind": "duplicate_actual", "key": k, "count": c, "ids": ids})
    rows += [{"kind": "missing", "key": k} for k in expected_keys if k not in actual_keys]
    wanted: dict[str, Any] = {}
    for key, meta in expected:
        if meta is not None:
            wanted.setdefault(key, meta)
    unexpected = {(key, image_id) for key, image_id, _ in actual if key not in expected_keys}
    rows += [
        {"kind": "unexpected", "key": key, "id": image_id, "uploaded": UPLOADED}
        for key, image_id in unexpected
    ]
    # The same image listed twice with different metas: the first differing one is reported.
    drifted: set[tuple[str, str]] = set()
    for key, image_id, meta in actual:
        if key in wanted and (meta or {}) != wanted[key] and (key, image_id) not in drifted:
            drifted.add((key, image_id))
            rows.append(
                {
                    "kind": "drifted",
                    "key": key,
                    "id": image_id,
                    "uploaded": UPLOADED,
                    "expected_meta": wanted[key],
                    "actual_meta": meta or {},
                }
            )
    return sorted(json.dumps(row, sort_keys=True) for row in rows)


@settings(max_examples=150, deadline=None)
@given(
    expected=st.lists(st.tuples(keys, metas), max_size=30),
    actual=st.lists(st.tuples(keys, st.sampled_from(["i1", "i2", "i3"]), metas), max_size=30),
    batch_size=st.sampled_from([1, 4, 1000]),
)
def test_matches_a_plain_model(
    expected: list[tuple[str, Any]], actual: list[tuple[str, str, Any]], batch_size: int
) -> None:
    expected_in = [(k, canonical_meta(m) if m is not None else None) for k, m in expected]
    actual_in = [(k, i, UPLOADED, canonical_meta(m)) for k, i, m in actual]

    summary, rows = run(expected_in, actual_in, compare_meta=True, batch_size=batch_size)

    assert sorted(json.dumps(row, sort_keys=True) for row in rows) == model(expected, actual)
    distinct_expected = {k for k, _ in expected}
    distinct_actual = {k for k, _, _ in actual}
    assert summary["matched"] == len(distinct_expected & distinct_actual)
    assert summary["missing_count"] == len(distinct_expected - distinct_actual)

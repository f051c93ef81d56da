"""Property tests: whatever a server or a file holds, only the provider's own errors escape.

- The response parser (the transport's envelope decoding, over ``responses``): any status,
  body and headers give a decoded page or a :class:`CloudflareImagesError`; never a
  ``KeyError``, ``TypeError``, ``RecursionError``... And a server that echoes the
  credential anywhere never gets it into an error message or a log line.
- The readers of expected sets and exports (``.txt``, ``.csv``, ``.jsonl``, ``.json``, each
  optionally gzipped), through to the reconcile engine: any file content gives records or
  an error that names the task argument.

Example counts are bounded so the module runs in about 20 s; the search is derandomized so
a CI run is repeatable (raise ``max_examples`` locally to look further).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
import responses
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_provider_cfimages.exceptions import CloudflareImagesError
from airflow_provider_cfimages.hooks.images import _select
from airflow_provider_cfimages.hooks.query import ImageQuery
from airflow_provider_cfimages.hooks.transport import ApiTransport, ImageKey, ListPageBody
from airflow_provider_cfimages.inventory.reader import (
    InventoryReader,
    InventorySource,
)
from airflow_provider_cfimages.reconcile.engine import Reconciler, actual_records, expected_records

BASE_URL = "https://api.cloudflare.test/client/v4"
LIST_PATH = "accounts/0123456789abcdef0123456789abcdef/images/v2"
STATS_PATH = "accounts/0123456789abcdef0123456789abcdef/images/v1/stats"
SECRET_RANDOM_PART = "6f1d2c9a8b7e40f3a9c1d27b"
SECRET = f"cfimages-SECRET-{SECRET_RANDOM_PART}"
T = TypeVar("T")
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- strategies -----------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
IMAGE_KEYS = ["id", "filename", "uploaded", "meta", "variants", "requireSignedURLs", "creator"]
image_like = st.dictionaries(
    st.sampled_from(IMAGE_KEYS) | st.text(max_size=6),
    st.one_of(
        json_values,
        st.text(min_size=1, max_size=8),
        st.datetimes().map(lambda d: d.isoformat() + "Z"),
    ),
    max_size=6,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "success": st.one_of(st.booleans(), json_values),
        "errors": st.one_of(
            st.lists(
                st.fixed_dictionaries({}, optional={"code": json_values, "message": json_values}),
                max_size=3,
            ),
            json_values,
        ),
        "messages": json_values,
        "result": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {},
                optional={
                    "images": st.one_of(st.lists(image_like, max_size=4), json_values),
                    "continuation_token": st.one_of(st.none(), st.text(max_size=8), json_values),
                },
            ),
        ),
    },
)


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    return b"[" * depth + leaf + b"]" * depth


# Shallow, and deeper than Python's recursion limit (1000) lets a decoder go.
depths = st.one_of(st.integers(1, 30), st.sampled_from([999, 1500, 5000, 100_000]))


@st.composite
def cut(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` or a prefix of it (a body cut off in transit)."""
    return data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data


DEEP_IMAGE = b'{"success":true,"errors":[],"result":{"images":[{"id":"a","meta":%s}]}}' % nested(
    5000
)
DEEP_RESULT = b'{"success":true,"errors":[],"result":%s}' % nested(5000)
bodies = st.one_of(
    st.binary(max_size=200),
    envelopes.map(lambda e: json.dumps(e).encode()).flatmap(cut),
    st.integers(1, 5000).map(
        lambda n: (
            b'{"success":true,"errors":[],"result":{"images":[{"id":"a","meta":'
            + nested(n)
            + b"}]}}"
        )
    ),
    st.integers(1, 5000).map(lambda n: b'{"success":true,"errors":[],"result":' + nested(n) + b"}"),
)
statuses = st.sampled_from([200, 201, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504, 520])
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=24)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Retry-After": st.one_of(header_text, st.floats().map(str), st.integers().map(str)),
        "cf-ray": header_text,
        "Content-Type": st.sampled_from(["application/json", "text/html", "text/plain"]),
    },
)


def attempt(call: Callable[[], T]) -> tuple[T | None, Exception | None]:
    """Call; return its result, or the exception it raised for the property to judge."""
    try:
        return call(), None
    except Exception as err:
        return None, err


def make_transport(*, max_retries: int = 0, max_retry_wait: float = 300.0) -> ApiTransport:
    return ApiTransport(
        base_url=BASE_URL,
        auth_headers={"Authorization": f"Bearer {SECRET}"},
        secret=SECRET,
        user_agent="fuzz",
        timeout=5.0,
        max_retries=max_retries,
        max_retry_wait=max_retry_wait,
    )


def serve(mocked: responses.RequestsMock, path: str, status: int, body: bytes, head: dict) -> None:
    head = dict(head)
    content_type = head.pop("Content-Type", "application/json")
    mocked.get(
        f"{BASE_URL}/{path}", status=status, body=body, headers=head, content_type=content_type
    )


# -- the response parser --------------------------------------------------------------------


@FUZZ
@given(status=statuses, body=bodies, head=headers)
@example(status=200, body=DEEP_IMAGE, head={})
def test_any_list_response_is_a_checked_page_or_a_provider_error(
    status: int, body: bytes, head: dict[str, str]
) -> None:
    transport = make_transport()
    with responses.RequestsMock() as mocked:
        serve(mocked, LIST_PATH, status, body, head)
        page, err = attempt(lambda: transport.get_list_page(LIST_PATH, {"per_page": 10}, page=7))
    if err is not None:
        assert isinstance(err, CloudflareImagesError), repr(err)
        assert "List images V2 page 7" in str(err)
        return
    assert 200 <= status < 300
    assert isinstance(page, ListPageBody)
    assert all(isinstance(image["id"], str) and image["id"] for image in page.images)
    assert [(key.id, key.uploaded) for key in page.keys] == [
        (image["id"], image.get("uploaded")) for image in page.images
    ]
    assert page.continuation_token is None or isinstance(page.continuation_token, str)


@FUZZ
@given(status=statuses, body=bodies, head=headers)
@example(status=200, body=DEEP_IMAGE, head={})
@example(
    status=200,
    body=b'{"success": true, "errors": [],\n "result": {"images": [\n  {"id": "a",\n'
    b'   "uploaded": "2024-01-01T00:00:00Z"}\n]}}',
    head={},
)
def test_any_list_response_as_json_texts_is_the_same_checked_page_or_a_provider_error(
    status: int, body: bytes, head: dict[str, str]
) -> None:
    transport = make_transport()
    with responses.RequestsMock() as mocked:
        serve(mocked, LIST_PATH, status, body, head)
        serve(mocked, LIST_PATH, status, body, head)
        page, err = attempt(
            lambda: transport.get_list_page(LIST_PATH, {"per_page": 10}, page=7, raw=True)
        )
        dict_page, _ = attempt(lambda: transport.get_list_page(LIST_PATH, {}, page=7))
    if err is not None:
        assert isinstance(err, CloudflareImagesError), repr(err)
        assert "List images V2 page 7" in str(err)
        # Only what the dict decoder cannot hold (nesting past the recursion limit) may
        # differ: a JSON text is skipped over, not built.
        assert dict_page is None or body == DEEP_IMAGE
        return
    assert 200 <= status < 300
    assert isinstance(page, ListPageBody)
    images = [msgspec.json.decode(image) for image in page.images]
    assert all(isinstance(image["id"], str) and image["id"] for image in images)
    assert [(key.id, key.uploaded) for key in page.keys] == [
        (image["id"], image.get("uploaded")) for image in images
    ]
    if dict_page is not None:
        assert images == dict_page.images
        assert page.continuation_token == dict_page.continuation_token


@FUZZ
@given(status=statuses, body=bodies, head=headers)
@example(status=200, body=DEEP_RESULT, head={})
def test_any_response_to_another_call_is_a_result_or_a_provider_error(
    status: int, body: bytes, head: dict[str, str]
) -> None:
    transport = make_transport()
    with responses.RequestsMock() as mocked:
        serve(mocked, STATS_PATH, status, body, head)
        _, err = attempt(lambda: transport.request("GET", STATS_PATH, what="usage statistics"))
    if err is not None:
        assert isinstance(err, CloudflareImagesError), repr(err)
        assert str(err).startswith("usage statistics")
        return
    assert 200 <= status < 300


@FUZZ
@given(
    images=st.lists(image_like, max_size=6),
    sort_order=st.sampled_from(["asc", "desc"]),
    room=st.none() | st.integers(1, 5),
)
def test_any_page_under_an_upload_window_is_filtered_or_a_provider_error(
    images: list[dict[str, Any]], sort_order: str, room: int | None
) -> None:
    query = ImageQuery.build(
        sort_order=sort_order, uploaded_after="2001-01-01", uploaded_before="2030-01-01"
    )
    keys = [ImageKey(image.get("id"), image.get("uploaded")) for image in images]
    selected, err = attempt(lambda: _select(query, keys, page=3, room=room))
    if err is not None:
        assert isinstance(err, CloudflareImagesError), repr(err)
        assert "List images V2 page 3" in str(err)
        return
    kept, _ = selected
    assert list(kept) == sorted(set(kept))
    assert all(0 <= position < len(images) for position in kept)
    assert room is None or len(kept) <= room


# -- secrets a server echoes back -----------------------------------------------------------


@st.composite
def echoing_text(draw: st.DrawFn) -> str:
    """Text that holds the credential somewhere (as an echoing proxy's page would)."""
    return draw(st.text(max_size=150)) + SECRET + draw(st.text(max_size=20))


echoing_values = st.recursive(
    scalars | echoing_text(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=4) | echoing_text(), children, max_size=3)
    ),
    max_leaves=8,
)
echoing_bodies = st.one_of(
    echoing_text().map(str.encode),
    st.fixed_dictionaries(
        {
            "success": st.booleans(),
            "errors": st.lists(
                st.fixed_dictionaries({"code": echoing_values, "message": echoing_values}),
                min_size=1,
                max_size=2,
            ),
            "result": st.one_of(
                echoing_values,
                st.fixed_dictionaries(
                    {"images": st.lists(st.dictionaries(echoing_text(), scalars), max_size=2)}
                ),
            ),
        }
    ).map(lambda e: json.dumps(e, ensure_ascii=False).encode()),
)
echoing_headers = st.fixed_dictionaries(
    {},
    optional={
        "cf-ray": st.just(f"ray-{SECRET}"),
        "Content-Type": st.just(f"text/html; x={SECRET}"),
        "Retry-After": st.just("0"),
    },
)


def shows_secret(text: str) -> bool:
    """Whether ``text`` shows the credential, or any 12 characters of its random part."""
    part = SECRET_RANDOM_PART
    return any(part[i : i + 12] in text for i in range(len(part) - 11))


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@FUZZ
@given(status=statuses, body=echoing_bodies, head=echoing_headers)
@example(status=502, body=b"<html>" + b"x" * 100 + SECRET.encode() + b"</html>", head={})
@example(
    status=400,
    body=b'{"success":false,"errors":[{"code":"%s","message":""}]}' % SECRET.encode(),
    head={},
)
def test_a_credential_the_server_echoes_never_reaches_an_error_or_a_log(
    status: int, body: bytes, head: dict[str, str]
) -> None:
    # One retry, so a retryable failure is also logged before it is raised.
    transport = make_transport(max_retries=1, max_retry_wait=0.001)
    collect = _Collect()
    logger = logging.getLogger("airflow_provider_cfimages")
    logger.addHandler(collect)
    previous_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
            serve(mocked, LIST_PATH, status, body, head)
            serve(mocked, LIST_PATH, status, body, head)
            transport.get_list_page(LIST_PATH, {}, page=1)
    except CloudflareImagesError as err:
        texts = [str(err), repr(err), str(getattr(err, "errors", "")), str(err.__dict__)]
        assert not [text for text in texts if shows_secret(text)]
    finally:
        logger.removeHandler(collect)
        logger.setLevel(previous_level)
    assert not [line for line in collect.lines if shows_secret(line)]


# -- the readers of expected sets and exports ------------------------------------------------

FORMATS = ["txt", "csv", "jsonl", "json"]


@st.composite
def file_contents(draw: st.DrawFn, fmt: str) -> bytes:
    """Bytes shaped like a ``fmt`` file, or not at all, possibly cut short or corrupted."""
    kind = draw(st.sampled_from(["bytes", "shaped", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "deep":
        depth = draw(depths)
        if fmt == "json":
            return b"[" + nested(depth) + b"]"
        return nested(depth) + b"\n"
    records = draw(st.lists(st.one_of(image_like, json_values), max_size=6))
    if fmt == "jsonl":
        text = "".join(json.dumps(record) + "\n" for record in records)
    elif fmt == "json":
        text = json.dumps(records, indent=draw(st.none() | st.integers(0, 2)))
    elif fmt == "csv":
        buffer = io.StringIO()
        columns = draw(st.lists(st.sampled_from(IMAGE_KEYS) | st.text(max_size=4), max_size=4))
        buffer.write(",".join(columns) + "\n")
        for record in records:
            cells = [json.dumps(record), *draw(st.lists(st.text(max_size=6), max_size=4))]
            buffer.write(",".join(f'"{cell}"' if draw(st.booleans()) else cell for cell in cells))
            buffer.write("\n")
        text = buffer.getvalue()
    else:
        text = "\n".join(draw(st.lists(st.text(max_size=10), max_size=6)))
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = draw(cut(data))
    if draw(st.booleans()):
        position = draw(st.integers(0, len(data)))
        data = data[:position] + draw(st.binary(min_size=1, max_size=4)) + data[position:]
    return data


@st.composite
def source_files(draw: st.DrawFn) -> tuple[str, bytes]:
    fmt = draw(st.sampled_from(FORMATS))
    data = draw(file_contents(fmt))
    gzipped = draw(st.sampled_from(["no", "valid", "raw"]))
    if gzipped == "valid":
        return f"source.{fmt}.gz", gzip.compress(data, mtime=0)
    if gzipped == "raw":
        return f"source.{fmt}.gz", data[:-1] if data.startswith(b"\x1f\x8b") else data
    return f"source.{fmt}", data


def named_the_parameter(err: Exception, parameter: str) -> bool:
    """The provider's errors, or its plain ``ValueError``s that start with the argument."""
    if isinstance(err, CloudflareImagesError):
        return True
    return type(err) is ValueError and str(err).startswith(parameter)


@FUZZ
@given(source=source_files(), meta_field=st.sampled_from([None, "meta"]))
@example(source=("source.jsonl", nested(5000) + b"\n"), meta_field=None)
@example(source=("source.json", b"[" + nested(5000) + b"]"), meta_field=None)
def test_any_expected_file_gives_keys_or_an_error_naming_expected(
    tmp_path: Path, source: tuple[str, bytes], meta_field: str | None
) -> None:
    name, data = source
    path = tmp_path / name
    path.write_bytes(data)
    reader = InventoryReader(InventorySource.parse(str(path), parameter="expected"))
    records = expected_records(
        reader.records(), key_field="id", meta_field=meta_field, parameter="expected"
    )
    keys, err = attempt(lambda: list(records))
    if err is not None:
        assert named_the_parameter(err, "expected"), repr(err)
        return
    assert all(isinstance(key, str) for key, _ in keys)


@FUZZ
@given(source=source_files().filter(lambda s: ".txt" not in s[0]), meta=st.booleans())
@example(source=("source.jsonl", b'{"id": 5}\n'), meta=False)
@example(source=("source.json", b'[{"id": "a", "meta": ' + nested(990) + b"}]"), meta=True)
def test_any_export_file_reconciles_or_fails_with_a_provider_error(
    tmp_path: Path, source: tuple[str, bytes], meta: bool
) -> None:
    name, data = source
    path = tmp_path / name.replace("source", "export")
    path.write_bytes(data)
    reconciler = Reconciler(key="id", compare_meta=meta, batch_size=3, temp_dir=str(tmp_path))
    expected = expected_records(["a", "b"], key_field="id", parameter="expected")
    images = InventoryReader(InventorySource.parse(str(path), parameter="actual_from")).images()
    actual = actual_records(images, key="id", compare_meta=meta)
    summary, err = attempt(lambda: reconciler.run(expected, actual, sink=lambda rows: None))
    if err is not None:
        assert named_the_parameter(err, "actual_from") or (
            type(err) is ValueError and str(err).startswith("An image record")
        ), repr(err)
        return
    assert summary.expected == 2


@FUZZ
@given(
    elements=st.lists(json_values, max_size=8),
    indent=st.none() | st.integers(0, 3),
    gzipped=st.booleans(),
)
def test_a_json_array_file_reads_as_json_does(
    tmp_path: Path, elements: list[Any], indent: int | None, gzipped: bool
) -> None:
    data = json.dumps(elements, indent=indent).encode()
    path = tmp_path / ("values.json.gz" if gzipped else "values.json")
    path.write_bytes(gzip.compress(data) if gzipped else data)
    reader = InventoryReader(InventorySource.parse(str(path), parameter="expected"))
    assert list(reader.records()) == json.loads(data)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("gzipped", [False, True])
def test_a_utf8_byte_order_mark_does_not_change_the_keys(
    tmp_path: Path, fmt: str, gzipped: bool
) -> None:
    """Spreadsheets and Windows editors start UTF-8 files with a BOM; the keys are the same."""
    contents = {
        "txt": "img-1\nimg-2\n",
        "csv": "id,filename\nimg-1,a.jpg\nimg-2,b.jpg\n",
        "jsonl": '{"id": "img-1"}\n{"id": "img-2"}\n',
        "json": '[{"id": "img-1"}, {"id": "img-2"}]',
    }
    data = contents[fmt].encode("utf-8-sig")
    path = tmp_path / (f"expected.{fmt}.gz" if gzipped else f"expected.{fmt}")
    path.write_bytes(gzip.compress(data) if gzipped else data)
    reader = InventoryReader(InventorySource.parse(str(path), parameter="expected"))
    keys = [key for key, _ in expected_records(reader.records(), key_field="id")]
    assert keys == ["img-1", "img-2"]

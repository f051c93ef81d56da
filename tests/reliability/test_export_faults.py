"""Exports under fault injection, over real HTTP to the emulator, checked byte for byte.

Each export is the list operator writing a JSON Lines file of the emulator's 5,000 images
(five pages of 1000). Whatever goes wrong on the way, the result is either the exact
inventory (same bytes as the emulator's, each image once, newest first) or a clear error
with no file at the final path and no temporary file left beside it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.emulator.server import EmulatorApp, Request, Response
from airflow_provider_cfimages.exceptions import (
    CloudflareImagesAPIError,
    CloudflareImagesPaginationError,
    CloudflareImagesRateLimitError,
)
from tests.reliability.conftest import (
    IMAGES,
    PAGES,
    assert_exact_export,
    export,
    files_in,
    list_records,
    point_at,
)

LIST = "/images/v2"
FIRST, MIDDLE, LAST = 1, 3, PAGES


def settled_list_records(emu: EmulatorServer, count: int, timeout: float = 5.0) -> list[Any]:
    """The list requests, once ``count`` are logged (a slow request is logged when it ends)."""
    deadline = time.monotonic() + timeout
    while len(list_records(emu)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return list_records(emu)


# -- transient faults on the first, a middle and the last page ------------------------------

# name -> (arm the fault on the n-th list request, failed attempts it causes)
FAULTS: dict[str, tuple[Callable[[EmulatorServer, int], object], int]] = {
    "html_500": (lambda emu, n: emu.faults.fail_next(2, status=500, path=LIST, on_request=n), 2),
    "html_502": (lambda emu, n: emu.faults.fail_next(2, status=502, path=LIST, on_request=n), 2),
    "html_503": (lambda emu, n: emu.faults.fail_next(2, status=503, path=LIST, on_request=n), 2),
    "edge_429_without_retry_after": (
        lambda emu, n: emu.faults.fail_next(1, status=429, path=LIST, on_request=n),
        1,
    ),
    "dropped_connection": (lambda emu, n: emu.faults.drop_next(1, path=LIST, on_request=n), 1),
    "truncated_json": (lambda emu, n: emu.faults.truncate_next(1, path=LIST, on_request=n), 1),
    "connection_cut_mid_body": (
        lambda emu, n: emu.faults.truncate_next(1, path=LIST, on_request=n, honest_length=False),
        1,
    ),
    "slower_than_read_timeout": (
        lambda emu, n: emu.faults.slow_next(1, seconds=1.0, path=LIST, on_request=n),
        1,
    ),
}


@pytest.mark.parametrize("page", [FIRST, MIDDLE, LAST], ids=["first", "middle", "last"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_transient_fault_on_any_page_still_exports_every_image_exactly_once(
    emu: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fault: str,
    page: int,
) -> None:
    point_at(emu, monkeypatch, timeout=0.4)  # the slow response outlasts a 0.4 s read timeout
    arm, failed_attempts = FAULTS[fault]
    arm(emu, page)
    path = tmp_path / "images.jsonl"

    manifest = export(path)

    assert_exact_export(emu, path, manifest)
    records = settled_list_records(emu, PAGES + failed_attempts)
    assert len(records) == PAGES + failed_attempts
    assert manifest["requests"] == PAGES + failed_attempts
    assert manifest["pages"] == PAGES
    # The failed page was asked for again with the same continuation token, then the rest.
    tokens = [record.query.get("continuation_token") for record in records]
    assert any(record.fault for record in records)
    assert len(set(tokens)) == PAGES
    assert tokens.count(tokens[page - 1]) == 1 + failed_attempts


@pytest.mark.parametrize("status", [520, 522, 524])
def test_cloudflare_edge_errors_52x_are_retried_like_5xx(
    emu: EmulatorServer, tmp_path: Path, status: int
) -> None:
    """520 (unknown error), 522 (connection timed out) and 524 (a timeout occurred) are
    Cloudflare's own edge pages: passing conditions, retried like 502/503/504."""
    emu.faults.fail_next(2, status=status, path=LIST, on_request=MIDDLE)
    path = tmp_path / "images.jsonl"

    manifest = export(path)

    assert_exact_export(emu, path, manifest)
    assert [record.status for record in list_records(emu)].count(status) == 2


# -- rate limits ----------------------------------------------------------------------------
# (headers=False: a server without the Ratelimit headers, where the client learns of the limit
# by a 429; with them the hook paces itself and never gets one, see tests/hooks/test_pacing*.)


def test_a_rate_limit_mid_export_is_waited_out_as_told(emu: EmulatorServer, tmp_path: Path) -> None:
    # Two requests, then 429 + Retry-After: 1 + code 971 for a second; twice in the export.
    emu.faults.rate_limit(
        requests=2, window_seconds=60, retry_after=1, block_seconds=1, headers=False
    )
    path = tmp_path / "images.jsonl"

    manifest = export(path)

    assert_exact_export(emu, path, manifest)
    records = list_records(emu)
    assert [record.status for record in records] == [200, 200, 429, 200, 200, 429, 200]
    limited = [i for i, record in enumerate(records) if record.status == 429]
    for i in limited:
        assert records[i].error_codes == (971,)
        waited = records[i + 1].started - records[i].started
        assert waited >= 0.95, f"retried {waited:.2f} s after a Retry-After of 1 s"
        assert records[i + 1].query == records[i].query  # the same page again


def test_a_retry_after_beyond_max_retry_wait_fails_at_once_saying_how_long(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emu.faults.rate_limit(
        requests=2, window_seconds=60, retry_after=900, block_seconds=900, headers=False
    )
    path = tmp_path / "images.jsonl"

    started = time.monotonic()
    with pytest.raises(CloudflareImagesRateLimitError) as caught:
        export(path)

    assert time.monotonic() - started < 10  # it did not sit out the 900 s
    message = str(caught.value)
    assert "rate limited" in message
    assert "900 s" in message
    assert "List images V2 page 3" in message
    assert caught.value.retry_after == 900
    assert len(list_records(emu)) == 3
    assert files_in(tmp_path) == []


def test_a_rate_limit_outlasting_the_retries_fails_and_keeps_the_previous_file(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "images.jsonl"
    previous = export(path)
    emu.reset_requests()
    point_at(emu, monkeypatch, max_retries=2)
    # Blocked for a minute, though each 429 asks for only 1 s.
    emu.faults.rate_limit(
        requests=2, window_seconds=60, retry_after=1, block_seconds=60, headers=False
    )

    with pytest.raises(CloudflareImagesRateLimitError) as caught:
        export(path)

    message = str(caught.value)
    assert "still rate limited by Cloudflare after 2 retries" in message
    assert "asked to wait 1 s" in message
    assert caught.value.transient is True
    assert [record.status for record in list_records(emu)] == [200, 200, 429, 429, 429]
    assert_exact_export(emu, path, previous)  # yesterday's complete file, untouched


# -- the client-side request budget ---------------------------------------------------------


@pytest.mark.parametrize("where", ["operator", "connection"])
def test_max_requests_per_minute_spaces_the_requests_evenly(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str
) -> None:
    path = tmp_path / "images.jsonl"
    if where == "operator":
        manifest = export(path, per_page=500, max_requests_per_minute=600)
    else:
        point_at(emu, monkeypatch, max_requests_per_minute=600)
        manifest = export(path, per_page=500)

    assert_exact_export(emu, path, manifest)
    starts = [record.started for record in list_records(emu)]
    assert len(starts) == 10
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # 600 a minute is one every 0.1 s; the server sees the client's starts give or take
    # the time each request takes to arrive, a few ms (more on a loaded machine).
    assert min(gaps) >= 0.06, gaps
    assert starts[-1] - starts[0] >= 9 * 0.1 - 0.03


def test_the_budget_keeps_an_export_under_a_rate_limit_it_would_otherwise_hit(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    point_at(emu, monkeypatch, max_retries=0)  # so hitting the limit fails at once
    path = tmp_path / "images.jsonl"

    def limit() -> None:
        emu.faults.clear()
        emu.faults.rate_limit(requests=3, window_seconds=1.5, retry_after=1, headers=False)

    limit()
    with pytest.raises(CloudflareImagesRateLimitError, match="rate limited"):
        export(path)  # 5 requests as fast as possible: the 4th is refused
    assert files_in(tmp_path) == []

    limit()
    emu.reset_requests()
    # 100 a minute is one every 0.6 s: at most 3 in any 1.5 s window.
    manifest = export(path, max_requests_per_minute=100)

    assert_exact_export(emu, path, manifest)
    assert [record.status for record in list_records(emu)] == [200] * PAGES


# -- a repeating continuation token ---------------------------------------------------------


@pytest.mark.parametrize("after_pages", [0, 2, PAGES - 1], ids=["first", "middle", "last"])
def test_a_repeating_continuation_token_fails_clearly_without_looping_or_a_file(
    emu: EmulatorServer, tmp_path: Path, after_pages: int
) -> None:
    emu.faults.repeat_token(after_pages=after_pages)  # on every page from then on
    path = tmp_path / "images.jsonl"

    with pytest.raises(CloudflareImagesPaginationError) as caught:
        export(path)

    failed_page = max(after_pages, 1) + 1
    assert f"on page {failed_page} the continuation token it already returned" in str(caught.value)
    assert "endless loop" in str(caught.value)
    assert len(list_records(emu)) == failed_page
    assert files_in(tmp_path) == []


# -- malformed success bodies ---------------------------------------------------------------

ENVELOPE = b'{"success":true,"errors":[],"messages":[],"result":%s}'
MALFORMED: dict[str, tuple[bytes, str]] = {
    "result_null": (ENVELOPE % b"null", "the response has no 'result'"),
    "images_missing": (
        ENVELOPE % b'{"continuation_token":null}',
        "the response's result has no 'images' list",
    ),
    "image_without_id": (
        ENVELOPE % b'{"images":[{"filename":"a.jpg","uploaded":"2024-01-01T00:00:00Z"}]}',
        "image #1 on the page has no 'id'",
    ),
    "images_not_a_list": (ENVELOPE % b'{"images":"none"}', "does not have the expected shape"),
    "not_json": (b"<html><body>Service temporarily unavailable</body></html>", "not valid JSON"),
    "empty_body": (b"", "the response body is empty"),
}


def serve_malformed_from(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch, page: int, body: bytes
) -> None:
    """Make List images V2 answer 200 with ``body`` from its ``page``-th request on."""
    original = EmulatorApp.list_images_v2.__get__(emu.app)
    calls = 0
    lock = threading.Lock()

    def list_images_v2(request: Request, params: dict[str, str]) -> Response:
        nonlocal calls
        with lock:
            calls += 1
            number = calls
        if number < page:
            return original(request, params)
        return Response(
            200, (body,), content_type="text/html" if b"<html" in body else "application/json"
        )

    monkeypatch.setattr(emu.app, "list_images_v2", list_images_v2)


@pytest.mark.parametrize("page", [FIRST, MIDDLE], ids=["first", "middle"])
@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_success_body_is_a_clear_error_naming_the_page(
    emu: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    kind: str,
    page: int,
) -> None:
    point_at(emu, monkeypatch, max_retries=1)
    body, message = MALFORMED[kind]
    serve_malformed_from(emu, monkeypatch, page, body)
    path = tmp_path / "images.jsonl"

    with pytest.raises(CloudflareImagesAPIError) as caught:
        export(path)

    assert f"List images V2 page {page}: " in str(caught.value)
    assert message in str(caught.value)
    assert files_in(tmp_path) == []
    # Bodies that are not JSON may be a passing edge failure: retried; a wrong shape is not.
    retried = kind in ("not_json", "empty_body")
    assert len(list_records(emu)) == page + (1 if retried else 0)


def test_an_export_of_an_account_that_changes_between_runs_is_exact_each_time(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    """A re-run after uploads and deletes replaces the file with the new exact inventory."""
    path = tmp_path / "images.jsonl"
    assert_exact_export(emu, path, export(path))
    removed = emu.backend.ids_sorted()[IMAGES // 2]
    emu.backend.delete_image(removed)
    emu.backend.upload_image(file=b"x", id="fresh-upload", filename="fresh.jpg")
    assert_exact_export(emu, path, export(path))
    ids = [line.split(b'"', 4)[3].decode() for line in path.read_bytes().splitlines()]
    assert ids[0] == "fresh-upload"
    assert removed not in ids

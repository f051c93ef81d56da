"""Fault injection: each kind, its targeting, its control API, and that state survives it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_cfimages.emulator import EmulatorServer, FaultPlan
from tests.emulator.conftest import FakeClock
from tests.emulator.openapi import OpenAPIResponses

LIST_V2 = "/accounts/{account_id}/images/v2"


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[EmulatorServer]:
    """100 images (10 pages of 10), faults on a hand-moved clock."""
    with EmulatorServer(images=100, seed=5, faults=FaultPlan(clock=clock)) as server:
        yield server


def page(client: requests.Session, emu: EmulatorServer, **params: Any) -> requests.Response:
    return client.get(emu.url("/images/v2"), params={"per_page": 10, **params}, timeout=10)


def list_ids(
    client: requests.Session, emu: EmulatorServer, *, retries: int = 0, per_page: int = 10
) -> list[str]:
    """Page to the end (retrying failed pages up to ``retries`` times in all)."""
    ids: list[str] = []
    params: dict[str, Any] = {"per_page": per_page, "sort_order": "asc"}
    for _ in range(200):
        try:
            response = client.get(emu.url("/images/v2"), params=params, timeout=10)
        except requests.ConnectionError:
            response = None
        if response is None or response.status_code != 200:
            assert retries > 0, f"unexpected failure: {response and response.status_code}"
            retries -= 1
            continue
        result = response.json()["result"]
        ids.extend(image["id"] for image in result["images"])
        if result["continuation_token"] is None:
            return ids
        params["continuation_token"] = result["continuation_token"]
    raise AssertionError("the listing never ended")


# --- 5xx ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_fail_next_answers_an_html_edge_page_then_recovers(
    emu: EmulatorServer, client: requests.Session, status: int
) -> None:
    emu.faults.fail_next(1, status=status)
    failed = page(client, emu)
    assert failed.status_code == status
    assert failed.headers["Content-Type"].startswith("text/html")
    assert failed.text.startswith("<!DOCTYPE html>")
    assert failed.headers["cf-ray"] in failed.text
    assert page(client, emu).status_code == 200


def test_fail_next_targets_a_path_and_counts_exactly_k_requests(
    emu: EmulatorServer, client: requests.Session
) -> None:
    emu.faults.fail_next(2, status=502, path="/images/v2")
    assert client.get(emu.url("/images/v1/stats")).status_code == 200
    assert [page(client, emu).status_code for _ in range(3)] == [502, 502, 200]
    assert [r.fault for r in emu.requests] == [None, "fail:502", "fail:502", None]


def test_fail_next_can_answer_the_json_envelope_or_an_empty_body(
    emu: EmulatorServer, client: requests.Session, openapi: OpenAPIResponses
) -> None:
    emu.faults.fail_next(1, status=503, html=False)
    emu.faults.fail_next(1, status=500, body=b"")
    as_json = page(client, emu)
    assert as_json.status_code == 503
    openapi.validate(as_json.json(), LIST_V2, "get", 503)
    assert as_json.json()["errors"] == [{"code": 5503, "message": "Server Unavailable"}]
    empty = page(client, emu)
    assert (empty.status_code, empty.content) == (500, b"")


@pytest.mark.parametrize("which", [1, 5, 10], ids=["first-page", "middle-page", "last-page"])
def test_on_request_hits_exactly_the_nth_list_page(
    emu: EmulatorServer, client: requests.Session, which: int
) -> None:
    emu.faults.fail_next(1, status=502, path="/images/v2", on_request=which)
    ids = list_ids(client, emu, retries=1)
    assert ids == emu.backend.ids_sorted()
    statuses = [record.status for record in emu.requests]
    assert statuses.count(502) == 1
    assert statuses.index(502) == which - 1


def test_fail_randomly_is_deterministic_for_a_seed(
    emu: EmulatorServer, client: requests.Session
) -> None:
    emu.faults.fail_randomly(0.5, statuses=(502, 503), seed=42)
    first = [page(client, emu).status_code for _ in range(20)]
    emu.faults.clear()
    emu.faults.fail_randomly(0.5, statuses=(502, 503), seed=42)
    assert [page(client, emu).status_code for _ in range(20)] == first
    assert {200, 502, 503} == set(first)


# --- transport ----------------------------------------------------------------------------


def test_drop_next_closes_the_connection_without_a_response(
    emu: EmulatorServer, client: requests.Session
) -> None:
    emu.faults.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        page(client, emu)
    assert page(client, emu).status_code == 200
    dropped = emu.requests[0]
    assert (dropped.status, dropped.fault, dropped.bytes_sent) == (0, "drop", 0)


def test_truncate_next_sends_half_a_json_body_with_status_200(
    emu: EmulatorServer, client: requests.Session
) -> None:
    whole = page(client, emu).content
    emu.faults.truncate_next(1)
    cut = page(client, emu)
    assert cut.status_code == 200
    assert cut.content == whole[: len(whole) // 2]
    with pytest.raises(requests.JSONDecodeError):
        cut.json()
    assert page(client, emu).content == whole


def test_truncate_next_can_close_the_connection_mid_body(
    emu: EmulatorServer, client: requests.Session
) -> None:
    emu.faults.truncate_next(1, honest_length=False)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        page(client, emu)
    assert page(client, emu).status_code == 200


def test_slow_next_delays_only_the_matching_requests(
    emu: EmulatorServer, client: requests.Session
) -> None:
    emu.faults.slow_next(1, 0.3, path="/images/v2")
    started = time.perf_counter()
    client.get(emu.url("/images/v1/stats"))
    assert time.perf_counter() - started < 0.25
    started = time.perf_counter()
    assert page(client, emu).status_code == 200
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    page(client, emu)
    assert time.perf_counter() - started < 0.25


# --- list behaviour -----------------------------------------------------------------------


def test_repeat_token_makes_a_naive_client_loop(
    emu: EmulatorServer, client: requests.Session
) -> None:
    emu.faults.repeat_token(after_pages=2)
    tokens: list[str | None] = []
    params: dict[str, Any] = {}
    for _ in range(6):
        token = page(client, emu, **params).json()["result"]["continuation_token"]
        tokens.append(token)
        params = {"continuation_token": token}
    assert tokens[2] == tokens[1], "the third page returns the token it was asked with"
    assert len(set(tokens)) == 2, "from then on the client is stuck on the same page"


def test_short_pages_cap_pages_but_the_listing_stays_complete(
    emu: EmulatorServer, client: requests.Session
) -> None:
    emu.faults.short_pages(max_items=15)
    first = client.get(emu.url("/images/v2"), params={"per_page": 40}).json()["result"]
    assert len(first["images"]) == 15
    assert first["continuation_token"] is not None
    assert list_ids(client, emu, per_page=40) == emu.backend.ids_sorted()


def test_trailing_empty_page_ends_the_listing_with_an_empty_page(
    emu: EmulatorServer, client: requests.Session
) -> None:
    emu.faults.trailing_empty_page()
    pages = []
    params: dict[str, Any] = {"per_page": 50}
    while True:
        result = page(client, emu, **params).json()["result"]
        pages.append(len(result["images"]))
        if result["continuation_token"] is None:
            break
        params["continuation_token"] = result["continuation_token"]
    assert pages == [50, 50, 0]


# --- rate limiting ----------------------------------------------------------------------------


def test_rate_limit_answers_429_with_code_971_and_retry_after(
    emu: EmulatorServer, client: requests.Session, openapi: OpenAPIResponses, clock: FakeClock
) -> None:
    emu.faults.rate_limit(requests=3, window_seconds=60, retry_after=7)
    assert [page(client, emu).status_code for _ in range(3)] == [200, 200, 200]
    limited = page(client, emu)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    body = limited.json()
    openapi.validate(body, LIST_V2, "get", 429)
    assert body["errors"] == [
        {
            "code": 971,
            "message": "More than 3 requests per 60 seconds reached. "
            "Please wait and consider throttling your request speed",
        }
    ]
    clock.now += 6
    assert page(client, emu).status_code == 429, "still blocked before Retry-After has passed"
    clock.now += 1.5
    assert page(client, emu).status_code == 200


def test_rate_limit_without_retry_after_blocks_for_the_rest_of_the_window(
    emu: EmulatorServer, client: requests.Session, clock: FakeClock
) -> None:
    emu.faults.rate_limit(requests=1, window_seconds=300)
    page(client, emu)
    clock.now += 100
    limited = page(client, emu)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "200")
    clock.now += 201
    assert page(client, emu).status_code == 200


def test_rate_limit_counts_only_authenticated_requests(
    emu: EmulatorServer, client: requests.Session
) -> None:
    emu.faults.rate_limit(requests=1, window_seconds=60)
    for _ in range(3):
        assert requests.get(emu.url("/images/v2")).status_code == 400
    assert page(client, emu).status_code == 200


def test_block_for_refuses_every_request_for_a_while(
    emu: EmulatorServer, client: requests.Session, clock: FakeClock
) -> None:
    emu.faults.block_for(30)
    blocked = page(client, emu)
    assert (blocked.status_code, blocked.headers["Retry-After"]) == (429, "30")
    assert blocked.json()["errors"][0]["code"] == 971
    clock.now += 31
    assert page(client, emu).status_code == 200


def test_clear_lifts_every_fault(emu: EmulatorServer, client: requests.Session) -> None:
    emu.faults.block_for(60)
    emu.faults.fail_next(None, status=502)
    emu.faults.clear()
    assert page(client, emu).status_code == 200
    assert emu.faults.describe() == {"rules": [], "rate_limit": None, "blocked_for_seconds": 0.0}


# --- state --------------------------------------------------------------------------------


def test_faults_never_corrupt_the_inventory(emu: EmulatorServer, client: requests.Session) -> None:
    before = emu.backend.images_sorted()
    victim = before[3]["id"]
    emu.faults.fail_next(1, status=502, method="DELETE")
    emu.faults.drop_next(1, method="PATCH")
    emu.faults.fail_next(1, status=503, method="POST")
    assert client.delete(emu.url(f"/images/v1/{victim}")).status_code == 502
    with pytest.raises(requests.ConnectionError):
        client.patch(emu.url(f"/images/v1/{victim}"), json={"metadata": {"x": 1}})
    upload = client.post(emu.url("/images/v1"), files={"file": ("a.png", b"x")})
    assert upload.status_code == 503
    emu.faults.truncate_next(3, path="/images/v2")
    emu.faults.repeat_token(after_pages=1)
    emu.faults.short_pages(3)
    for _ in range(3):
        page(client, emu)
    emu.faults.rate_limit(requests=0, window_seconds=60)
    assert page(client, emu).status_code == 429
    emu.faults.clear()
    assert emu.backend.images_sorted() == before
    assert list_ids(client, emu) == [image["id"] for image in before]


def test_faults_count_correctly_under_concurrent_requests(
    emu: EmulatorServer,
) -> None:
    emu.faults.fail_next(30, status=503)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        with requests.Session() as session:
            session.headers.update(emu.auth_headers())
            for _ in range(20):
                code = session.get(emu.url("/images/v1/stats")).status_code
                with lock:
                    statuses.append(code)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 50 + [503] * 30


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: f.fail_next(1, status=200), "4xx or 5xx"),
        (lambda f: f.fail_next(0), "at least 1"),
        (lambda f: f.drop_next(1, on_request=0), "counts from 1"),
        (lambda f: f.fail_randomly(1.5), "between 0 and 1"),
        (lambda f: f.short_pages(0), "at least 1"),
        (lambda f: f.rate_limit(10, 0), "window_seconds"),
    ],
)
def test_impossible_faults_are_refused(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(FaultPlan())


# --- control API ----------------------------------------------------------------------------


def test_faults_can_be_armed_and_cleared_over_http_without_cloudflare_auth(
    emu: EmulatorServer, client: requests.Session
) -> None:
    armed = requests.post(
        f"{emu.control_url}/faults",
        json={"fault": "fail_next", "k": 1, "status": 504, "path": "/images/v2"},
    )
    assert armed.status_code == 200
    assert armed.json()["result"]["rules"][0]["status"] == 504
    assert page(client, emu).status_code == 504
    requests.post(f"{emu.control_url}/faults", json={"fault": "block_for", "seconds": 60})
    assert page(client, emu).status_code == 429
    assert requests.delete(f"{emu.control_url}/faults").status_code == 200
    assert page(client, emu).status_code == 200


@pytest.mark.parametrize(
    "spec", [{"fault": "format_disk"}, {"fault": "fail_next", "bogus": 1}, {"nothing": True}]
)
def test_the_control_api_refuses_unknown_faults_and_arguments(
    emu: EmulatorServer, spec: dict[str, Any]
) -> None:
    response = requests.post(f"{emu.control_url}/faults", json=spec)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == 5400


def test_the_control_api_shows_health_requests_and_resets(
    emu: EmulatorServer, client: requests.Session
) -> None:
    health = requests.get(f"{emu.control_url}/health").json()["result"]
    assert health == {
        "ok": True,
        "images": 100,
        "account_id": emu.account_id,
        "base_url": emu.base_url,
    }
    victim = emu.backend.ids_sorted()[0]
    client.delete(emu.url(f"/images/v1/{victim}"))
    logged = requests.get(f"{emu.control_url}/requests").json()["result"]["requests"]
    assert [(r["method"], r["api_path"], r["status"]) for r in logged] == [
        ("DELETE", f"/images/v1/{victim}", 200)
    ]
    emu.faults.fail_next(None, status=502)
    assert requests.post(f"{emu.control_url}/reset").json()["result"] == {"images": 100}
    assert victim in emu.backend
    assert emu.requests == []
    assert page(client, emu).status_code == 200

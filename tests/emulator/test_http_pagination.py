"""Listings over HTTP: 25,000 images, faults on chosen pages, concurrent writers; fixtures."""

from __future__ import annotations

import os
import threading
from typing import Any

import msgspec
import pytest
import requests

from airflow_provider_cfimages.emulator import EmulatorServer


class _Image(msgspec.Struct):
    id: str


class _Result(msgspec.Struct):
    images: list[_Image]
    continuation_token: str | None


class _Page(msgspec.Struct):
    result: _Result


# Decoding only the ids (msgspec skips the other fields) keeps the 25k listings cheap.
_decode_page = msgspec.json.Decoder(_Page).decode


def list_all(
    emu: EmulatorServer, sort_order: str, per_page: int, *, retry: bool = False
) -> tuple[list[str], int]:
    """Page through the whole inventory; with ``retry``, repeat a failed page once."""
    ids: list[str] = []
    pages = 0
    params: dict[str, Any] = {"per_page": per_page, "sort_order": sort_order}
    with requests.Session() as session:
        session.headers.update(emu.auth_headers())
        while True:
            response = session.get(emu.url("/images/v2"), params=params, timeout=30)
            if retry and response.status_code >= 500:
                response = session.get(emu.url("/images/v2"), params=params, timeout=30)
            assert response.status_code == 200, response.text[:200]
            pages += 1
            result = _decode_page(response.content).result
            ids.extend(image.id for image in result.images)
            if result.continuation_token is None:
                return ids, pages
            params["continuation_token"] = result.continuation_token


def test_25k_images_list_exactly_once_in_both_orders(emulator_25k: EmulatorServer) -> None:
    emulator_25k.page_cap = 10_000  # pages as large as the API accepts
    expected = emulator_25k.backend.ids_sorted()
    assert len(expected) == len(set(expected)) == 25_000
    ascending, pages = list_all(emulator_25k, "asc", 10_000)
    assert (ascending, pages) == (expected, 3)
    descending, pages = list_all(emulator_25k, "desc", 1000)
    assert (descending, pages) == (expected[::-1], 25)


@pytest.mark.parametrize("which", [1, 13, 25], ids=["first", "middle", "last"])
def test_a_5xx_on_the_first_a_middle_or_the_last_page_is_survivable(
    emulator_25k: EmulatorServer, which: int
) -> None:
    emulator_25k.faults.fail_next(1, status=502, path="/images/v2", on_request=which)
    ids, _ = list_all(emulator_25k, "desc", 1000, retry=True)
    assert ids == emulator_25k.backend.ids_sorted()[::-1]
    statuses = [record.status for record in emulator_25k.requests]
    assert statuses == [200] * (which - 1) + [502] + [200] * (26 - which)


def test_the_shared_fixture_starts_each_test_clean(emulator_25k: EmulatorServer) -> None:
    assert emulator_25k.requests == []
    assert emulator_25k.faults.rules == []
    assert emulator_25k.backend.count == 25_000
    emulator_25k.backend.delete_image(emulator_25k.backend.ids_sorted()[0])
    emulator_25k.faults.fail_next(None, status=500)


def test_the_shared_fixture_undid_the_previous_tests_changes(emulator_25k: EmulatorServer) -> None:
    assert emulator_25k.backend.count == 25_000
    assert emulator_25k.faults.rules == []


def test_the_fresh_emulator_fixture_is_empty_and_running(emulator: EmulatorServer) -> None:
    assert emulator.backend.count == 0
    response = requests.get(emulator.url("/images/v1/stats"), headers=emulator.auth_headers())
    assert response.json()["result"]["count"]["current"] == 0


def test_emulator_connection_env_points_airflow_at_the_emulator(
    emulator_connection_env: EmulatorServer,
) -> None:
    assert os.environ["AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"] == (
        emulator_connection_env.connection_json()
    )


def test_listing_while_another_client_uploads_and_deletes_keeps_survivors_exact() -> None:
    with EmulatorServer(images=500, seed=9) as emu:
        before = emu.backend.ids_sorted()
        doomed = set(before[::5])
        stop = threading.Event()

        def churn() -> None:
            # Another client, on another connection, uploading and deleting during the listing.
            with requests.Session() as other:
                other.headers.update(emu.auth_headers())
                victims = iter(sorted(doomed))
                for _ in range(300):
                    if stop.is_set():
                        break
                    other.post(emu.url("/images/v1"), files={"file": ("new.png", b"x")})
                    victim = next(victims, None)
                    if victim is not None:
                        other.delete(emu.url(f"/images/v1/{victim}"))

        worker = threading.Thread(target=churn)
        worker.start()
        try:
            ids, pages = list_all(emu, "asc", 10)
        finally:
            stop.set()
            worker.join()
        assert pages > 40
        assert len(ids) == len(set(ids))
        survivors = [image_id for image_id in before if image_id not in doomed]
        assert [image_id for image_id in ids if image_id in set(survivors)] == survivors

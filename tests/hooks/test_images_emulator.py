"""CloudflareImagesHook against the local emulator, over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.exceptions import (
    CloudflareImagesAPIError,
    CloudflareImagesPaginationError,
)
from airflow_provider_cfimages.hooks import transport
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook

CONN_ENV = "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the backoff's shape but not its seconds."""
    monkeypatch.setattr(transport, "BACKOFF_INITIAL", 0.01)


@pytest.fixture
def emu25k(emulator_25k: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    monkeypatch.setenv(CONN_ENV, emulator_25k.connection_json())
    return emulator_25k


@pytest.fixture
def emu(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    monkeypatch.setenv(CONN_ENV, emulator.connection_json())
    return emulator


def test_lists_25k_images_exactly_once_newest_first(emu25k: EmulatorServer) -> None:
    expected = emu25k.backend.ids_sorted()[::-1]
    got = [image["id"] for image in CloudflareImagesHook().iter_images(per_page=1000)]
    assert got == expected
    assert len(set(got)) == 25_000
    assert len(emu25k.requests) == 25


def test_lists_oldest_first_with_large_pages(emu25k: EmulatorServer) -> None:
    emu25k.page_cap = 10_000  # pages as large as the API accepts
    hook = CloudflareImagesHook()
    pages = list(hook.iter_pages(per_page=10_000, sort_order="asc"))
    assert [p.received for p in pages] == [10_000, 10_000, 5_000]
    got = [image["id"] for page in pages for image in page.images]
    assert got == emu25k.backend.ids_sorted()


def test_images_come_back_as_the_api_sent_them(emu25k: EmulatorServer) -> None:
    first = next(iter(CloudflareImagesHook().iter_images(sort_order="asc", per_page=10)))
    assert first == emu25k.backend.images_sorted()[0]


def test_global_api_key_auth_lists_the_same_inventory(
    emulator_25k: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONN_ENV, emulator_25k.connection_json(auth_type="api_key"))
    hook = CloudflareImagesHook()
    assert hook.settings.auth_type == "api_key"
    assert len(hook.list_images(per_page=10_000)) == 25_000


def test_window_stops_paging_early_newest_first(emu25k: EmulatorServer) -> None:
    images = emu25k.backend.images_sorted()
    cutoff = images[-2500]["uploaded"]  # roughly the newest 10%
    expected = [i["id"] for i in reversed(images) if i["uploaded"] >= cutoff]
    got = CloudflareImagesHook().list_images(per_page=1000, uploaded_after=cutoff)
    assert [i["id"] for i in got] == expected
    # 2500 images fit in 3 pages of 1000; the page holding the cutoff ends the listing.
    assert len(emu25k.requests) == 3


def test_window_stops_paging_early_oldest_first(emu25k: EmulatorServer) -> None:
    images = emu25k.backend.images_sorted()
    start, end = images[100]["uploaded"], images[1500]["uploaded"]
    expected = [i["id"] for i in images if start <= i["uploaded"] < end]
    got = CloudflareImagesHook().list_images(
        per_page=500, sort_order="asc", uploaded_after=start, uploaded_before=end
    )
    assert [i["id"] for i in got] == expected
    assert len(emu25k.requests) == 4


def test_creator_filter_is_applied_by_the_api(emu25k: EmulatorServer) -> None:
    images = emu25k.backend.images_sorted()
    creator = next(i["creator"] for i in images if i.get("creator"))
    expected = {i["id"] for i in images if i.get("creator") == creator}
    got = CloudflareImagesHook().list_images(per_page=10_000, creator=creator)
    assert {i["id"] for i in got} == expected
    assert all(r.query.get("creator") == creator for r in emu25k.requests)


@pytest.mark.parametrize("where", [1, 3, 5])  # the first, a middle and the last page
@pytest.mark.parametrize("fault", ["html_502", "drop", "truncate", "cut_connection"])
def test_transient_faults_on_any_page_give_exact_results(
    emu25k: EmulatorServer, where: int, fault: str
) -> None:
    faults = emu25k.faults
    if fault == "html_502":
        faults.fail_next(2, status=502, path="/images/v2", on_request=where)
    elif fault == "drop":
        faults.drop_next(1, path="/images/v2", on_request=where)
    elif fault == "truncate":
        faults.truncate_next(1, path="/images/v2", on_request=where)
    else:
        faults.truncate_next(1, path="/images/v2", on_request=where, honest_length=False)
    got = [i["id"] for i in CloudflareImagesHook().iter_images(per_page=5000)]
    assert got == emu25k.backend.ids_sorted()[::-1]


def test_rate_limit_is_waited_out(emu25k: EmulatorServer) -> None:
    # A server without the Ratelimit headers: the client learns of the limit by a 429.
    emu25k.faults.rate_limit(
        requests=2, window_seconds=60, retry_after=1, block_seconds=1, headers=False
    )
    got = CloudflareImagesHook().list_images(per_page=5000)
    assert len(got) == 25_000
    assert len({i["id"] for i in got}) == 25_000
    assert any(r.status == 429 for r in emu25k.requests)


def test_repeated_token_fails_instead_of_looping(emu25k: EmulatorServer) -> None:
    emu25k.faults.repeat_token(after_pages=2)
    with pytest.raises(CloudflareImagesPaginationError, match="already returned"):
        CloudflareImagesHook().list_images(per_page=1000)
    assert len(emu25k.requests) <= 4


def test_short_pages_and_trailing_empty_page_are_followed(emu25k: EmulatorServer) -> None:
    emu25k.faults.short_pages(max_items=700)
    emu25k.faults.trailing_empty_page()
    got = [i["id"] for i in CloudflareImagesHook().iter_images(per_page=10_000)]
    assert got == emu25k.backend.ids_sorted()[::-1]


def test_wrong_token_fails_fast_with_a_hint(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = json.loads(emulator.connection_json())
    conn["password"] = "x" * 40
    monkeypatch.setenv(CONN_ENV, json.dumps(conn))
    with pytest.raises(CloudflareImagesAPIError, match="token") as err:
        CloudflareImagesHook().list_images()
    assert err.value.status in (401, 403)
    assert len(emulator.requests) == 1
    assert "x" * 40 not in str(err.value)


def test_unknown_account_points_at_the_account_id(emu: EmulatorServer) -> None:
    with pytest.raises(CloudflareImagesAPIError, match="account") as err:
        CloudflareImagesHook(account_id="f" * 32).list_images()
    assert err.value.status in (403, 404)
    assert len(emu.requests) == 1


def test_single_image_operations_round_trip(emu: EmulatorServer) -> None:
    emu.backend.upload_image(file=b"x", id="product/42", filename="a.jpg", metadata={"v": 1})
    hook = CloudflareImagesHook()
    assert hook.get_image("product/42")["filename"] == "a.jpg"
    updated = hook.update_image("product/42", metadata={"v": 2}, require_signed_urls=True)
    assert updated["meta"] == {"v": 2}
    assert updated["requireSignedURLs"] is True
    assert hook.get_stats()["count"]["current"] == 1
    assert hook.delete_image("product/42") is True
    assert hook.delete_image("product/42") is False
    with pytest.raises(CloudflareImagesAPIError) as err:
        hook.get_image("product/42")
    assert 5404 in err.value.codes


def test_test_connection_against_the_emulator(emu: EmulatorServer) -> None:
    emu.backend.upload_image(file=b"x", filename="a.jpg")
    ok, message = CloudflareImagesHook().test_connection()
    assert ok is True
    assert "1 of" in message


def test_pages_reuse_one_connection(emu25k: EmulatorServer) -> None:
    # Each body is read to the end, so its connection goes back to the pool for the next page.
    hook = CloudflareImagesHook()
    assert len(hook.list_images(per_page=1000)) == 25_000
    pools = hook.get_conn().get_adapter(emu25k.base_url).poolmanager.pools
    keys = pools.keys()  # the pool container refuses plain iteration
    assert [pools[key].num_connections for key in keys] == [1]
    assert len(emu25k.requests) == 25


# -- pages as the JSON the API sent -----------------------------------------------------------


def _listing_shapes(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    creator = next(i["creator"] for i in images if i.get("creator"))
    return [
        {"per_page": 1000},
        {"per_page": 10_000, "sort_order": "asc"},
        {"per_page": 1000, "uploaded_after": images[-2500]["uploaded"]},
        {
            "per_page": 500,
            "sort_order": "asc",
            "uploaded_after": images[100]["uploaded"],
            "uploaded_before": images[1500]["uploaded"],
        },
        {
            "per_page": 700,
            "uploaded_after": images[3000]["uploaded"],
            "uploaded_before": images[20_000]["uploaded"],
        },
        {"per_page": 1000, "limit": 2345},
        {"per_page": 10_000, "creator": creator},
    ]


@pytest.mark.parametrize("shape", range(7))
def test_json_pages_hold_the_same_images_and_requests_as_dict_pages(
    emu25k: EmulatorServer, shape: int
) -> None:
    kwargs = _listing_shapes(emu25k.backend.images_sorted())[shape]
    dict_pages = list(CloudflareImagesHook().iter_pages(**kwargs))
    dict_requests = [r.query for r in emu25k.requests]
    emu25k.reset_requests()
    json_pages = list(CloudflareImagesHook().iter_json_pages(**kwargs))
    assert [r.query for r in emu25k.requests] == dict_requests
    assert [(p.number, p.received, p.nbytes, p.continuation_token) for p in json_pages] == [
        (p.number, p.received, p.nbytes, p.continuation_token) for p in dict_pages
    ]
    for json_page, dict_page in zip(json_pages, dict_pages, strict=True):
        assert [msgspec.json.decode(image) for image in json_page.images] == dict_page.images
        assert json_page.uploaded == [image["uploaded"] for image in dict_page.images]
    assert sum(len(p.images) for p in json_pages) > 0


def test_json_pages_are_the_bytes_the_emulator_sent(emu25k: EmulatorServer) -> None:
    page = next(iter(CloudflareImagesHook().iter_json_pages(per_page=10, sort_order="asc")))
    sent = emu25k.backend.images_sorted()[:10]
    assert [bytes(image) for image in page.images] == [
        json.dumps(image, separators=(",", ":"), ensure_ascii=False).encode() for image in sent
    ]


def test_json_pages_survive_transient_faults_exactly(emu25k: EmulatorServer) -> None:
    emu25k.faults.truncate_next(1, path="/images/v2", on_request=2)
    emu25k.faults.fail_next(1, status=502, path="/images/v2", on_request=4)
    pages = CloudflareImagesHook().iter_json_pages(per_page=5000)
    got = [msgspec.json.decode(image)["id"] for page in pages for image in page.images]
    assert got == emu25k.backend.ids_sorted()[::-1]

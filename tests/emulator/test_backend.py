"""The backend alone (no HTTP): pagination invariants, operations and their errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_cfimages.emulator import ImagesBackend
from airflow_provider_cfimages.emulator.errors import (
    AccountNotAuthorized,
    BadRequest,
    ImageNotFound,
    ResourceAlreadyExists,
    ServiceLimitReached,
)
from airflow_provider_cfimages.emulator.seed import SeedFileError
from airflow_provider_cfimages.emulator.timestamps import epoch_micros

ACCOUNT = "0123456789abcdef0123456789abcdef"


def seeded(count: int = 200, seed: int = 3) -> ImagesBackend:
    backend = ImagesBackend(ACCOUNT)
    backend.seed(count, seed)
    return backend


def list_all(
    backend: ImagesBackend, sort_order: str = "desc", per_page: int = 10, creator: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Follow continuation tokens to the end; return the images and the number of pages."""
    images: list[dict[str, Any]] = []
    token = None
    pages = 0
    while True:
        page = backend.list_images_v2(per_page, sort_order, token, creator)
        pages += 1
        images.extend(page["images"])
        token = page["continuation_token"]
        if token is None:
            return images, pages
        assert pages < 10_000, "the listing never ends"


def order_key(image: dict[str, Any]) -> tuple[int, str]:
    return epoch_micros(image["uploaded"]), image["id"]


# --- full listings -------------------------------------------------------------------------


@pytest.mark.parametrize("per_page", [10, 17, 200, 10_000])
def test_full_listing_ascending_returns_every_image_once_in_uploaded_then_id_order(
    per_page: int,
) -> None:
    backend = seeded(200)
    images, pages = list_all(backend, "asc", per_page)
    assert [image["id"] for image in images] == backend.ids_sorted()
    assert [order_key(i) for i in images] == sorted(order_key(i) for i in images)
    assert pages == -(-200 // per_page)


def test_full_listing_descending_is_the_exact_reverse_of_ascending() -> None:
    backend = seeded(200)
    ascending, _ = list_all(backend, "asc", 13)
    descending, _ = list_all(backend, "desc", 13)
    assert descending == ascending[::-1]


def test_default_listing_is_descending_with_1000_per_page() -> None:
    backend = seeded(1500)
    page = backend.list_images_v2()
    assert len(page["images"]) == 1000
    assert [i["id"] for i in page["images"]] == backend.ids_sorted()[::-1][:1000]
    assert page["continuation_token"] is not None


def test_images_with_the_same_uploaded_time_are_ordered_by_id() -> None:
    backend = ImagesBackend(ACCOUNT)
    for image_id in ("c-tie", "a-tie", "b-tie"):
        backend.upload(f"{image_id}.jpg", id=image_id, uploaded="2024-03-05T10:22:31.123Z")
    backend.upload("before.jpg", id="z-before", uploaded="2024-03-05T10:22:31.122Z")
    ascending, _ = list_all(backend, "asc")
    assert [i["id"] for i in ascending] == ["z-before", "a-tie", "b-tie", "c-tie"]


def test_the_last_page_has_a_null_token_even_when_it_is_full() -> None:
    backend = seeded(30)
    first = backend.list_images_v2(10, "asc")
    second = backend.list_images_v2(10, "asc", first["continuation_token"])
    third = backend.list_images_v2(10, "asc", second["continuation_token"])
    assert len(third["images"]) == 10
    assert third["continuation_token"] is None


def test_an_empty_account_lists_one_empty_page() -> None:
    assert ImagesBackend(ACCOUNT).list_images_v2() == {"images": [], "continuation_token": None}


# --- parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize("per_page", [10, "10", 10_000, "10000"])
def test_per_page_accepts_10_to_10000(per_page: int | str) -> None:
    backend = seeded(30)
    page = backend.list_images_v2(per_page)
    assert len(page["images"]) == min(30, int(per_page))


@pytest.mark.parametrize("per_page", [9, 10_001, "abc", "", "10.5", -1, 0, "1e3", True])
def test_per_page_outside_10_to_10000_or_not_a_number_is_bad_request(per_page: object) -> None:
    with pytest.raises(BadRequest) as caught:
        seeded(20).list_images_v2(per_page)  # type: ignore[arg-type]
    assert caught.value.code == 5400
    assert caught.value.status == 400
    assert "per_page" in caught.value.message


@pytest.mark.parametrize("sort_order", ["ASC", "ascending", "", "random"])
def test_sort_order_other_than_asc_or_desc_is_bad_request(sort_order: str) -> None:
    with pytest.raises(BadRequest, match="sort_order"):
        seeded(20).list_images_v2(sort_order=sort_order)


def test_creator_filter_lists_only_that_creators_images_in_order() -> None:
    backend = seeded(400)
    everything, _ = list_all(backend, "asc", 50)
    creators = {i["creator"] for i in everything if "creator" in i}
    assert len(creators) >= 2
    for creator in creators:
        expected = [i["id"] for i in everything if i.get("creator") == creator]
        for order in ("asc", "desc"):
            listed, _ = list_all(backend, order, 10, creator)
            ids = [i["id"] for i in listed]
            assert ids == (expected if order == "asc" else expected[::-1])


def test_unknown_creator_lists_nothing() -> None:
    assert seeded(50).list_images_v2(creator="nobody")["images"] == []


# --- continuation tokens ---------------------------------------------------------------------


def test_the_same_position_always_gets_the_same_token() -> None:
    backend = seeded(100)
    first = backend.list_images_v2(10, "asc")
    again = backend.list_images_v2(10, "asc")
    assert first == again
    second = backend.list_images_v2(10, "asc", first["continuation_token"])
    assert backend.list_images_v2(10, "asc", first["continuation_token"]) == second


def test_tokens_are_32_url_safe_characters() -> None:
    token = seeded(100).list_images_v2(10)["continuation_token"]
    assert token is not None
    assert len(token) == 32
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_a_tampered_token_is_bad_request() -> None:
    backend = seeded(100)
    token = backend.list_images_v2(10)["continuation_token"]
    assert token is not None
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(BadRequest, match="continuation_token"):
        backend.list_images_v2(10, continuation_token=tampered)


def test_a_token_issued_for_another_sort_order_is_bad_request() -> None:
    backend = seeded(100)
    token = backend.list_images_v2(10, "asc")["continuation_token"]
    with pytest.raises(BadRequest, match="sort_order=asc"):
        backend.list_images_v2(10, "desc", token)


def test_a_token_issued_for_another_creator_filter_is_bad_request() -> None:
    backend = seeded(300)
    token = backend.list_images_v2(10, "asc")["continuation_token"]
    with pytest.raises(BadRequest, match="creator"):
        backend.list_images_v2(10, "asc", token, creator="importer")


def test_a_token_from_another_account_is_bad_request() -> None:
    token = seeded(100).list_images_v2(10)["continuation_token"]
    other = ImagesBackend("f" * 32)
    other.seed(100, 3)
    with pytest.raises(BadRequest):
        other.list_images_v2(10, continuation_token=token)


def test_a_token_still_works_after_the_image_it_points_at_is_deleted() -> None:
    backend = seeded(100)
    first = backend.list_images_v2(10, "asc")
    backend.delete_image(first["images"][-1]["id"])
    second = backend.list_images_v2(10, "asc", first["continuation_token"])
    assert [i["id"] for i in second["images"]] == backend.ids_sorted()[9:19]


def test_changing_per_page_between_pages_is_allowed() -> None:
    backend = seeded(100)
    first = backend.list_images_v2(10, "asc")
    second = backend.list_images_v2(35, "asc", first["continuation_token"])
    assert [i["id"] for i in second["images"]] == backend.ids_sorted()[10:45]


def test_uploads_and_deletes_between_pages_never_repeat_or_skip_a_surviving_image() -> None:
    backend = seeded(100)
    before = backend.ids_sorted()
    seen: list[str] = []
    deleted: set[str] = set()
    token = None
    for step in range(100):
        page = backend.list_images_v2(10, "asc", token)
        seen.extend(i["id"] for i in page["images"])
        # Upload one image before the cursor, one after and one at an existing time (a tie);
        # delete one image already listed and one not yet listed.
        backend.upload(f"early-{step}.jpg", uploaded="2020-06-01T00:00:00.000Z")
        backend.upload(f"late-{step}.jpg", uploaded="2030-06-01T00:00:00.000Z")
        backend.upload(f"tie-{step}.jpg", uploaded=page["images"][0]["uploaded"])
        for victim in (seen[len(seen) // 2], before[min(len(before) - 1, 10 * step + 15)]):
            if victim not in deleted:
                backend.delete_image(victim)
                deleted.add(victim)
        token = page["continuation_token"]
        if token is None:
            break
    survivors = [image_id for image_id in before if image_id not in deleted]
    assert len(seen) == len(set(seen)), "an image was listed twice"
    assert set(survivors) <= set(seen), "an image that existed throughout was skipped"
    listed_survivors = [image_id for image_id in seen if image_id in set(survivors)]
    assert listed_survivors == survivors


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_interleaving_of_uploads_and_deletes_keeps_listings_exact(data: st.DataObject) -> None:
    backend = ImagesBackend(ACCOUNT)
    backend.seed(data.draw(st.integers(0, 90), label="images"), data.draw(st.integers(0, 99)))
    order = data.draw(st.sampled_from(["asc", "desc"]), label="sort_order")
    per_page = data.draw(st.integers(10, 30), label="per_page")
    initial = backend.images_sorted()
    times = [image["uploaded"] for image in initial] or ["2022-01-01T00:00:00.000Z"]
    deleted: set[str] = set()
    listed: list[dict[str, Any]] = []
    token = None
    for _ in range(200):
        page = backend.list_images_v2(per_page, order, token)
        listed.extend(page["images"])
        mutations = data.draw(
            st.lists(st.tuples(st.booleans(), st.integers(0, 10**6)), max_size=5), label="ops"
        )
        for upload, number in mutations:
            if upload:
                backend.upload(f"n{number}.png", uploaded=times[number % len(times)])
            elif backend.count:
                victim = backend.ids_sorted()[number % backend.count]
                backend.delete_image(victim)
                deleted.add(victim)
        token = page["continuation_token"]
        if token is None:
            break
    ids = [image["id"] for image in listed]
    assert len(ids) == len(set(ids))
    keys = [order_key(image) for image in listed]
    assert keys == sorted(keys, reverse=order == "desc")
    survivors = {image["id"] for image in initial} - deleted
    assert survivors <= set(ids)


# --- single-image operations -------------------------------------------------------------


def test_get_update_and_delete_an_image() -> None:
    backend = seeded(20)
    image_id = backend.ids_sorted()[5]
    image = backend.get_image(image_id)
    updated = backend.update_image(image_id, metadata={"sku": "X-1"}, require_signed_urls=True)
    assert updated == {**image, "meta": {"sku": "X-1"}, "requireSignedURLs": True}
    assert backend.get_image(image_id) == updated
    assert backend.ids_sorted()[5] == image_id, "an update must not move the image"
    assert backend.delete_image(image_id) == {}
    assert image_id not in backend
    assert backend.count == 19


def test_update_accepts_metadata_as_json_text_and_booleans_as_text() -> None:
    backend = seeded(5)
    image_id = backend.ids_sorted()[0]
    updated = backend.update_image(image_id, metadata='{"a": 1}', require_signed_urls="false")
    assert updated["meta"] == {"a": 1}
    assert updated["requireSignedURLs"] is False


def test_an_update_is_seen_by_the_creator_filtered_listing() -> None:
    backend = ImagesBackend(ACCOUNT)
    image = backend.upload("a.jpg", creator="alice")
    backend.update_image(image["id"], metadata={"v": 2})
    assert backend.list_images_v2(creator="alice")["images"][0]["meta"] == {"v": 2}


@pytest.mark.parametrize("operation", ["get", "update", "delete"])
def test_an_unknown_image_is_not_found(operation: str) -> None:
    backend = seeded(5)
    call: Callable[[], object] = {
        "get": lambda: backend.get_image("missing"),
        "update": lambda: backend.update_image("missing", metadata={}),
        "delete": lambda: backend.delete_image("missing"),
    }[operation]
    with pytest.raises(ImageNotFound) as caught:
        call()
    assert (caught.value.code, caught.value.status, caught.value.message) == (
        5404,
        404,
        "Image not found",
    )


@pytest.mark.parametrize(
    "metadata",
    [{"blob": "x" * 1020}, "[1, 2]", "not json", 42],
    ids=["over-1024-bytes", "a-list", "not-json", "a-number"],
)
def test_update_refuses_metadata_that_is_not_an_object_of_at_most_1024_bytes(
    metadata: object,
) -> None:
    backend = seeded(5)
    with pytest.raises(BadRequest, match="metadata"):
        backend.update_image(backend.ids_sorted()[0], metadata=metadata)  # type: ignore[arg-type]


def test_upload_stores_the_metadata_and_lists_the_image_first_in_descending_order() -> None:
    backend = seeded(20)
    image = backend.upload_image(
        file=b"\x89PNG...", filename="café.png", metadata='{"sku": "S-1"}', creator="bob"
    )
    assert image["filename"] == "café.png"
    assert image["meta"] == {"sku": "S-1"}
    assert image["creator"] == "bob"
    assert image["requireSignedURLs"] is False
    assert image["variants"] == [
        f"https://imagedelivery.net/{backend.account_hash}/{image['id']}/public",
        f"https://imagedelivery.net/{backend.account_hash}/{image['id']}/thumbnail",
    ]
    assert backend.list_images_v2(10)["images"][0] == image
    assert backend.list_images_v2(10, creator="bob")["images"] == [image]


def test_upload_from_a_url_takes_the_filename_from_the_url() -> None:
    image = ImagesBackend(ACCOUNT).upload_image(url="https://example.com/a/logo.png?x=1")
    assert image["filename"] == "logo.png"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "exactly one"),
        ({"file": b"x", "url": "https://example.com/a.png"}, "exactly one"),
        ({"url": "ftp://example.com/a.png"}, "url"),
        ({"file": b"x", "id": "0b5f4a5e-8d1c-4e8f-9a3b-2c1d0e9f8a7b"}, "UUID"),
        ({"file": b"x", "id": "/leading"}, "/"),
        ({"file": b"x", "id": "trailing/"}, "/"),
        ({"file": b"x", "requireSignedURLs": "maybe"}, "requireSignedURLs"),
    ],
)
def test_upload_refuses_bad_fields(fields: dict[str, Any], message: str) -> None:
    signed = fields.pop("requireSignedURLs", None)
    with pytest.raises(BadRequest, match=message):
        ImagesBackend(ACCOUNT).upload_image(**fields, require_signed_urls=signed)


def test_upload_with_a_taken_custom_id_conflicts() -> None:
    backend = ImagesBackend(ACCOUNT)
    backend.upload_image(file=b"x", id="products/1/front")
    with pytest.raises(ResourceAlreadyExists) as caught:
        backend.upload_image(file=b"x", id="products/1/front")
    assert (caught.value.code, caught.value.status) == (5409, 409)


def test_generated_ids_look_like_cloudflare_ids() -> None:
    image = ImagesBackend(ACCOUNT).upload_image(file=b"x")
    assert len(image["id"]) == 36
    assert image["id"][14] == "4"
    assert image["id"].endswith("00")


def test_stats_count_current_and_allowed_images() -> None:
    assert seeded(42).stats() == {"count": {"current": 42, "allowed": 100_000}}


def test_uploads_past_the_allowance_fail_with_5453() -> None:
    backend = ImagesBackend(ACCOUNT, allowed=2)
    backend.upload("a.jpg")
    backend.upload("b.jpg")
    with pytest.raises(ServiceLimitReached) as caught:
        backend.upload("c.jpg")
    assert caught.value.code == 5453
    assert backend.stats() == {"count": {"current": 2, "allowed": 2}}


def test_an_account_without_images_answers_5403_to_every_operation() -> None:
    backend = seeded(5)
    backend.images_enabled = False
    with pytest.raises(AccountNotAuthorized):
        backend.list_images_v2()
    with pytest.raises(AccountNotAuthorized):
        backend.stats()


def test_list_v1_pages_by_number_newest_first() -> None:
    backend = seeded(25)
    newest_first = backend.ids_sorted()[::-1]
    pages = [backend.list_images_v1(page, 10)["images"] for page in (1, 2, 3, 4)]
    assert [[i["id"] for i in page] for page in pages] == [
        newest_first[:10],
        newest_first[10:20],
        newest_first[20:],
        [],
    ]
    with pytest.raises(BadRequest, match="page"):
        backend.list_images_v1(0, 10)


def test_a_direct_upload_is_a_draft_until_its_file_arrives() -> None:
    backend = ImagesBackend(ACCOUNT)
    created = backend.create_direct_upload(metadata={"k": "v"}, creator="ugc")
    assert created["uploadURL"].endswith(f"/{created['id']}")
    assert backend.get_image(created["id"])["draft"] is True
    assert backend.count == 0
    image = backend.complete_direct_upload(created["id"], "selfie.jpg")
    assert "draft" not in image
    assert image["meta"] == {"k": "v"}
    assert backend.list_images_v2(creator="ugc")["images"] == [image]
    with pytest.raises(ImageNotFound):
        backend.complete_direct_upload(created["id"])


# --- inventory -------------------------------------------------------------------------------


def test_reset_restores_the_seeded_inventory_and_forgets_tokens() -> None:
    backend = seeded(50)
    before = backend.images_sorted()
    token = backend.list_images_v2(10)["continuation_token"]
    backend.delete_image(before[0]["id"])
    backend.upload("new.jpg")
    backend.update_image(before[1]["id"], metadata={"changed": True})
    backend.reset()
    assert backend.images_sorted() == before
    with pytest.raises(BadRequest):
        backend.list_images_v2(10, continuation_token=token)


def test_clear_removes_every_image_but_reset_brings_the_seed_back() -> None:
    backend = seeded(50)
    backend.clear()
    assert backend.count == 0
    backend.reset()
    assert backend.count == 50


def test_loaded_images_keep_unknown_keys_and_key_order_untouched() -> None:
    image = {
        "uploaded": "2023-01-02T03:04:05Z",
        "id": "from-file",
        "filename": "x.png",
        "futureField": {"nested": [1, 2]},
        "draft": False,
    }
    backend = ImagesBackend(ACCOUNT)
    backend.load([image])
    assert backend.get_image("from-file") == image
    assert list(backend.get_image("from-file")) == list(image)


def test_loading_a_duplicate_id_is_refused() -> None:
    backend = seeded(5)
    existing = backend.ids_sorted()[0]
    with pytest.raises(ValueError, match="duplicate"):
        backend.load([{"id": existing, "uploaded": "2023-01-01T00:00:00Z"}])
    assert backend.count == 5


@pytest.mark.parametrize("form", ["json-list", "jsonl", "api-response"])
def test_seed_files_may_be_a_json_list_json_lines_or_a_saved_api_response(
    tmp_path: Path, form: str
) -> None:
    images = [
        {"id": "a", "uploaded": "2023-01-01T00:00:00.000Z", "extra": 1},
        {"id": "b", "uploaded": "2023-01-01T00:00:00+01:00", "filename": "b,\n.png"},
    ]
    path = tmp_path / "seed.json"
    if form == "json-list":
        path.write_text(json.dumps(images))
    elif form == "jsonl":
        path.write_text("\n".join(json.dumps(image) for image in images) + "\n\n")
    else:
        path.write_text(json.dumps({"result": {"images": images}, "success": True}))
    backend = ImagesBackend(ACCOUNT)
    assert backend.seed_from_file(path) == 2
    # 00:00+01:00 is an hour before 00:00Z.
    assert backend.images_sorted() == [images[1], images[0]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json\n", "not a JSON object"),
        ('{"other": 1}', "expected a JSON list"),
        ('[{"uploaded": "2023-01-01T00:00:00Z"}]', "'id'"),
        ('[{"id": "x"}]', "uploaded"),
    ],
)
def test_unreadable_seed_files_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SeedFileError, match=message):
        ImagesBackend(ACCOUNT).seed_from_file(path)


def test_a_bad_account_id_is_refused() -> None:
    with pytest.raises(ValueError, match="32 lowercase hex"):
        ImagesBackend("not-an-account")

"""The generated inventory: deterministic, and as awkward as real ones."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import msgspec
import pytest

from airflow_provider_cfimages.emulator import ImagesBackend
from airflow_provider_cfimages.emulator.seed import (
    CREATORS,
    account_hash_for,
    generate_images,
)
from airflow_provider_cfimages.emulator.timestamps import epoch_micros, format_uploaded

HASH = account_hash_for("0" * 32)
UPLOADED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture(scope="module")
def inventory() -> list[dict[str, Any]]:
    return list(generate_images(10_000, 7, account_hash=HASH))


def test_the_same_seed_gives_the_same_inventory(inventory: list[dict[str, Any]]) -> None:
    assert list(generate_images(300, 7, account_hash=HASH)) == list(
        generate_images(300, 7, account_hash=HASH)
    )
    assert inventory[:50] != list(generate_images(50, 8, account_hash=HASH))


def test_two_emulators_with_the_same_seed_hold_the_same_images() -> None:
    first, second = ImagesBackend("a" * 32), ImagesBackend("a" * 32)
    first.seed(500, 11)
    second.seed(500, 11)
    assert first.images_sorted() == second.images_sorted()


def test_ids_are_unique_and_mostly_cloudflare_uuids(inventory: list[dict[str, Any]]) -> None:
    ids = [image["id"] for image in inventory]
    assert len(set(ids)) == len(ids)
    shapes = Counter(
        "uuid" if len(i) == 36 else "hex" if re.fullmatch(r"[0-9a-f]{32}", i) else "custom"
        for i in ids
    )
    assert shapes["uuid"] > shapes["hex"] > shapes["custom"] > 0
    assert any("/" in i for i in ids), "custom ids with sub-paths"


def test_filenames_include_commas_quotes_spaces_non_ascii_and_newlines(
    inventory: list[dict[str, Any]],
) -> None:
    names = [image["filename"] for image in inventory]
    assert any("," in n for n in names)
    assert any('"' in n for n in names)
    assert any(" " in n for n in names)
    assert any(not n.isascii() for n in names)
    assert 0 < sum("\n" in n for n in names) < len(names) / 200
    assert max(len(n.encode()) for n in names) <= 255


def test_metadata_is_absent_or_an_object_of_at_most_1024_bytes(
    inventory: list[dict[str, Any]],
) -> None:
    sizes = [len(msgspec.json.encode(i["meta"])) for i in inventory if "meta" in i]
    assert 0.2 < 1 - len(sizes) / len(inventory) < 0.4, "about 30% have no metadata"
    assert max(sizes) <= 1024
    assert max(sizes) > 900, "some metadata come close to the limit"
    assert min(sizes) < 40


def test_about_5_percent_require_signed_urls_and_30_percent_have_a_creator(
    inventory: list[dict[str, Any]],
) -> None:
    signed = sum(image["requireSignedURLs"] for image in inventory) / len(inventory)
    with_creator = [image["creator"] for image in inventory if "creator" in image]
    assert 0.03 < signed < 0.07
    assert 0.25 < len(with_creator) / len(inventory) < 0.35
    assert set(with_creator) == set(CREATORS)


def test_upload_times_span_four_years_with_exact_ties(inventory: list[dict[str, Any]]) -> None:
    stamps = [image["uploaded"] for image in inventory]
    assert all(UPLOADED.match(stamp) for stamp in stamps)
    assert {stamp[:4] for stamp in stamps} == {"2021", "2022", "2023", "2024"}
    ties = len(stamps) - len(set(stamps))
    assert ties > len(stamps) / 100, "about 2% share an upload time with another image"


def test_variant_urls_name_the_account_hash_and_the_image(
    inventory: list[dict[str, Any]],
) -> None:
    for image in inventory[:100]:
        assert image["variants"] == [
            f"https://imagedelivery.net/{HASH}/{image['id']}/public",
            f"https://imagedelivery.net/{HASH}/{image['id']}/thumbnail",
        ]


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2024-03-05T10:22:31.123Z", 1_709_634_151_123_000),
        ("2024-03-05T11:22:31.123+01:00", 1_709_634_151_123_000),
        ("2024-03-05T10:22:31.123456789z", 1_709_634_151_123_456),
    ],
)
def test_upload_times_parse_as_rfc3339(text: str, micros: int) -> None:
    assert epoch_micros(text) == micros


@pytest.mark.parametrize("text", ["2024-03-05", "2024-02-30T00:00:00Z", "2024-03-05T25:00:00Z"])
def test_text_that_is_not_an_rfc3339_date_time_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an RFC 3339 date-time"):
        epoch_micros(text)


def test_upload_times_are_written_with_milliseconds_and_z() -> None:
    assert format_uploaded(1_709_634_151_123) == "2024-03-05T10:22:31.123Z"
    assert format_uploaded(951_782_400_000) == "2000-02-29T00:00:00.000Z"

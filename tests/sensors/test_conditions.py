"""Unit tests of the wait conditions shared by the sensor and the trigger (no HTTP)."""

from __future__ import annotations

import datetime as dt
import json
import types

import pytest

from airflow_provider_cfimages.exceptions import (
    CloudflareImagesAPIError,
    CloudflareImagesConfigError,
    CloudflareImagesRateLimitError,
)
from airflow_provider_cfimages.sensors.conditions import (
    ImageConditions,
    compact_image,
    is_transient,
    parse_image_ids,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, ()),
        ("None", ()),
        ("", ()),
        ("abc", ("abc",)),
        (" a, b ,c ", ("a", "b", "c")),
        (["a", "b", "a"], ("a", "b")),
        (("x",), ("x",)),
        ('["a", "b"]', ("a", "b")),
        ("['a', 'b']", ("a", "b")),
    ],
)
def test_image_ids_accepts_lists_comma_strings_and_rendered_lists(
    given: object, expected: tuple[str, ...]
) -> None:
    assert parse_image_ids(given) == expected


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ([], "image_ids is empty"),
        (["a", ""], "non-empty image ids"),
        ("a,,b", "non-empty image ids"),
        ([1, 2], "non-empty image ids"),
        (["x" * 1025], "at most 1024"),
        ({"a": 1}, "must be a list"),
        ("[unclosed", "could not be read"),
    ],
)
def test_image_ids_rejects_what_is_not_a_list_of_ids(given: object, fragment: str) -> None:
    with pytest.raises(CloudflareImagesConfigError, match="image_ids") as err:
        parse_image_ids(given)
    assert fragment in str(err.value)


def test_build_normalises_every_field() -> None:
    conditions = ImageConditions.build(
        image_ids="a,b",
        filename="batch-*.jpg",
        uploaded_after="2024-05-01T10:00:00+02:00",
        min_count=3,
        creator=" alice ",
        per_page="500",
        max_pages=None,
    )
    assert conditions == ImageConditions(
        image_ids=("a", "b"),
        filename="batch-*.jpg",
        uploaded_after=dt.datetime(2024, 5, 1, 8, tzinfo=dt.timezone.utc),
        min_count=3,
        creator="alice",
        per_page=500,
        max_pages=None,
    )
    query = conditions.listing_query()
    assert (query.sort_order, query.uploaded_after, query.creator, query.per_page) == (
        "desc",
        conditions.uploaded_after,
        "alice",
        500,
    )


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "at least one condition"),
        ({"uploaded_after": "None"}, "uploaded_after rendered to 'None'"),
        ({"image_ids": ["a"], "creator": "bob"}, "creator narrows"),
        ({"image_ids": ["a"], "min_count": 2}, "min_count counts"),
        ({"filename": "*.png", "min_count": 0}, "min_count must be a whole number >= 1"),
        ({"filename": "*.png", "min_count": True}, "min_count must be"),
        ({"filename": "*.png", "max_pages": 0}, "max_pages must be"),
        ({"filename": 5}, "filename must be a glob"),
        ({"uploaded_after": "yesterday-ish"}, "uploaded_after must be a date-time"),
        ({"filename": "*.png", "per_page": 5}, "per_page must be"),
        ({"filename": "*", "min_count": 101, "per_page": 10, "max_pages": 10}, "never be reached"),
        # A page holds at most 1000 images whatever per_page asks for.
        (
            {"filename": "*", "min_count": 10_001, "per_page": 10_000, "max_pages": 10},
            "of at most 1000",
        ),
        ({"meta_filters": {"size": {"gt": "big"}}}, "meta_filters"),
        ({"image_ids": ["a"], "creator": ""}, "creator narrows"),
    ],
)
def test_build_rejects_bad_conditions_naming_the_parameter(
    kwargs: dict[str, object], fragment: str
) -> None:
    with pytest.raises(CloudflareImagesConfigError) as err:
        ImageConditions.build(**kwargs)
    assert fragment in str(err.value)


def test_meta_filters_alone_are_a_listing_condition_sent_to_the_api() -> None:
    conditions = ImageConditions.build(meta_filters={"status": "ready"}, min_count=1000)
    assert conditions.lists_images
    assert conditions.listing_query().api_params(None)["meta.status[eq:string]"] == "ready"
    assert "where meta.status eq 'ready'" in conditions.describe()
    # Ten pages of 1000 reach 10,000 images: a min_count within that is accepted.
    ImageConditions.build(filename="*", min_count=10_000, per_page=10_000, max_pages=10)


def test_filename_pattern_is_an_fnmatch_glob_and_case_sensitive() -> None:
    conditions = ImageConditions.build(filename="batch-4?-*.jpg")
    assert conditions.matches({"id": "1", "filename": "batch-42-cat.jpg"})
    assert not conditions.matches({"id": "2", "filename": "batch-42-cat.JPG"})
    assert not conditions.matches({"id": "3", "filename": "batch-420-cat.png"})
    assert not conditions.matches({"id": "4"})


def test_describe_names_every_condition() -> None:
    text = ImageConditions.build(
        image_ids=["a"],
        filename="*.png",
        uploaded_after="2024-01-01",
        creator="bob",
        min_count=2,
    ).describe()
    assert text == (
        "1 image id(s) exist and at least 2 image(s) uploaded at or after "
        "2024-01-01T00:00:00+00:00 by creator 'bob' with a filename matching '*.png'"
    )


def test_compact_image_keeps_id_filename_and_uploaded_only() -> None:
    image = {"id": "a", "filename": "a.png", "uploaded": "2024-01-01T00:00:00Z", "meta": {}}
    assert compact_image(image) == {
        "id": "a",
        "filename": "a.png",
        "uploaded": "2024-01-01T00:00:00Z",
    }


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (CloudflareImagesRateLimitError("slow down", status=429), True),
        (CloudflareImagesAPIError("x", status=200, errors=[{"code": 971, "message": ""}]), True),
        (CloudflareImagesAPIError("x", status=503), True),
        (CloudflareImagesAPIError("x", status=502), True),
        (CloudflareImagesAPIError("x", status=401, errors=[{"code": 9109, "message": ""}]), False),
        (CloudflareImagesAPIError("x", status=403, errors=[{"code": 10000, "message": ""}]), False),
        (CloudflareImagesAPIError("x", status=404, errors=[{"code": 7003, "message": ""}]), False),
    ],
)
def test_only_rate_limits_and_server_errors_are_transient(
    error: CloudflareImagesAPIError, transient: bool
) -> None:
    assert is_transient(error) is transient


def test_to_kwargs_builds_the_same_conditions_again_and_is_json_safe() -> None:
    conditions = ImageConditions.build(
        image_ids="a, b",
        filename="batch-*.jpg",
        uploaded_after="2026-01-02T03:04:05Z",
        min_count=2,
        creator="c1",
        per_page=100,
        max_pages=None,
        meta_filters={"status": "ready"},
    )
    kwargs = conditions.to_kwargs()
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert kwargs["image_ids"] == ["a", "b"]
    assert ImageConditions.build(**kwargs) == conditions
    assert ImageConditions(image_ids=("a",)).to_kwargs()["meta_filters"] is None


def test_from_attributes_builds_from_the_attributes_of_the_field_names() -> None:
    holder = types.SimpleNamespace(
        image_ids=None,
        filename="x-*",
        uploaded_after=None,
        min_count=3,
        creator=None,
        per_page=50,
        max_pages=2,
        meta_filters=None,
    )
    assert ImageConditions.from_attributes(holder) == ImageConditions(
        filename="x-*", min_count=3, per_page=50, max_pages=2
    )
    holder.min_count = 0
    with pytest.raises(CloudflareImagesConfigError, match="min_count"):
        ImageConditions.from_attributes(holder)

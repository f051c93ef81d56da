"""meta_filters: checked before any request, sent to the API as ``meta.<path>[<op>]``."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.emulator.backend import ImagesBackend
from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook
from airflow_provider_cfimages.hooks.meta_filters import parse_meta_filters
from airflow_provider_cfimages.hooks.query import ImageQuery

CONN_ENV = "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"


@pytest.mark.parametrize(
    ("given", "params"),
    [
        ({"status": "ready"}, {"meta.status[eq:string]": "ready"}),
        ({"approved": True}, {"meta.approved[eq:boolean]": "true"}),
        ({"approved": False}, {"meta.approved[eq:boolean]": "false"}),
        ({"width": 640}, {"meta.width[eq:number]": "640"}),
        ({"score": 4.5}, {"meta.score[eq:number]": "4.5"}),
        ({"region.name": "eu-west"}, {"meta.region.name[eq:string]": "eu-west"}),
        ({"tag": ["a", "b"]}, {"meta.tag[in:string]": "a|b"}),
        ({"n": [1, 2.5]}, {"meta.n[in:number]": "1|2.5"}),
        (
            {"size": {"gte": 100, "lt": 1300}},
            {"meta.size[gte:number]": "100", "meta.size[lt:number]": "1300"},
        ),
        ({"s": {"eq": "x", "in": ["y"]}}, {"meta.s[eq:string]": "x", "meta.s[in:string]": "y"}),
        ('{"status": "ready"}', {"meta.status[eq:string]": "ready"}),  # a rendered template
        ("{'status': 'ready'}", {"meta.status[eq:string]": "ready"}),
        (None, {}),
        ("None", {}),
        ({}, {}),
    ],
)
def test_filters_become_typed_query_parameters(given: Any, params: dict[str, str]) -> None:
    assert parse_meta_filters(given).query_params() == params


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ({f"f{n}": n for n in range(6)}, "6 filters; the API allows at most 5"),
        ({"a": 1, "b": {"gt": 1, "lt": 5, "gte": 0, "lte": 9, "eq": 2}}, "6 filters"),
        ({"a.b.c.d.e.f": 1}, "6 levels deep"),
        ({"": 1}, "non-empty string"),
        ({"a..b": 1}, "empty name"),
        ({"a[gt]": 1}, "'[' or ']'"),
        ({"size": {"gt": "100"}}, "needs a number"),
        ({"size": {"lte": True}}, "needs a number"),
        ({"size": {"like": 1}}, "unknown operator"),
        ({"size": {}}, "are empty"),
        ({"tag": []}, "non-empty list"),
        ({"tag": list("abcdefghijk")}, "11 values"),
        ({"tag": ["a", 1]}, "one type"),
        ({"tag": [True]}, "one type"),
        ({"tag": ["a|b"]}, "separates the values"),
        ({"x": None}, "string, number or boolean"),
        ({"x": {"nested": 1}}, "unknown operator"),
        ({"x": float("nan")}, "finite number"),
        (["status"], "must be a mapping"),
        ("{not json", "could not be read"),
    ],
)
def test_bad_filters_fail_naming_meta_filters(given: Any, fragment: str) -> None:
    with pytest.raises(CloudflareImagesConfigError) as err:
        parse_meta_filters(given)
    assert "meta_filters" in str(err.value)
    assert fragment in str(err.value)


def test_filters_round_trip_through_their_mapping() -> None:
    filters = parse_meta_filters({"status": "ready", "size": {"gte": 100}, "tag": ["a"]})
    assert filters.to_mapping() == {
        "status": {"eq": "ready"},
        "size": {"gte": 100},
        "tag": {"in": ["a"]},
    }
    assert parse_meta_filters(filters.to_mapping()) == filters


@responses.activate
def test_a_bad_filter_fails_before_any_request() -> None:
    hook = CloudflareImagesHook()
    with pytest.raises(CloudflareImagesConfigError, match="meta_filters"):
        next(hook.iter_pages(meta_filters={f"f{n}": n for n in range(6)}))
    assert len(responses.calls) == 0


def test_creator_empty_string_asks_for_images_without_a_creator() -> None:
    assert ImageQuery.build(creator="").api_params(None)["creator"] == ""
    assert "creator" not in ImageQuery.build(creator="None").api_params(None)
    assert "creator" not in ImageQuery.build(creator=None).api_params(None)


def test_the_hook_lists_only_matching_images_through_the_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = ImagesBackend("0" * 32)
    backend.load(
        {
            "id": f"img-{n:04d}",
            "uploaded": f"2024-01-01T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
            "meta": {"n": n, "tenant": "acme" if n % 100 == 0 else "other"},
            **({"creator": "ann"} if n % 200 == 0 else {}),
        }
        for n in range(5000)
    )
    with EmulatorServer(backend=backend) as emu:
        monkeypatch.setenv(CONN_ENV, emu.connection_json())
        hook = CloudflareImagesHook()
        ids = [image["id"] for image in hook.iter_images(meta_filters={"tenant": "acme"})]
        assert ids == [f"img-{n:04d}" for n in range(4900, -1, -100)]
        filtered_requests = len(emu.requests)
        assert filtered_requests == 1  # 50 matches fit one page
        without_creator = hook.list_images(creator="", meta_filters={"tenant": "acme"})
        assert [image["id"] for image in without_creator] == [
            f"img-{n:04d}" for n in range(4900, -1, -200)
        ]
        ranged = hook.list_images(meta_filters={"n": {"gte": 100, "lt": 103}}, sort_order="asc")
        assert [image["meta"]["n"] for image in ranged] == [100, 101, 102]
        sent = emu.requests[-1].query
        assert (sent["meta.n[gte:number]"], sent["meta.n[lt:number]"]) == ("100", "103")

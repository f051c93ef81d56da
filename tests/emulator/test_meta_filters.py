"""The emulator's metadata filters, ``creator=""`` and page cap, over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.emulator.backend import ImagesBackend
from airflow_provider_cfimages.emulator.errors import BadRequest
from airflow_provider_cfimages.emulator.meta_filters import parse_query_filters

IMAGES: list[dict[str, Any]] = [
    {"id": "a", "uploaded": "2024-01-01T00:00:00Z", "meta": {"status": "ready", "size": 100}},
    {"id": "b", "uploaded": "2024-01-02T00:00:00Z", "meta": {"status": "draft", "size": 1300}},
    {
        "id": "c",
        "uploaded": "2024-01-03T00:00:00Z",
        "meta": {"status": "ready", "size": 500, "region": {"name": "eu-west"}},
        "creator": "ann",
    },
    {"id": "d", "uploaded": "2024-01-04T00:00:00Z", "meta": {"approved": True, "size": "7"}},
    {"id": "e", "uploaded": "2024-01-05T00:00:00Z", "creator": "bob"},
]


@pytest.fixture
def emu() -> Any:
    backend = ImagesBackend("0" * 32)
    backend.load(IMAGES)
    with EmulatorServer(backend=backend) as server:
        yield server


def listed(emu: EmulatorServer, **params: Any) -> list[str]:
    """Every id a filtered listing returns (oldest first), following the tokens."""
    ids: list[str] = []
    query = {"sort_order": "asc", "per_page": 10, **params}
    while True:
        response = requests.get(
            emu.url("/images/v2"), params=query, headers=emu.auth_headers(), timeout=10
        )
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        ids.extend(image["id"] for image in result["images"])
        if not result.get("continuation_token"):
            return ids
        query["continuation_token"] = result["continuation_token"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"meta.status[eq]": "ready"}, ["a", "c"]),
        ({"meta.status[eq:string]": "draft"}, ["b"]),
        ({"meta.size[eq:number]": "500"}, ["c"]),
        ({"meta.size[gte:number]": "100", "meta.size[lt]": "1300"}, ["a", "c"]),
        ({"meta.size[gt]": "100"}, ["b", "c"]),  # "7" is a string: range filters skip it
        ({"meta.size[lte]": "100"}, ["a"]),
        ({"meta.approved[eq:boolean]": "true"}, ["d"]),
        ({"meta.status[in]": "draft|ready"}, ["a", "b", "c"]),
        ({"meta.size[in:number]": "100|7"}, ["a"]),
        ({"meta.region.name[eq]": "eu-west"}, ["c"]),
        ({"meta.status[eq]": "ready", "meta.status[in:string]": "draft"}, []),
        ({"creator": ""}, ["a", "b", "d"]),
        ({"creator": "ann", "meta.status[eq]": "ready"}, ["c"]),
        ({"creator": "", "meta.status[eq]": "ready"}, ["a"]),
    ],
)
def test_filters_keep_only_matching_images(
    emu: EmulatorServer, params: dict[str, str], expected: list[str]
) -> None:
    assert listed(emu, **params) == expected


def test_a_filtered_listing_pages_through_with_tokens_bound_to_the_filters() -> None:
    backend = ImagesBackend("0" * 32)
    backend.load(
        {
            "id": f"img-{n:03d}",
            "uploaded": f"2024-01-01T00:{n // 60:02d}:{n % 60:02d}Z",
            "meta": {"n": n, "even": n % 2 == 0},
        }
        for n in range(95)
    )
    with EmulatorServer(backend=backend) as emu:
        ids = listed(emu, **{"meta.even[eq:boolean]": "true"})
        assert ids == [f"img-{n:03d}" for n in range(0, 95, 2)]
        descending = listed(emu, sort_order="desc", **{"meta.n[lt:number]": "25"})
        assert descending == [f"img-{n:03d}" for n in range(24, -1, -1)]
        first = requests.get(
            emu.url("/images/v2"),
            params={"per_page": 10, "meta.even[eq:boolean]": "true"},
            headers=emu.auth_headers(),
            timeout=10,
        ).json()["result"]
        other = requests.get(
            emu.url("/images/v2"),
            params={"per_page": 10, "continuation_token": first["continuation_token"]},
            headers=emu.auth_headers(),
            timeout=10,
        )
        assert other.status_code == 400
        assert other.json()["errors"][0]["code"] == 5400


def test_more_than_five_filters_is_a_400_with_code_5400(emu: EmulatorServer) -> None:
    params = {f"meta.f{n}[eq]": "x" for n in range(6)}
    response = requests.get(
        emu.url("/images/v2"), params=params, headers=emu.auth_headers(), timeout=10
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"code": 5400, "message": "Too many metadata filters: 6 provided, maximum 5 allowed"}
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"meta.a.b.c.d.e.f[eq]": "x"},
        {"meta.size[gt]": "big"},
        {"meta.size[like]": "x"},
        {"meta.size[gt:string]": "1"},
        {"meta.size[in]": "|".join(str(n) for n in range(11))},
        {"meta.flag[eq:boolean]": "yes"},
        {"meta..x[eq]": "x"},
    ],
)
def test_malformed_filters_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        parse_query_filters(params)


def test_pages_hold_1000_images_by_default_and_the_cap_is_configurable() -> None:
    with EmulatorServer(images=2500, seed=3) as emu:
        url, headers = emu.url("/images/v2"), emu.auth_headers()
        page = requests.get(url, params={"per_page": 10_000}, headers=headers, timeout=30)
        assert len(page.json()["result"]["images"]) == 1000
        emu.page_cap = 10_000
        page = requests.get(url, params={"per_page": 10_000}, headers=headers, timeout=30)
        assert len(page.json()["result"]["images"]) == 2500
        with pytest.raises(ValueError, match="page_cap"):
            emu.page_cap = 10_001

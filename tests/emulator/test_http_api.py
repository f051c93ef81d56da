"""The Images API over HTTP: every response checked against Cloudflare's OpenAPI schema."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import pytest
import requests

from airflow_provider_cfimages.emulator import EmulatorServer
from tests.emulator.openapi import OpenAPIResponses

LIST_V2 = "/accounts/{account_id}/images/v2"
LIST_V1 = "/accounts/{account_id}/images/v1"
UPLOAD = "/accounts/{account_id}/images/v1"
DETAILS = "/accounts/{account_id}/images/v1/{image_id}"
STATS = "/accounts/{account_id}/images/v1/stats"
DIRECT_UPLOAD = "/accounts/{account_id}/images/v2/direct_upload"
RAY = re.compile(r"^[0-9a-f]{16}-EMU$")


@pytest.fixture(scope="module")
def seeded_server() -> Iterator[EmulatorServer]:
    """300 generated images plus a few awkward ones; read-only tests share it."""
    with EmulatorServer(images=300, seed=11) as server:
        server.backend.upload('line\nbreak, "quoted" café.jpg', id="products/42/front")
        server.backend.upload("plain.png", id="plain-custom-id", metadata={"a": {"b": [1]}})
        yield server


@pytest.fixture
def client(seeded_server: EmulatorServer) -> Iterator[requests.Session]:
    seeded_server.faults.clear()
    with requests.Session() as session:
        session.headers.update(seeded_server.auth_headers())
        yield session


def checked(
    openapi: OpenAPIResponses,
    response: requests.Response,
    path: str,
    method: str,
    status: int,
) -> dict[str, Any]:
    """Assert the status and headers, validate the body against the schema, return it."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert RAY.match(response.headers["cf-ray"])
    body: dict[str, Any] = response.json()
    openapi.validate(body, path, method, status)
    return body


# --- success responses ----------------------------------------------------------------------


@pytest.mark.parametrize("sort_order", ["asc", "desc"])
def test_every_list_v2_page_matches_the_schema_and_the_listing_is_complete(
    seeded_server: EmulatorServer,
    client: requests.Session,
    openapi: OpenAPIResponses,
    sort_order: str,
) -> None:
    url = seeded_server.url("/images/v2")
    ids: list[str] = []
    params: dict[str, Any] = {"per_page": 100, "sort_order": sort_order}
    while True:
        body = checked(openapi, client.get(url, params=params), LIST_V2, "get", 200)
        assert body["success"] is True
        assert (body["errors"], body["messages"]) == ([], [])
        ids.extend(image["id"] for image in body["result"]["images"])
        token = body["result"]["continuation_token"]
        if token is None:
            break
        params["continuation_token"] = token
    expected = seeded_server.backend.ids_sorted()
    assert ids == (expected if sort_order == "asc" else expected[::-1])


def test_list_v2_filters_by_creator_over_http(
    seeded_server: EmulatorServer, client: requests.Session, openapi: OpenAPIResponses
) -> None:
    response = client.get(seeded_server.url("/images/v2"), params={"creator": "importer"})
    images = checked(openapi, response, LIST_V2, "get", 200)["result"]["images"]
    assert images
    assert {image["creator"] for image in images} == {"importer"}


def test_list_v1_matches_the_schema(
    seeded_server: EmulatorServer, client: requests.Session, openapi: OpenAPIResponses
) -> None:
    response = client.get(seeded_server.url("/images/v1"), params={"page": 2, "per_page": 50})
    body = checked(openapi, response, LIST_V1, "get", 200)
    assert [i["id"] for i in body["result"]["images"]] == (
        seeded_server.backend.ids_sorted()[::-1][50:100]
    )
    assert "continuation_token" not in body["result"]


@pytest.mark.parametrize(
    "image_id", ["products/42/front", "products%2F42%2Ffront", "plain-custom-id"]
)
def test_image_details_match_the_schema_also_for_custom_ids_with_slashes(
    seeded_server: EmulatorServer,
    client: requests.Session,
    openapi: OpenAPIResponses,
    image_id: str,
) -> None:
    response = client.get(seeded_server.url(f"/images/v1/{image_id}"))
    body = checked(openapi, response, DETAILS, "get", 200)
    assert body["result"]["id"] == image_id.replace("%2F", "/")


def test_details_of_a_generated_image_are_what_the_list_returned(
    seeded_server: EmulatorServer, client: requests.Session, openapi: OpenAPIResponses
) -> None:
    listed = client.get(seeded_server.url("/images/v2"), params={"per_page": 10}).json()
    for image in listed["result"]["images"]:
        response = client.get(seeded_server.url(f"/images/v1/{image['id']}"))
        assert checked(openapi, response, DETAILS, "get", 200)["result"] == image


def test_stats_match_the_schema(
    seeded_server: EmulatorServer, client: requests.Session, openapi: OpenAPIResponses
) -> None:
    body = checked(openapi, client.get(seeded_server.url("/images/v1/stats")), STATS, "get", 200)
    assert body["result"] == {"count": {"current": 302, "allowed": 100_000}}


def test_upload_update_and_delete_match_the_schema(
    emulator: EmulatorServer, session: requests.Session, openapi: OpenAPIResponses
) -> None:
    uploaded = checked(
        openapi,
        session.post(
            emulator.url("/images/v1"),
            # (urllib3 writes a '"' in a filename as %22, as browsers do; servers keep it so)
            files={"file": ("café, menu (1).jpg", b"\xff\xd8\xff", "image/jpeg")},
            data={
                "metadata": json.dumps({"sku": "S-1"}),
                "requireSignedURLs": "true",
                "creator": "alice",
            },
        ),
        UPLOAD,
        "post",
        200,
    )["result"]
    assert uploaded["filename"] == "café, menu (1).jpg"
    assert (uploaded["meta"], uploaded["requireSignedURLs"]) == ({"sku": "S-1"}, True)
    assert uploaded["creator"] == "alice"

    from_url = checked(
        openapi,
        session.post(
            emulator.url("/images/v1"),
            files={"url": (None, "https://example.com/pics/logo.png"), "id": (None, "brand/logo")},
        ),
        UPLOAD,
        "post",
        200,
    )["result"]
    assert (from_url["id"], from_url["filename"]) == ("brand/logo", "logo.png")

    updated = checked(
        openapi,
        session.patch(
            emulator.url(f"/images/v1/{uploaded['id']}"),
            json={"metadata": {"sku": "S-2"}, "requireSignedURLs": False},
        ),
        DETAILS,
        "patch",
        200,
    )["result"]
    assert updated == {**uploaded, "meta": {"sku": "S-2"}, "requireSignedURLs": False}

    deleted = checked(
        openapi, session.delete(emulator.url("/images/v1/brand%2Flogo")), DETAILS, "delete", 200
    )
    assert deleted["result"] == {}
    assert emulator.backend.ids_sorted() == [uploaded["id"]]


def test_direct_upload_matches_the_schema_and_the_upload_url_completes_it(
    emulator: EmulatorServer, session: requests.Session, openapi: OpenAPIResponses
) -> None:
    created = checked(
        openapi,
        session.post(emulator.url("/images/v2/direct_upload"), files={"creator": (None, "ugc")}),
        DIRECT_UPLOAD,
        "post",
        200,
    )["result"]
    draft = session.get(emulator.url(f"/images/v1/{created['id']}")).json()["result"]
    assert draft["draft"] is True
    # Like upload.imagedelivery.net, the upload URL takes the file without auth.
    done = requests.post(created["uploadURL"], files={"file": ("me.png", b"png")})
    assert done.status_code == 200
    listed = session.get(emulator.url("/images/v2"), params={"creator": "ugc"}).json()
    assert [i["filename"] for i in listed["result"]["images"]] == ["me.png"]


# --- authentication -------------------------------------------------------------------------


def test_global_api_key_authentication_works_like_the_token(
    seeded_server: EmulatorServer, openapi: OpenAPIResponses
) -> None:
    response = requests.get(
        seeded_server.url("/images/v1/stats"), headers=seeded_server.auth_headers("api_key")
    )
    checked(openapi, response, STATS, "get", 200)


AUTH_FAILURES = [
    pytest.param(lambda emu: {}, 400, [9106], None, id="no-auth-headers"),
    pytest.param(
        lambda emu: {"Authorization": "Bearer " + "x" * 40}, 401, [9109], None, id="unknown-token"
    ),
    pytest.param(lambda emu: {"Authorization": "Bearer"}, 400, [6003], [6111], id="bearer-alone"),
    pytest.param(
        lambda emu: {"Authorization": "Bearer short"}, 400, [6003], [6111], id="token-wrong-shape"
    ),
    pytest.param(
        lambda emu: {"Authorization": f"Token {emu.api_token}"},
        400,
        [6003],
        [6111],
        id="not-bearer",
    ),
    pytest.param(
        lambda emu: {"X-Auth-Key": emu.global_key}, 400, [6003], [6102], id="key-without-email"
    ),
    pytest.param(
        lambda emu: {"X-Auth-Email": emu.email, "X-Auth-Key": emu.api_token},
        400,
        [6003],
        [6103],
        id="token-sent-as-global-key",
    ),
    pytest.param(
        lambda emu: {"X-Auth-Email": "someone@example.com", "X-Auth-Key": emu.global_key},
        403,
        [9103],
        None,
        id="key-of-another-email",
    ),
    pytest.param(
        lambda emu: {"X-Auth-Email": emu.email, "X-Auth-Key": "0" * 37},
        403,
        [9103],
        None,
        id="unknown-global-key",
    ),
]


@pytest.mark.parametrize(("headers", "status", "codes", "chain"), AUTH_FAILURES)
def test_requests_without_valid_auth_are_refused_with_cloudflares_codes(
    seeded_server: EmulatorServer,
    openapi: OpenAPIResponses,
    headers: Callable[[EmulatorServer], dict[str, str]],
    status: int,
    codes: list[int],
    chain: list[int] | None,
) -> None:
    response = requests.get(seeded_server.url("/images/v2"), headers=headers(seeded_server))
    body = checked(openapi, response, LIST_V2, "get", status)
    assert [error["code"] for error in body["errors"]] == codes
    assert body["result"] is None
    if chain is not None:
        assert [link["code"] for link in body["errors"][0]["error_chain"]] == chain


def test_valid_credentials_for_another_account_get_authentication_error(
    seeded_server: EmulatorServer, client: requests.Session, openapi: OpenAPIResponses
) -> None:
    response = client.get(f"{seeded_server.base_url}/accounts/{'f' * 32}/images/v2")
    body = checked(openapi, response, LIST_V2, "get", 403)
    assert body["errors"] == [{"code": 10000, "message": "Authentication error"}]


# --- routing and request errors -------------------------------------------------------------


def test_a_malformed_account_id_cannot_be_routed(
    seeded_server: EmulatorServer, client: requests.Session, openapi: OpenAPIResponses
) -> None:
    response = client.get(f"{seeded_server.base_url}/accounts/not-an-id/images/v2")
    body = checked(openapi, response, LIST_V2, "get", 404)
    assert [error["code"] for error in body["errors"]] == [7003, 7000]
    assert body["errors"][0]["message"] == (
        "Could not route to /client/v4/accounts/not-an-id/images/v2, "
        "perhaps your object identifier is invalid?"
    )


@pytest.mark.parametrize(
    "path",
    [
        "/client/v4/zones",
        "/client/v4/accounts/{account}/images/v3",
        "/client/v4/accounts/{account}/images/v1/variants",
        "/client/v4/accounts/{account}/images/v1/some-id/blob",
        "/other",
    ],
)
def test_unknown_routes_answer_7000_no_route(
    seeded_server: EmulatorServer,
    client: requests.Session,
    openapi: OpenAPIResponses,
    path: str,
) -> None:
    response = client.get(seeded_server.origin + path.format(account=seeded_server.account_id))
    body = checked(openapi, response, LIST_V2, "get", 404)
    assert body["errors"] == [{"code": 7000, "message": "No route for that URI"}]


def test_a_known_route_with_the_wrong_method_answers_405(
    seeded_server: EmulatorServer, client: requests.Session, openapi: OpenAPIResponses
) -> None:
    response = client.put(seeded_server.url("/images/v2"))
    body = checked(openapi, response, LIST_V2, "get", 405)
    assert body["errors"] == [{"code": 7001, "message": "Method PUT not available for that URI."}]
    assert response.headers["Allow"] == "GET"


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_an_unknown_image_answers_5404(
    seeded_server: EmulatorServer,
    client: requests.Session,
    openapi: OpenAPIResponses,
    method: str,
) -> None:
    response = client.request(method, seeded_server.url("/images/v1/no-such-image"), json={})
    body = checked(openapi, response, DETAILS, method, 404)
    assert body["errors"] == [{"code": 5404, "message": "Image not found"}]


@pytest.mark.parametrize(
    "params",
    [
        {"per_page": 9},
        {"per_page": 10_001},
        {"per_page": "abc"},
        {"sort_order": "newest"},
        {"continuation_token": "A" * 32},
    ],
)
def test_bad_list_parameters_answer_400_bad_request(
    seeded_server: EmulatorServer,
    client: requests.Session,
    openapi: OpenAPIResponses,
    params: dict[str, Any],
) -> None:
    body = checked(
        openapi, client.get(seeded_server.url("/images/v2"), params=params), LIST_V2, "get", 400
    )
    assert [error["code"] for error in body["errors"]] == [5400]
    assert body["errors"][0]["message"].startswith("Bad request: ")


@pytest.mark.parametrize("per_page", [10, 10_000])
def test_per_page_edges_are_accepted_over_http(
    seeded_server: EmulatorServer, client: requests.Session, per_page: int
) -> None:
    response = client.get(seeded_server.url("/images/v2"), params={"per_page": per_page})
    assert len(response.json()["result"]["images"]) == min(per_page, seeded_server.backend.count)


def test_a_token_used_with_another_sort_order_is_400(
    seeded_server: EmulatorServer, client: requests.Session
) -> None:
    url = seeded_server.url("/images/v2")
    first = client.get(url, params={"sort_order": "asc", "per_page": 10}).json()
    token = first["result"]["continuation_token"]
    assert token is not None
    response = client.get(url, params={"sort_order": "desc", "continuation_token": token})
    assert (response.status_code, response.json()["errors"][0]["code"]) == (400, 5400)


def test_upload_errors_match_the_schema(
    emulator: EmulatorServer, session: requests.Session, openapi: OpenAPIResponses
) -> None:
    url = emulator.url("/images/v1")
    raw = session.post(url, data=b"\xff\xd8", headers={"Content-Type": "image/jpeg"})
    assert checked(openapi, raw, UPLOAD, "post", 415)["errors"][0]["code"] == 5415
    neither = session.post(url, files={"metadata": (None, "{}")})
    assert checked(openapi, neither, UPLOAD, "post", 400)["errors"][0]["code"] == 5400
    session.post(url, files={"file": ("a.png", b"x"), "id": (None, "taken")})
    again = session.post(url, files={"file": ("a.png", b"x"), "id": (None, "taken")})
    assert checked(openapi, again, UPLOAD, "post", 409)["errors"] == [
        {"code": 5409, "message": "Resource already exists"}
    ]
    big = session.patch(emulator.url("/images/v1/taken"), json={"metadata": {"x": "y" * 1100}})
    assert checked(openapi, big, DETAILS, "patch", 400)["errors"][0]["code"] == 5400
    not_json = session.patch(emulator.url("/images/v1/taken"), data=b"{nope")
    assert checked(openapi, not_json, DETAILS, "patch", 400)["errors"][0]["code"] == 5400


def test_the_documents_literal_4xx_schema_accepts_no_body_at_all(
    openapi: OpenAPIResponses,
) -> None:
    """Why error bodies are checked against the failure member (see tests/emulator/openapi.py)."""
    literal = openapi.literal_4xx_schema(LIST_V2, "get")
    failure = {"success": False, "errors": [{"code": 5400, "message": "x"}], "messages": []}
    success = {"success": True, "errors": [], "messages": []}
    for body in ({**failure, "result": None}, {**success, "result": {"images": []}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(literal, registry=openapi.registry).validate(body)


# --- the server -----------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection_for_many_requests(
    seeded_server: EmulatorServer, client: requests.Session
) -> None:
    sockets = set()
    for _ in range(5):
        response = client.get(seeded_server.url("/images/v1/stats"), stream=True)
        connection = response.raw.connection
        assert connection is not None
        sockets.add(id(connection.sock))
        response.content  # noqa: B018 - read the body so the connection goes back to the pool
    assert len(sockets) == 1


def test_the_request_log_records_method_path_query_and_status(emulator: EmulatorServer) -> None:
    requests.get(emulator.url("/images/v2"), params={"per_page": 10, "sort_order": "asc"})
    requests.get(
        emulator.url("/images/v2"), params={"per_page": 50}, headers=emulator.auth_headers()
    )
    requests.get(f"{emulator.control_url}/health")  # control API calls are not logged
    first, second = emulator.requests
    assert (first.method, first.path, first.query, first.status) == (
        "GET",
        f"/client/v4/accounts/{emulator.account_id}/images/v2",
        {"per_page": "10", "sort_order": "asc"},
        400,
    )
    assert first["error_codes"] == (9106,)
    assert (second["api_path"], second["status"], second["query"]) == (
        "/images/v2",
        200,
        {"per_page": "50"},
    )
    emulator.reset_requests()
    assert emulator.requests == []


def test_connection_json_is_an_airflow_connection_to_this_emulator(
    emulator: EmulatorServer,
) -> None:
    assert json.loads(emulator.connection_json()) == {
        "conn_type": "cloudflare_images",
        "host": emulator.base_url,
        "password": emulator.api_token,
        "extra": {"account_id": emulator.account_id, "batch_base_url": emulator.batch_url},
    }
    assert json.loads(emulator.connection_json("api_key")) == {
        "conn_type": "cloudflare_images",
        "host": emulator.base_url,
        "login": emulator.email,
        "password": emulator.global_key,
        "extra": {
            "account_id": emulator.account_id,
            "auth_type": "api_key",
            "batch_base_url": emulator.batch_url,
        },
    }
    assert emulator.connection_uri_env() == {
        "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT": emulator.connection_json()
    }


def test_the_emulator_binds_loopback_and_reports_its_address(emulator: EmulatorServer) -> None:
    assert emulator.host == "127.0.0.1"
    assert emulator.base_url == f"http://127.0.0.1:{emulator.port}/client/v4"
    assert re.fullmatch(r"[0-9a-f]{32}", emulator.account_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{40}", emulator.api_token)
    assert re.fullmatch(r"[0-9a-f]{37}", emulator.global_key)


def test_stopping_releases_the_port_and_start_again_serves(emulator: EmulatorServer) -> None:
    server = EmulatorServer(images=3)
    server.start()
    url = server.url("/images/v1/stats")
    assert requests.get(url, headers=server.auth_headers()).status_code == 200
    server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, headers=server.auth_headers(), timeout=2)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url

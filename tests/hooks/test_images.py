"""Unit tests of CloudflareImagesHook with HTTP stubbed by ``responses``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from airflow_provider_cfimages.exceptions import (
    CloudflareImagesAPIError,
    CloudflareImagesConfigError,
    CloudflareImagesPaginationError,
    CloudflareImagesRateLimitError,
)
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook
from tests.conftest import TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, connection_json

LIST_URL = f"{TEST_BASE_URL}/accounts/{TEST_ACCOUNT}/images/v2"
IMAGE_URL = f"{TEST_BASE_URL}/accounts/{TEST_ACCOUNT}/images/v1"


def image(n: int, uploaded: str = "2024-01-01T00:00:00.000Z", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"img-{n}",
        "filename": f"f{n}.jpg",
        "uploaded": uploaded,
        "requireSignedURLs": False,
        "variants": [f"https://imagedelivery.net/x/img-{n}/public"],
        **extra,
    }


def page(images: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    return {
        "success": True,
        "errors": [],
        "messages": [],
        "result": {"images": images, "continuation_token": token},
    }


def failure(code: int, message: str) -> dict[str, Any]:
    return {"success": False, "errors": [{"code": code, "message": message}], "messages": []}


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record retry waits instead of sleeping."""
    waits: list[float] = []

    def fake_wait(self: Any, timeout: float | None = None) -> bool:
        waits.append(timeout or 0.0)
        return False

    monkeypatch.setattr("threading.Event.wait", fake_wait)
    return waits


def add_page(
    mocked: responses.RequestsMock,
    images: list[dict[str, Any]],
    token: str | None,
    *,
    after: str | None = None,
    **query: str,
) -> None:
    params = {"per_page": "1000", "sort_order": "desc", **query}
    if after:
        params["continuation_token"] = after
    mocked.get(
        LIST_URL,
        json=page(images, token),
        match=[matchers.query_param_matcher(params)],
    )


# -- connection and auth -------------------------------------------------------------------


def test_api_token_is_sent_as_bearer(mocked: responses.RequestsMock) -> None:
    add_page(mocked, [image(1)], None)
    CloudflareImagesHook().list_images()
    sent = mocked.calls[0].request
    assert sent.headers["Authorization"] == f"Bearer {TEST_TOKEN}"
    assert "X-Auth-Key" not in sent.headers
    assert sent.headers["User-Agent"].startswith("airflow-provider-cfimages/")


def test_api_key_sends_email_and_key(
    monkeypatch: pytest.MonkeyPatch, mocked: responses.RequestsMock
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT",
        connection_json(
            login="ops@example.com",
            password="global-key-123",
            extra={"account_id": TEST_ACCOUNT, "auth_type": "api_key"},
        ),
    )
    add_page(mocked, [], None)
    CloudflareImagesHook().list_images()
    sent = mocked.calls[0].request
    assert sent.headers["X-Auth-Email"] == "ops@example.com"
    assert sent.headers["X-Auth-Key"] == "global-key-123"
    assert "Authorization" not in sent.headers


def test_email_in_login_infers_api_key_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT",
        connection_json(login="ops@example.com", password="k"),
    )
    assert CloudflareImagesHook().settings.auth_type == "api_key"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"password": ""}, "no API token"),
        (
            {"extra": {"account_id": TEST_ACCOUNT, "auth_type": "api_key"}},
            "has no account email",
        ),
        ({"extra": {"account_id": "not-an-id"}}, "32-character hexadecimal"),
        ({"extra": {"account_id": TEST_ACCOUNT, "auth_type": "oauth"}}, "'auth_type' must be"),
        ({"extra": {"account_id": TEST_ACCOUNT, "timeout": "soon"}}, "'timeout' must be"),
        ({"extra": {"account_id": TEST_ACCOUNT, "max_retries": -1}}, "'max_retries' must be"),
        ({"extra": {"account_id": TEST_ACCOUNT, "acount_id": "x"}}, "unknown extra"),
        ({"host": "http://api.example.com/client/v4"}, "plain http"),
    ],
)
def test_bad_connection_fails_before_any_request(
    monkeypatch: pytest.MonkeyPatch,
    mocked: responses.RequestsMock,
    overrides: dict[str, Any],
    message: str,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", connection_json(**overrides))
    with pytest.raises(CloudflareImagesConfigError, match=message) as err:
        CloudflareImagesHook().list_images()
    assert "cloudflare_images_default" in str(err.value)
    assert not mocked.calls


def test_missing_account_id_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", connection_json(extra={}))
    with pytest.raises(CloudflareImagesConfigError, match="extra 'account_id'"):
        CloudflareImagesHook().list_images()


def test_missing_connection_names_the_conn_id() -> None:
    with pytest.raises(Exception, match="no_such_conn"):
        CloudflareImagesHook("no_such_conn").list_images()


def test_task_account_id_overrides_the_connection(mocked: responses.RequestsMock) -> None:
    other = "f" * 32
    mocked.get(f"{TEST_BASE_URL}/accounts/{other}/images/v2", json=page([], None))
    CloudflareImagesHook(account_id=other.upper()).list_images()
    assert f"/accounts/{other}/" in mocked.calls[0].request.url


def test_host_without_scheme_gets_https(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", connection_json(host="proxy.example.com/cf/")
    )
    assert CloudflareImagesHook().settings.base_url == "https://proxy.example.com/cf"


def test_empty_host_means_cloudflare(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", connection_json(host=None))
    assert CloudflareImagesHook().settings.base_url == "https://api.cloudflare.com/client/v4"


def test_session_is_built_once_and_verifies_tls() -> None:
    hook = CloudflareImagesHook()
    session = hook.get_conn()
    assert session is hook.get_conn()
    assert session.verify is True


def test_requests_verify_tls_and_honour_proxy_and_ca_bundle_settings(
    mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundle = tmp_path / "corporate-ca.pem"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    mocked.get(LIST_URL, json=page([image(1)], "t1"))
    mocked.get(LIST_URL, json=page([image(2)], None))
    assert [i["id"] for i in CloudflareImagesHook().iter_images()] == ["img-1", "img-2"]
    for call in mocked.calls:
        sent = call.request.req_kwargs
        assert sent["verify"] == str(bundle)
        assert sent["proxies"]["https"] == "http://proxy.internal:3128"


def test_requests_verify_tls_with_the_default_bundle(
    mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    mocked.get(LIST_URL, json=page([image(1)], None))
    CloudflareImagesHook().list_images()
    assert mocked.calls[0].request.req_kwargs["verify"] is True


def test_session_settings_changed_between_requests_are_used(
    mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    bundle = tmp_path / "corporate-ca.pem"
    mocked.get(LIST_URL, json=page([image(1)], None))
    mocked.get(LIST_URL, json=page([image(2)], None))
    hook = CloudflareImagesHook()
    hook.list_images()

    hook.get_conn().verify = str(bundle)
    hook.get_conn().proxies = {"https": "http://proxy.internal:3128"}
    hook.list_images()

    first, second = (call.request.req_kwargs for call in mocked.calls)
    assert first["verify"] is True
    assert not first["proxies"]
    assert second["verify"] == str(bundle)
    assert second["proxies"]["https"] == "http://proxy.internal:3128"


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"per_page": 9}, "per_page"),
        ({"per_page": 10_001}, "per_page"),
        ({"per_page": "many"}, "per_page"),
        ({"per_page": 12.5}, "per_page"),
        ({"sort_order": "newest"}, "sort_order"),
        ({"uploaded_after": "yesterday-ish"}, "uploaded_after"),
        ({"uploaded_before": 17}, "uploaded_before"),
        ({"uploaded_after": "2024-02-01", "uploaded_before": "2024-01-01"}, "uploaded_after"),
        ({"limit": 0}, "limit"),
        ({"creator": 5}, "creator"),
    ],
)
def test_bad_listing_arguments_fail_before_any_request(
    mocked: responses.RequestsMock, kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        CloudflareImagesHook().list_images(**kwargs)
    assert not mocked.calls


def test_per_page_bounds_are_accepted(mocked: responses.RequestsMock) -> None:
    for size in ("10", "10000"):
        add_page(mocked, [], None, per_page=size)
        CloudflareImagesHook().list_images(per_page=int(size))
    assert len(mocked.calls) == 2


# -- pagination ----------------------------------------------------------------------------


def test_empty_inventory_is_one_request(mocked: responses.RequestsMock) -> None:
    add_page(mocked, [], None)
    assert CloudflareImagesHook().list_images() == []
    assert len(mocked.calls) == 1


@pytest.mark.parametrize("last_token", [None, "", "absent"])
def test_listing_ends_on_null_empty_or_absent_token(
    mocked: responses.RequestsMock, last_token: str | None
) -> None:
    body = page([image(1), image(2)], None if last_token == "absent" else last_token)
    if last_token == "absent":
        del body["result"]["continuation_token"]
    mocked.get(LIST_URL, json=body)
    assert [i["id"] for i in CloudflareImagesHook().iter_images()] == ["img-1", "img-2"]
    assert len(mocked.calls) == 1


def test_follows_tokens_and_yields_every_image_once(mocked: responses.RequestsMock) -> None:
    add_page(mocked, [image(1), image(2)], "t1")
    add_page(mocked, [image(3)], "t2", after="t1")
    add_page(mocked, [], None, after="t2")  # the last page may be empty
    hook = CloudflareImagesHook()
    pages = list(hook.iter_pages())
    assert [p.number for p in pages] == [1, 2, 3]
    assert [i["id"] for p in pages for i in p.images] == ["img-1", "img-2", "img-3"]
    assert [p.continuation_token for p in pages] == ["t1", "t2", None]
    assert hook.transport.requests_sent == 3


def test_unknown_image_fields_pass_through(mocked: responses.RequestsMock) -> None:
    add_page(mocked, [image(1, creator="u1", future={"x": [1, 2]})], None)
    (got,) = CloudflareImagesHook().list_images()
    assert got["future"] == {"x": [1, 2]}
    assert got["creator"] == "u1"


def test_creator_is_passed_through(mocked: responses.RequestsMock) -> None:
    add_page(mocked, [], None, creator="team-a")
    CloudflareImagesHook().list_images(creator="team-a")
    assert len(mocked.calls) == 1


def test_limit_stops_paging(mocked: responses.RequestsMock) -> None:
    add_page(mocked, [image(1), image(2)], "t1")
    add_page(mocked, [image(3), image(4)], "t2", after="t1")
    add_page(mocked, [image(5)], None, after="t2")
    got = CloudflareImagesHook().list_images(limit=3)
    assert [i["id"] for i in got] == ["img-1", "img-2", "img-3"]
    assert len(mocked.calls) == 2


def test_repeated_token_raises_naming_the_pages(mocked: responses.RequestsMock) -> None:
    add_page(mocked, [image(1)], "t1")
    add_page(mocked, [image(2)], "t2", after="t1")
    add_page(mocked, [image(3)], "t1", after="t2")
    with pytest.raises(CloudflareImagesPaginationError, match=r"page 3 .* page 1"):
        CloudflareImagesHook().list_images()
    assert len(mocked.calls) == 3


def test_desc_with_uploaded_after_stops_at_the_cutoff(mocked: responses.RequestsMock) -> None:
    add_page(
        mocked,
        [image(3, "2024-03-01T00:00:00Z"), image(2, "2024-02-01T00:00:00Z")],
        "t1",
    )
    add_page(
        mocked,
        [image(1, "2024-01-31T23:59:59.999Z"), image(0, "2023-12-01T00:00:00Z")],
        "t2",
        after="t1",
    )
    add_page(mocked, [image(-1, "2023-01-01T00:00:00Z")], None, after="t2")
    got = CloudflareImagesHook().list_images(uploaded_after="2024-02-01T00:00:00Z")
    # The cutoff itself is inside the window; the page past it is never requested.
    assert [i["id"] for i in got] == ["img-3", "img-2"]
    assert len(mocked.calls) == 2


def test_asc_with_uploaded_before_stops_at_the_cutoff(mocked: responses.RequestsMock) -> None:
    add_page(
        mocked,
        [image(1, "2024-01-01T00:00:00Z"), image(2, "2024-01-15T00:00:00Z")],
        "t1",
        sort_order="asc",
    )
    add_page(
        mocked,
        [image(3, "2024-02-01T00:00:00Z"), image(4, "2024-03-01T00:00:00Z")],
        "t2",
        after="t1",
        sort_order="asc",
    )
    got = CloudflareImagesHook().list_images(
        sort_order="asc",
        uploaded_after="2024-01-10",
        uploaded_before="2024-02-01T00:00:00+00:00",
    )
    # uploaded_before is exclusive; uploaded_after inclusive.
    assert [i["id"] for i in got] == ["img-2"]
    assert len(mocked.calls) == 2


def test_window_in_non_stopping_direction_filters_all_pages(
    mocked: responses.RequestsMock,
) -> None:
    add_page(mocked, [image(3, "2024-03-01T00:00:00Z"), image(2, "2024-02-01T00:00:00Z")], "t1")
    add_page(mocked, [image(1, "2024-01-01T00:00:00Z")], None, after="t1")
    got = CloudflareImagesHook().list_images(uploaded_before="2024-03-01T00:00:00Z")
    assert [i["id"] for i in got] == ["img-2", "img-1"]


# -- malformed bodies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"success": True, "errors": [], "result": None}, "page 1: the response has no 'result'"),
        ({"success": True, "errors": [], "result": {"x": 1}}, "no 'images' list"),
        (
            {"success": True, "errors": [], "result": {"images": [{"filename": "a"}]}},
            "image #1 on the page has no 'id'",
        ),
        ({"success": True, "errors": [], "result": {"images": "nope"}}, "expected shape"),
    ],
)
def test_malformed_success_bodies_raise_a_clear_error(
    mocked: responses.RequestsMock, body: dict[str, Any], message: str
) -> None:
    mocked.get(LIST_URL, json=body)
    with pytest.raises(CloudflareImagesAPIError, match=message):
        CloudflareImagesHook().list_images()
    assert len(mocked.calls) == 1


# -- retries -------------------------------------------------------------------------------


def test_retries_429_honouring_retry_after(
    mocked: responses.RequestsMock, no_sleep: list[float]
) -> None:
    mocked.get(
        LIST_URL,
        status=429,
        json=failure(971, "Please wait and consider throttling your request speed"),
        headers={"Retry-After": "7"},
    )
    add_page(mocked, [image(1)], None)
    assert [i["id"] for i in CloudflareImagesHook().iter_images()] == ["img-1"]
    assert no_sleep == [7.0]


@pytest.mark.parametrize("status", [200, 400, 403])
def test_code_971_is_retried_even_without_429(
    mocked: responses.RequestsMock, no_sleep: list[float], status: int
) -> None:
    mocked.get(LIST_URL, status=status, json=failure(971, "rate limited"))
    add_page(mocked, [image(1)], None)
    assert len(CloudflareImagesHook().list_images()) == 1
    assert len(no_sleep) == 1


def test_retry_after_longer_than_max_wait_fails_saying_how_long(
    mocked: responses.RequestsMock, no_sleep: list[float]
) -> None:
    mocked.get(LIST_URL, status=429, json=failure(971, "x"), headers={"Retry-After": "900"})
    with pytest.raises(CloudflareImagesRateLimitError, match=r"rate limited .* 900 s") as err:
        CloudflareImagesHook(max_retry_wait=60).list_images()
    assert err.value.retry_after == 900
    assert no_sleep == []


def test_rate_limit_outlasting_retries_says_rate_limited(
    mocked: responses.RequestsMock, no_sleep: list[float]
) -> None:
    mocked.get(LIST_URL, status=429, json=failure(971, "x"), headers={"Retry-After": "2"})
    with pytest.raises(
        CloudflareImagesRateLimitError, match="still rate limited by Cloudflare after 2 retries"
    ):
        CloudflareImagesHook(max_retries=2).list_images()
    assert len(mocked.calls) == 3
    assert no_sleep == [2.0, 2.0]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_retries_5xx_html_pages_then_succeeds(
    mocked: responses.RequestsMock, no_sleep: list[float], status: int
) -> None:
    mocked.get(
        LIST_URL,
        status=status,
        body="<html><body>cloudflare edge error</body></html>",
        content_type="text/html",
    )
    add_page(mocked, [image(1)], None)
    assert len(CloudflareImagesHook().list_images()) == 1
    assert len(no_sleep) == 1
    # Exponential backoff with jitter: the first wait lies in [0.5, 1] s.
    assert 0.5 <= no_sleep[0] <= 1.0


def test_backoff_grows_exponentially(mocked: responses.RequestsMock, no_sleep: list[float]) -> None:
    mocked.get(LIST_URL, status=503, body="busy")
    with pytest.raises(CloudflareImagesAPIError, match="gave up after 4 retries") as err:
        CloudflareImagesHook(max_retries=4).list_images()
    assert err.value.status == 503
    assert err.value.transient is True
    ceilings = [1, 2, 4, 8]
    assert all(c / 2 <= w <= c for w, c in zip(no_sleep, ceilings, strict=True))


def test_retries_connection_errors_and_read_timeouts(
    mocked: responses.RequestsMock, no_sleep: list[float]
) -> None:
    mocked.get(LIST_URL, body=requests.ConnectionError("reset by peer"))
    mocked.get(LIST_URL, body=requests.ReadTimeout("slow"))
    add_page(mocked, [image(1)], None)
    assert len(CloudflareImagesHook().list_images()) == 1
    assert len(no_sleep) == 2


def test_truncated_json_on_200_is_retried(
    mocked: responses.RequestsMock, no_sleep: list[float]
) -> None:
    full = json.dumps(page([image(1)], None))
    mocked.get(LIST_URL, body=full[: len(full) // 2], content_type="application/json")
    add_page(mocked, [image(1)], None)
    assert len(CloudflareImagesHook().list_images()) == 1


def test_empty_body_on_200_is_retried(
    mocked: responses.RequestsMock, no_sleep: list[float]
) -> None:
    mocked.get(LIST_URL, body=b"", content_type="application/json")
    add_page(mocked, [image(1)], None)
    assert len(CloudflareImagesHook().list_images()) == 1
    assert len(mocked.calls) == 2


def test_retried_page_resends_the_same_token(
    mocked: responses.RequestsMock, no_sleep: list[float]
) -> None:
    add_page(mocked, [image(1)], "t1")
    mocked.get(LIST_URL, status=502, body="<html>bad gateway</html>")
    add_page(mocked, [image(2)], None, after="t1")
    assert [i["id"] for i in CloudflareImagesHook().iter_images()] == ["img-1", "img-2"]
    assert [c.request.params.get("continuation_token") for c in mocked.calls] == [
        None,
        "t1",
        "t1",
    ]


@pytest.mark.parametrize(
    ("status", "code", "hint"),
    [
        (400, 6003, "auth headers are malformed"),
        (401, 10000, "Images Read"),
        (403, 9109, "invalid or expired"),
        (404, 7003, "check the account id"),
    ],
)
def test_client_errors_are_not_retried_and_say_what_to_fix(
    mocked: responses.RequestsMock, no_sleep: list[float], status: int, code: int, hint: str
) -> None:
    mocked.get(
        LIST_URL,
        status=status,
        json=failure(code, "boom"),
        headers={"cf-ray": "8a1b2c3d4e5f-EWR"},
    )
    with pytest.raises(CloudflareImagesAPIError) as err:
        CloudflareImagesHook().list_images()
    assert len(mocked.calls) == 1
    assert no_sleep == []
    assert err.value.status == status
    assert err.value.transient is False
    assert err.value.codes == [code]
    assert err.value.cf_ray == "8a1b2c3d4e5f-EWR"
    assert hint in str(err.value)
    assert "8a1b2c3d4e5f-EWR" in str(err.value)


def test_api_error_survives_pickling(mocked: responses.RequestsMock) -> None:
    import pickle

    mocked.get(LIST_URL, status=403, json=failure(10000, "Authentication error"))
    with pytest.raises(CloudflareImagesAPIError) as err:
        CloudflareImagesHook().list_images()
    copy = pickle.loads(pickle.dumps(err.value))
    assert str(copy) == str(err.value)
    assert copy.codes == [10000]


def test_request_budget_spaces_requests(
    mocked: responses.RequestsMock, no_sleep: list[float]
) -> None:
    add_page(mocked, [image(1)], "t1")
    add_page(mocked, [image(2)], None, after="t1")
    CloudflareImagesHook(max_requests_per_minute=6).list_images()
    # The second request waits about 60/6 = 10 s after the first.
    assert len(no_sleep) == 1
    assert 9.0 <= no_sleep[0] <= 10.0


def test_cancel_stops_paging(mocked: responses.RequestsMock) -> None:
    add_page(mocked, [image(1)], "t1")
    add_page(mocked, [image(2)], None, after="t1")
    hook = CloudflareImagesHook()
    pages = hook.iter_pages()
    next(pages)
    hook.cancel()
    with pytest.raises(Exception, match="cancelled"):
        next(pages)
    assert len(mocked.calls) == 1


# -- single-image operations ---------------------------------------------------------------


def test_get_image_returns_the_result(mocked: responses.RequestsMock) -> None:
    mocked.get(f"{IMAGE_URL}/img-1", json={"success": True, "errors": [], "result": image(1)})
    assert CloudflareImagesHook().get_image("img-1")["filename"] == "f1.jpg"


def test_update_image_sends_metadata_and_signed_flag(mocked: responses.RequestsMock) -> None:
    mocked.patch(
        f"{IMAGE_URL}/img-1",
        json={"success": True, "errors": [], "result": image(1, meta={"a": 1})},
        match=[matchers.json_params_matcher({"metadata": {"a": 1}, "requireSignedURLs": True})],
    )
    got = CloudflareImagesHook().update_image("img-1", metadata={"a": 1}, require_signed_urls=True)
    assert got["meta"] == {"a": 1}


def test_update_image_needs_something_to_change(mocked: responses.RequestsMock) -> None:
    with pytest.raises(ValueError, match="metadata and/or require_signed_urls"):
        CloudflareImagesHook().update_image("img-1")
    assert not mocked.calls


def test_delete_image_is_idempotent(mocked: responses.RequestsMock) -> None:
    mocked.delete(f"{IMAGE_URL}/img-1", json={"success": True, "errors": [], "result": {}})
    mocked.delete(f"{IMAGE_URL}/img-1", status=404, json=failure(5404, "Image not found"))
    hook = CloudflareImagesHook()
    assert hook.delete_image("img-1") is True
    assert hook.delete_image("img-1") is False


def test_delete_with_a_wrong_account_is_an_error_not_absent(mocked: responses.RequestsMock) -> None:
    mocked.delete(f"{IMAGE_URL}/img-1", status=404, json=failure(7003, "Could not route"))
    with pytest.raises(CloudflareImagesAPIError, match="account id"):
        CloudflareImagesHook().delete_image("img-1")


def test_image_ids_with_sub_paths_are_allowed(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{IMAGE_URL}/product/42%20b", json={"success": True, "errors": [], "result": image(1)}
    )
    assert CloudflareImagesHook().get_image("product/42 b")["id"] == "img-1"


@pytest.mark.parametrize("bad", ["", "/a", "a/", None, "..", "tmp/../victim", "a/./b", "./a"])
def test_image_id_is_checked(mocked: responses.RequestsMock, bad: Any) -> None:
    with pytest.raises(ValueError, match="image_id"):
        CloudflareImagesHook().get_image(bad)
    with pytest.raises(ValueError, match="image_id"):
        CloudflareImagesHook().delete_image(bad)
    assert not mocked.calls


def test_dots_inside_a_segment_are_part_of_the_id(mocked: responses.RequestsMock) -> None:
    mocked.get(f"{IMAGE_URL}/a/..b/c.", json={"success": True, "errors": [], "result": image(1)})
    assert CloudflareImagesHook().get_image("a/..b/c.")["id"] == "img-1"


def test_a_404_without_cloudflare_code_is_not_taken_for_absent(
    mocked: responses.RequestsMock,
) -> None:
    # What a proxy or a wrong base URL answers; the image may well exist.
    mocked.delete(
        f"{IMAGE_URL}/img-1",
        status=404,
        body="<html><body>Not Found</body></html>",
        content_type="text/html",
    )
    with pytest.raises(CloudflareImagesAPIError) as raised:
        CloudflareImagesHook().delete_image("img-1")
    assert raised.value.status == 404
    assert not raised.value.codes


@pytest.mark.parametrize("auth", ["api_token", "api_key"])
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_refused_not_followed(
    monkeypatch: pytest.MonkeyPatch, mocked: responses.RequestsMock, auth: str, status: int
) -> None:
    # requests would forward X-Auth-Key (it strips only Authorization) to the other host.
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT",
        connection_json(
            login="ops@example.com" if auth == "api_key" else None,
            password="global-key-123",
            extra={"account_id": TEST_ACCOUNT, "auth_type": auth},
        ),
    )
    mocked.get(LIST_URL, status=status, headers={"Location": "https://elsewhere.example/x?k=1"})
    elsewhere = mocked.get("https://elsewhere.example/x", json=page([image(1)], None))

    with pytest.raises(CloudflareImagesAPIError, match="redirect") as raised:
        CloudflareImagesHook().list_images()

    assert "https://elsewhere.example" in str(raised.value)
    assert "k=1" not in str(raised.value)
    assert not raised.value.transient
    assert elsewhere.call_count == 0
    assert len(mocked.calls) == 1  # not retried either


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("//elsewhere.example/x", "to //elsewhere.example)"),
        ("/client/v4/other", "to the same host)"),
        ("https://[::1/x", "could not be read (Invalid IPv6 URL)"),
        ("https://user:pw@elsewhere.example:8443/x", "to https://elsewhere.example:8443)"),
    ],
)
def test_a_redirect_names_where_it_points_and_nothing_more(
    mocked: responses.RequestsMock, location: str, shown: str
) -> None:
    mocked.get(LIST_URL, status=302, headers={"Location": location})

    with pytest.raises(CloudflareImagesAPIError) as raised:
        CloudflareImagesHook().list_images()

    assert shown in str(raised.value)
    assert "pw" not in str(raised.value)


def test_a_login_that_is_never_sent_is_not_checked(
    monkeypatch: pytest.MonkeyPatch, mocked: responses.RequestsMock
) -> None:
    # With an API token the login is not used (a note such as "Équipe médias" is harmless).
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", connection_json(login="Équipe médias")
    )
    add_page(mocked, [image(1)], None)

    assert [i["id"] for i in CloudflareImagesHook().list_images()] == ["img-1"]


@pytest.mark.parametrize("field", ["password", "login"])
@pytest.mark.parametrize("bad", ["SECRETPART1\nSECRETPART2", "SECRET\tPART", "SECRET\u2013PART"])
def test_credentials_that_cannot_be_a_header_are_refused_unquoted(
    monkeypatch: pytest.MonkeyPatch, mocked: responses.RequestsMock, field: str, bad: str
) -> None:
    fields = {"login": "ops@example.com", "password": "global-key-123", field: bad}
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT",
        connection_json(**fields, extra={"account_id": TEST_ACCOUNT, "auth_type": "api_key"}),
    )
    hook = CloudflareImagesHook()

    ok, message = hook.test_connection()
    with pytest.raises(CloudflareImagesConfigError) as raised:
        hook.list_images()

    assert not ok
    for text in (message, str(raised.value)):
        assert field in text
        assert "SECRET" not in text
    assert not mocked.calls


def test_test_connection_reports_counts(mocked: responses.RequestsMock) -> None:
    mocked.get(
        f"{IMAGE_URL}/stats",
        json={"success": True, "errors": [], "result": {"count": {"current": 42, "allowed": 100}}},
    )
    ok, message = CloudflareImagesHook().test_connection()
    assert ok is True
    assert "42 of 100" in message


def test_test_connection_never_raises(mocked: responses.RequestsMock) -> None:
    mocked.get(f"{IMAGE_URL}/stats", status=403, json=failure(10000, "Authentication error"))
    ok, message = CloudflareImagesHook().test_connection()
    assert ok is False
    assert "10000" in message


def test_test_connection_with_bad_config_returns_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", connection_json(password=""))
    ok, message = CloudflareImagesHook().test_connection()
    assert ok is False
    assert "password" in message


# -- secrets -------------------------------------------------------------------------------


def test_token_never_appears_in_errors_logs_or_reprs(
    mocked: responses.RequestsMock,
    no_sleep: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # A server that echoes the credential back must not get it into our error text.
    mocked.get(LIST_URL, status=502, body=f"<html>{TEST_TOKEN}</html>")
    mocked.get(LIST_URL, status=403, json=failure(9109, f"Invalid access token {TEST_TOKEN}"))
    hook = CloudflareImagesHook()
    with pytest.raises(CloudflareImagesAPIError) as err:
        hook.list_images()
    texts = [
        str(err.value),
        repr(err.value),
        repr(hook),
        repr(hook.settings),
        repr(hook.transport),
        repr(hook.get_conn().auth),
        caplog.text,
    ]
    for text in texts:
        assert TEST_TOKEN not in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": float("nan")},
        {"max_requests_per_minute": float("nan")},
        {"max_retry_wait": 0},
        {"timeout": -1},
    ],
)
def test_hook_tuning_arguments_must_be_positive_numbers(kwargs: dict[str, Any]) -> None:
    (name,) = kwargs
    with pytest.raises(ValueError, match=f"{name} must be a positive number"):
        CloudflareImagesHook(**kwargs)

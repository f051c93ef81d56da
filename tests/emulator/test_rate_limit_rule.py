"""The emulator's rate-limit rule (quota, lockout, both headers) and its batch host, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from airflow_provider_cfimages.emulator import EmulatorServer, FaultPlan
from airflow_provider_cfimages.emulator.batch import BatchTokens
from tests.emulator.conftest import FakeClock
from tests.emulator.test_cli import cli


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[EmulatorServer]:
    with EmulatorServer(images=30, seed=4, faults=FaultPlan(clock=clock)) as server:
        yield server


def stats(client: requests.Session, emu: EmulatorServer) -> requests.Response:
    return client.get(emu.url("/images/v1/stats"), timeout=10)


# --- the global quota ------------------------------------------------------------------------


def test_every_answer_carries_both_headers_counting_down(
    emu: EmulatorServer, client: requests.Session, clock: FakeClock
) -> None:
    emu.faults.rate_limit(requests=3, window_seconds=10, block_seconds=20)
    seen = []
    for _ in range(3):
        answer = stats(client, emu)
        clock.now += 1
        seen.append((answer.status_code, answer.headers["Ratelimit"]))
        assert answer.headers["Ratelimit-Policy"] == '"default";q=3;w=10'
    assert seen == [
        (200, '"default";r=2;t=10'),
        (200, '"default";r=1;t=9'),
        (200, '"default";r=0;t=8'),
    ]
    # A 404 (no such image) is an answer too, and counts.
    emu.faults.rate_limit(requests=3, window_seconds=10)
    missing = client.get(emu.url("/images/v1/no-such-image"), timeout=10)
    assert (missing.status_code, missing.headers["Ratelimit"]) == (404, '"default";r=2;t=10')


def test_exceeding_the_quota_locks_every_call_out_for_the_lockout(
    emu: EmulatorServer, client: requests.Session, clock: FakeClock
) -> None:
    emu.faults.rate_limit(requests=2, window_seconds=10, block_seconds=20)
    assert [stats(client, emu).status_code for _ in range(2)] == [200, 200]
    refused = stats(client, emu)
    assert refused.status_code == 429
    assert refused.json()["errors"][0]["code"] == 971
    assert refused.headers["Retry-After"] == "20"
    assert refused.headers["Ratelimit"] == '"default";r=0;t=20'
    assert refused.headers["Ratelimit-Policy"] == '"default";q=2;w=10'
    # Not only the excess: every call, of every kind, for the whole lockout, even after
    # the window that was exceeded has ended.
    clock.now += 15
    for call in (
        lambda: stats(client, emu),
        lambda: client.get(emu.url("/images/v2"), timeout=10),
        lambda: client.delete(emu.url("/images/v1/whatever"), timeout=10),
    ):
        answer = call()
        assert (answer.status_code, answer.headers["Retry-After"]) == (429, "5")
    clock.now += 5.5
    back = stats(client, emu)
    assert (back.status_code, back.headers["Ratelimit"]) == (200, '"default";r=1;t=10')


def test_headers_can_be_left_out_and_the_policy_named(
    emu: EmulatorServer, client: requests.Session
) -> None:
    emu.faults.rate_limit(requests=5, window_seconds=60, headers=False)
    assert "Ratelimit" not in stats(client, emu).headers
    emu.faults.rate_limit(requests=5, window_seconds=1.5, policy="burst")
    answer = stats(client, emu)
    assert answer.headers["Ratelimit"] == '"burst";r=4;t=2'
    assert answer.headers["Ratelimit-Policy"] == '"burst";q=5;w=1.5'


def test_the_rule_is_set_from_the_control_api(
    emu: EmulatorServer, client: requests.Session
) -> None:
    spec = {"fault": "rate_limit", "requests": 12, "window_seconds": 10, "block_seconds": 20}
    described = requests.post(f"{emu.control_url}/faults", json=spec, timeout=10).json()
    assert described["result"]["rate_limit"] == {
        "requests": 12,
        "window_seconds": 10.0,
        "retry_after": None,
        "block_seconds": 20,
        "headers": True,
        "policy": "default",
    }
    assert stats(client, emu).headers["Ratelimit"] == '"default";r=11;t=10'


def test_the_cli_sets_quota_lockout_and_headers() -> None:
    with cli("--images", "5", "--rate-limit", "2/10", "--lockout", "30") as (_process, printed):
        headers = {"Authorization": f"Bearer {printed['api_token']}"}
        url = f"{printed['base_url']}/accounts/{printed['account_id']}/images/v1/stats"
        first = requests.get(url, headers=headers, timeout=10)
        assert first.headers["Ratelimit-Policy"] == '"default";q=2;w=10'
        requests.get(url, headers=headers, timeout=10)
        refused = requests.get(url, headers=headers, timeout=10)
        assert refused.status_code == 429
        assert 29 <= int(refused.headers["Retry-After"]) <= 30
    with cli("--rate-limit", "2/10", "--no-ratelimit-headers") as (_process, printed):
        headers = {"Authorization": f"Bearer {printed['api_token']}"}
        url = f"{printed['base_url']}/accounts/{printed['account_id']}/images/v1/stats"
        assert "Ratelimit" not in requests.get(url, headers=headers, timeout=10).headers


def test_lose_answer_carries_the_request_out_then_drops_the_connection(
    emu: EmulatorServer, client: requests.Session
) -> None:
    victim = emu.backend.ids_sorted()[0]
    emu.faults.lose_answer_next(1, method="DELETE")
    with pytest.raises(requests.ConnectionError):
        client.delete(emu.url(f"/images/v1/{victim}"), timeout=10)
    assert victim not in emu.backend
    again = client.delete(emu.url(f"/images/v1/{victim}"), timeout=10)
    assert again.json()["errors"][0]["code"] == 5404


# --- the batch host ------------------------------------------------------------------------


def batch_token(client: requests.Session, emu: EmulatorServer) -> str:
    answer = client.get(emu.url("/images/v1/batch_token"), timeout=10)
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    assert set(result) == {"token", "expiresAt"}
    return result["token"]


def test_a_batch_token_works_on_the_batch_host_for_every_per_image_call(
    emu: EmulatorServer, client: requests.Session
) -> None:
    token = batch_token(client, emu)
    first, second = emu.backend.ids_sorted()[:2]
    with requests.Session() as batch:
        batch.headers["Authorization"] = f"Bearer {token}"
        details = batch.get(f"{emu.batch_url}/images/v1/{first}", timeout=10)
        assert details.json()["result"]["id"] == first
        updated = batch.patch(
            f"{emu.batch_url}/images/v1/{first}", json={"metadata": {"k": "v"}}, timeout=10
        )
        assert updated.json()["result"]["meta"] == {"k": "v"}
        assert batch.delete(f"{emu.batch_url}/images/v1/{second}", timeout=10).ok
        upload = batch.post(f"{emu.batch_url}/images/v1", files={"file": ("a.png", b"x")})
        assert upload.ok
        forbidden = batch.get(f"{emu.batch_url}/images/v2", timeout=10)
        assert (forbidden.status_code, forbidden.json()["errors"][0]["code"]) == (403, 103)
    assert second not in emu.backend


def test_batch_calls_are_outside_the_global_quota(
    emu: EmulatorServer, client: requests.Session
) -> None:
    emu.faults.rate_limit(requests=2, window_seconds=60, block_seconds=60)
    token = batch_token(client, emu)  # the token call itself counts: 1 left
    ids = emu.backend.ids_sorted()[:10]
    with requests.Session() as batch:
        batch.headers["Authorization"] = f"Bearer {token}"
        for image_id in ids:
            answer = batch.get(f"{emu.batch_url}/images/v1/{image_id}", timeout=10)
            assert answer.status_code == 200
            assert "Ratelimit" not in answer.headers
    assert stats(client, emu).headers["Ratelimit"].startswith('"default";r=0;')


def test_an_expired_or_unknown_batch_token_is_refused_with_401(
    emu: EmulatorServer, client: requests.Session
) -> None:
    token = batch_token(client, emu)
    image_id = emu.backend.ids_sorted()[0]
    url = f"{emu.batch_url}/images/v1/{image_id}"
    assert (
        requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401
    )
    assert requests.get(url, timeout=10).status_code == 400
    requests.post(f"{emu.control_url}/batch", json={"expire_tokens": True}, timeout=10)
    expired = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert expired.status_code == 401
    assert emu.api_token not in expired.text
    # The global API token is no batch token.
    assert requests.get(url, headers=emu.auth_headers(), timeout=10).status_code == 401


def test_a_token_expires_at_its_expires_at() -> None:
    clock = FakeClock()
    tokens = BatchTokens(token_lifetime=60, clock=clock)
    token = tokens.issue("a" * 32)["token"]
    header = {"Authorization": f"Bearer {token}"}
    clock.now += 59
    assert tokens.admit(header) == "a" * 32
    clock.now += 1
    with pytest.raises(Exception, match="Invalid access token"):
        tokens.admit(header)


def test_each_batch_token_has_its_own_per_second_rate(
    emu: EmulatorServer, client: requests.Session
) -> None:
    requests.post(f"{emu.control_url}/batch", json={"requests_per_second": 3}, timeout=10)
    first, second = batch_token(client, emu), batch_token(client, emu)
    url = f"{emu.batch_url}/images/v1/{emu.backend.ids_sorted()[0]}"
    statuses = [
        requests.get(url, headers={"Authorization": f"Bearer {first}"}, timeout=10).status_code
        for _ in range(4)
    ]
    assert statuses[:3] == [200, 200, 200]
    if statuses[3] == 429:  # unless the machine took a whole second for the first three
        other = requests.get(url, headers={"Authorization": f"Bearer {second}"}, timeout=10)
        assert other.status_code == 200
    described = requests.get(f"{emu.control_url}/batch", timeout=10).json()["result"]
    assert described["requests_per_second"] == 3
    assert described["issued"] == 2


def test_a_throttled_batch_call_says_when_to_retry() -> None:
    clock = FakeClock()
    tokens = BatchTokens(requests_per_second=2, clock=clock)
    header = {"Authorization": f"Bearer {tokens.issue('a' * 32)['token']}"}
    tokens.admit(header)
    tokens.admit(header)
    with pytest.raises(Exception, match="More than 2 requests per second") as raised:
        tokens.admit(header)
    assert raised.value.status == 429
    assert raised.value.headers["Retry-After"] == "1"
    clock.now += 1.01
    tokens.admit(header)


@pytest.mark.parametrize(
    "spec",
    [{"token_lifetime": 0}, {"requests_per_second": 0}, {"requests_per_second": 1.5}, {"x": 1}],
)
def test_bad_batch_settings_are_refused(emu: EmulatorServer, spec: dict[str, object]) -> None:
    answer = requests.post(f"{emu.control_url}/batch", json=spec, timeout=10)
    assert answer.status_code == 400

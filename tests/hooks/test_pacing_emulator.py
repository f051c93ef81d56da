"""The hook paces itself by the emulator's Ratelimit headers, over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import requests
import responses

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.exceptions import CloudflareImagesError
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook
from airflow_provider_cfimages.hooks.pacing import parse_quota_headers
from tests.conftest import TEST_ACCOUNT, connection_json

CONN_ENV = "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"


def point_at(emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    # Pages as large as per_page asks (the API accepts up to 10000), so each test's request
    # count, and so its pacing, follows from per_page alone.
    emu.page_cap = 10_000
    connection = json.loads(emu.connection_json())
    connection["extra"].update(extra)
    monkeypatch.setenv(CONN_ENV, json.dumps(connection))


def remaining_seen(hook: CloudflareImagesHook) -> list[int]:
    """Record the ``r`` of every answer the hook gets (a requests response hook)."""
    seen: list[int] = []

    def record(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        seen.extend(state.remaining for state in parse_quota_headers(response.headers))

    hook.get_conn().hooks["response"].append(record)
    return seen


def test_a_listing_paced_by_the_headers_is_never_locked_out(
    emulator_25k: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ten pages against 4 requests a second, with a lockout: the hook must spread them
    # over three windows. No retries, so a single 429 would fail the listing.
    point_at(emulator_25k, monkeypatch, max_retries=0)
    emulator_25k.faults.rate_limit(requests=4, window_seconds=1, block_seconds=20)
    hook = CloudflareImagesHook()

    got = [image["id"] for image in hook.iter_images(per_page=2500)]

    assert got == emulator_25k.backend.ids_sorted()[::-1]
    assert [record.status for record in emulator_25k.requests] == [200] * 10
    assert hook.transport.pacer is not None
    assert hook.transport.pacer.waits >= 2


def test_the_reserve_is_left_for_other_clients(
    emulator_25k: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(emulator_25k, monkeypatch, max_retries=0, rate_limit_reserve=0.5)
    emulator_25k.faults.rate_limit(requests=4, window_seconds=1, block_seconds=20)
    hook = CloudflareImagesHook()
    seen = remaining_seen(hook)

    assert len(hook.list_images(per_page=5000)) == 25_000

    # Half of 4 stays unused in every window: the remaining count never goes below 2.
    assert len(seen) == 5
    assert min(seen) == 2
    assert all(record.status == 200 for record in emulator_25k.requests)


def test_without_the_headers_nothing_waits(
    emulator_25k: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(emulator_25k, monkeypatch)
    emulator_25k.faults.rate_limit(requests=1000, window_seconds=60, headers=False)
    hook = CloudflareImagesHook()
    assert len(hook.list_images(per_page=1000)) == 25_000
    assert hook.transport.pacer is not None
    assert hook.transport.pacer.waits == 0


def test_a_wait_for_the_window_ends_when_the_task_is_killed(
    emulator_25k: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(emulator_25k, monkeypatch)
    emulator_25k.faults.rate_limit(requests=2, window_seconds=300, block_seconds=300)
    hook = CloudflareImagesHook()
    threading.Timer(0.5, hook.cancel).start()
    started = time.monotonic()

    with pytest.raises(CloudflareImagesError, match="cancelled"):
        hook.list_images(per_page=1000)

    assert time.monotonic() - started < 60  # not the 300 s the window had left
    assert len(emulator_25k.requests) == 2
    assert all(record.status == 200 for record in emulator_25k.requests)


@pytest.mark.parametrize(
    "ratelimit", ["garbage;;", '"default";r=x;t=1', '"default";r=0', "", '"default";r=0;t=-5']
)
def test_malformed_headers_change_nothing(monkeypatch: pytest.MonkeyPatch, ratelimit: str) -> None:
    monkeypatch.setenv(CONN_ENV, connection_json())
    url = f"https://api.cloudflare.com/client/v4/accounts/{TEST_ACCOUNT}/images/v1/stats"
    body = {"success": True, "errors": [], "result": {"count": {"current": 1, "allowed": 9}}}
    hook = CloudflareImagesHook()
    with responses.RequestsMock() as mocked:
        mocked.get(url, json=body, headers={"Ratelimit": ratelimit, "Ratelimit-Policy": "?"})
        for _ in range(5):
            assert hook.get_stats()["count"]["current"] == 1
    assert hook.transport.pacer is not None
    assert hook.transport.pacer.waits == 0


def test_a_429_with_the_headers_is_still_waited_out_by_retry_after(
    emulator_25k: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another client used the quota up: the first answer this hook sees is a 429.
    point_at(emulator_25k, monkeypatch)
    emulator_25k.faults.block_for(1, retry_after=1)
    assert len(CloudflareImagesHook().list_images(per_page=10_000)) == 25_000
    assert [record.status for record in emulator_25k.requests][:2] == [429, 200]

"""The Images batch API through the hook, against the emulator's batch host (real HTTP)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.exceptions import (
    CloudflareImagesAPIError,
    CloudflareImagesConfigError,
)
from airflow_provider_cfimages.hooks import transport
from airflow_provider_cfimages.hooks.batch import BatchImagesClient
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook
from tests.conftest import connection_json

CONN_ENV = "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "BACKOFF_INITIAL", 0.01)


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    with EmulatorServer(images=60, seed=11) as server:
        monkeypatch.setenv(CONN_ENV, server.connection_json())
        yield server


def batch_records(emu: EmulatorServer) -> list[Any]:
    return [record for record in emu.requests if record.path.startswith("/batch/")]


def global_records(emu: EmulatorServer) -> list[Any]:
    return [record for record in emu.requests if not record.path.startswith("/batch/")]


class ShiftedClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_one_token_serves_every_call_and_none_reaches_the_global_api(
    emu: EmulatorServer,
) -> None:
    hook = CloudflareImagesHook()
    batch = hook.batch_images()
    ids = emu.backend.ids_sorted()[:20]

    details = [batch.get_image(image_id) for image_id in ids[:10]]
    updated = batch.update_image(ids[10], {"metadata": {"team": "a"}})
    deleted = [batch.delete_image(image_id) for image_id in ids[11:]]

    assert [image["id"] for image in details] == ids[:10]
    assert updated["meta"] == {"team": "a"}
    assert deleted == [True] * 9
    assert not any(image_id in emu.backend for image_id in ids[11:])
    assert emu.batch.describe()["issued"] == 1
    assert [record.api_path for record in global_records(emu)] == ["/images/v1/batch_token"]
    assert len(batch_records(emu)) == 20


def test_a_token_is_replaced_before_it_expires(emu: EmulatorServer) -> None:
    hook = CloudflareImagesHook()
    clock = ShiftedClock()
    batch = BatchImagesClient(
        issue_token=hook.issue_batch_token,
        make_transport=lambda headers, secret, budget: hook._transport_to(
            emu.batch_url, headers, secret, budget
        ),
        clock=clock,
    )
    image_id = emu.backend.ids_sorted()[0]
    batch.get_image(image_id)
    clock.offset = 30 * 60 - 10  # ten seconds before the emulator's token expires
    batch.get_image(image_id)

    assert batch.tokens_issued == 2
    assert [record.status for record in batch_records(emu)] == [200, 200]  # no 401 on the way


def test_a_refused_token_is_replaced_once(emu: EmulatorServer) -> None:
    hook = CloudflareImagesHook()
    batch = hook.batch_images()
    image_id = emu.backend.ids_sorted()[0]
    batch.get_image(image_id)
    emu.batch.configure(expire_tokens=True)  # revoked, or expired early

    assert batch.get_image(image_id)["id"] == image_id
    assert [record.status for record in batch_records(emu)] == [200, 401, 200]
    assert batch.tokens_issued == 2


def test_a_second_401_is_raised_without_looping(emu: EmulatorServer) -> None:
    batch = CloudflareImagesHook().batch_images()
    emu.faults.fail_next(None, status=401, html=False, path="/batch/")

    with pytest.raises(CloudflareImagesAPIError) as raised:
        batch.get_image(emu.backend.ids_sorted()[0])

    assert raised.value.status == 401
    assert batch.tokens_issued == 2
    assert len(batch_records(emu)) == 2


def test_a_token_is_paced_to_its_per_second_rate(emu: EmulatorServer) -> None:
    # The emulator refuses a 6th request within a second; the client is held to 5 a second.
    emu.batch.configure(requests_per_second=5)
    hook = CloudflareImagesHook()
    batch = BatchImagesClient(
        issue_token=hook.issue_batch_token,
        make_transport=lambda headers, secret, budget: hook._transport_to(
            emu.batch_url, headers, secret, budget
        ),
        requests_per_second=5,
    )
    for image_id in emu.backend.ids_sorted()[:12]:
        batch.get_image(image_id)

    assert [record.status for record in batch_records(emu)] == [200] * 12
    assert emu.batch.describe()["throttled"] == 0


def test_a_429_from_the_batch_host_is_waited_out(emu: EmulatorServer) -> None:
    emu.batch.configure(requests_per_second=2)
    batch = CloudflareImagesHook().batch_images()
    got = [batch.get_image(image_id)["id"] for image_id in emu.backend.ids_sorted()[:4]]

    assert got == emu.backend.ids_sorted()[:4]
    statuses = [record.status for record in batch_records(emu)]
    assert 429 in statuses
    assert statuses.count(200) == 4


def test_the_default_per_token_rate_is_just_under_cloudflares() -> None:
    batch = BatchImagesClient(issue_token=lambda: None, make_transport=lambda *a: None)  # type: ignore[arg-type, return-value]
    assert batch._per_minute == pytest.approx(200 * 60 * 0.9)


@pytest.mark.parametrize("via", ["global", "batch"])
def test_a_delete_whose_answer_was_lost_counts_as_deleted(emu: EmulatorServer, via: str) -> None:
    hook = CloudflareImagesHook()
    victim, absent = emu.backend.ids_sorted()[:2]
    emu.backend.delete_image(absent)
    calls = hook if via == "global" else hook.batch_images()
    emu.faults.lose_answer_next(1, method="DELETE")

    assert calls.delete_image(victim) is True  # carried out, answer lost, retried: 5404
    assert calls.delete_image(absent) is False  # really gone before
    deletes = [record for record in emu.requests if record.method == "DELETE"]
    assert [(record.status, record.fault) for record in deletes] == [
        (0, "lose_answer"),
        (404, None),
        (404, None),
    ]


def test_a_delete_refused_with_429_then_told_not_found_was_already_gone(
    emu: EmulatorServer,
) -> None:
    absent = emu.backend.ids_sorted()[0]
    emu.backend.delete_image(absent)
    emu.faults.fail_next(1, status=429, html=False, method="DELETE")
    assert CloudflareImagesHook().delete_image(absent) is False


def test_the_token_never_reaches_a_log_or_an_error(
    emu: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    batch = CloudflareImagesHook().batch_images()
    emu.faults.fail_next(1, status=400, html=False, path="/batch/")
    with pytest.raises(CloudflareImagesAPIError) as raised:
        batch.get_image(emu.backend.ids_sorted()[0])
    token = batch._current.token.value  # type: ignore[union-attr]
    assert token not in str(raised.value)
    assert token not in caplog.text
    assert token not in repr(batch)


# -- connection extras ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"rate_limit_reserve": -0.1}, "rate_limit_reserve' must be a fraction"),
        ({"rate_limit_reserve": 0.95}, "between 0 and 0.9"),
        ({"rate_limit_reserve": "lots"}, "rate_limit_reserve"),
        ({"rate_limit_reserve": True}, "rate_limit_reserve"),
        ({"batch_base_url": "ftp://batch.example"}, "batch_base_url' must be an http"),
        ({"batch_base_url": "http://batch.example.com"}, "plain http to a non-loopback"),
        ({"batch_base_url": 12}, "batch_base_url"),
    ],
)
def test_bad_extras_are_refused_before_any_request(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], message: str
) -> None:
    base = json.loads(connection_json())
    base["extra"].update(extra)
    monkeypatch.setenv(CONN_ENV, json.dumps(base))
    with pytest.raises(CloudflareImagesConfigError, match=message):
        CloudflareImagesHook().settings  # noqa: B018


def test_extras_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    base = json.loads(connection_json())
    base["extra"].update({"rate_limit_reserve": "0.25", "batch_base_url": "batch.example.com/x/"})
    monkeypatch.setenv(CONN_ENV, json.dumps(base))
    settings = CloudflareImagesHook().settings
    assert settings.rate_limit_reserve == 0.25
    assert settings.batch_base_url == "https://batch.example.com/x"
    monkeypatch.setenv(CONN_ENV, connection_json())
    defaults = CloudflareImagesHook().settings
    assert (defaults.rate_limit_reserve, defaults.batch_base_url) == (
        0.1,
        "https://batch.imagedelivery.net",
    )

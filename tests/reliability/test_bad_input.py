"""Bad input: a clear error that names what to change, raised before any request is sent.

The connection points at a live emulator and each test asserts that its request log stays
empty, so "before any request" is checked over real HTTP, not assumed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook
from airflow_provider_cfimages.operators.images import (
    CloudflareImagesDeleteOperator,
    CloudflareImagesListOperator,
)
from airflow_provider_cfimages.sensors.images import CloudflareImagesSensor
from tests.reliability.conftest import CONN_ENV

# (keyword arguments of a listing, the message that must name the parameter and the fix)
BAD_LISTING_ARGUMENTS: list[tuple[dict[str, Any], str]] = [
    ({"per_page": 9}, "per_page must be a whole number from 10 to 10000; got 9"),
    ({"per_page": 10_001}, "per_page must be a whole number from 10 to 10000; got 10001"),
    ({"per_page": 0}, "per_page must be a whole number from 10 to 10000"),
    ({"per_page": "a thousand"}, "per_page must be a whole number .*'a thousand'"),
    ({"per_page": 100.5}, "per_page must be a whole number .*100.5"),
    ({"per_page": True}, "per_page must be a whole number .*True"),
    ({"per_page": None}, "per_page must be a whole number .*None"),
    ({"sort_order": "newest"}, "sort_order must be 'asc' .* or 'desc' .*; got 'newest'"),
    ({"sort_order": 1}, "sort_order must be 'asc'"),
    ({"uploaded_after": "yesterday-ish"}, "uploaded_after must be a date-time .*'yesterday-ish'"),
    ({"uploaded_before": "2024-13-45"}, "uploaded_before must be a date-time .*'2024-13-45'"),
    ({"uploaded_after": 1_717_200_000}, "uploaded_after must be a datetime or a date-time"),
    (
        {"uploaded_after": "2024-06-02", "uploaded_before": "2024-06-01"},
        r"uploaded_after \(2024-06-02.*\) must be earlier than uploaded_before",
    ),
    (
        {"uploaded_after": "2024-06-01", "uploaded_before": "2024-06-01T00:00:00Z"},
        "must be earlier than uploaded_before",
    ),
]


@pytest.fixture
def emu(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """An empty emulator the default connection points at; no request may reach it."""
    monkeypatch.setenv(CONN_ENV, emulator.connection_json())
    return emulator


def set_connection(emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch, **changes: Any) -> None:
    """Point the default connection at ``emu`` with some fields or extras changed."""
    connection = json.loads(emu.connection_json())
    connection["extra"].update(changes.pop("extra", {}))
    connection.update(changes)
    monkeypatch.setenv(CONN_ENV, json.dumps(connection))


def list_operator(**kwargs: Any) -> CloudflareImagesListOperator:
    return CloudflareImagesListOperator(task_id="list", **kwargs)


# -- listing arguments: at parse time, after rendering, and on the hook ---------------------


@pytest.mark.parametrize(("kwargs", "message"), BAD_LISTING_ARGUMENTS)
def test_bad_listing_arguments_fail_when_the_dag_is_parsed(
    emu: EmulatorServer, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        list_operator(**kwargs)
    assert emu.requests == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"per_page": "9"}, "per_page must be a whole number from 10 to 10000; got '9'"),
        ({"per_page": "1e3"}, "per_page must be a whole number .*'1e3'"),
        ({"sort_order": "newest"}, "sort_order must be 'asc' .*; got 'newest'"),
        ({"uploaded_after": "last tuesday"}, "uploaded_after must be a date-time"),
        ({"uploaded_before": "2024-13-45"}, "uploaded_before must be a date-time"),
        (
            {"uploaded_after": "2024-06-02", "uploaded_before": "2024-06-01"},
            "must be earlier than uploaded_before",
        ),
        ({"account_id": "acme-production"}, "account_id must be the 32-character"),
    ],
)
def test_bad_templated_arguments_fail_after_rendering_before_any_request(
    emu: EmulatorServer, params: dict[str, str], message: str
) -> None:
    # The values arrive through templates, so only execute() can see them.
    operator = list_operator(**{name: "{{ params." + name + " }}" for name in params})
    operator.render_template_fields({"params": params})
    with pytest.raises(ValueError, match=message):
        operator.execute(context={})
    assert emu.requests == []


@pytest.mark.parametrize(("kwargs", "message"), BAD_LISTING_ARGUMENTS)
def test_bad_listing_arguments_to_the_hook_fail_before_any_request(
    emu: EmulatorServer, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CloudflareImagesHook().list_images(**kwargs)
    assert emu.requests == []


# -- the account id, the connection and the output --------------------------------------------


def test_a_malformed_task_account_id_is_refused_at_parse_time(emu: EmulatorServer) -> None:
    with pytest.raises(CloudflareImagesConfigError, match="account_id must be the 32-character"):
        list_operator(account_id="acme-production")
    with pytest.raises(CloudflareImagesConfigError, match="account_id must be the 32-character"):
        CloudflareImagesHook(account_id="0123")
    assert emu.requests == []


# name -> (connection changes, conn id used by the task, the message)
BAD_CONNECTIONS: dict[str, tuple[dict[str, Any], str, str]] = {
    "malformed_account_id": (
        {"extra": {"account_id": "12345"}},
        "cloudflare_images_default",
        "connection 'cloudflare_images_default' extra 'account_id' must be the 32-character "
        "hexadecimal Cloudflare account id",
    ),
    "unknown_auth_type": (
        {"extra": {"auth_type": "oauth"}},
        "cloudflare_images_default",
        "extra 'auth_type' must be one of \\['api_token', 'api_key'\\]; got 'oauth'",
    ),
    "api_key_without_email": (
        {"extra": {"auth_type": "api_key"}},
        "cloudflare_images_default",
        "uses auth_type 'api_key' but has no account email: put the email .* in the "
        "connection's login field",
    ),
    "no_token": (
        {"password": ""},
        "cloudflare_images_default",
        "has no API token: put it in the connection's password field",
    ),
    "missing_connection": ({}, "cloudflare_images_nightly", "cloudflare_images_nightly"),
}

# How each component meets its connection: (build it, then run it once)
COMPONENTS: dict[str, Callable[[str], Any]] = {
    "list_operator": lambda conn_id: list_operator(cloudflare_images_conn_id=conn_id).execute(
        context={}
    ),
    "hook": lambda conn_id: CloudflareImagesHook(conn_id).list_images(),
    "sensor": lambda conn_id: CloudflareImagesSensor(
        task_id="wait", cloudflare_images_conn_id=conn_id, image_ids=["a"], deferrable=False
    ).poke(context={}),
    "delete_operator": lambda conn_id: CloudflareImagesDeleteOperator(
        task_id="delete", cloudflare_images_conn_id=conn_id, image_ids=["a"], max_deletes=1
    ).execute(context={}),
}


@pytest.mark.parametrize("component", sorted(COMPONENTS))
@pytest.mark.parametrize("problem", sorted(BAD_CONNECTIONS))
def test_a_bad_connection_fails_naming_the_field_before_any_request(
    emu: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    problem: str,
    component: str,
) -> None:
    changes, conn_id, message = BAD_CONNECTIONS[problem]
    set_connection(emu, monkeypatch, **changes)
    expected: type[Exception] = CloudflareImagesConfigError
    if problem == "missing_connection":
        from tests.compat import AirflowNotFoundException

        expected = AirflowNotFoundException
    with pytest.raises(expected, match=message):
        COMPONENTS[component](conn_id)
    assert emu.requests == []


@pytest.mark.parametrize(
    ("output_format", "message"),
    [
        (
            "xml",
            r"output_format must be one of \['jsonl', 'csv', 'json', 'parquet'\] .*; got 'xml'",
        ),
        ("avro", "output_format must be one of"),
        ("", "output_format must be one of"),
    ],
)
def test_an_output_format_that_does_not_exist_is_refused(
    emu: EmulatorServer, tmp_path: Path, output_format: str, message: str
) -> None:
    with pytest.raises(CloudflareImagesConfigError, match=message):
        list_operator(output_path=str(tmp_path / "images"), output_format=output_format)
    operator = list_operator(output_path=str(tmp_path / "images"), output_format="{{ params.f }}")
    operator.render_template_fields({"params": {"f": output_format}})
    with pytest.raises(CloudflareImagesConfigError, match=message):
        operator.execute(context={})
    assert emu.requests == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("output_path", "message"),
    [
        (
            "gs://exports/cf/images.jsonl.gz",
            "no filesystem is registered for gs:// .* install apache-airflow-providers-google",
        ),
        (
            "abfs://exports/cf/images.jsonl",
            "install apache-airflow-providers-microsoft-azure",
        ),
        (
            "nosuchfs://exports/cf/images.jsonl",
            "no filesystem is registered for nosuchfs:// .* install the Airflow provider",
        ),
    ],
)
def test_an_output_path_scheme_without_a_filesystem_fails_before_any_request(
    emu: EmulatorServer, output_path: str, message: str
) -> None:
    operator = list_operator(output_path=output_path)  # parsing a DAG never touches storage
    with pytest.raises(CloudflareImagesConfigError, match=message):
        operator.execute(context={})
    assert emu.requests == []


@pytest.mark.parametrize("value", [0, -60, float("nan"), "fast", True, [100]])
def test_a_bad_request_budget_is_refused_at_parse_time(emu: EmulatorServer, value: Any) -> None:
    with pytest.raises(
        CloudflareImagesConfigError, match="max_requests_per_minute must be a positive number"
    ):
        list_operator(max_requests_per_minute=value)
    assert emu.requests == []


@pytest.mark.parametrize("value", ["0", "-1", "fast"])
def test_a_bad_request_budget_in_the_connection_names_the_extra(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    set_connection(emu, monkeypatch, extra={"max_requests_per_minute": value})
    with pytest.raises(
        CloudflareImagesConfigError,
        match="extra 'max_requests_per_minute' must be a positive number",
    ):
        list_operator().execute(context={})
    assert emu.requests == []

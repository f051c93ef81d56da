"""Credentials never leak: not into task logs (at DEBUG), XCom, exception messages or reprs.

The DAG test runs every component of the provider in real Airflow against an emulator that
accepts recognisable credentials, including a task that fails on a 403 and a request that
fails with an edge page echoing the token back, then scans everything the run produced.

That the emulator binds loopback by default and refuses requests without valid auth is
tested in ``tests/emulator`` (``test_the_emulator_binds_loopback_and_reports_its_address``,
``test_the_cli_binds_loopback_by_default``,
``test_requests_without_valid_auth_are_refused_with_cloudflares_codes``); the test here adds
that every API route refuses them and changes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.emulator.server import Request, Response
from airflow_provider_cfimages.exceptions import CloudflareImagesAPIError
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook

# 40 characters of [A-Za-z0-9-], like a real API token, and recognisable anywhere.
TOKEN = f"cfimages-SECRET-TOKEN-{secrets.token_hex(9)}"
WRONG_TOKEN = f"cfimages-SECRET-WRONG-{secrets.token_hex(9)}"
GLOBAL_KEY = f"cfimages-SECRET-GLOBALKEY-{secrets.token_hex(9)}"
SECRETS = {"token": TOKEN, "wrong token": WRONG_TOKEN, "global key": GLOBAL_KEY}
IMAGES = 30
LEVEL_ENV = "AIRFLOW__LOGGING__LOGGING_LEVEL"

SECRETS_DAG = '''
"""Every provider component once, with recognisable credentials (the secrets test).

Needs the connections ``cloudflare_images_default`` (token), ``cfimages_global_key`` (global
API key) and ``cfimages_wrong_token`` (a token the API refuses).
"""

import pendulum
from airflow.sdk import DAG

from airflow_provider_cfimages.operators.images import (
    CloudflareImagesDeleteOperator,
    CloudflareImagesListOperator,
)
from airflow_provider_cfimages.sensors.images import CloudflareImagesSensor

with DAG(
    "cfimages_secrets",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
):
    CloudflareImagesListOperator(task_id="list_with_token", per_page=10, fields=["id"])
    CloudflareImagesListOperator(
        task_id="list_with_global_key",
        cloudflare_images_conn_id="cfimages_global_key",
        per_page=10,
        max_images=3,
    )
    CloudflareImagesSensor(
        task_id="wait_for_image",
        image_ids=["IMAGE_ID"],
        deferrable=False,
        poke_interval=1,
        timeout=60,
    )
    CloudflareImagesDeleteOperator(
        task_id="delete_dry_run",
        image_ids=["IMAGE_ID", "no-such-image"],
        max_deletes=5,
        dry_run=True,
        older_than="2999-01-01",
    )
    CloudflareImagesListOperator(
        task_id="list_with_wrong_token", cloudflare_images_conn_id="cfimages_wrong_token"
    )
'''
TASK_IDS = [
    "list_with_token",
    "list_with_global_key",
    "wait_for_image",
    "delete_dry_run",
    "list_with_wrong_token",
]


@pytest.fixture
def secret_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    """An emulator accepting the recognisable token and global key, and the connections."""
    with EmulatorServer(images=IMAGES, seed=5, api_token=TOKEN, global_key=GLOBAL_KEY) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", emu.connection_json())
        monkeypatch.setenv("AIRFLOW_CONN_CFIMAGES_GLOBAL_KEY", emu.connection_json("api_key"))
        wrong = json.loads(emu.connection_json())
        wrong["password"] = WRONG_TOKEN
        monkeypatch.setenv("AIRFLOW_CONN_CFIMAGES_WRONG_TOKEN", json.dumps(wrong))
        yield emu


def leaks(text: str) -> list[str]:
    """Which credentials appear in ``text`` (whole, or their random part)."""
    return [name for name, value in SECRETS.items() if value in text or value[-18:] in text]


@pytest.fixture
def airflow_debug_logging() -> Iterator[None]:
    """Airflow's logging (task logs included) configured at DEBUG, as
    ``AIRFLOW__LOGGING__LOGGING_LEVEL=DEBUG`` does at start-up; configured back afterwards."""
    from airflow.configuration import conf
    from airflow.logging_config import configure_logging

    previous = os.environ.get(LEVEL_ENV)
    os.environ[LEVEL_ENV] = "DEBUG"
    try:
        assert conf.get("logging", "logging_level") == "DEBUG"
        configure_logging()
        yield
    finally:
        if previous is None:
            os.environ.pop(LEVEL_ENV, None)
        else:
            os.environ[LEVEL_ENV] = previous
        configure_logging()


def echo_credentials_once(emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the first list request of each auth type get a 502 page echoing its credential.

    Like a misbehaving proxy that prints the request headers in its error page.
    """
    handle = emu.app.handle
    echoed: set[str] = set()

    def echoing_handle(request: Request) -> Response:
        scheme = "api_key" if request.headers.get("X-Auth-Key") else "api_token"
        if request.path.endswith("/images/v2") and scheme not in echoed:
            echoed.add(scheme)
            headers = "; ".join(
                f"{name}: {request.headers.get(name)}"
                for name in ("Authorization", "X-Auth-Email", "X-Auth-Key")
                if request.headers.get(name)
            )
            return Response(502, (f"<html>{headers}</html>".encode(),), "text/html")
        return handle(request)

    monkeypatch.setattr(emu.app, "handle", echoing_handle)


def without_dag_test_mask_requests(output: str) -> str:
    """``output`` without the DEBUG lines in which ``dag.test()``'s in-process supervisor
    logs each ``MaskSecret`` request it is sent, secret included.

    That is Airflow's test harness (``InProcessSupervisorComms.send``, used only by
    ``dag.test()`` / ``airflow dags test``), not this provider: the real supervisor logs
    "Received message from task runner (body omitted)" for these requests. Only those exact
    lines are dropped; anything else holding a credential still fails the test.
    """
    lines = output.splitlines()
    kept = [line for line in lines if not ("loc=supervisor.py" in line and "MaskSecret(" in line)]
    return "\n".join(kept)


def record_texts(records: list[logging.LogRecord]) -> list[str]:
    """Everything a log record could render: message, raw arguments, exception, stack."""
    texts = []
    for record in records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            texts.append(logging.Formatter().formatException(record.exc_info))
        texts.append(record.exc_text or "")
        texts.append(record.stack_info or "")
    return texts


def test_a_dag_run_with_every_component_never_shows_a_credential(
    secret_emulator: EmulatorServer,
    airflow_debug_logging: None,
    dag_runner: Any,
    airflow_db: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = secret_emulator
    logging.getLogger().addHandler(caplog.handler)  # Airflow's logging config replaced it
    caplog.set_level(logging.DEBUG)  # every logger, urllib3's request lines included
    echo_credentials_once(emu, monkeypatch)
    image_id = emu.backend.ids_sorted()[0]

    dag_run = dag_runner.run(SECRETS_DAG.replace("IMAGE_ID", image_id), "cfimages_secrets")

    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {
        "list_with_token": "success",
        "list_with_global_key": "success",
        "wait_for_image": "success",
        "delete_dry_run": "success",
        "list_with_wrong_token": "failed",
    }
    xcoms = dag_runner.xcoms(dag_run)
    captured = capfd.readouterr()
    log_files = [p for p in (airflow_db / "logs").rglob("*") if p.is_file()]
    scanned = {
        "stdout": without_dag_test_mask_requests(captured.out),
        "stderr": captured.err,
        "log records": "\n".join(record_texts(caplog.records)),
        "log files": "\n".join(p.read_text(errors="replace") for p in log_files),
        "xcom": json.dumps(xcoms, default=str),
    }

    # The scan saw the run: every task's output, the retried echo page, the 403, the XComs.
    everything = "\n".join(scanned.values())
    assert all(task_id in everything for task_id in TASK_IDS)
    for line in ("Listed 30 images", "Waiting until", "Dry run", "Invalid access token"):
        assert line in scanned["stdout"]  # the task logs themselves were scanned
    assert re.search(r"\[debug\s*\]", scanned["stdout"])  # ... at DEBUG
    assert "retry 1 of" in scanned["log records"]
    assert "Authorization: Bearer ***" in scanned["log records"]  # echoed, then redacted
    assert "X-Auth-Key: ***" in scanned["log records"]
    assert "9109" in everything  # the wrong token's "Invalid access token"
    assert len(xcoms["list_with_token"]) == IMAGES
    assert [image["id"] for image in xcoms["wait_for_image"]] == [image_id]
    assert xcoms["delete_dry_run"]["would_delete"] == 1
    assert {name: leaks(text) for name, text in scanned.items()} == {name: [] for name in scanned}


def test_reprs_and_errors_of_both_auth_types_hold_no_credential(
    secret_emulator: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    for conn_id in ("cloudflare_images_default", "cfimages_global_key", "cfimages_wrong_token"):
        hook = CloudflareImagesHook(conn_id, max_retries=0)
        try:
            hook.get_image("no-such-image")
        except CloudflareImagesAPIError as err:
            texts += [str(err), repr(err), repr(err.__dict__), repr(err.errors)]
        texts += [
            repr(hook),
            repr(hook.settings),
            str(hook.settings),
            repr(hook.transport),
            repr(hook.get_conn()),
            repr(hook.get_conn().auth),
            repr(hook.get_conn().headers),
        ]
    texts += record_texts(caplog.records)
    assert len(texts) > 20
    assert [leaks(text) for text in texts if leaks(text)] == []


# Every API route and method, with a request it would otherwise accept.
ROUTES = [
    ("GET", "/images/v2", None),
    ("GET", "/images/v1", None),
    ("GET", "/images/v1/stats", None),
    ("GET", "/images/v1/{image_id}", None),
    ("PATCH", "/images/v1/{image_id}", {"metadata": {"changed": True}}),
    ("DELETE", "/images/v1/{image_id}", None),
    ("POST", "/images/v2/direct_upload", None),
]
NO_AUTH: dict[str, dict[str, str]] = {
    "none": {},
    "wrong_token": {"Authorization": f"Bearer {WRONG_TOKEN}"},
    "key_without_email": {"X-Auth-Key": GLOBAL_KEY},
    "wrong_email": {"X-Auth-Email": "someone@example.com", "X-Auth-Key": GLOBAL_KEY},
}


@pytest.mark.parametrize("auth", sorted(NO_AUTH))
def test_every_emulator_route_refuses_requests_without_valid_auth_and_changes_nothing(
    secret_emulator: EmulatorServer, auth: str
) -> None:
    emu = secret_emulator
    image_id = emu.backend.ids_sorted()[0]
    before = emu.backend.images_sorted()
    for method, path, body in ROUTES:
        url = emu.url(path.format(image_id=image_id))
        response = requests.request(method, url, headers=NO_AUTH[auth], json=body, timeout=10)
        assert response.status_code in (400, 401, 403), (method, path, response.status_code)
        assert response.json()["success"] is False
        assert not leaks(response.text)
    assert emu.backend.images_sorted() == before
    assert emu.host == "127.0.0.1"

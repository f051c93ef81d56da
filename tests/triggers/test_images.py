"""CloudflareImagesTrigger: serialization, and its run loop against the emulator."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Connection
from airflow.sdk.module_loading import import_string
from airflow.triggers.base import TriggerEvent

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook
from airflow_provider_cfimages.triggers.images import CloudflareImagesTrigger
from tests.compat import AirflowNotFoundException
from tests.sensors.conftest import CONN_ENV, connect

Later = Callable[..., threading.Timer]
CLASSPATH = "airflow_provider_cfimages.triggers.images.CloudflareImagesTrigger"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def first_event(trigger: CloudflareImagesTrigger, timeout: float = 15) -> TriggerEvent:
    """Run the trigger as the triggerer does, until its first event."""

    async def run() -> TriggerEvent:
        events = trigger.run()
        try:
            return await asyncio.wait_for(anext(events), timeout)
        finally:
            await events.aclose()

    return asyncio.run(run())


# -- serialization -----------------------------------------------------------------------

FULL_KWARGS: dict[str, Any] = {
    "cloudflare_images_conn_id": "cf_images_prod",
    "account_id": "0123456789abcdef0123456789abcdef",
    "image_ids": ["a", "b"],
    "filename": "batch-*.jpg",
    "uploaded_after": "2024-05-01T00:00:00+00:00",
    "min_count": 3,
    "creator": "alice",
    "per_page": 500,
    "max_pages": None,
    "max_images": 20,
    "poke_interval": 30.0,
    "meta_filters": {"status": {"eq": "ready"}, "size": {"gte": 100, "lt": 1300}},
}


def test_serializes_to_its_import_path_and_exactly_its_init_kwargs() -> None:
    classpath, kwargs = CloudflareImagesTrigger(**FULL_KWARGS).serialize()

    assert classpath == CLASSPATH
    assert kwargs == FULL_KWARGS
    assert json.loads(json.dumps(kwargs)) == kwargs


def test_rebuilds_from_what_it_serialized() -> None:
    from tests.compat import deserialize, serialize

    classpath, kwargs = CloudflareImagesTrigger(**FULL_KWARGS).serialize()
    # The triggerer stores the kwargs with Airflow's serde and imports the class by path.
    rebuilt = import_string(classpath)(**deserialize(serialize(kwargs)))

    assert rebuilt.serialize() == (classpath, kwargs)
    assert rebuilt.conditions.uploaded_after == dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    assert rebuilt.conditions.meta_filters.query_params() == {
        "meta.status[eq:string]": "ready",
        "meta.size[gte:number]": "100",
        "meta.size[lt:number]": "1300",
    }


def test_defaults_serialize_too() -> None:
    _, kwargs = CloudflareImagesTrigger(image_ids=["x"]).serialize()
    assert kwargs["cloudflare_images_conn_id"] == "cloudflare_images_default"
    assert kwargs["poke_interval"] == 60.0
    assert kwargs["max_pages"] == 10


def test_rejects_conditions_that_cannot_work_when_built() -> None:
    with pytest.raises(CloudflareImagesConfigError, match="min_count"):
        CloudflareImagesTrigger(filename="*.png", min_count=0)


# -- run ---------------------------------------------------------------------------------


def test_fires_success_after_an_upload_made_while_it_waits(
    emulator: EmulatorServer, later: Later
) -> None:
    cutoff = utcnow()
    later(0.4, emulator.backend.upload, "arrived.png")
    trigger = CloudflareImagesTrigger(uploaded_after=cutoff.isoformat(), poke_interval=0.1)

    event = first_event(trigger)

    assert event.payload["status"] == "success"
    [image] = event.payload["images"]
    assert image["filename"] == "arrived.png"
    assert set(image) == {"id", "filename", "uploaded"}
    assert event.payload["message"].startswith("Condition met")
    assert len(emulator.requests) >= 2, "it checked, slept, and checked again"


def test_waits_for_ids_and_fires_with_them(emulator: EmulatorServer, later: Later) -> None:
    later(0.3, emulator.backend.upload, "a.jpg", id="id-a")
    later(0.5, emulator.backend.upload, "b.jpg", id="id-b")

    event = first_event(CloudflareImagesTrigger(image_ids=["id-a", "id-b"], poke_interval=0.1))

    assert event.payload["status"] == "success"
    assert [image["id"] for image in event.payload["images"]] == ["id-a", "id-b"]


def test_reads_the_connection_on_the_event_loop_as_airflow_3_1_requires(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In Airflow 3.1's triggerer the channel to the supervisor belongs to the event loop:
    # get_connection() from a worker thread (or the loop itself) finds no connection there
    # when it is stored in the metadata DB; only aget_connection(), awaited on the loop, works.
    stored = Connection.from_json(os.environ.pop(CONN_ENV), conn_id="cloudflare_images_default")
    loop_threads: list[int] = []

    def get_connection(cls: type, conn_id: str) -> Connection:
        raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined")

    async def aget_connection(cls: type, conn_id: str) -> Connection:
        loop_threads.append(threading.get_ident())
        return stored

    monkeypatch.setattr(CloudflareImagesHook, "get_connection", classmethod(get_connection))
    monkeypatch.setattr(CloudflareImagesHook, "aget_connection", classmethod(aget_connection))
    emulator.backend.upload("a.jpg", id="id-a")

    event = first_event(CloudflareImagesTrigger(image_ids=["id-a"], poke_interval=0.1))

    assert event.payload["status"] == "success", event.payload
    assert loop_threads == [threading.get_ident()]  # asyncio.run runs the loop right here


@pytest.mark.parametrize(
    ("connection", "kwargs", "code"),
    [
        pytest.param({"password": "W" * 40}, {}, "9109", id="unknown-token"),
        pytest.param({}, {"account_id": "f" * 32}, "10000", id="other-account"),
    ],
)
def test_fires_one_error_event_when_waiting_cannot_help(
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    connection: dict[str, Any],
    kwargs: dict[str, Any],
    code: str,
) -> None:
    conn = connect(monkeypatch, emulator, **connection)
    trigger = CloudflareImagesTrigger(image_ids=["x"], poke_interval=30, **kwargs)

    started = time.monotonic()
    event = first_event(trigger)

    assert time.monotonic() - started < 5, "no waiting for poke_interval"
    assert event.payload["status"] == "error"
    assert code in event.payload["message"]
    assert conn["password"] not in json.dumps(event.payload)
    assert len(emulator.requests) == 1


def test_server_errors_only_delay_the_next_check(emulator: EmulatorServer) -> None:
    image = emulator.backend.upload("there.jpg")
    emulator.faults.fail_next(2, status=503)

    event = first_event(CloudflareImagesTrigger(image_ids=[image["id"]], poke_interval=0.05))

    assert event.payload["status"] == "success"
    assert [r.status for r in emulator.requests] == [503, 503, 200]


def test_checks_never_block_the_event_loop(emulator: EmulatorServer) -> None:
    image = emulator.backend.upload("slow.jpg")
    emulator.faults.slow_next(1, seconds=1.0)
    trigger = CloudflareImagesTrigger(image_ids=[image["id"]], poke_interval=0.1)

    async def run_with_ticker() -> tuple[TriggerEvent, int]:
        ticks = 0
        events = trigger.run()
        waiting = asyncio.ensure_future(anext(events))
        while not waiting.done():
            await asyncio.sleep(0.05)
            ticks += 1
        await events.aclose()
        return waiting.result(), ticks

    event, ticks = asyncio.run(run_with_ticker())

    assert event.payload["status"] == "success"
    # A check blocking the loop for the 1 s request would leave the ticker at 1 or 2 ticks.
    assert ticks >= 10


# What the triggerer does with a trigger, in a fresh interpreter: import its class by path on
# the event loop, build it from its kwargs, run it to its first event. An audit hook records
# on which thread the hook's modules (and requests) are imported and sockets are connected.
_START_AS_THE_TRIGGERER_DOES = textwrap.dedent(
    """
    import asyncio, json, sys, threading

    from airflow.sdk.module_loading import import_string
    from airflow.triggers.base import BaseTrigger  # loaded in a triggerer before any trigger

    WATCHED = (
        "requests",
        "airflow_provider_cfimages.hooks.images",
        "airflow_provider_cfimages.hooks.transport",
    )
    loop_thread = threading.get_ident()  # asyncio.run runs the loop on this thread
    imports, connects = [], []

    def audit(event, args):
        if event == "import" and args[0] in WATCHED:
            imports.append([args[0], threading.get_ident() == loop_thread])
        elif event == "socket.connect":
            connects.append(threading.get_ident() == loop_thread)

    already = [name for name in WATCHED if name in sys.modules]
    sys.addaudithook(audit)

    async def start():
        trigger_class = import_string(sys.argv[1])
        events = trigger_class(**json.loads(sys.argv[2])).run()
        try:
            return (await anext(events)).payload
        finally:
            await events.aclose()

    payload = asyncio.run(start())
    print(json.dumps({"already": already, "payload": payload, "imports": imports,
                      "connects": connects}))
    """
)


def test_starting_imports_the_hook_and_sends_requests_off_the_event_loop(
    emulator: EmulatorServer,
) -> None:
    # Importing requests and the hook takes a noticeable part of a second: on the loop, it
    # would stall every other trigger of the triggerer while this one starts.
    image = emulator.backend.upload("there.jpg")
    kwargs = {"image_ids": [image["id"]], "poke_interval": 0.1}
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}

    run = subprocess.run(
        [sys.executable, "-c", _START_AS_THE_TRIGGERER_DOES, CLASSPATH, json.dumps(kwargs)],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.splitlines()[-1])
    assert seen["already"] == [], "nothing to observe: the interpreter had them loaded"
    assert seen["payload"]["status"] == "success", seen["payload"]
    imported = {name: on_loop for name, on_loop in seen["imports"]}
    assert imported == {
        "requests": False,
        "airflow_provider_cfimages.hooks.images": False,
        "airflow_provider_cfimages.hooks.transport": False,
    }
    assert seen["connects"], "the check sent no request"
    assert not any(seen["connects"]), "a request was sent from the event loop's thread"


def test_cancelling_the_trigger_stops_a_check_in_progress(emulator_25k: EmulatorServer) -> None:
    emu = emulator_25k
    emu.faults.slow_next(1, seconds=0.5)
    # Without cancellation this check would read 50 pages.
    trigger = CloudflareImagesTrigger(filename="absent-*.gif", per_page=100, max_pages=50)

    async def start_then_cancel() -> None:
        task = asyncio.ensure_future(anext(trigger.run()))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(start_then_cancel())  # returns once the check's thread has stopped
    time.sleep(0.3)

    assert len(emu.requests) <= 2

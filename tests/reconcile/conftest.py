"""Fixtures for the reconcile and delete tests: the emulator, and the connection to it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer


def emulator_connection(emu: EmulatorServer, **extra: object) -> str:
    """The emulator's connection JSON, with extra settings (``max_retries``, ...) added."""
    connection = json.loads(emu.connection_json())
    connection["extra"].update(extra)
    return json.dumps(connection)


def served(emu: EmulatorServer) -> list[Any]:
    """The emulator's request log, once it has settled.

    The emulator logs a request just after answering it, so a client that has its answer
    may look at the log a moment too early; wait until two reads agree.
    """
    deadline = time.monotonic() + 5
    records = emu.requests
    while time.monotonic() < deadline:
        time.sleep(0.05)
        again = emu.requests
        if len(again) == len(records):
            return again
        records = again
    return records


@pytest.fixture
def live(emulator_25k: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """The 25,000-image emulator (reset for this test), as the default connection."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", emulator_connection(emulator_25k, max_retries=0)
    )
    return emulator_25k

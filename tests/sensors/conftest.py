"""Emulator fixtures for the sensor and trigger tests (real HTTP to a local Images API)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer

CONN_ENV = "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"


def connect(monkeypatch: pytest.MonkeyPatch, emu: EmulatorServer, **changes: Any) -> dict[str, Any]:
    """Point the default connection at ``emu``; ``changes`` override fields, ``extra`` merges."""
    conn = json.loads(emu.connection_json())
    extra = {**conn["extra"], **changes.pop("extra", {})}
    conn.update(changes, extra=extra)
    monkeypatch.setenv(CONN_ENV, json.dumps(conn))
    return conn


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    """A fresh, empty emulator; the default connection points at it (no retries)."""
    with EmulatorServer() as emu:
        # Retries are the hook's business (tested there); here they would only add waits.
        connect(monkeypatch, emu, extra={"max_retries": 0})
        yield emu


@pytest.fixture(scope="module")
def _server_25k() -> Iterator[EmulatorServer]:
    with EmulatorServer(images=25_000, seed=7) as emu:
        yield emu


@pytest.fixture
def emulator_25k(_server_25k: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """An emulator holding 25,000 images (shared by a module, reset for each test)."""
    emu = _server_25k
    emu.backend.reset()
    emu.faults.clear()
    emu.reset_requests()
    connect(monkeypatch, emu, extra={"max_retries": 0})
    return emu


@pytest.fixture
def later() -> Iterator[Callable[..., threading.Timer]]:
    """``later(seconds, fn, *args, **kwargs)`` runs ``fn`` on a timer while the test waits."""
    timers: list[threading.Timer] = []

    def schedule(seconds: float, fn: Callable[..., Any], *args: Any, **kwargs: Any):
        timer = threading.Timer(seconds, fn, args, kwargs)
        timer.daemon = True
        timers.append(timer)
        timer.start()
        return timer

    yield schedule
    for timer in timers:
        timer.cancel()
        timer.join(timeout=5)

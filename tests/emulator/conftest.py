"""Fixtures for the emulator's own tests.

The shared emulator fixtures live in ``tests/conftest_emulator.py`` and are registered for
the whole suite by ``pytest_plugins`` in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from airflow_provider_cfimages.emulator import EmulatorServer
from tests.emulator.openapi import OpenAPIResponses


@pytest.fixture(scope="session")
def openapi() -> OpenAPIResponses:
    """The response schemas of Cloudflare's Images OpenAPI document, ready to validate."""
    return OpenAPIResponses.load()


@pytest.fixture
def session(emulator: EmulatorServer) -> Iterator[requests.Session]:
    """A ``requests`` session authenticated against ``emulator`` with its API token."""
    with requests.Session() as client:
        client.headers.update(emulator.auth_headers())
        yield client


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    """A clock for ``FaultPlan(clock=...)``, moved by hand (``clock.now += ...``)."""
    return FakeClock()


@pytest.fixture
def client(emu: EmulatorServer) -> Iterator[requests.Session]:
    """A ``requests`` session authenticated against the module's ``emu`` emulator."""
    with requests.Session() as session:
        session.headers.update(emu.auth_headers())
        yield session

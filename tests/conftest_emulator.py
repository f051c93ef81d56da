"""Shared pytest fixtures that run the local Cloudflare Images emulator.

Registered for the whole suite by ``pytest_plugins = ["tests.conftest_emulator"]`` in
``tests/conftest.py``.

- ``emulator``: a fresh, empty emulator per test (mutate it freely).
- ``emulator_25k``: 25,000 seeded images (seed 7), one server per test module; before each
  test its faults are cleared, its request log emptied and its inventory reset to the
  seeded one, and its page cap to the default 1000. A test that adds or deletes images
  should still prefer its own server.
- ``emulator_25k_server``: the module-scoped server behind ``emulator_25k`` (no resets).
- ``emulator_connection_env``: ``AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT`` pointing at
  ``emulator`` for the duration of a test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.emulator.server import DEFAULT_PAGE_CAP

EMULATOR_25K_IMAGES = 25_000
EMULATOR_25K_SEED = 7


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    """A fresh, empty emulator on a free loopback port."""
    with EmulatorServer(images=0) as server:
        yield server


@pytest.fixture(scope="module")
def emulator_25k_server() -> Iterator[EmulatorServer]:
    """One 25,000-image emulator (seed 7) for a whole test module, never reset."""
    with EmulatorServer(images=EMULATOR_25K_IMAGES, seed=EMULATOR_25K_SEED) as server:
        yield server


@pytest.fixture
def emulator_25k(emulator_25k_server: EmulatorServer) -> Iterator[EmulatorServer]:
    """The module's 25,000-image emulator, with faults, request log and inventory reset."""
    server = emulator_25k_server
    server.faults.clear()
    server.backend.reset()
    server.reset_requests()
    server.page_cap = DEFAULT_PAGE_CAP
    yield server
    server.faults.clear()
    server.page_cap = DEFAULT_PAGE_CAP


@pytest.fixture
def emulator_connection_env(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> EmulatorServer:
    """Point the default ``cloudflare_images`` connection at ``emulator`` (API token auth)."""
    for name, value in emulator.connection_uri_env().items():
        monkeypatch.setenv(name, value)
    return emulator

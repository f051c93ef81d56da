"""Fixtures for the emulator's own tests.

The shared emulator fixtures live in ``tests/conftest_emulator.py`` and are registered for
the whole suite by ``pytest_plugins`` in ``tests/conftest.py``. Until that line exists,
import them here so these tests can use them; once the plugin is registered it has been
imported before this file is, and importing its fixtures again would define them twice.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import requests

from airflow_provider_cfimages.emulator import EmulatorServer
from tests.emulator.openapi import OpenAPIResponses

if "tests.conftest_emulator" not in sys.modules:  # pragma: no cover - depends on tests/conftest.py
    from tests.conftest_emulator import (  # noqa: F401 - re-exported fixtures
        emulator,
        emulator_25k,
        emulator_25k_server,
        emulator_connection_env,
    )


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

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

"""The ``postgres_server`` fixture: one throwaway PostgreSQL server for the test session.

Registered for the whole suite by ``pytest_plugins`` in ``tests/conftest.py``. The server is
started on first use and stopped at the end of the session, whether the tests passed or
not (see :mod:`tests.pg_server`). Without PostgreSQL installed the tests that need it are
skipped with the reason printed, unless ``CFIMAGES_REQUIRE_POSTGRES=1`` (``.ci/run`` sets
it, after installing Debian's ``postgresql``), which makes them fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.pg_server import PostgresNotInstalled, PostgresServer

REQUIRE_ENV = "CFIMAGES_REQUIRE_POSTGRES"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL server on 127.0.0.1 (user ``postgres``, no password)."""
    try:
        server = PostgresServer.start()
    except PostgresNotInstalled as err:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{err} ({REQUIRE_ENV}=1)")
        pytest.skip(f"{err}; set {REQUIRE_ENV}=1 to fail instead")
    try:
        yield server
    finally:
        server.stop()

"""Fixtures for the connection-form tests: a real ``airflow api-server`` and Debian's chromium.

The API server runs in its own process group with its own AIRFLOW_HOME and SQLite DB, apart
from the suite's shared home, and is shared by every test of a module (starting it dominates
the run time).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

if TYPE_CHECKING:
    from playwright.sync_api import Page

SERVER_START_TIMEOUT = 90.0
"""Seconds to wait for the API server to answer; a cold start took 10-50 s on 2 busy cores."""

SERVER_STOP_TIMEOUT = 20.0
"""Seconds to wait after SIGTERM before SIGKILL; uvicorn takes a few seconds to exit."""

MIGRATE_TIMEOUT = 180.0
LOG_TAIL_LINES = 40
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps calling Google services, which this closed network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
UI_TIMEOUT_MS = 60_000
"""Playwright's per-action timeout; the first page load of the UI takes seconds on busy cores."""

INSTALL_CHROMIUM_HINT = (
    "Debian's chromium is not installed: install it with "
    "`apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium` "
    "(.ci/run does this in CI)"
)


@dataclass(frozen=True)
class ApiServer:
    """A running ``airflow api-server`` on loopback.

    :param base_url: The server's root URL, e.g. ``http://127.0.0.1:PORT``.
    :param airflow_home: The server's private AIRFLOW_HOME.
    :param log_path: The file that holds the server's stdout and stderr.
    """

    base_url: str
    airflow_home: Path
    log_path: Path

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the server's log, for failure messages.

        :param lines: How many lines to return.
        """
        return _tail(self.log_path, lines)

    def get(self, path: str, *, timeout: float = 60.0) -> requests.Response:
        """GET a path of the server, never through a proxy named in the environment.

        :param path: The path below the root, starting with ``/``.
        :param timeout: Seconds to wait for the response.
        """
        return loopback_get(f"{self.base_url}{path}", timeout=timeout)


def loopback_get(url: str, *, timeout: float) -> requests.Response:
    """GET a loopback URL directly: an ``HTTP(S)_PROXY`` without ``NO_PROXY`` would intercept it.

    :param url: The full URL.
    :param timeout: Seconds to wait for the response.
    """
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url, timeout=timeout)


def _tail(path: Path, lines: int) -> str:
    if not path.exists():
        return "<no log written>"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _airflow_command(*args: str) -> list[str]:
    """Run the ``airflow`` CLI with the tests' own interpreter, so it sees the same packages.

    :param args: The CLI arguments, e.g. ``"db", "migrate"``.
    """
    return [sys.executable, "-m", "airflow", *args]


def _server_env(airflow_home: Path) -> dict[str, str]:
    """The server's environment: the parent's minus any Airflow setting, plus its own home.

    The suite's conftest points AIRFLOW_* variables at the shared test home (and sets unit
    test mode and a test connection); none of that may leak into the server.

    :param airflow_home: The server's private AIRFLOW_HOME.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(airflow_home / "dags"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        }
    )
    return env


def _migrate_db(env: dict[str, str], airflow_home: Path) -> None:
    """Create the server's metadata DB with ``airflow db migrate``, or fail with its output.

    :param env: The server's environment.
    :param airflow_home: The server's private AIRFLOW_HOME.
    """
    result = subprocess.run(
        _airflow_command("db", "migrate"),
        env=env,
        cwd=airflow_home,
        capture_output=True,
        text=True,
        timeout=MIGRATE_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-LOG_TAIL_LINES:])
        pytest.fail(f"`airflow db migrate` exited with {result.returncode}:\n{output}")


def _wait_until_healthy(server: ApiServer, process: subprocess.Popen[bytes]) -> None:
    """Poll the health endpoint until it answers 200; fail early if the process dies.

    :param server: Where the server listens and logs.
    :param process: The server process.
    """
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    health_url = f"{server.base_url}/api/v2/monitor/health"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"airflow api-server exited with {process.returncode} before answering; "
                f"log tail:\n{server.log_tail()}"
            )
        try:
            if loopback_get(health_url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass  # not listening yet
        time.sleep(0.5)
    pytest.fail(
        f"airflow api-server did not answer {health_url} within {SERVER_START_TIMEOUT:.0f} s; "
        f"log tail:\n{server.log_tail()}"
    )


def _stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's whole process group, then SIGKILL whatever is left.

    :param process: The group leader, started with ``start_new_session=True``.
    """
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=SERVER_STOP_TIMEOUT)
    # The leader may be gone while a worker lingers; kill the group in any case.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A migrated, running ``airflow api-server`` on a free loopback port, for one module.

    :param tmp_path_factory: Makes the server's private AIRFLOW_HOME.
    """
    airflow_home = tmp_path_factory.mktemp("api-server-home")
    env = _server_env(airflow_home)
    _migrate_db(env, airflow_home)
    port = _free_loopback_port()
    server = ApiServer(
        base_url=f"http://127.0.0.1:{port}",
        airflow_home=airflow_home,
        log_path=airflow_home / "api-server.log",
    )
    command = _airflow_command(
        "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--apps", "core"
    )
    with server.log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=airflow_home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so teardown reaches every child
        )
    try:
        _wait_until_healthy(server, process)
        yield server
    finally:
        _stop_process_group(process)


def _find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The path of Debian's chromium and a working Playwright, or a clear fail/skip.

    In CI (``CI=true``) a missing browser is a failure: the test would otherwise pass by not
    running. Elsewhere it is a skip that says what to install.
    """
    problems = []
    path = _find_chromium()
    if path is None:
        problems.append(INSTALL_CHROMIUM_HINT)
    try:
        import playwright.sync_api  # noqa: F401 - only checking that it is installed
    except ImportError:
        problems.append(
            "the Python package playwright is not installed: install the test extra "
            '(`pip install -e ".[test]"`); no `playwright install` is needed'
        )
    if not problems:
        return str(path)
    reason = "; ".join(problems)
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def browser_page(chromium_path: str) -> Iterator[Page]:
    """A fresh page in headless Debian chromium (no Playwright-downloaded browser).

    :param chromium_path: The chromium executable.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.set_default_timeout(UI_TIMEOUT_MS)
            yield page
        finally:
            browser.close()

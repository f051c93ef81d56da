"""A throwaway PostgreSQL server for tests and benchmarks: Debian's ``postgresql`` package.

``initdb`` refuses to run as root, so as root the server runs as the ``postgres`` user
(``runuser``) in a temporary directory it owns; as anyone else it runs as that user. It
listens on 127.0.0.1 on a free port, with its socket in the same directory, trusts local
logins (user ``postgres``, no password), and skips fsync (nothing here must survive).

::

    with PostgresServer.start() as server:
        server.create_database("cfimages")
        server.connection_json("cfimages")   # an Airflow ``postgres`` connection
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: set to a folder holding initdb and pg_ctl to use another PostgreSQL
BIN_ENV = "CFIMAGES_PG_BIN"
SUPERUSER = "postgres"
_SERVER_SETTINGS = (
    "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
)


class PostgresNotInstalled(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bin_dir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl`` (Debian keeps them off PATH)."""
    override = os.environ.get(BIN_ENV)
    candidates = [override] if override else []
    # Debian: /usr/lib/postgresql/<major>/bin; the newest major first.
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
        reverse=True,
    )
    candidates += [str(Path(path).parent) for path in debian]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for folder in candidates:
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    raise PostgresNotInstalled(
        "no PostgreSQL server found (initdb and pg_ctl): install Debian's postgresql package "
        f"(apt-get install postgresql) or set {BIN_ENV}"
    )


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """A running throwaway server; stop it with :meth:`stop` (or use it as a context manager).

    :param bin_dir: where ``initdb`` and ``pg_ctl`` are.
    :param directory: the server's temporary folder (data, socket, log).
    :param port: the TCP port it listens on.
    """

    def __init__(self, bin_dir: Path, directory: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.directory = directory
        self.port = port
        self.host = "127.0.0.1"
        self.running = False

    @classmethod
    def start(cls, bin_dir: Path | None = None) -> PostgresServer:
        """Create a cluster in a new temporary folder and start it.

        :param bin_dir: where ``initdb`` and ``pg_ctl`` are; found when ``None``.
        """
        bin_dir = bin_dir or find_bin_dir()
        directory = Path(tempfile.mkdtemp(prefix="cfimages-pg-"))
        server = cls(bin_dir, directory, free_port())
        try:
            if os.geteuid() == 0:
                account = pwd.getpwnam(SUPERUSER)
                os.chown(directory, account.pw_uid, account.pw_gid)
            server._run("initdb", "-D", str(server.data), "-A", "trust", "-U", SUPERUSER,
                        "--no-sync", "-E", "UTF8", "--locale=C")  # fmt: skip
            server._run(
                "pg_ctl", "-D", str(server.data), "-l", str(server.log_path), "-w",
                "-o", f"-p {server.port} -k {directory} {_SERVER_SETTINGS}", "start",
            )  # fmt: skip
            server.running = True
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def data(self) -> Path:
        """The cluster's data folder."""
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        """The server log."""
        return self.directory / "server.log"

    def stop(self) -> None:
        """Stop the server (at once: nothing must be kept) and delete its folder."""
        if self.running:
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.running = False
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- using it --------------------------------------------------------------------------

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with ``psql`` (stops at the first error); returns its output."""
        where = ["-h", self.host, "-p", str(self.port), "-U", SUPERUSER, "-d", database]
        return self._run("psql", "-v", "ON_ERROR_STOP=1", "-qAt", *where, "-c", sql)

    def create_database(self, name: str) -> None:
        """Create a database (dropping one of that name first)."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}"')
        self.psql(f'CREATE DATABASE "{name}"')

    def connection(self, database: str) -> dict[str, Any]:
        """An Airflow ``postgres`` connection to ``database``, as a dict."""
        return {
            "conn_type": "postgres",
            "host": self.host,
            "port": self.port,
            "login": SUPERUSER,
            "schema": database,
        }

    def connection_json(self, database: str) -> str:
        """The JSON form of :meth:`connection` (an ``AIRFLOW_CONN_...`` value)."""
        return json.dumps(self.connection(database))

    def _run(self, program: str, *arguments: str) -> str:
        command: Sequence[str] = [str(self.bin_dir / program), *arguments]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        finished = subprocess.run(
            command, capture_output=True, text=True, timeout=120, cwd=self.directory
        )
        if finished.returncode != 0:
            log = self.log_path.read_text() if self.log_path.exists() else ""
            raise subprocess.CalledProcessError(
                finished.returncode,
                command,
                finished.stdout,
                f"{finished.stderr}\n{log[-2000:]}",
            )
        return finished.stdout

"""A real, local Airflow deployment for DAG-level tests and ``make demo``.

:class:`AirflowDeployment` runs what ``airflow standalone`` runs (scheduler with the
LocalExecutor, DAG processor, triggerer and api-server, whose execution API the task
processes report to), each as its own process with its own log, on a free loopback port,
in a temporary ``AIRFLOW_HOME`` with a SQLite metadata DB. DAGs are driven through the
``airflow`` CLI as a user would (``dags unpause``, ``dags trigger``) and observed in the
metadata DB. Every process is started in a new session and its whole process group is
killed on :meth:`stop` (a SIGTERM to the scheduler alone leaves its executor's workers
running).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
FINISHED = ("success", "failed")
_T = TypeVar("_T")


class DeploymentError(RuntimeError):
    """A component did not start, or a run did not reach the expected state in time."""


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class AirflowDeployment:
    """Scheduler, DAG processor, triggerer and api-server on a temporary SQLite DB.

    :param home: the ``AIRFLOW_HOME`` (created; holds the DB, ``logs/`` and one
        ``<component>.log`` per process).
    :param dags_folder: the DAG files to serve.
    :param env: extra environment variables (connections, variables), added to every
        process's environment.
    """

    def __init__(self, home: Path, dags_folder: Path, env: Mapping[str, str]) -> None:
        self.home = home
        self.dags_folder = dags_folder
        self.port = free_port()
        self.db_path = home / "airflow.db"
        self.env = self._environment(env)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def _environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        # Nothing of the calling process's Airflow set-up (a test's AIRFLOW_HOME) leaks in.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
        base_url = f"http://127.0.0.1:{self.port}"
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags_folder),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="4",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{base_url}/execution/",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{self.db_path}",
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__BASE_URL=base_url,
            AIRFLOW__API__WORKERS="1",
            # One secret for every component: the api-server checks the tokens the
            # scheduler hands to task processes.
            AIRFLOW__API_AUTH__JWT_SECRET=os.urandom(16).hex(),
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
            AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL="60",
            AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="2",
            AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        )
        env.update(extra)
        return env

    # -- life cycle ----------------------------------------------------------------------

    def start(self, timeout: float = 180) -> None:
        """Create the DB, register the DAGs, start every component and wait until ready.

        :param timeout: seconds the api-server may take to answer.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        self.cli("db", "migrate")
        # Serialize the DAGs now, so the CLI finds them before the DAG processor's first pass.
        self.cli("dags", "reserialize")
        for name in COMPONENTS:
            log = (self.home / f"{name}.log").open("wb")
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", name],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
        self.wait_for(self._api_server_answers, timeout, "the api-server to answer")

    def stop(self) -> None:
        """Kill every process group started here (components and their children)."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            # Children outlive a SIGTERMed parent (executor workers, task processes).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)

    def __enter__(self) -> AirflowDeployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _api_server_answers(self) -> bool:
        self._check_alive()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"GET /api/v2/version HTTP/1.0\r\nHost: localhost\r\n\r\n")
                return conn.recv(12).startswith(b"HTTP/1.")
        except OSError:
            return False

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise DeploymentError(
                    f"airflow {name} exited with {process.returncode}:\n{self.log_tail(name)}"
                )

    # -- driving and observing -----------------------------------------------------------

    def cli(self, *args: str, timeout: float = 180) -> str:
        """Run ``airflow <args>`` in the deployment's environment; return its stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
        if done.returncode != 0:
            raise DeploymentError(
                f"`airflow {' '.join(args)}` exited {done.returncode}:\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            )
        return done.stdout

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Trigger a manual run with no logical date (as the UI's button does); its run id."""
        args = ["dags", "trigger", dag_id, "--output", "json"]
        if conf is not None:
            args += ["--conf", json.dumps(conf)]
        before = {run["run_id"] for run in self.runs(dag_id)}
        self.cli(*args)
        new = [run for run in self.runs(dag_id) if run["run_id"] not in before]
        if len(new) != 1:
            raise DeploymentError(f"`airflow dags trigger {dag_id}` made {len(new)} runs")
        return str(new[0]["run_id"])

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Rows of a read-only query on the metadata DB (retried while it is locked)."""
        for _ in range(50):
            try:
                with contextlib.closing(
                    sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
                ) as db:
                    db.row_factory = sqlite3.Row
                    return [dict(row) for row in db.execute(sql, params)]
            except sqlite3.OperationalError as err:
                if "locked" not in str(err):
                    raise
                time.sleep(0.1)
        raise DeploymentError(f"the metadata DB stayed locked for: {sql}")

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """The DAG's runs, oldest first: run_id, run_type, state, logical_date, run_after."""
        return self.query(
            "SELECT run_id, run_type, state, logical_date, run_after, data_interval_start, "
            "data_interval_end, conf FROM dag_run WHERE dag_id = ? ORDER BY id",
            dag_id,
        )

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """Task id -> state in one run."""
        rows = self.query(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
            dag_id,
            run_id,
        )
        return {row["task_id"]: row["state"] for row in rows}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value in one run (JSON-decoded), or ``None``."""
        rows = self.query(
            "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = ?",
            dag_id,
            run_id,
            task_id,
            key,
        )
        if not rows:
            return None
        value = rows[0]["value"]
        return json.loads(value) if isinstance(value, (str, bytes)) else value

    def wait_for(self, condition: Callable[[], _T], timeout: float, what: str) -> _T:
        """Poll ``condition`` until it returns something truthy; return that.

        :param condition: called about twice a second.
        :param timeout: seconds to wait before raising :class:`DeploymentError`.
        :param what: what is awaited, for the error message.
        """
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            self._check_alive()
            if time.monotonic() > deadline:
                raise DeploymentError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.5)

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout: float = 120, states: tuple[str, ...] = FINISHED
    ) -> dict[str, Any]:
        """Wait until a run reaches one of ``states``; return its row."""

        def reached() -> dict[str, Any] | None:
            return next(
                (r for r in self.runs(dag_id) if r["run_id"] == run_id and r["state"] in states),
                None,
            )

        return self.wait_for(reached, timeout, f"{dag_id} run {run_id} to be {states}")

    def wait_for_task(
        self, dag_id: str, run_id: str, task_id: str, state: str, timeout: float = 120
    ) -> None:
        """Wait until one task of a run is in ``state`` (e.g. ``deferred``)."""
        self.wait_for(
            lambda: self.task_states(dag_id, run_id).get(task_id) == state,
            timeout,
            f"{dag_id}.{task_id} in {run_id} to be {state}",
        )

    def log_tail(self, name: str, chars: int = 3000) -> str:
        """The end of a component's log."""
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def task_logs(self, dag_id: str) -> Iterator[tuple[Path, str]]:
        """Every task log file of a DAG, with its text."""
        for path in sorted((self.home / "logs").glob(f"dag_id={dag_id}/**/*.log")):
            yield path, path.read_text(errors="replace")

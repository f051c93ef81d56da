"""Test-wide setup: an isolated AIRFLOW_HOME with a SQLite metadata DB, and connections."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ["tests.conftest_emulator", "tests.conftest_postgres"]

# Airflow reads its home and config at import time, so isolate it before anything imports it.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="cfimages-airflow-home-"))
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_AIRFLOW_HOME / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"

TEST_TOKEN = "cfimages-test-token-DO-NOT-LEAK-0123456789"
TEST_ACCOUNT = "0123456789abcdef0123456789abcdef"
TEST_BASE_URL = "https://api.cloudflare.com/client/v4"


def connection_json(**overrides: object) -> str:
    """A ``cloudflare_images`` connection in Airflow's JSON form, with test defaults."""
    conn: dict[str, object] = {
        "conn_type": "cloudflare_images",
        "host": TEST_BASE_URL,
        "password": TEST_TOKEN,
        "extra": {"account_id": TEST_ACCOUNT},
    }
    conn.update(overrides)
    return json.dumps(conn)


@pytest.fixture(autouse=True)
def default_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets a token connection to the (stubbed) real API unless it sets its own."""
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", connection_json())


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB for tests that run DAGs (``dag.test()``)."""
    from airflow.utils.db import initdb

    initdb()
    return _AIRFLOW_HOME


class DagRunner:
    """Runs a DAG file in real Airflow (``dag.test()`` on the SQLite metadata DB).

    Airflow 3 only runs DAGs that come from a DAG bundle, so the file is copied into the
    test AIRFLOW_HOME's dags folder and parsed from there, as the DAG processor would.
    """

    def __init__(self, dags_folder: Path) -> None:
        self.dags_folder = dags_folder

    def load(self, source: str | Path, dag_id: str, *, filename: str | None = None):
        """Put a DAG file (a path, or Python source text) in the dags folder and parse it."""
        from tests.compat import DagBag

        self.dags_folder.mkdir(parents=True, exist_ok=True)
        if isinstance(source, Path):
            text, name = source.read_text(), filename or source.name
        else:
            text, name = source, filename or f"{dag_id}.py"
        target = self.dags_folder / name
        target.write_text(text)
        bag = DagBag(dag_folder=str(target))
        assert not bag.import_errors, bag.import_errors
        return bag.dags[dag_id]

    def run(self, source: str | Path, dag_id: str, **test_kwargs: object):
        """Load the DAG and run it once with ``dag.test()``; return the DagRun."""
        return self.load(source, dag_id).test(**test_kwargs)

    @staticmethod
    def xcoms(dag_run: object, key: str = "return_value") -> dict[str, object]:
        """The XCom values of one run, by task id (map index ignored)."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = (
                session.query(XComModel)
                .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, key=key)  # type: ignore[attr-defined]
                .all()
            )
            return {row.task_id: row.value for row in rows}


@pytest.fixture
def dag_runner(airflow_db: Path) -> DagRunner:
    """Run DAG files under ``dag.test()``; see :class:`DagRunner`."""
    return DagRunner(airflow_db / "dags")

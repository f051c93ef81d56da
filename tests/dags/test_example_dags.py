"""The example DAGs parse, and run to their documented results in real Airflow.

Each DAG runs under ``dag.test()`` on the SQLite metadata DB against the local emulator
over real HTTP; one runs through ``airflow dags test`` in a subprocess, configured only by
environment variables, the way a user would run it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from tests.conftest import DagRunner

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"
DAG_IDS = {
    "cfimages_accounts",
    "cfimages_export_daily",
    "cfimages_export_incremental",
    "cfimages_reconcile",
    "cfimages_wait_for_uploads",
}
IMAGES = 3000


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorServer]:
    with EmulatorServer(images=IMAGES, seed=11) as server:
        yield server


@pytest.fixture
def airflow_env(emu: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The connection and the export base, as a user would set them: environment only."""
    emu.backend.reset()
    emu.faults.clear()
    emu.reset_requests()
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", emu.connection_json())
    base = tmp_path / "exports"
    monkeypatch.setenv("AIRFLOW_VAR_CFIMAGES_EXPORT_BASE", str(base))
    return base


def example(name: str) -> Path:
    return EXAMPLES / f"{name}.py"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_every_example_dag_parses_with_docs_and_tags() -> None:
    from tests.compat import DagBag

    bag = DagBag(dag_folder=str(EXAMPLES))
    assert bag.import_errors == {}
    assert set(bag.dags) == DAG_IDS
    for dag in bag.dags.values():
        assert "cloudflare-images" in dag.tags
        assert dag.doc_md or Path(dag.fileloc).read_text().startswith('"""')
        assert "cloudflare_images_default" in Path(dag.fileloc).read_text()


def test_export_daily_writes_the_inventory_and_publishes_the_manifest(
    dag_runner: DagRunner, emu: EmulatorServer, airflow_env: Path
) -> None:
    run = dag_runner.run(example("cfimages_export_daily"), "cfimages_export_daily")
    assert run.state == "success"
    xcoms = dag_runner.xcoms(run)
    manifest = xcoms["export_inventory"]
    assert asset_event_extras(run) == [manifest]  # the export task's own asset event
    path = Path(manifest["path"].removeprefix("file://"))
    assert path.parent == airflow_env / "daily"
    assert path.name.endswith(".jsonl.gz")
    assert manifest["count"] == IMAGES
    assert manifest["sha256"] == sha256_of(path)
    assert [i["id"] for i in read_jsonl(path)] == emu.backend.ids_sorted()
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def asset_event_extras(dag_run: Any) -> list[Any]:
    """The ``extra`` of each asset event a DAG run emitted."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .filter_by(source_dag_id=dag_run.dag_id, source_run_id=dag_run.run_id)
            .all()
        )
        return [event.extra for event in events]


def test_export_incremental_exports_exactly_its_interval(
    dag_runner: DagRunner, emu: EmulatorServer, airflow_env: Path
) -> None:
    images = emu.backend.images_sorted()
    # An hour that holds images: the one the newest tenth begins in.
    anchor = pendulum.parse(images[-IMAGES // 10]["uploaded"])
    # The DAG's settle holds the window back by 15 minutes (late-arriving uploads).
    settle = pendulum.duration(minutes=15)
    logical_date = (anchor + settle).start_of("hour").add(hours=1)
    run = dag_runner.run(
        example("cfimages_export_incremental"),
        "cfimages_export_incremental",
        logical_date=logical_date,
    )
    assert run.state == "success"
    start, end = run.data_interval_start - settle, run.data_interval_end - settle
    expected = [i["id"] for i in reversed(images) if start <= pendulum.parse(i["uploaded"]) < end]
    assert expected, "the chosen interval should hold images"
    manifest = dag_runner.xcoms(run)["export_new_images"]
    assert manifest["count"] == len(expected)
    assert [i["id"] for i in read_jsonl(Path(manifest["path"].removeprefix("file://")))] == expected
    # Newest first with a cutoff: paging stopped long before the 3000-image inventory's end.
    assert len(emu.requests) < IMAGES // 1000 + 1


def write_expected(path: Path, ids: list[str]) -> Path:
    path.write_text("".join(f"{i}\n" for i in ids))
    return path


def test_reconcile_in_sync_succeeds(
    dag_runner: DagRunner, emu: EmulatorServer, airflow_env: Path, tmp_path: Path
) -> None:
    expected = write_expected(tmp_path / "expected.txt", emu.backend.ids_sorted())
    run = dag_runner.run(
        example("cfimages_reconcile"),
        "cfimages_reconcile",
        run_conf={"expected_uri": str(expected)},
    )
    assert run.state == "success"
    xcoms = dag_runner.xcoms(run)
    summary = xcoms["reconcile"]
    assert summary["in_sync"] is True
    assert summary["matched"] == IMAGES
    assert xcoms["delete_orphans"]["dry_run"] is True
    assert emu.backend.count == IMAGES


def test_reconcile_drift_fails_and_deletes_orphans_when_asked(
    dag_runner: DagRunner, emu: EmulatorServer, airflow_env: Path, tmp_path: Path
) -> None:
    ids = emu.backend.ids_sorted()
    orphans = ids[:25]  # the oldest: well outside the one-day upload guard
    missing = [f"gone-{n}" for n in range(7)]
    expected = write_expected(tmp_path / "expected.txt", ids[25:] + missing)
    run = dag_runner.run(
        example("cfimages_reconcile"),
        "cfimages_reconcile",
        run_conf={"expected_uri": str(expected), "delete_orphans": True, "max_deletes": 100},
    )
    # fail_on_drift: the run fails, so Airflow's alerting fires, after the report is written.
    assert run.state == "failed"
    xcoms = dag_runner.xcoms(run)
    summary = xcoms["reconcile"]
    assert (summary["unexpected_count"], summary["missing_count"]) == (25, 7)
    rows = read_jsonl(Path(summary["report_path"].removeprefix("file://")))
    assert sorted(r["key"] for r in rows if r["kind"] == "unexpected") == sorted(orphans)
    assert sorted(r["key"] for r in rows if r["kind"] == "missing") == sorted(missing)
    deleted = xcoms["delete_orphans"]
    assert deleted["dry_run"] is False
    assert deleted["deleted"] == 25
    assert emu.backend.count == IMAGES - 25
    assert not set(orphans) & set(emu.backend.ids_sorted())


def test_reconcile_takes_the_whole_manifest_from_the_asset_event() -> None:
    # The manifest, not only its path: the reconcile checks the file's count and sha256.
    from tests.compat import DagBag

    dag = DagBag(dag_folder=str(example("cfimages_reconcile"))).get_dag("cfimages_reconcile")
    live_inventory = dag.get_task("live_inventory").python_callable
    manifest = {"path": "file:///x/new.jsonl.gz", "count": 3, "sha256": "ab" * 32}
    events = {
        "inventory": [SimpleNamespace(extra={"path": "old"}), SimpleNamespace(extra=manifest)]
    }

    assert live_inventory(params={}, triggering_asset_events=events) == manifest
    assert live_inventory(params={"export_path": "/p.jsonl"}, triggering_asset_events={}) == (
        "/p.jsonl"
    )


def test_wait_for_uploads_passes_new_images_downstream(
    dag_runner: DagRunner, emu: EmulatorServer, airflow_env: Path
) -> None:
    # The sensor waits for uploads since the run was due (run_after): a scheduled run
    # of yesterday's date, run now, finds today's upload.
    due = pendulum.now("UTC").start_of("day").subtract(days=1)
    image = emu.backend.upload_image(file=b"x", filename="fresh.jpg")
    run = dag_runner.run(
        example("cfimages_wait_for_uploads"),
        "cfimages_wait_for_uploads",
        logical_date=due,
        run_after=due,
    )
    assert run.state == "success"
    xcoms = dag_runner.xcoms(run)
    assert xcoms["wait_for_uploads"][0]["id"] == image["id"]
    assert xcoms["process_uploads"] >= 1


def test_airflow_dags_test_cli_with_env_connection_only(
    emu: EmulatorServer, airflow_env: Path, tmp_path: Path
) -> None:
    home = tmp_path / "airflow_home"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "PYTEST", "COV_"))
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(EXAMPLES),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT=emu.connection_json(),
        AIRFLOW_VAR_CFIMAGES_EXPORT_BASE=str(airflow_env),
    )
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    done = subprocess.run(
        [*airflow, "dags", "test", "cfimages_export_daily", "2025-01-02"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    export = airflow_env / "daily" / "2025-01-02.jsonl.gz"
    assert len(read_jsonl(export)) == IMAGES
    assert emu.api_token not in done.stdout + done.stderr

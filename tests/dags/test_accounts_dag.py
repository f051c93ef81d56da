"""The multi-account example DAG (``cfimages_accounts``) in real Airflow (``dag.test()``).

Three emulated accounts, each with its own inventory and token, held by two Cloudflare
users; the system of record is a table in the session's real PostgreSQL server. Every
account is exported by its own mapped task, in its user's pool, into its own file, and
reconciled against its own rows, with exact counts.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.reconcile.sql import db_api_hook
from tests.conftest import DagRunner
from tests.pg_server import PostgresServer

EXAMPLE = Path(__file__).resolve().parents[2] / "dags_examples" / "cfimages_accounts.py"
IMAGES = 1500
DATABASE = "cfimages_accounts_dag"
#: account name -> (Cloudflare user, ids the database lacks, ids only the database has)
ACCOUNTS = {"brand-a": ("ops", 7, 3), "brand-b": ("ops", 0, 0), "emea": ("emea", 12, 5)}


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorServer]:
    with EmulatorServer(images=IMAGES, seed=21, accounts=len(ACCOUNTS)) as server:
        yield server


def fill_system_of_record(pg: PostgresServer, rows: list[tuple[str, str]]) -> None:
    hook = db_api_hook("cfimages_system_of_record")
    connection = hook.get_conn()
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE cloudflare_images (account text, image_id text)")
            cursor.execute(
                "INSERT INTO cloudflare_images SELECT * FROM unnest(%s::text[], %s::text[])",
                [[row[0] for row in rows], [row[1] for row in rows]],
            )
        connection.commit()
    finally:
        connection.close()


def test_every_account_is_exported_and_reconciled_by_its_own_mapped_task(
    emu: EmulatorServer,
    postgres_server: PostgresServer,
    dag_runner: DagRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    postgres_server.create_database(DATABASE)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CFIMAGES_SYSTEM_OF_RECORD", postgres_server.connection_json(DATABASE)
    )
    rng = random.Random(4)
    variable, rows, expected_counts, conn_ids = [], [], {}, {}
    for (name, (user, dropped, fakes)), account in zip(ACCOUNTS.items(), emu.accounts, strict=True):
        conn_id = f"cloudflare_images_{name.replace('-', '_')}"
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}", emu.connection_json(account_id=account.account_id)
        )
        ids = account.backend.ids_sorted()
        lacking = set(rng.sample(ids, dropped))
        rows += [(name, image_id) for image_id in ids if image_id not in lacking]
        rows += [(name, f"{name}-only-in-the-database-{n}") for n in range(fakes)]
        variable.append({"name": name, "conn_id": conn_id, "user": user})
        expected_counts[name] = {
            "expected": IMAGES - dropped + fakes,
            "actual": IMAGES,
            "missing_count": fakes,
            "unexpected_count": dropped,
            "drifted_count": 0,
        }
        conn_ids[name] = conn_id
    fill_system_of_record(postgres_server, rows)
    base = tmp_path / "exports"
    monkeypatch.setenv("AIRFLOW_VAR_CFIMAGES_ACCOUNTS", json.dumps(variable))
    monkeypatch.setenv("AIRFLOW_VAR_CFIMAGES_EXPORT_BASE", str(base))
    emu.reset_requests()

    dag_run = dag_runner.run(EXAMPLE, "cfimages_accounts")

    assert dag_run.state == "success"
    xcoms = dag_runner.xcoms(dag_run)
    summaries = {**xcoms["user_ops.summarize"], **xcoms["user_emea.summarize"]}
    assert set(summaries) == set(ACCOUNTS)
    for name, counts in expected_counts.items():
        summary = dict(summaries[name])
        report = Path(summary.pop("report_path"))
        assert summary == counts, name
        kinds = [json.loads(line)["kind"] for line in report.read_text().splitlines()]
        assert sorted(kinds) == sorted(
            ["missing"] * counts["missing_count"] + ["unexpected"] * counts["unexpected_count"]
        )
    # One export file per account, each holding exactly that account's images.
    exports = sorted(base.glob("*/*.jsonl.gz"))
    assert [path.name for path in exports] == [f"{name}.jsonl.gz" for name in sorted(ACCOUNTS)]
    account_of = dict(zip(ACCOUNTS, emu.accounts, strict=True))
    for path in exports:
        account = account_of[path.name.removesuffix(".jsonl.gz")]
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            exported = {json.loads(line)["id"] for line in lines}
        assert exported == set(account.backend.ids_sorted())
    # Each account was listed with its own credentials, once, a 1000-image page at a time.
    for account in emu.accounts:
        listed = [r for r in emu.requests if r.path.endswith(f"{account.account_id}/images/v2")]
        assert len(listed) == -(-IMAGES // 1000)
        assert all(r.status == 200 for r in listed)

    with create_session() as session:
        tis: list[Any] = (
            session.query(TaskInstance)
            .filter_by(dag_id="cfimages_accounts", run_id=dag_run.run_id)
            .filter(TaskInstance.map_index >= 0)
            .all()
        )
    by_task: dict[str, dict[str, str]] = {}
    for ti in tis:
        by_task.setdefault(ti.task_id, {})[ti.rendered_map_index] = ti.pool
    ops = {conn_ids["brand-a"]: "cloudflare_user_ops", conn_ids["brand-b"]: "cloudflare_user_ops"}
    assert by_task["user_ops.export"] == ops
    assert by_task["user_emea.export"] == {conn_ids["emea"]: "cloudflare_user_emea"}
    assert set(by_task["user_ops.reconcile"]) == set(ops)
    assert set(by_task["user_emea.reconcile"]) == {conn_ids["emea"]}

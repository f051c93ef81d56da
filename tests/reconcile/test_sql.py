"""The reconcile operator's SQL expected side on SQLite (apache-airflow-providers-sqlite),
against the 25,000-image emulator over real HTTP; and its argument checks.

The same against a real PostgreSQL server is in ``test_sql_postgres.py``.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError, CloudflareImagesError
from airflow_provider_cfimages.operators.images import CloudflareImagesReconcileOperator
from airflow_provider_cfimages.reconcile.sql import ExpectedQuery, streaming_cursor
from tests.reconcile.conftest import served
from tests.reconcile.test_reconcile_operator import (
    TOTAL,
    assert_scenario_counts,
    make_scenario,
    read_report,
    reconcile,
)

CONN_ID = "system_of_record"


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty SQLite database file, as the Airflow connection ``system_of_record``."""
    path = tmp_path / "system-of-record.db"
    sqlite3.connect(path).close()
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(path)})
    )
    return path


def fill(path: Path, rows: list[tuple[Any, ...]], columns: str = "image_id TEXT") -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE images ({columns})")
        marks = ",".join("?" * len(rows[0])) if rows else "?"
        db.executemany(f"INSERT INTO images VALUES ({marks})", rows)


def test_reconcile_against_a_sqlite_table_gives_exact_counts(
    live: EmulatorServer, sqlite_db: Path, tmp_path: Path
) -> None:
    scenario = make_scenario(live)
    fill(sqlite_db, [(key,) for key in scenario.expected])

    result = reconcile(
        expected_sql="SELECT image_id FROM images",
        expected_conn_id=CONN_ID,
        report_path=str(tmp_path / "report.jsonl"),
    )

    assert_scenario_counts(result, scenario)
    rows = read_report(tmp_path / "report.jsonl")
    assert {row["id"] for row in rows if row["kind"] == "unexpected"} == scenario.dropped
    assert {row["key"] for row in rows if row["kind"] == "missing"} == scenario.fakes


def test_key_and_meta_columns_by_name_with_bound_parameters(
    live: EmulatorServer, sqlite_db: Path
) -> None:
    images = live.backend.images_sorted()
    rows = []
    for number, image in enumerate(images):
        meta = {"sku": number} if number % 1000 == 0 else image.get("meta")
        # Two tenants share the table; only the "shop" rows are this account's.
        rows.append(("shop", number, image["id"], json.dumps(meta) if number % 3 else None))
        rows.append(("other", number, f"other-{number}", None))
    fill(sqlite_db, rows, "tenant TEXT, position INTEGER, image_id TEXT, meta TEXT")
    drifted = {image["id"] for n, image in enumerate(images) if n % 1000 == 0 and n % 3}

    result = reconcile(
        expected_sql="SELECT position, meta, Image_ID FROM images WHERE tenant = :tenant",
        parameters={"tenant": "shop"},
        expected_conn_id=CONN_ID,
        expected_field="image_id",  # matched case-insensitively, as databases fold names
        expected_meta="META",
        sample_size=100,
    )

    assert result["expected"] == result["matched"] == TOTAL
    assert result["missing_count"] == result["unexpected_count"] == 0
    assert result["drifted_count"] == len(drifted) == 16
    assert set(result["drifted"]) == drifted


def test_a_meta_mapping_applies_to_sql_keys(live: EmulatorServer, sqlite_db: Path) -> None:
    image = next(image for image in live.backend.images_sorted() if image.get("meta"))
    fill(sqlite_db, [(image_id,) for image_id in live.backend.ids_sorted()])

    result = reconcile(
        expected_sql="SELECT image_id FROM images",
        expected_conn_id=CONN_ID,
        expected_meta={image["id"]: {"sku": "what the database says"}},
    )

    assert (result["drifted_count"], result["drifted"]) == (1, [image["id"]])


def test_a_query_with_no_rows_fails_before_listing(live: EmulatorServer, sqlite_db: Path) -> None:
    fill(sqlite_db, [])

    with pytest.raises(CloudflareImagesConfigError, match="expected_sql returned no rows"):
        reconcile(expected_sql="SELECT image_id FROM images", expected_conn_id=CONN_ID)

    assert served(live) == []
    result = reconcile(
        expected_sql="SELECT image_id FROM images",
        expected_conn_id=CONN_ID,
        allow_empty_expected=True,
    )
    assert result["unexpected_count"] == TOTAL


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"expected_sql": "SELEC image_id FROM images"},
            CloudflareImagesError,
            r"expected_sql on connection expected_conn_id='system_of_record' failed: "
            r"OperationalError: near \"SELEC\"",
        ),
        (
            {"expected_sql": "SELECT image_id FROM nowhere"},
            CloudflareImagesError,
            "failed: OperationalError: no such table: nowhere",
        ),
        (
            {"expected_sql": "SELECT image_id FROM images", "expected_field": "id"},
            CloudflareImagesConfigError,
            r"expected_field='id' names no column of the expected_sql result; its columns "
            r"are \['image_id'\]",
        ),
        (
            {"expected_sql": "SELECT image_id FROM images", "expected_meta": "meta"},
            CloudflareImagesConfigError,
            "expected_meta='meta' names no column",
        ),
        (
            {"expected_sql": "SELECT image_id FROM images", "expected_conn_id": "nope"},
            CloudflareImagesConfigError,
            "expected_conn_id='nope': no Airflow connection has this id",
        ),
        (
            {
                "expected_sql": "SELECT image_id FROM images",
                "expected_conn_id": "cloudflare_images_default",
            },
            CloudflareImagesConfigError,
            "expected_conn_id='cloudflare_images_default' is a 'cloudflare_images' connection, "
            "whose hook CloudflareImagesHook is not a SQL",
        ),
        (
            {"expected_sql": "SELECT 42 FROM images"},
            ValueError,
            "expected_sql record 1: the key must be text",
        ),
    ],
)
def test_errors_fail_before_anything_is_listed_naming_the_parameter(
    live: EmulatorServer,
    sqlite_db: Path,
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    fill(sqlite_db, [("a",)])
    kwargs.setdefault("expected_conn_id", CONN_ID)

    with pytest.raises(error, match=message):
        reconcile(**kwargs)

    assert served(live) == []


def test_without_common_sql_the_error_names_the_extra(
    live: EmulatorServer, sqlite_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "airflow.providers.common.sql.hooks.sql", None)

    with pytest.raises(CloudflareImagesConfigError, match=r"airflow-provider-cfimages\[sql\]"):
        reconcile(expected_sql="SELECT image_id FROM images", expected_conn_id=CONN_ID)

    assert served(live) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Give exactly one expected side.*got neither"),
        (
            {"expected": ["a"], "expected_sql": "SELECT 1", "expected_conn_id": CONN_ID},
            "Give exactly one expected side.*got both",
        ),
        ({"expected_sql": "SELECT 1"}, "expected_sql needs expected_conn_id"),
        (
            {"expected": ["a"], "expected_conn_id": CONN_ID},
            "expected_conn_id='system_of_record' is",
        ),
        ({"expected_sql": ["SELECT 1"], "expected_conn_id": CONN_ID}, "expected_sql must be the"),
        (
            {"expected_sql": "SELECT 1", "expected_conn_id": CONN_ID, "parameters": "tenant"},
            "parameters must be the bind parameters of expected_sql",
        ),
    ],
)
def test_bad_sql_arguments_are_refused_when_the_dag_is_parsed(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(CloudflareImagesConfigError, match=message):
        CloudflareImagesReconcileOperator(task_id="reconcile", **kwargs)


def test_the_query_is_rendered_from_a_sql_file_with_templated_parameters(
    tmp_path: Path,
) -> None:
    from airflow.sdk import DAG

    (tmp_path / "expected.sql").write_text(
        "SELECT image_id FROM images WHERE tenant = :tenant -- {{ params.note }}"
    )
    with DAG("sql_template", schedule=None, template_searchpath=[str(tmp_path)]):
        operator = CloudflareImagesReconcileOperator(
            task_id="reconcile",
            expected_sql="expected.sql",
            expected_conn_id="{{ params.conn }}",
            parameters={"tenant": "{{ params.tenant }}"},
        )
    operator.resolve_template_files()
    operator.render_template_fields(
        {"params": {"note": "nightly", "conn": CONN_ID, "tenant": "shop"}}  # type: ignore[arg-type]
    )

    assert operator.expected_sql == "SELECT image_id FROM images WHERE tenant = :tenant -- nightly"
    assert operator.expected_conn_id == CONN_ID
    assert operator.parameters == {"tenant": "shop"}


def test_sqlite_streams_from_a_plain_cursor_a_batch_at_a_time(sqlite_db: Path) -> None:
    fill(sqlite_db, [(f"id-{n:05d}",) for n in range(2_500)])
    query = ExpectedQuery(conn_id=CONN_ID, sql="SELECT image_id FROM images", fetch_size=1000)
    connection = query.hook.get_conn()
    try:
        assert type(streaming_cursor(connection)) is sqlite3.Cursor
    finally:
        connection.close()

    values = query.values()
    assert [next(values) for _ in range(3)] == ["id-00000", "id-00001", "id-00002"]
    assert sum(1 for _ in values) == 2_497
    assert query.lineage_inputs() == []  # SQLite's hook does not describe itself to OpenLineage

"""The reconcile operator's SQL expected side on a real PostgreSQL server (Debian's 15).

Tens of thousands of rows are streamed from it through a server-side (named) cursor and
reconciled against the 25,000-image emulator over real HTTP, with exact counts. The server
is the session's throwaway one (``postgres_server`` in ``tests/conftest_postgres.py``).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.exceptions import CloudflareImagesError
from airflow_provider_cfimages.operators.images import CloudflareImagesReconcileOperator
from airflow_provider_cfimages.reconcile.engine import canonical_meta
from airflow_provider_cfimages.reconcile.sql import DEFAULT_FETCH_SIZE, ExpectedQuery, db_api_hook
from tests.pg_server import PostgresServer
from tests.reconcile.conftest import served
from tests.reconcile.test_reconcile_operator import (
    TOTAL,
    assert_scenario_counts,
    make_scenario,
    reconcile,
)

CONN_ID = "system_of_record_pg"
DATABASE = "cfimages_sql"


@pytest.fixture(scope="module")
def database(postgres_server: PostgresServer) -> PostgresServer:
    """A fresh database on the session's server, logging every statement (to see the
    cursor's FETCHes)."""
    postgres_server.create_database(DATABASE)
    postgres_server.psql(f"ALTER DATABASE {DATABASE} SET log_statement = 'all'")
    return postgres_server


@pytest.fixture
def pg(database: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> PostgresServer:
    """The database as the Airflow connection ``system_of_record_pg``, its tables dropped."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", database.connection_json(DATABASE))
    database.psql("DROP TABLE IF EXISTS images, uuid_images", DATABASE)
    return database


def load(table: str, columns: str, rows: list[tuple[Any, ...]], casts: tuple[str, ...]) -> None:
    """Create a table and fill it in one statement (arrays unnested server side)."""
    hook = db_api_hook(CONN_ID)
    connection = hook.get_conn()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE TABLE {table} ({columns})")
            arrays = [list(column) for column in zip(*rows, strict=True)]
            unnest = ", ".join(f"%s::text[]::{cast}[]" for cast in casts)
            cursor.execute(f"INSERT INTO {table} SELECT * FROM unnest({unnest})", arrays)
        connection.commit()
    finally:
        connection.close()


def statements_of(server: PostgresServer, marker: str) -> list[str]:
    """The logged statements of the session that ran the query tagged ``marker``."""
    log = server.log_path.read_text(errors="replace")
    # "statement: ..." for simple queries, "execute <name>: ..." for the extended protocol.
    logged = r"LOG:  (?:statement|execute [^:]*): "
    pids = set(re.findall(rf"\[(\d+)\] {logged}[^\n]*{marker}", log))
    return re.findall(rf"\[(?:{'|'.join(pids) or 'none'})\] {logged}([^\n]*)", log)


def test_tens_of_thousands_of_rows_stream_through_a_named_cursor_with_exact_counts(
    live: EmulatorServer, pg: PostgresServer
) -> None:
    scenario = make_scenario(live)
    load("images", "image_id text", [(key,) for key in scenario.expected], ("text",))

    result = reconcile(
        expected_sql="SELECT image_id FROM images /* stream-test */",
        expected_conn_id=CONN_ID,
    )

    assert_scenario_counts(result, scenario)
    statements = statements_of(pg, "stream-test")
    assert any(s.startswith('DECLARE "cfimages_expected"') for s in statements), statements
    fetches = [s for s in statements if s.startswith("FETCH FORWARD")]
    rows = len(scenario.expected)
    # Full batches, the last part-batch, then the empty fetch that ends the stream.
    assert len(fetches) == rows // DEFAULT_FETCH_SIZE + 2
    assert set(fetches) == {f'FETCH FORWARD {DEFAULT_FETCH_SIZE} FROM "cfimages_expected"'}


def test_drift_against_a_jsonb_column_and_uuid_keys(
    live: EmulatorServer, pg: PostgresServer
) -> None:
    images = live.backend.images_sorted()
    uuid_shaped = [image for image in images if re.fullmatch(r"[0-9a-f-]{36}", image["id"])]
    rows = []
    for number, image in enumerate(uuid_shaped):
        meta = {"sku": number} if number % 1000 == 0 else image.get("meta", {})
        rows.append((image["id"], json.dumps(meta)))
    load("uuid_images", "image_id uuid, meta jsonb", rows, ("uuid", "jsonb"))
    drifted = {image["id"] for n, image in enumerate(uuid_shaped) if n % 1000 == 0}

    result = reconcile(
        expected_sql="SELECT meta, image_id FROM uuid_images WHERE image_id IS NOT NULL",
        expected_conn_id=CONN_ID,
        expected_field="image_id",
        expected_meta="meta",
        sample_size=100,
    )

    assert str(uuid.UUID(uuid_shaped[0]["id"])) == uuid_shaped[0]["id"]
    assert result["expected"] == result["matched"] == len(uuid_shaped) > 20_000
    assert result["unexpected_count"] == TOTAL - len(uuid_shaped)
    assert result["missing_count"] == 0
    assert result["drifted_count"] == len(drifted) == len(uuid_shaped) // 1000 + 1
    assert set(result["drifted"]) == drifted


def test_a_missing_table_fails_before_listing_naming_expected_sql(
    live: EmulatorServer, pg: PostgresServer
) -> None:
    with pytest.raises(
        CloudflareImagesError,
        match=r"expected_sql on connection expected_conn_id='system_of_record_pg' failed: "
        r'UndefinedTable: relation "images" does not exist',
    ):
        reconcile(expected_sql="SELECT image_id FROM images", expected_conn_id=CONN_ID)

    assert served(live) == []


def test_openlineage_names_the_table_the_query_reads(pg: PostgresServer) -> None:
    operator = CloudflareImagesReconcileOperator(
        task_id="reconcile",
        expected_sql="SELECT i.image_id FROM public.images AS i WHERE i.image_id <> ''",
        expected_conn_id=CONN_ID,
    )

    inputs = operator.expected_lineage_inputs()

    assert [(dataset.namespace, dataset.name) for dataset in inputs] == [
        (f"postgres://{pg.host}:{pg.port}", f"{DATABASE}.public.images")
    ]
    # The operator's lineage event names the table among its inputs.
    facets = operator.get_openlineage_facets_on_complete(None)
    assert [(dataset.namespace, dataset.name) for dataset in facets.inputs] == [
        (f"postgres://{pg.host}:{pg.port}", f"{DATABASE}.public.images")
    ]
    assert (
        CloudflareImagesReconcileOperator(task_id="r", expected=["a"]).expected_lineage_inputs()
        == []
    )


def test_psycopg2_streams_through_its_named_cursor_too(
    pg: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgresHook connects with psycopg (3) when it serves SQLAlchemy 2, else psycopg2.
    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 comes with the postgres provider")
    rows = [(f"id-{n:05d}", json.dumps({"n": n, "a": [n]})) for n in range(25_000)]
    load("images", "image_id text, meta jsonb", rows, ("text", "jsonb"))
    query = ExpectedQuery(
        conn_id=CONN_ID,
        sql="SELECT image_id, meta FROM images ORDER BY image_id /* psycopg2-test */",
        meta_column="meta",
    )
    monkeypatch.setattr(
        type(query.hook),
        "get_conn",
        lambda _hook: psycopg2.connect(
            host=pg.host, port=pg.port, user="postgres", dbname=DATABASE
        ),
    )

    records = list(query.records())

    assert len(records) == 25_000
    assert records[7] == ("id-00007", canonical_meta({"a": [7], "n": 7}))

    fetches = [s for s in statements_of(pg, "psycopg2-test") if s.startswith("FETCH FORWARD")]
    assert fetches == [f'FETCH FORWARD {DEFAULT_FETCH_SIZE} FROM "cfimages_expected"'] * 4

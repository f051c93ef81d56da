"""OpenLineage and asset events from a real DAG run (``airflow dags test``), local and on S3.

The OpenLineage provider's file transport writes every event the run emits; the test reads
them back and checks the datasets each operator reports, that none is the export's
temporary object, and that names carry no Airflow connection id. The asset events are read
from the metadata DB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook
from airflow_provider_cfimages.operators.images import (
    CloudflareImagesDeleteOperator,
    CloudflareImagesListOperator,
    CloudflareImagesReconcileOperator,
)
from tests.operators.test_list_operator import (  # noqa: F401 (fixtures)
    S3_BUCKET,
    S3_CONN_ID,
    moto_endpoint,
    s3,
)

pytest.importorskip(
    "airflow.providers.openlineage", reason="needs apache-airflow-providers-openlineage"
)

IMAGES = 1200
DAG_ID = "cfimages_lineage"
LINEAGE_DAG = """
import pendulum
from airflow.sdk import DAG, Asset

from airflow_provider_cfimages.operators.images import (
    CloudflareImagesDeleteOperator,
    CloudflareImagesListOperator,
    CloudflareImagesReconcileOperator,
)

with DAG("cfimages_lineage", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    export = CloudflareImagesListOperator(
        task_id="export",
        output_path="OUTPUT",
        outlets=[Asset(name="cfimages_lineage_inventory", uri="cfimages://lineage/inventory")],
    )
    reconcile = CloudflareImagesReconcileOperator(
        task_id="reconcile",
        expected="EXPECTED",
        actual_from=export.output,
        report_path="REPORT",
        outlets=[Asset(name="cfimages_lineage_report", uri="cfimages://lineage/report")],
    )
    CloudflareImagesDeleteOperator(
        task_id="delete", image_ids=reconcile.output, max_deletes=10, dry_run=True
    )
"""


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Any:
    with EmulatorServer(images=IMAGES, seed=5) as server:
        monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", server.connection_json())
        yield server


def run_dag(dag_runner: Any, tmp_path: Path, output: str, report: str, expected: Path) -> Any:
    """Run the lineage DAG with ``airflow dags test``; return its OpenLineage events."""
    source = (
        LINEAGE_DAG.replace("OUTPUT", output)
        .replace("REPORT", report)
        .replace("EXPECTED", str(expected))
    )
    dag_runner.load(source, DAG_ID)
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "cfimages-tests",
    }
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", DAG_ID],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]


def datasets(events: list[dict[str, Any]], task_id: str, side: str) -> list[tuple[str, str]]:
    """The (namespace, name) pairs of a task's COMPLETE event on one side."""
    completes = [
        event
        for event in events
        if event["eventType"] == "COMPLETE" and event["job"]["name"] == f"{DAG_ID}.{task_id}"
    ]
    assert len(completes) == 1, [e["job"]["name"] for e in events]
    return [(item["namespace"], item["name"]) for item in completes[0][side]]


def latest_asset_extras() -> dict[str, Any]:
    """The extra of the newest asset event of each of the DAG's assets, by asset name."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetModel.name, AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetEvent.source_dag_id == DAG_ID)
            .order_by(AssetEvent.id)
            .all()
        )
    return {name: extra for name, extra in rows}


def write_expected(emu: EmulatorServer, path: Path) -> Path:
    # Two images the account lacks and one it has that is not expected.
    ids = emu.backend.ids_sorted()
    path.write_text("".join(f"{i}\n" for i in [*ids[1:], "gone-1", "gone-2"]))
    return path


def test_a_local_export_reports_the_account_in_and_the_file_out(
    emu: EmulatorServer, dag_runner: Any, tmp_path: Path
) -> None:
    output = tmp_path / "cf" / "inventory.jsonl.gz"
    report = tmp_path / "cf" / "report.jsonl"
    expected = write_expected(emu, tmp_path / "expected.txt")
    events = run_dag(dag_runner, tmp_path, str(output), str(report), expected)
    account = (f"cloudflare-images://{emu.account_id}", "images")

    assert datasets(events, "export", "inputs") == [account]
    assert datasets(events, "export", "outputs") == [("file", str(output))]
    assert datasets(events, "reconcile", "inputs") == [
        ("file", str(expected)),
        ("file", str(output)),
    ]
    assert datasets(events, "reconcile", "outputs") == [("file", str(report))]
    assert datasets(events, "delete", "inputs") == [("file", str(report)), account]
    assert ".tmp-" not in json.dumps(events)

    extras = latest_asset_extras()
    inventory = extras["cfimages_lineage_inventory"]
    assert (inventory["path"], inventory["count"]) == (str(output), IMAGES)
    assert inventory["sha256"]
    assert inventory["account_id"] == emu.account_id
    summary = extras["cfimages_lineage_report"]
    assert (summary["missing_count"], summary["unexpected_count"]) == (2, 1)
    assert summary["report_path"] == str(report)


def test_an_s3_export_is_named_by_bucket_and_key_without_the_connection_id(
    emu: EmulatorServer,
    dag_runner: Any,
    tmp_path: Path,
    s3: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    output = f"s3://{S3_CONN_ID}@{S3_BUCKET}/cf/inventory.jsonl.gz"
    report = f"s3://{S3_CONN_ID}@{S3_BUCKET}/cf/report.jsonl"
    expected = write_expected(emu, tmp_path / "expected.txt")
    events = run_dag(dag_runner, tmp_path, output, report, expected)

    bucket = f"s3://{S3_BUCKET}"
    assert datasets(events, "export", "outputs") == [(bucket, "cf/inventory.jsonl.gz")]
    assert datasets(events, "reconcile", "inputs")[1] == (bucket, "cf/inventory.jsonl.gz")
    assert datasets(events, "reconcile", "outputs") == [(bucket, "cf/report.jsonl")]
    assert ".tmp-" not in json.dumps(events)
    # The connection id is in the operator's arguments (the task facet), never in a dataset.
    named = json.dumps([[e.get("inputs"), e.get("outputs")] for e in events])
    assert S3_BUCKET in named
    assert S3_CONN_ID not in named
    keys = sorted(i["Key"] for i in s3.list_objects_v2(Bucket=S3_BUCKET)["Contents"])
    assert keys == ["cf/inventory.jsonl.gz", "cf/report.jsonl"]


def test_the_writer_records_no_hook_lineage_for_the_temp_object(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector

    collector = get_hook_lineage_collector()
    before = len(collector.collected_assets.outputs)
    CloudflareImagesListOperator(
        task_id="export", output_path=f"file://{tmp_path}/inventory.jsonl"
    ).execute(context={})
    recorded = [str(a.asset.uri) for a in collector.collected_assets.outputs[before:]]
    assert not [uri for uri in recorded if ".tmp-" in uri]


def test_lineage_methods_work_before_execute_and_without_a_run() -> None:
    # The listener may ask after a failed try: nothing recorded means no datasets.
    lineage = CloudflareImagesListOperator(task_id="x").get_openlineage_facets_on_complete(None)
    assert (lineage.inputs, lineage.outputs) == ([], [])
    reconcile = CloudflareImagesReconcileOperator(task_id="r", expected=["a"])
    assert reconcile.get_openlineage_facets_on_complete(None).inputs == []
    delete = CloudflareImagesDeleteOperator(task_id="d", image_ids=["a"], max_deletes=1)
    account = CloudflareImagesHook().account_id
    assert [
        (d.namespace, d.name) for d in delete.get_openlineage_facets_on_complete(None).inputs
    ] == [(f"cloudflare-images://{account}", "images")]

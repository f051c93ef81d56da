"""Real DAG runs (``dag.test()``): export -> reconcile -> delete, chained through XCom."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum

from airflow_provider_cfimages.emulator import EmulatorServer
from tests.reconcile.conftest import served

CHAIN_DAG = '''
"""Daily export, reconcile against a key file, and delete the orphans older than a cutoff.

Needs the ``cloudflare_images_default`` connection.
"""

import pendulum
from airflow.sdk import DAG

from airflow_provider_cfimages.operators.images import CloudflareImagesListOperator
from airflow_provider_cfimages.operators.images import (
    CloudflareImagesDeleteOperator,
    CloudflareImagesReconcileOperator,
)

with DAG(
    "cfimages_reconcile_chain",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
):
    export = CloudflareImagesListOperator(
        task_id="export", output_path="OUT_DIR/inventory-{{ ds }}.jsonl.gz", per_page=10000
    )
    reconcile = CloudflareImagesReconcileOperator(
        task_id="reconcile",
        expected="OUT_DIR/expected.txt",
        actual_from=export.output,
        report_path="OUT_DIR/reports/{{ ds }}.jsonl",
    )
    CloudflareImagesDeleteOperator(
        task_id="delete", image_ids=reconcile.output, max_deletes=20, older_than="CUTOFF"
    )
'''

ALERTING_DAG = '''
"""Reconcile against keys from an upstream task; alert on drift, still dry-run the delete.

Needs the ``cloudflare_images_default`` connection.
"""

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_cfimages.operators.images import (
    CloudflareImagesDeleteOperator,
    CloudflareImagesReconcileOperator,
)

with DAG(
    "cfimages_reconcile_alerting",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
):

    @task
    def expected_ids() -> list[str]:
        # Stands in for a SQL query's result.
        with open("OUT_DIR/expected.txt") as lines:
            return [line.rstrip("\\n") for line in lines]

    def alert(context):
        # What an alert can tell: the summary pushed before failing (every Airflow 3), and
        # the exception (Airflow 3.2+ puts it in the callback context).
        summary = context["ti"].xcom_pull(task_ids="reconcile")
        with open("OUT_DIR/alert.txt", "w") as out:
            out.write(f"{summary} {context.get('exception', '')}")

    reconcile = CloudflareImagesReconcileOperator(
        task_id="reconcile",
        expected=expected_ids(),
        report_path="OUT_DIR/report.jsonl",
        fail_on_drift=True,
        on_failure_callback=alert,
    )
    CloudflareImagesDeleteOperator(
        task_id="delete",
        image_ids=reconcile.output,
        max_deletes=20,
        dry_run=True,
        trigger_rule="all_done",
    )
'''


def prepare(emu: EmulatorServer, tmp_path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Write expected.txt: every id but 12 orphans, plus 2 ids Cloudflare lacks."""
    images = emu.backend.images_sorted()
    orphans = [image for image in images if "/" not in image["id"]][1000:24000:2000]
    orphan_ids = {image["id"] for image in orphans}
    expected = [image["id"] for image in images if image["id"] not in orphan_ids]
    expected += ["gone-1", "gone-2"]
    (tmp_path / "expected.txt").write_text("".join(f"{key}\n" for key in expected))
    return orphans, expected


def test_export_reconcile_delete_chained_in_one_dag(
    live: EmulatorServer, dag_runner: Any, tmp_path: Path
) -> None:
    live.page_cap = 10_000  # the DAG asks for pages of 10000, as the API accepts
    orphans, _ = prepare(live, tmp_path)
    assert len(orphans) == 12
    cutoff = orphans[8]["uploaded"]  # orphans are oldest first: the last 4 are protected
    source = CHAIN_DAG.replace("OUT_DIR", str(tmp_path)).replace("CUTOFF", cutoff)

    dag_run = dag_runner.run(
        source, "cfimages_reconcile_chain", logical_date=pendulum.datetime(2024, 6, 1, tz="UTC")
    )

    assert dag_run.state == "success"
    xcoms = dag_runner.xcoms(dag_run)
    summary = xcoms["reconcile"]
    assert summary["unexpected_count"] == 12
    assert summary["missing"] == ["gone-1", "gone-2"]
    assert summary["matched"] == 25_000 - 12
    assert summary["report_path"] == str(tmp_path / "reports" / "2024-06-01.jsonl")
    result = xcoms["delete"]
    protected = {image["id"] for image in orphans if image["uploaded"] >= cutoff}
    assert result["protected"] == len(protected) >= 4
    assert set(result["protected_ids"]) == protected
    assert result["deleted"] == 12 - len(protected)
    assert all((image["id"] in live.backend) == (image["id"] in protected) for image in orphans)
    # The live side came from the export: one listing for the whole DAG.
    assert len([r for r in served(live) if r.path.endswith("/images/v2")]) == 3
    # The delete's details and delete calls went to the batch host, outside the quota.
    image_calls = [r for r in served(live) if r.method == "DELETE" or "/images/v1/" in r.path]
    assert {r.path.startswith("/batch/") for r in image_calls if "batch_token" not in r.path} == {
        True
    }


def test_fail_on_drift_alerts_and_a_downstream_dry_run_still_gets_the_summary(
    live: EmulatorServer, dag_runner: Any, tmp_path: Path
) -> None:
    orphans, _ = prepare(live, tmp_path)

    dag_run = dag_runner.run(
        ALERTING_DAG.replace("OUT_DIR", str(tmp_path)), "cfimages_reconcile_alerting"
    )

    # The run's state follows its leaf (the delete); the reconcile task itself failed, so
    # its on_failure_callback (the alert) fired.
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"expected_ids": "success", "reconcile": "failed", "delete": "success"}
    alert = (tmp_path / "alert.txt").read_text()
    assert "'missing_count': 2" in alert
    assert "'unexpected_count': 12" in alert
    assert str(tmp_path / "report.jsonl") in alert
    xcoms = dag_runner.xcoms(dag_run)
    assert xcoms["reconcile"]["unexpected_count"] == 12
    assert xcoms["delete"]["would_delete"] == 12
    assert xcoms["delete"]["deleted"] == 0
    assert all(image["id"] in live.backend for image in orphans)

"""Reconcile the exported inventory against the system of record; optionally delete orphans.

Scheduled on the ``cloudflare_images_inventory`` asset that ``cfimages_export_daily``
updates, so it reads the fresh export instead of listing the account again. Needs the
``cloudflare_images_default`` connection (*Images Edit* if orphans are to be deleted).

- ``expected``: the ids the system of record references, a file or URI (``.txt``, ``.csv``
  with an ``id`` column, ``.jsonl``/``.json`` with an ``id`` field; ``.gz`` accepted), from
  the param ``expected_uri`` or the Variable ``cfimages_expected_uri``. In a real DAG this
  is often an upstream SQL task's XCom instead.
- The live side: the export named by the triggering asset event, else the param
  ``export_path``, else a fresh listing.
- The full report goes to ``<export base>/reports/<run date>.jsonl``; the task fails when
  anything differs (``fail_on_drift``), and the ``watcher`` task makes the whole run fail
  with it, so Airflow's alerting fires.
- Orphans (images Cloudflare holds that nothing references, still billed) are deleted only
  when the param ``delete_orphans`` is true; otherwise the delete task is a dry run that
  logs what it would delete. At most ``max_deletes`` images, and never one uploaded within
  the last day (it may be an upload the system of record has not caught up with).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, Param, task

from airflow_provider_cfimages.operators.images import (
    CloudflareImagesDeleteOperator,
    CloudflareImagesReconcileOperator,
)

DEFAULT_EXPORT_BASE = str(
    Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "cfimages"
)
EXPORT_BASE = "{{ var.value.get('cfimages_export_base', '" + DEFAULT_EXPORT_BASE + "') }}"
INVENTORY = Asset(name="cloudflare_images_inventory", uri="cfimages://inventory/daily")

with DAG(
    dag_id="cfimages_reconcile",
    description="Find orphaned and missing images; optionally delete orphans",
    schedule=[INVENTORY],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "expected_uri": Param(
            None,
            type=["null", "string"],
            description="The expected ids (file or URI); default: Variable cfimages_expected_uri",
        ),
        "export_path": Param(
            None,
            type=["null", "string"],
            description="An export to reconcile when not triggered by the asset",
        ),
        "delete_orphans": Param(False, type="boolean", description="Really delete orphans"),
        "max_deletes": Param(1000, type="integer", minimum=0),
    },
    tags=["cloudflare-images", "example"],
) as dag:

    @task
    def live_inventory(*, params: Any = None, triggering_asset_events: Any = None) -> Any:
        """The export to compare: the asset event's manifest, else the param's path; None
        lists afresh."""
        # The DAG is scheduled on INVENTORY alone, so every triggering event is one of its.
        events = [e for group in (triggering_asset_events or {}).values() for e in group]
        for event in reversed(events):
            if event.extra.get("path"):
                # The whole manifest, not just its path: the reconcile then checks the file's
                # count and sha256 before trusting it.
                return dict(event.extra)
        return params.get("export_path")

    reconcile = CloudflareImagesReconcileOperator(
        task_id="reconcile",
        expected="{{ params.expected_uri or var.value.get('cfimages_expected_uri', '') }}",
        actual_from=live_inventory(),
        # Asset-triggered runs have no logical date; run_after is always set.
        report_path=EXPORT_BASE + "/reports/{{ dag_run.run_after | ds }}.jsonl",
        fail_on_drift=True,
    )

    delete = CloudflareImagesDeleteOperator(
        task_id="delete_orphans",
        image_ids=reconcile.output,
        max_deletes="{{ params.max_deletes }}",
        dry_run="{{ not params.delete_orphans }}",
        older_than="{{ dag_run.run_after - macros.timedelta(days=1) }}",
        # Runs after a drift failure too: that is when there are orphans to remove.
        trigger_rule="all_done",
    )

    @task(trigger_rule="one_failed")
    def watcher() -> None:
        """Fail the run when an upstream task failed (a DAG run's state follows its leaves)."""
        raise RuntimeError("reconcile found drift or a task failed: see the report and logs")

    [reconcile, delete] >> watcher()

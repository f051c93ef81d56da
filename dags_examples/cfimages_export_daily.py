"""Export the whole Cloudflare Images inventory once a day.

Needs the ``cloudflare_images_default`` connection (an API token with *Images Read* and the
``account_id`` extra; see the README). The export goes to
``<export base>/daily/<YYYY-MM-DD>.jsonl.gz``, where the export base is the Airflow Variable
``cfimages_export_base`` (a local directory or any ObjectStoragePath URI, e.g.
``s3://aws_default@my-bucket/cloudflare-images``), by default ``$AIRFLOW_HOME/cfimages``.

The file is keyed by the run's logical date, or for a run without one (in Airflow 3 a run
triggered by hand has none, so ``ds`` is undefined) by the day of ``dag_run.run_after``,
when it was triggered: ``{{ (dag_run.logical_date or dag_run.run_after) | ds }}``. The
write is atomic, so retries, re-runs and a manual run on the same day replace the day's
file rather than duplicate it. XCom holds only the manifest (path, count, sha256, ...), and
the export task's ``cloudflare_images_inventory`` asset event carries the manifest as its
extra, so downstream DAGs (``cfimages_reconcile``) can be scheduled on it and read it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Asset

from airflow_provider_cfimages.operators.images import CloudflareImagesListOperator

DEFAULT_EXPORT_BASE = str(
    Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "cfimages"
)
EXPORT_BASE = "{{ var.value.get('cfimages_export_base', '" + DEFAULT_EXPORT_BASE + "') }}"
INVENTORY = Asset(name="cloudflare_images_inventory", uri="cfimages://inventory/daily")

with DAG(
    dag_id="cfimages_export_daily",
    description="Daily full export of the Cloudflare Images inventory",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["cloudflare-images", "example"],
) as dag:
    CloudflareImagesListOperator(
        task_id="export_inventory",
        sort_order="asc",  # pages of 1000 images: 1,000 requests per million images
        output_path=EXPORT_BASE
        + "/daily/{{ (dag_run.logical_date or dag_run.run_after) | ds }}.jsonl.gz",
        outlets=[INVENTORY],  # the asset event's extra is the manifest
        retries=2,
    )

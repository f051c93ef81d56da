"""Export the images uploaded during each data interval (catchup-safe).

Needs the ``cloudflare_images_default`` connection (see the README). Each run lists the
images with ``data_interval_start <= uploaded < data_interval_end``, newest first, and stops
paging at the start of the interval, so a run costs requests for the images uploaded since
the interval began, not for the whole account. Consecutive intervals neither overlap nor
leave gaps, and each logical date writes (atomically) its own file,
``<export base>/incremental/<ts_nodash>.jsonl``, so backfills and retries are idempotent.

Images can show up in listings after their upload time (a direct creator upload completes
later), so the window is held back by ``settle`` (15 minutes): each run exports
``[start - 15 min, end - 15 min)``, and consecutive runs still neither overlap nor leave gaps.

The export base is the Variable ``cfimages_export_base`` (default ``$AIRFLOW_HOME/cfimages``).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG

from airflow_provider_cfimages.operators.images import CloudflareImagesListOperator

DEFAULT_EXPORT_BASE = str(
    Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "cfimages"
)
EXPORT_BASE = "{{ var.value.get('cfimages_export_base', '" + DEFAULT_EXPORT_BASE + "') }}"

with DAG(
    dag_id="cfimages_export_incremental",
    description="Images uploaded in each data interval, one file per interval",
    schedule="@hourly",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["cloudflare-images", "example"],
) as dag:
    CloudflareImagesListOperator(
        task_id="export_new_images",
        sort_order="desc",
        uploaded_after="{{ data_interval_start }}",
        uploaded_before="{{ data_interval_end }}",
        settle=dt.timedelta(minutes=15),
        output_path=EXPORT_BASE + "/incremental/{{ ts_nodash }}.jsonl",
        retries=3,
    )

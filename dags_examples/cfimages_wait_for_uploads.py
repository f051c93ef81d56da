"""Wait for new uploads, deferrably, then process them.

Needs the ``cloudflare_images_default`` connection (see the README). The sensor waits, in
the triggerer rather than a worker slot, until an image was uploaded since the run was due:
``dag_run.run_after``, which every run has. For a scheduled run that is the run's time
(midnight UTC, the first uploads of the day); for a run triggered by hand (which in Airflow 3
has no logical date, so ``data_interval_start`` is undefined) the moment it was triggered.
Optionally only files matching ``filename`` count (or images from one ``creator``); each
check costs about one request however large the account is. The matching images (id,
filename, uploaded) reach the downstream task through XCom. With ``soft_fail``, a day
without uploads skips the downstream task instead of failing.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_cfimages.sensors.images import CloudflareImagesSensor

with DAG(
    dag_id="cfimages_wait_for_uploads",
    description="Gate a pipeline on new Cloudflare Images uploads",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "filename": Param("*", type="string", description="fnmatch glob on the filename"),
    },
    tags=["cloudflare-images", "example"],
) as dag:
    wait = CloudflareImagesSensor(
        task_id="wait_for_uploads",
        uploaded_after="{{ dag_run.run_after }}",
        filename="{{ params.filename }}",
        min_count=1,
        deferrable=True,
        poke_interval=60,
        timeout=6 * 60 * 60,
        soft_fail=True,
    )

    @task
    def process_uploads(images: list[dict[str, Any]]) -> int:
        """Stand-in for real work: thumbnails, moderation, a catalogue update..."""
        for image in images:
            print(f"new image {image['id']} {image['filename']!r} uploaded {image['uploaded']}")
        return len(images)

    process_uploads(wait.output)

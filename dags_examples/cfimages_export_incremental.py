"""Export the images uploaded during each hour (catchup-safe), on schedule or by hand.

Needs the ``cloudflare_images_default`` connection (see the README). Each run lists the
images with ``window start <= uploaded < window end``, newest first, and stops paging at
the start of the window, so a run costs requests for the images uploaded since the window
began, not for the whole account. Each window is written (atomically) to its own file,
``<export base>/incremental/<start>_<end>.jsonl`` (UTC, ``YYYYmmddTHHMMSS``), so backfills,
retries and re-runs of a window replace its file.

Which window a run exports:

- A scheduled run (or a backfill, or a manual run given a logical date): its data interval.
  The schedule is a ``CronDataIntervalTimetable``: in Airflow 3 a cron string
  (``schedule="@hourly"``) means ``CronTriggerTimetable``, whose data intervals have zero
  length, so every window would be empty. Consecutive intervals neither overlap nor leave
  gaps.
- A run triggered by hand without a logical date (the UI's Trigger button, ``airflow dags
  trigger``), which has no data interval: the params ``uploaded_after`` and
  ``uploaded_before`` when both are given, otherwise the most recent hour that has ended
  before the run was triggered (``dag_run.run_after``), the window the latest scheduled
  run exports, so a manual run re-exports it, into the same file.

Images can show up in listings after their upload time (a direct creator upload completes
later), so the window is held back by ``settle`` (15 minutes): each run exports
``[start - 15 min, end - 15 min)``, and consecutive runs still neither overlap nor leave gaps.

The export base is the Variable ``cfimages_export_base`` (default ``$AIRFLOW_HOME/cfimages``).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task
from croniter import croniter

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # Airflow 3.1 keeps timetables in airflow.timetables
    from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_cfimages.operators.images import CloudflareImagesListOperator

DEFAULT_EXPORT_BASE = str(
    Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "cfimages"
)
EXPORT_BASE = "{{ var.value.get('cfimages_export_base', '" + DEFAULT_EXPORT_BASE + "') }}"
HOURLY = "0 * * * *"
FILE_TIME = "%Y%m%dT%H%M%S"
# Late arrivals: the window is held back by this much (see the docstring).
SETTLE = dt.timedelta(minutes=15)


def manual_window(run_after: dt.datetime, params: Any) -> tuple[dt.datetime, dt.datetime]:
    """The params' window if given, else the last hour that ended before ``run_after``."""
    after, before = params.get("uploaded_after"), params.get("uploaded_before")
    if after or before:
        if not (after and before):
            raise ValueError(
                "Give both params uploaded_after and uploaded_before (or neither, for "
                f"the last hour that has ended); got {after!r} and {before!r}."
            )
        return pendulum.parse(after, tz="UTC"), pendulum.parse(before, tz="UTC")
    utc = run_after.astimezone(dt.timezone.utc)
    end = croniter(HOURLY, utc).get_prev(dt.datetime)
    start = croniter(HOURLY, end).get_prev(dt.datetime)
    return start, end


with DAG(
    dag_id="cfimages_export_incremental",
    description="Images uploaded in each hour, one file per hour",
    schedule=CronDataIntervalTimetable(HOURLY, timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "uploaded_after": Param(
            None,
            type=["null", "string"],
            description="Manual runs: the window's start (with uploaded_before); "
            "default: the last hour that has ended",
        ),
        "uploaded_before": Param(
            None,
            type=["null", "string"],
            description="Manual runs: the window's end (exclusive)",
        ),
    },
    tags=["cloudflare-images", "example"],
) as dag:

    @task(multiple_outputs=True)
    def export_window(*, dag_run: Any = None, params: Any = None) -> dict[str, str]:
        """The run's upload-time window (see the DAG's docstring) and its file name."""
        start, end = dag_run.data_interval_start, dag_run.data_interval_end
        if start is None or end is None or start >= end:
            start, end = manual_window(dag_run.run_after, params)
        start, end = pendulum.instance(start).in_tz("UTC"), pendulum.instance(end).in_tz("UTC")
        print(f"Exporting the images uploaded in [{start.isoformat()}, {end.isoformat()})")
        return {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "name": f"{start.strftime(FILE_TIME)}_{end.strftime(FILE_TIME)}",
        }

    window = export_window()
    CloudflareImagesListOperator(
        task_id="export_new_images",
        sort_order="desc",
        uploaded_after=window["start"],
        uploaded_before=window["end"],
        settle=SETTLE,
        output_path=EXPORT_BASE
        + "/incremental/{{ ti.xcom_pull(task_ids='export_window', key='name') }}.jsonl",
        retries=3,
    )

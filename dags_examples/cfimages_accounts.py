"""Export every Cloudflare account, one mapped task each, and reconcile each against its
system of record in a database.

Needs a ``cloudflare_images`` connection per account (each with its own API token and
``account_id`` extra; a single-account setup uses ``cloudflare_images_default``), and a
database connection for the system of record: ``cfimages_system_of_record`` by default, any
connection whose hook is a ``common.sql`` one (PostgreSQL, MySQL, Snowflake, ...; install
``airflow-provider-cfimages[sql]`` and that database's provider).

- The accounts: the Variable ``cfimages_accounts``, read when the DAG runs, a JSON list like
  ``[{"name": "brand-a", "conn_id": "cloudflare_images_brand_a", "user": "ops"}, ...]``.
  Each names the Cloudflare user whose API token its connection holds (a key of
  ``CLOUDFLARE_USERS``), and may set ``expected_sql`` / ``expected_conn_id`` of its own.
- Export: one mapped task per account (its map index shows the account's connection)
  writes ``<export base>/<run date>/<name>.jsonl.gz``; the export base is the Variable
  ``cfimages_export_base``, by default ``$AIRFLOW_HOME/cfimages``.
- Reconcile: one mapped task per account compares that export with the rows of
  ``expected_sql`` (by default ``SELECT image_id FROM cloudflare_images WHERE account =
  %(account)s``, bound to the account's name) and writes the differences to
  ``<export base>/<run date>/<name>.report.jsonl``; it sends no API request.
- Pools: Cloudflare's rate limit (1200 requests per 5 minutes) is per user, shared by every
  client of that user (their dashboard sessions and upload services too), so the exports of
  one user's accounts take slots of that user's Airflow pool: its size caps how many of them
  list at once, whatever the executor could run. Create each pool once, e.g.
  ``airflow pools set cloudflare_user_ops 2 "Cloudflare user ops"``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, TaskGroup, Variable, task

from airflow_provider_cfimages.operators.images import (
    CloudflareImagesListOperator,
    CloudflareImagesReconcileOperator,
)

#: Cloudflare user (whose token the accounts' connections hold) -> the Airflow pool their
#: exports share. Edit to match yours; every account of the Variable names one of them.
CLOUDFLARE_USERS: dict[str, str] = {
    "ops": "cloudflare_user_ops",
    "emea": "cloudflare_user_emea",
}
DEFAULT_EXPORT_BASE = str(
    Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "cfimages"
)
SYSTEM_OF_RECORD = "cfimages_system_of_record"
DEFAULT_EXPECTED_SQL = "SELECT image_id FROM cloudflare_images WHERE account = %(account)s"
# Rendered after each mapped task ran: the Grid view lists them by account, not by number.
ACCOUNT_LABEL = "{{ task.cloudflare_images_conn_id }}"

with DAG(
    dag_id="cfimages_accounts",
    description="Export and reconcile every Cloudflare account, one mapped task each",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["cloudflare-images", "example"],
) as dag:

    @task(multiple_outputs=True)
    def accounts_by_user(*, dag_run: Any = None) -> dict[str, list[dict[str, Any]]]:
        """The accounts of the Variable, checked, with their files, grouped by user."""
        accounts = Variable.get("cfimages_accounts", deserialize_json=True)
        base = Variable.get("cfimages_export_base", default=DEFAULT_EXPORT_BASE).rstrip("/")
        folder = f"{base}/{dag_run.run_after:%Y-%m-%d}"
        grouped: dict[str, list[dict[str, Any]]] = {user: [] for user in CLOUDFLARE_USERS}
        names: set[str] = set()
        for number, account in enumerate(accounts, start=1):
            name, user = account.get("name"), account.get("user")
            if not name or not account.get("conn_id") or name in names:
                raise ValueError(
                    f"cfimages_accounts entry {number} needs a unique name and a conn_id"
                )
            if user not in CLOUDFLARE_USERS:
                raise ValueError(
                    f"cfimages_accounts entry {number} ({name}): user {user!r} is not one of "
                    f"CLOUDFLARE_USERS {sorted(CLOUDFLARE_USERS)}, so it has no pool"
                )
            names.add(name)
            grouped[user].append(
                {
                    **account,
                    "output_path": f"{folder}/{name}.jsonl.gz",
                    "report_path": f"{folder}/{name}.report.jsonl",
                }
            )
        return grouped

    @task
    def export_kwargs(accounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What each account's export task gets."""
        return [
            {"cloudflare_images_conn_id": a["conn_id"], "output_path": a["output_path"]}
            for a in accounts
        ]

    @task
    def reconcile_kwargs(
        accounts: list[dict[str, Any]], manifests: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """What each account's reconcile task gets: its export and its system of record."""
        # Mapped outputs come in map-index order, the order the accounts were expanded in.
        return [
            {
                "cloudflare_images_conn_id": account["conn_id"],
                "actual_from": manifest,
                "expected_sql": account.get("expected_sql", DEFAULT_EXPECTED_SQL),
                "expected_conn_id": account.get("expected_conn_id", SYSTEM_OF_RECORD),
                "parameters": {"account": account["name"]},
                "report_path": account["report_path"],
            }
            for account, manifest in zip(accounts, manifests, strict=True)
        ]

    @task
    def summarize(
        accounts: list[dict[str, Any]], summaries: list[dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """Each account's reconcile counts, by account name."""
        counts = ("expected", "actual", "missing_count", "unexpected_count", "drifted_count")
        return {
            account["name"]: {name: summary[name] for name in (*counts, "report_path")}
            for account, summary in zip(accounts, summaries, strict=True)
        }

    accounts = accounts_by_user()
    for user, pool in CLOUDFLARE_USERS.items():
        with TaskGroup(group_id=f"user_{user}"):
            mine = accounts[user]
            export = CloudflareImagesListOperator.partial(
                task_id="export",
                pool=pool,
                map_index_template=ACCOUNT_LABEL,
                per_page=1000,  # the page size the live API documents
                fields=["id", "filename", "uploaded", "meta"],
                retries=2,
            ).expand_kwargs(export_kwargs(mine))
            reconcile = CloudflareImagesReconcileOperator.partial(
                task_id="reconcile",
                map_index_template=ACCOUNT_LABEL,
            ).expand_kwargs(reconcile_kwargs(mine, export.output))
            summarize(mine, reconcile.output)

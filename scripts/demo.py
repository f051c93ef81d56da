"""`make demo`: the provider's main job, end to end, with no Cloudflare account.

1. starts the local Images API emulator with a realistic inventory;
2. points ``cloudflare_images_default`` at it (an environment variable, as in production);
3. plays the system of record: the ids a site references, with some orphans left out
   and some references to images that do not exist;
4. runs ``cfimages_export_daily`` and ``cfimages_reconcile`` with ``airflow dags test`` on a
   SQLite metadata DB under ``.demo/airflow_home``;
5. prints where the export went and the reconcile summary, then stops the emulator.

Task logs go to ``.demo/logs``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
ORPHANS = 120  # images Cloudflare holds that nothing references (still billed)
BROKEN = 30  # references to images Cloudflare does not hold (broken on the site)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000, help="inventory size")
    args = parser.parse_args(argv)

    shutil.rmtree(DEMO, ignore_errors=True)
    (DEMO / "logs").mkdir(parents=True)
    env = airflow_env()
    step(f"Starting the Cloudflare Images emulator with {args.images:,} images")
    emulator, connection = start_emulator(args.images)
    try:
        env["AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"] = connection
        os.environ.update(env)
        expected = write_system_of_record(DEMO / "system_of_record_ids.txt")
        env["AIRFLOW_VAR_CFIMAGES_EXPECTED_URI"] = str(expected)
        step("Creating the Airflow metadata DB (SQLite) in .demo/airflow_home")
        airflow(env, "db", "migrate", log="db-migrate.log")
        step("airflow dags test cfimages_export_daily")
        airflow(env, "dags", "test", "cfimages_export_daily", "2025-01-01", log="export.log")
        manifest = xcom("cfimages_export_daily", "export_inventory")
        print_manifest(manifest)
        step("airflow dags test cfimages_reconcile (fails on drift by design)")
        conf = json.dumps({"export_path": manifest["path"]})
        code = airflow(
            env, "dags", "test", "cfimages_reconcile", "-c", conf, log="reconcile.log", check=False
        )
        print_reconcile(xcom("cfimages_reconcile", "reconcile"), code)
        print_delete(xcom("cfimages_reconcile", "delete_orphans"))
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
        step("Emulator stopped")
    return 0


def airflow_env() -> dict[str, str]:
    home = DEMO / "airflow_home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags_examples"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW_VAR_CFIMAGES_EXPORT_BASE=str(DEMO / "exports"),
    )
    return env


def start_emulator(images: int) -> tuple[subprocess.Popen[str], str]:
    """Start the emulator on a free loopback port; return it and its connection JSON."""
    command = [sys.executable, "-m", "airflow_provider_cfimages.emulator"]
    process = subprocess.Popen(
        [*command, "--images", str(images), "--seed", "42", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    for line in process.stdout:
        if line.startswith("base_url:"):
            print(f"  {line.strip()}")
        if line.startswith("export AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT="):
            connection = line.split("=", 1)[1].strip().strip("'")
            return process, connection
        if time.monotonic() > deadline:
            break
    process.kill()
    raise SystemExit("the emulator did not start; run it by hand to see why")


def write_system_of_record(path: Path) -> Path:
    """Write the ids "the site" references: most images, minus orphans, plus broken ones."""
    from airflow_provider_cfimages.hooks.images import CloudflareImagesHook

    hook = CloudflareImagesHook()
    ids = [image["id"] for image in hook.iter_images(per_page=10_000, sort_order="asc")]
    # The oldest images are the orphans: old enough that the delete guard would allow them.
    referenced = ids[ORPHANS:] + [f"deleted-upstream-{n:03d}" for n in range(BROKEN)]
    path.write_text("".join(f"{image_id}\n" for image_id in referenced))
    print(
        f"  system of record: {len(referenced):,} referenced ids in {path.relative_to(ROOT)} "
        f"({ORPHANS} orphans left out, {BROKEN} broken references added)"
    )
    return path


def airflow(env: dict[str, str], *args: str, log: str, check: bool = True) -> int:
    """Run an ``airflow`` CLI command, its output going to ``.demo/logs/<log>``."""
    started = time.monotonic()
    with (DEMO / "logs" / log).open("w") as handle:
        code = subprocess.call(
            [sys.executable, "-m", "airflow", *args], env=env, stdout=handle, stderr=handle
        )
    print(f"  done in {time.monotonic() - started:.1f} s (exit {code}; log: .demo/logs/{log})")
    if check and code != 0:
        raise SystemExit(f"`airflow {' '.join(args)}` failed; see .demo/logs/{log}")
    return code


def xcom(dag_id: str, task_id: str) -> Any:
    """The return value a task pushed in the latest run of a DAG."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, task_id=task_id, key="return_value")
            .order_by(XComModel.timestamp.desc())
            .first()
        )
        if row is None:
            raise SystemExit(f"{dag_id}.{task_id} pushed no result; see .demo/logs")
        return row.value


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def print_manifest(manifest: dict[str, Any]) -> None:
    size_mb = manifest["bytes"] / 1e6
    print(f"  export:   {manifest['path']}")
    print(f"  images:   {manifest['count']:,} in {manifest['pages']} pages, {size_mb:.1f} MB")
    print(f"  sha256:   {manifest['sha256']}")
    print(f"  uploaded: {manifest['oldest_uploaded']} .. {manifest['newest_uploaded']}")


def print_reconcile(summary: dict[str, Any], exit_code: int) -> None:
    print(
        f"  expected {summary['expected']:,}, actual {summary['actual']:,}, "
        f"matched {summary['matched']:,}"
    )
    print(
        f"  unexpected (orphans, still billed): {summary['unexpected_count']}  "
        f"e.g. {summary['unexpected'][:3]}"
    )
    print(
        f"  missing (broken references):        {summary['missing_count']}  "
        f"e.g. {summary['missing'][:3]}"
    )
    print(f"  report:   {summary['report_path']}")
    verdict = "failed, as fail_on_drift asks" if exit_code else "succeeded"
    print(f"  the reconcile DAG run {verdict}")


def print_delete(result: dict[str, Any]) -> None:
    print(
        f"  delete_orphans (dry run, param delete_orphans=false): would delete "
        f"{result.get('would_delete', 0)}, protected {result.get('protected', 0)}"
    )


if __name__ == "__main__":
    sys.exit(main())

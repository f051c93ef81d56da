"""`make demo`: the provider's main job, end to end, with no Cloudflare account.

1. starts the local Images API emulator with a realistic inventory;
2. points ``cloudflare_images_default`` at it (an environment variable, as in production);
3. plays the system of record: the ids a site references, with some orphans left out
   and some references to images that do not exist;
4. starts Airflow as it runs for real (scheduler with the LocalExecutor, DAG processor,
   triggerer, api-server) on a SQLite metadata DB under ``.demo/airflow_home``;
5. unpauses ``cfimages_reconcile``, then ``cfimages_export_daily``: the scheduler runs the
   day's export, and the export's asset event starts the reconcile;
6. prints where the export went and the reconcile's findings, then stops Airflow and the
   emulator.

Logs: ``.demo/airflow_home/<component>.log`` and the task logs under
``.demo/airflow_home/logs``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the AirflowDeployment helper lives with the tests

from airflow_provider_cfimages.emulator import EmulatorServer  # noqa: E402
from tests.dags.deployment import AirflowDeployment, DeploymentError  # noqa: E402

DEMO = ROOT / ".demo"
ORPHANS = 120  # images Cloudflare holds that nothing references (still billed)
BROKEN = 30  # references to images Cloudflare does not hold (broken on the site)
EXPORT, RECONCILE = "cfimages_export_daily", "cfimages_reconcile"


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000, help="inventory size")
    args = parser.parse_args(argv)

    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    step(f"Starting the Cloudflare Images emulator with {args.images:,} images")
    with EmulatorServer(images=args.images, seed=42) as emu:
        print(f"  base_url: {emu.base_url}")
        expected = write_system_of_record(emu, DEMO / "system_of_record_ids.txt")
        env = {
            "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT": emu.connection_json(),
            "AIRFLOW_VAR_CFIMAGES_EXPORT_BASE": str(DEMO / "exports"),
            "AIRFLOW_VAR_CFIMAGES_EXPECTED_URI": str(expected),
        }
        airflow = AirflowDeployment(DEMO / "airflow_home", ROOT / "dags_examples", env)
        try:
            run_demo(airflow)
            code = 0
        except DeploymentError as err:
            print(f"\n{err}\nSee the logs in .demo/airflow_home.", file=sys.stderr)
            code = 1
        finally:
            airflow.stop()
    step("Airflow and the emulator stopped")
    return code


def run_demo(airflow: AirflowDeployment) -> None:
    step(
        "Starting Airflow: scheduler (LocalExecutor), DAG processor, triggerer and "
        f"api-server on 127.0.0.1:{airflow.port}, SQLite in .demo/airflow_home"
    )
    timed(airflow.start)
    step(f"airflow dags unpause {RECONCILE}  (scheduled on the export's asset)")
    airflow.cli("dags", "unpause", RECONCILE)
    step(f"airflow dags unpause {EXPORT}  (the scheduler starts today's run)")
    airflow.cli("dags", "unpause", EXPORT)
    export = timed(lambda: finished_run(airflow, EXPORT, "scheduled"))
    print(f"  run {export['run_id']}: {export['state']}")
    print_manifest(airflow.xcom(EXPORT, export["run_id"], "export_inventory"))

    step(f"{RECONCILE}, started by the export's asset event (fails on drift by design)")
    reconcile = timed(lambda: finished_run(airflow, RECONCILE, "asset_triggered"))
    run_id = reconcile["run_id"]
    print(f"  run {run_id}: {reconcile['state']}")
    states = airflow.task_states(RECONCILE, run_id)
    print("  tasks: " + ", ".join(f"{task} {state}" for task, state in sorted(states.items())))
    print_reconcile(airflow.xcom(RECONCILE, run_id, "reconcile"), reconcile["state"])
    print_delete(airflow.xcom(RECONCILE, run_id, "delete_orphans") or {})


def finished_run(airflow: AirflowDeployment, dag_id: str, run_type: str) -> dict[str, Any]:
    """Wait for the DAG's first run of ``run_type`` to finish; return its row."""
    run = airflow.wait_for(
        lambda: next((r for r in airflow.runs(dag_id) if r["run_type"] == run_type), None),
        300,
        f"a {run_type} run of {dag_id}",
    )
    return airflow.wait_for_run(dag_id, run["run_id"], timeout=600)


def timed(action: Any) -> Any:
    started = time.monotonic()
    result = action()
    print(f"  done in {time.monotonic() - started:.1f} s")
    return result


def write_system_of_record(emu: EmulatorServer, path: Path) -> Path:
    """Write the ids "the site" references: most images, minus orphans, plus broken ones."""
    ids = emu.backend.ids_sorted()  # oldest first
    # The oldest images are the orphans: old enough that the delete guard would allow them.
    referenced = ids[ORPHANS:] + [f"deleted-upstream-{n:03d}" for n in range(BROKEN)]
    path.write_text("".join(f"{image_id}\n" for image_id in referenced))
    print(
        f"  system of record: {len(referenced):,} referenced ids in {path.relative_to(ROOT)} "
        f"({ORPHANS} orphans left out, {BROKEN} broken references added)"
    )
    return path


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def print_manifest(manifest: dict[str, Any]) -> None:
    size_mb = manifest["bytes"] / 1e6
    print(f"  export:   {manifest['path']}")
    print(f"  images:   {manifest['count']:,} in {manifest['pages']} pages, {size_mb:.1f} MB")
    print(f"  sha256:   {manifest['sha256']}")
    print(f"  uploaded: {manifest['oldest_uploaded']} .. {manifest['newest_uploaded']}")


def print_reconcile(summary: dict[str, Any], state: str) -> None:
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
    verdict = "failed, as fail_on_drift asks" if state == "failed" else state
    print(f"  the reconcile DAG run {verdict}")


def print_delete(result: dict[str, Any]) -> None:
    print(
        f"  delete_orphans (dry run, param delete_orphans=false): would delete "
        f"{result.get('would_delete', 0)}, protected {result.get('protected', 0)}"
    )


if __name__ == "__main__":
    sys.exit(main())

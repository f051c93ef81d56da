"""Killing an export mid-way, then running it again.

- SIGTERM, as Airflow sends it to stop a task: the export runs under Airflow's real task
  runner (``airflow dags test`` in a subprocess), whose SIGTERM handler calls the
  operator's ``on_kill``. The listing stops at the next request, the temporary file is
  removed, and the final path is never created; a re-run writes the complete file.
- SIGKILL cannot be handled: the dead process leaves its uniquely named temporary file
  (``<name>.tmp-<32 hex>``) and no final file. A re-run is unaffected by it and leaves it
  alone (see docs/reliability.md for cleaning such leftovers).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer, FaultRule
from tests.reliability.conftest import (
    assert_exact_export,
    export,
    files_in,
    list_records,
)

KILL_DAG = '''
"""One nightly export (the SIGTERM test). Needs the ``cloudflare_images_default`` connection."""

import pendulum
from airflow.sdk import DAG

from airflow_provider_cfimages.operators.images import CloudflareImagesListOperator

with DAG(
    "cfimages_kill_export",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
):
    CloudflareImagesListOperator(task_id="export", output_path="OUTPUT", per_page=500)
'''

TEMP_NAME = re.compile(r"^images\.jsonl\.tmp-[0-9a-f]{32}$")
SLOW_PAGE = 3  # of 10 pages of 500
SLOW_SECONDS = 2.0


def wait_until_mid_export(
    slow_page: FaultRule,
    directory: Path,
    process: subprocess.Popen[bytes] | multiprocessing.Process,
    timeout: float = 90,
) -> None:
    """Wait until the temporary file exists and the slow page's request has arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(process):
            pytest.fail("the export ended before it could be killed")
        temps = [name for name in files_in(directory) if TEMP_NAME.match(name)]
        if temps and slow_page.fired:
            return
        time.sleep(0.05)
    process.kill()
    pytest.fail("the export never reached the slow page")


def alive(process: subprocess.Popen[bytes] | multiprocessing.Process) -> bool:
    if isinstance(process, subprocess.Popen):
        return process.poll() is None
    return process.is_alive()


def test_sigterm_under_airflow_stops_the_export_and_leaves_no_file_then_a_rerun_is_complete(
    emu: EmulatorServer, dag_runner: Any, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    path = exports / "images.jsonl"
    dag_runner.load(KILL_DAG.replace("OUTPUT", str(path)), "cfimages_kill_export")
    slow_page = emu.faults.slow_next(
        1, seconds=SLOW_SECONDS, path="/images/v2", on_request=SLOW_PAGE
    )
    log = tmp_path / "dags-test.log"
    with log.open("w") as output:  # a file, not a pipe nobody reads until the end
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "dags", "test", "cfimages_kill_export"],
            env=dict(os.environ),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_mid_export(slow_page, exports, process)
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    task_log = log.read_text(errors="replace")

    assert process.returncode != 0, task_log[-3000:]
    assert "Kill requested: stopping the listing at the next request." in task_log
    assert "List images V2 page 4: cancelled" in task_log
    assert files_in(exports) == []  # neither the final file nor the temporary one
    assert len(list_records(emu)) == SLOW_PAGE  # the slow page was the last one asked for

    emu.faults.clear()
    assert_exact_export(emu, path, export(path, per_page=500))


def export_in_this_process(output: str) -> None:
    """The export, as a task process runs it (the target of the forked child)."""
    export(Path(output), per_page=500)


def test_sigkill_leaves_only_a_stale_temp_that_a_rerun_ignores(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "images.jsonl"
    slow_page = emu.faults.slow_next(
        1, seconds=SLOW_SECONDS, path="/images/v2", on_request=SLOW_PAGE
    )
    # SIGKILL cannot be handled, so how the process started does not matter: a fork of this
    # one (Airflow already imported) starts in milliseconds instead of seconds.
    child = multiprocessing.get_context("fork").Process(
        target=export_in_this_process, args=(str(path),)
    )
    child.start()
    try:
        wait_until_mid_export(slow_page, tmp_path, child)
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
    finally:
        if child.is_alive():
            child.kill()

    assert child.exitcode == -signal.SIGKILL
    [stale] = files_in(tmp_path)
    assert TEMP_NAME.match(stale)
    stale_bytes = (tmp_path / stale).read_bytes()
    assert 0 < stale_bytes.count(b"\n") < 5000  # a part of the inventory, never the final name

    emu.faults.clear()
    manifest = export(path, per_page=500)

    assert sorted(files_in(tmp_path)) == sorted([stale, "images.jsonl"])
    assert (tmp_path / stale).read_bytes() == stale_bytes
    (tmp_path / stale).unlink()  # what the documented clean-up does
    assert_exact_export(emu, path, manifest)

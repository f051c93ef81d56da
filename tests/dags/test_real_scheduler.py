"""The example DAGs as users run them: a real scheduler, DAG processor, triggerer and
api-server (what ``airflow standalone`` runs), against the emulator over HTTP.

One deployment serves the whole module (starting Airflow is the slow part). The module
fixture plays a user's session, in this order: unpause the asset consumer
(``cfimages_reconcile``) first, then the scheduled DAGs, which makes the scheduler create
each one's latest scheduled run; trigger manual runs the way the UI's button does (no
logical date, so ``ds`` and ``data_interval_*`` are undefined in their templates); once both
sensors are deferred and the scheduled export is done, upload an image into the emulator;
wait until every run has finished. The tests then check what each run did, from the
metadata DB (states, XCom), the files written and the emulator.

Every Airflow process is stopped at the end, also when something fails; a failure
prints the components' and tasks' logs.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pendulum
import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from tests.dags.deployment import COMPONENTS, AirflowDeployment, DeploymentError

pytestmark = pytest.mark.timeout(900)

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"
SEEDED = 400  # seeded images are all years old
RECENT_PER_HOUR = 4  # images uploaded in each of the last few hours
RECENT_HOURS = 3
ORPHANS = 20  # images the system of record does not reference
BROKEN = 5  # references to images the account does not hold
FRESH_ID = "fresh-upload-while-deferred"
SETTLE = dt.timedelta(minutes=15)  # cfimages_export_incremental's settle (SETTLE there)
DAILY, INCREMENTAL, RECONCILE, WAIT = (
    "cfimages_export_daily",
    "cfimages_export_incremental",
    "cfimages_reconcile",
    "cfimages_wait_for_uploads",
)


@dataclass
class Session:
    """What the module fixture did: the deployment, the emulator, and the runs it made."""

    airflow: AirflowDeployment
    emu: EmulatorServer
    exports: Path
    orphans: list[str]
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    deferred: set[str] = field(default_factory=set)  # run ids whose sensor was seen deferred

    def run(self, name: str) -> dict[str, Any]:
        """The final ``dag_run`` row of one of the runs the session made, by its name."""
        return self.runs[name]

    def xcom(self, name: str, task_id: str, key: str = "return_value") -> Any:
        row = self.runs[name]
        return self.airflow.xcom(row["dag_id"], row["run_id"], task_id, key)

    def states(self, name: str) -> dict[str, str | None]:
        row = self.runs[name]
        return self.airflow.task_states(row["dag_id"], row["run_id"])


def recent_images(now: dt.datetime) -> list[dict[str, Any]]:
    """A few images uploaded in each of the last hours, as the API lists them."""
    images = []
    for hour in range(RECENT_HOURS):
        for n in range(RECENT_PER_HOUR):
            uploaded = now - dt.timedelta(hours=hour, minutes=1 + n * 13)
            stamp = uploaded.strftime("%Y-%m-%dT%H:%M:%S.") + f"{uploaded.microsecond // 1000:03d}Z"
            images.append(
                {
                    "id": f"recent-{hour}-{n}",
                    "filename": f"recent-{hour}-{n}.jpg",
                    "uploaded": stamp,
                    "requireSignedURLs": False,
                    "variants": [],
                }
            )
    return images


def write_system_of_record(path: Path, ids: list[str]) -> list[str]:
    """Reference every id but the oldest ``ORPHANS``, plus ``BROKEN`` that do not exist."""
    orphans = ids[:ORPHANS]
    referenced = ids[ORPHANS:] + [f"deleted-upstream-{n}" for n in range(BROKEN)]
    path.write_text("".join(f"{i}\n" for i in referenced))
    return orphans


def play_session(airflow: AirflowDeployment, session: Session) -> None:
    """Drive the DAGs as a user would; record each run's final row in ``session.runs``."""

    def record(name: str, dag_id: str, run_id: str, timeout: float = 180) -> None:
        row = airflow.wait_for_run(dag_id, run_id, timeout=timeout)
        session.runs[name] = {"dag_id": dag_id, **row}

    def scheduled_run(dag_id: str) -> str:
        rows = airflow.wait_for(
            lambda: [r for r in airflow.runs(dag_id) if r["run_type"] == "scheduled"],
            120,
            f"the scheduler to create a scheduled run of {dag_id}",
        )
        return str(rows[0]["run_id"])

    # The consumer first: an asset event that arrives while it is paused starts no run.
    airflow.cli("dags", "unpause", RECONCILE)
    for dag_id in (WAIT, INCREMENTAL, DAILY):
        airflow.cli("dags", "unpause", dag_id)
    manual_incremental = airflow.trigger(INCREMENTAL)
    manual_wait = airflow.trigger(WAIT)
    scheduled_wait = scheduled_run(WAIT)
    scheduled_incremental = scheduled_run(INCREMENTAL)
    scheduled_daily = scheduled_run(DAILY)

    # Triggered after every upload so far, the manual run has to wait for the next one.
    airflow.wait_for_task(WAIT, manual_wait, "wait_for_uploads", "deferred", timeout=180)
    session.deferred.add(manual_wait)
    # The export must not see the upload: the reconcile's counts would depend on timing.
    record("scheduled daily", DAILY, scheduled_daily)
    session.emu.backend.upload_image(file=b"jpeg", filename="fresh.jpg", id=FRESH_ID)

    def asset_triggered_run(number: int) -> str:
        def runs() -> list[dict[str, Any]]:
            rows = [r for r in airflow.runs(RECONCILE) if r["run_type"] == "asset_triggered"]
            return rows if len(rows) >= number else []

        rows = airflow.wait_for(runs, 120, f"export {number}'s event to trigger the reconcile")
        return str(rows[number - 1]["run_id"])

    record("asset-triggered reconcile", RECONCILE, asset_triggered_run(1))
    # Only now: the manual export rewrites the day's file, which the reconcile reads.
    manual_daily = airflow.trigger(DAILY)
    record("second asset-triggered reconcile", RECONCILE, asset_triggered_run(2))
    record("scheduled incremental", INCREMENTAL, scheduled_incremental)
    record("manual incremental", INCREMENTAL, manual_incremental)
    record("scheduled wait", WAIT, scheduled_wait)
    record("manual wait", WAIT, manual_wait)
    record("manual daily", DAILY, manual_daily)


def print_logs(airflow: AirflowDeployment) -> None:
    """Everything a failed session's reader needs: component logs, then task logs."""
    for name in COMPONENTS:
        print(f"===== airflow {name} (end of log)\n{airflow.log_tail(name)}")
    for dag_id in (DAILY, INCREMENTAL, RECONCILE, WAIT):
        for path, text in airflow.task_logs(dag_id):
            print(f"===== {path.relative_to(airflow.home)}\n{text[-3000:]}")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    root = tmp_path_factory.mktemp("real-scheduler")
    exports = root / "exports"
    with EmulatorServer(images=SEEDED, seed=5) as emu:
        emu.backend.load(recent_images(dt.datetime.now(dt.timezone.utc)), as_baseline=False)
        expected = root / "system_of_record.txt"
        orphans = write_system_of_record(expected, emu.backend.ids_sorted())
        env = {
            "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT": emu.connection_json(),
            "AIRFLOW_VAR_CFIMAGES_EXPORT_BASE": str(exports),
            "AIRFLOW_VAR_CFIMAGES_EXPECTED_URI": str(expected),
        }
        airflow = AirflowDeployment(root / "airflow_home", EXAMPLES, env)
        played = Session(airflow=airflow, emu=emu, exports=exports, orphans=orphans)
        try:
            started = time.monotonic()
            airflow.start()
            print(f"Airflow ready in {time.monotonic() - started:.0f} s")
            play_session(airflow, played)
            print(f"Session played in {time.monotonic() - started:.0f} s")
        except (DeploymentError, AssertionError):
            print_logs(airflow)
            airflow.stop()
            raise
        except BaseException:
            airflow.stop()
            raise
        try:
            yield played
        finally:
            airflow.stop()


def local(path: str) -> Path:
    return Path(path.removeprefix("file://"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def parse_time(value: str) -> dt.datetime:
    return pendulum.parse(value)  # type: ignore[return-value]


def ids_uploaded_in(emu: EmulatorServer, start: dt.datetime, end: dt.datetime) -> list[str]:
    """Newest first, as the incremental export writes them."""
    return [
        image["id"]
        for image in reversed(emu.backend.images_sorted())
        if start <= parse_time(image["uploaded"]) < end
    ]


def test_scheduled_daily_export_writes_the_inventory_for_its_day(session: Session) -> None:
    run = session.run("scheduled daily")
    assert (run["run_type"], run["state"]) == ("scheduled", "success")
    manifest = session.xcom("scheduled daily", "export_inventory")
    path = local(manifest["path"])
    assert path == session.exports / "daily" / f"{parse_time(run['run_after']).date()}.jsonl.gz"
    # Exported before the upload made during the session.
    assert manifest["count"] == SEEDED + RECENT_HOURS * RECENT_PER_HOUR


def test_manual_daily_export_without_a_logical_date_succeeds(session: Session) -> None:
    run = session.run("manual daily")
    assert (run["run_type"], run["state"], run["logical_date"]) == ("manual", "success", None)
    manifest = session.xcom("manual daily", "export_inventory")
    path = local(manifest["path"])
    assert path.name == f"{parse_time(run['run_after']).date()}.jsonl.gz"
    assert [image["id"] for image in read_jsonl(path)] == session.emu.backend.ids_sorted()
    assert FRESH_ID in {image["id"] for image in read_jsonl(path)}


def test_scheduled_incremental_export_exports_its_data_interval(session: Session) -> None:
    run = session.run("scheduled incremental")
    assert (run["run_type"], run["state"]) == ("scheduled", "success")
    start, end = parse_time(run["data_interval_start"]), parse_time(run["data_interval_end"])
    assert end - start == dt.timedelta(hours=1)  # a data-interval timetable, not a trigger
    manifest = session.xcom("scheduled incremental", "export_new_images")
    # The DAG's settle holds the listed window back (late-arriving uploads).
    listed = (start - SETTLE, end - SETTLE)
    assert (parse_time(manifest["uploaded_after"]), parse_time(manifest["uploaded_before"])) == (
        listed
    )
    expected = ids_uploaded_in(session.emu, *listed)
    assert expected, "the session uploads images in every recent hour"
    assert [image["id"] for image in read_jsonl(local(manifest["path"]))] == expected
    assert local(manifest["path"]).name == (f"{start:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}.jsonl")


def test_manual_incremental_export_exports_the_last_hour_that_ended(session: Session) -> None:
    run = session.run("manual incremental")
    assert (run["run_type"], run["state"], run["logical_date"]) == ("manual", "success", None)
    assert run["data_interval_start"] is None  # what made '{{ data_interval_start }}' fail
    run_after = parse_time(run["run_after"])
    end = pendulum.instance(run_after).in_tz("UTC").start_of("hour")
    start = end.subtract(hours=1)
    manifest = session.xcom("manual incremental", "export_new_images")
    listed = (start - SETTLE, end - SETTLE)
    assert (parse_time(manifest["uploaded_after"]), parse_time(manifest["uploaded_before"])) == (
        listed
    )
    expected = ids_uploaded_in(session.emu, *listed)
    assert expected
    assert [image["id"] for image in read_jsonl(local(manifest["path"]))] == expected


def test_the_exports_asset_event_triggers_the_reconcile(session: Session) -> None:
    run = session.run("asset-triggered reconcile")
    assert run["run_type"] == "asset_triggered"
    # fail_on_drift: the drift fails the run (so alerting fires), after the report.
    assert run["state"] == "failed"
    states = session.states("asset-triggered reconcile")
    assert states == {
        "live_inventory": "success",
        "reconcile": "failed",
        "delete_orphans": "success",
        "watcher": "failed",
    }
    # It compared the file the export's event named, not a fresh listing.
    export = session.xcom("scheduled daily", "export_inventory")
    assert session.xcom("asset-triggered reconcile", "live_inventory") == export
    summary = session.xcom("asset-triggered reconcile", "reconcile")
    assert (summary["unexpected_count"], summary["missing_count"]) == (ORPHANS, BROKEN)
    # Its samples: the report file itself is replaced by the second run's (same day).
    assert summary["unexpected"]
    assert set(summary["unexpected"]) <= set(session.orphans)
    deleted = session.xcom("asset-triggered reconcile", "delete_orphans")
    assert (deleted["dry_run"], deleted["would_delete"]) == (True, ORPHANS)
    assert session.emu.backend.count == SEEDED + RECENT_HOURS * RECENT_PER_HOUR + 1


def test_manual_sensor_defers_and_resumes_after_an_upload(session: Session) -> None:
    run = session.run("manual wait")
    assert (run["run_type"], run["state"], run["logical_date"]) == ("manual", "success", None)
    # It waited in the triggerer: deferred when the upload was made.
    assert run["run_id"] in session.deferred
    assert session.states("manual wait") == {
        "wait_for_uploads": "success",
        "process_uploads": "success",
    }
    assert [image["id"] for image in session.xcom("manual wait", "wait_for_uploads")] == [FRESH_ID]
    assert session.xcom("manual wait", "process_uploads") == 1


def test_scheduled_sensor_finds_the_uploads_since_its_run_was_due(session: Session) -> None:
    run = session.run("scheduled wait")
    assert (run["run_type"], run["state"]) == ("scheduled", "success")
    assert session.states("scheduled wait") == {
        "wait_for_uploads": "success",
        "process_uploads": "success",
    }
    due = parse_time(run["run_after"])
    assert due == parse_time(run["logical_date"])  # midnight UTC: a @daily cron trigger
    before_session = [
        image["id"]
        for image in reversed(session.emu.backend.images_sorted())
        if parse_time(image["uploaded"]) >= due and image["id"] != FRESH_ID
    ]
    found = [image["id"] for image in session.xcom("scheduled wait", "wait_for_uploads")]
    # Depending on the time of day, some of the session's recent images are from today
    # (found at once), or none are and it waited for the upload.
    assert found == (before_session or [FRESH_ID])
    assert session.xcom("scheduled wait", "process_uploads") == len(found)


def test_a_manual_exports_asset_event_triggers_the_reconcile_too(session: Session) -> None:
    run = session.run("second asset-triggered reconcile")
    assert (run["run_type"], run["state"]) == ("asset_triggered", "failed")
    export = session.xcom("manual daily", "export_inventory")
    assert session.xcom("second asset-triggered reconcile", "live_inventory") == export
    summary = session.xcom("second asset-triggered reconcile", "reconcile")
    # The upload made during the session is in this export, and nothing references it.
    assert (summary["unexpected_count"], summary["missing_count"]) == (ORPHANS + 1, BROKEN)
    report = read_jsonl(local(summary["report_path"]))
    assert sorted(r["key"] for r in report if r["kind"] == "unexpected") == sorted(
        [*session.orphans, FRESH_ID]
    )

"""CloudflareImagesSensor against the emulator over real HTTP, and in a real DAG run."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.exceptions import (
    CloudflareImagesAPIError,
    CloudflareImagesConfigError,
    CloudflareImagesError,
)
from airflow_provider_cfimages.sensors.images import CloudflareImagesSensor
from airflow_provider_cfimages.triggers.images import CloudflareImagesTrigger
from airflow_provider_cfimages.utils.timestamps import parse_rfc3339
from tests.compat import (
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from tests.sensors.conftest import connect

Later = Callable[..., threading.Timer]


def make_sensor(**kwargs: Any) -> CloudflareImagesSensor:
    kwargs.setdefault("task_id", "wait_for_images")
    kwargs.setdefault("poke_interval", 0.1)
    kwargs.setdefault("timeout", 15)
    return CloudflareImagesSensor(**kwargs)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def compact(image: dict[str, Any]) -> dict[str, Any]:
    return {"id": image["id"], "filename": image["filename"], "uploaded": image["uploaded"]}


def requests_of(emu: EmulatorServer, api_path: str) -> list[Any]:
    return [r for r in emu.requests if r.api_path.startswith(api_path)]


# -- arguments ---------------------------------------------------------------------------


def test_refuses_a_sensor_without_conditions_when_the_dag_is_parsed() -> None:
    with pytest.raises(CloudflareImagesConfigError, match="at least one condition"):
        make_sensor()


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"filename": "*.png", "min_count": 0}, "min_count"),
        ({"filename": "*.png", "per_page": 5}, "per_page"),
        ({"filename": "*.png", "max_pages": 0}, "max_pages"),
        ({"filename": "*.png", "max_images_in_xcom": 0}, "max_images_in_xcom"),
        ({"image_ids": ["a"], "creator": "bob"}, "creator"),
        ({"uploaded_after": "last tuesday"}, "uploaded_after"),
        ({"image_ids": []}, "image_ids"),
    ],
)
def test_checks_literal_arguments_when_the_dag_is_parsed(
    kwargs: dict[str, Any], parameter: str
) -> None:
    with pytest.raises(ValueError, match=parameter):
        make_sensor(**kwargs)


def test_checks_templated_arguments_after_rendering_before_any_request(
    emulator: EmulatorServer,
) -> None:
    sensor = make_sensor(uploaded_after="{{ prev_data_interval_start_success }}")
    sensor.uploaded_after = "None"  # what the template renders to on a first run
    with pytest.raises(CloudflareImagesConfigError, match="uploaded_after rendered to 'None'"):
        sensor.execute(context={})
    assert emulator.requests == []


def test_template_fields_cover_every_templated_argument() -> None:
    assert set(CloudflareImagesSensor.template_fields) == {
        "account_id",
        "image_ids",
        "filename",
        "uploaded_after",
        "creator",
        "meta_filters",
    }


# -- conditions becoming true during the wait -------------------------------------------


def test_waits_until_direct_creator_uploads_are_completed(
    emulator: EmulatorServer, later: Later
) -> None:
    existing = emulator.backend.upload("existing.jpg")
    draft = emulator.backend.create_direct_upload(id="upload-from-browser")

    def complete_once_checked() -> None:
        # Not on a fixed delay: a first poke later than that (a loaded machine) would find
        # the upload complete already, and the "not yet" path would go untested.
        deadline = time.monotonic() + 10
        while not requests_of(emulator, f"/images/v1/{draft['id']}"):
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        emulator.backend.complete_direct_upload(draft["id"], "from-browser.jpg")

    later(0, complete_once_checked)

    result = make_sensor(image_ids=[existing["id"], draft["id"]]).execute(context={})

    completed = emulator.backend.get_image(draft["id"])
    assert result == [compact(existing), compact(completed)]
    draft_checks = requests_of(emulator, f"/images/v1/{draft['id']}")
    assert len(draft_checks) >= 2, "the draft must count as 'not yet'"
    # An id found once is not asked for again on later pokes.
    assert len(requests_of(emulator, f"/images/v1/{existing['id']}")) == 1


def test_waits_for_an_id_that_does_not_exist_yet(emulator: EmulatorServer, later: Later) -> None:
    later(0.4, emulator.backend.upload, "custom.png", id="product-42")

    result = make_sensor(image_ids="product-42").execute(context={})

    assert [image["id"] for image in result] == ["product-42"]
    statuses = [r.status for r in requests_of(emulator, "/images/v1/")]
    assert statuses[0] == 404
    assert statuses[-1] == 200


def test_waits_for_min_count_uploads_after_the_cutoff(
    emulator: EmulatorServer, later: Later
) -> None:
    emulator.backend.upload("old.jpg", uploaded="2024-01-01T00:00:00.000Z")
    cutoff = utcnow()
    later(0.3, emulator.backend.upload, "first.jpg")
    later(0.8, emulator.backend.upload, "second.jpg")

    result = make_sensor(uploaded_after=cutoff.isoformat(), min_count=2).execute(context={})

    assert [image["filename"] for image in result] == ["second.jpg", "first.jpg"]
    assert all(parse_rfc3339(image["uploaded"]) >= cutoff for image in result)


def test_filename_pattern_counts_only_images_after_the_cutoff(
    emulator: EmulatorServer, later: Later
) -> None:
    emulator.backend.upload("report-old.png", uploaded="2024-01-01T00:00:00.000Z")
    cutoff = utcnow()
    later(0.2, emulator.backend.upload, "unrelated.png")
    later(0.6, emulator.backend.upload, "report-new.png")

    sensor = make_sensor(uploaded_after=cutoff, filename="report-*.png")
    result = sensor.execute(context={})

    assert [image["filename"] for image in result] == ["report-new.png"]


def test_creator_narrows_the_search(emulator: EmulatorServer, later: Later) -> None:
    cutoff = utcnow()
    later(0.2, emulator.backend.upload, "by-bob.jpg", creator="bob")
    later(0.6, emulator.backend.upload, "by-alice.jpg", creator="alice")

    result = make_sensor(uploaded_after=cutoff, creator="alice").execute(context={})

    assert [image["filename"] for image in result] == ["by-alice.jpg"]
    listings = requests_of(emulator, "/images/v2")
    assert listings
    assert all(r.query.get("creator") == "alice" for r in listings)


def test_meta_filters_wait_for_images_the_api_matches(
    emulator: EmulatorServer, later: Later
) -> None:
    emulator.backend.upload("draft.jpg", metadata={"status": "draft"})
    later(0.2, emulator.backend.upload, "other.jpg", metadata={"status": "draft"})
    later(0.6, emulator.backend.upload, "ready.jpg", metadata={"status": "ready"})

    result = make_sensor(meta_filters={"status": "ready"}).execute(context={})

    assert [image["filename"] for image in result] == ["ready.jpg"]
    listings = requests_of(emulator, "/images/v2")
    assert all(r.query.get("meta.status[eq:string]") == "ready" for r in listings)


def test_meta_filters_defer_with_the_trigger(emulator: EmulatorServer) -> None:
    sensor = make_sensor(meta_filters={"size": {"gte": 100}}, creator="", deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    kwargs = deferred.value.trigger.serialize()[1]
    assert (kwargs["meta_filters"], kwargs["creator"]) == ({"size": {"gte": 100}}, "")
    assert requests_of(emulator, "/images/v2")[0].query["creator"] == ""


# -- requests per poke on a large inventory ----------------------------------------------


def test_a_poke_on_a_large_inventory_sends_one_request(emulator_25k: EmulatorServer) -> None:
    emu = emulator_25k
    sensor = make_sensor(uploaded_after=utcnow())
    counts = []
    for _ in range(3):
        before = len(emu.requests)
        assert sensor.poke(context={}) is False
        counts.append(len(emu.requests) - before)
    emu.backend.upload("fresh.jpg")
    before = len(emu.requests)
    done = sensor.poke(context={})
    counts.append(len(emu.requests) - before)

    assert done
    assert [image["filename"] for image in done.xcom_value] == ["fresh.jpg"]
    assert counts == [1, 1, 1, 1]
    assert {r.query["sort_order"] for r in emu.requests} == {"desc"}


def test_filename_search_without_cutoff_reads_at_most_max_pages(
    emulator_25k: EmulatorServer,
) -> None:
    emu = emulator_25k
    sensor = make_sensor(filename="no-such-*.gif", per_page=100, max_pages=3)

    assert sensor.poke(context={}) is False
    assert len(emu.requests) == 3
    emu.backend.upload("no-such-thing.gif")
    emu.reset_requests()
    done = sensor.poke(context={})

    assert done
    assert [image["filename"] for image in done.xcom_value] == ["no-such-thing.gif"]
    assert len(emu.requests) == 1, "the newest page holds the new upload"


def test_image_ids_poke_stops_at_the_first_missing_id(emulator_25k: EmulatorServer) -> None:
    emu = emulator_25k
    known = [image["id"] for image in emu.backend.images_sorted()[:3]]
    sensor = make_sensor(image_ids=[known[0], "not-there-yet", known[1], known[2]])

    assert sensor.poke(context={}) is False
    assert len(emu.requests) == 2
    emu.reset_requests()
    assert sensor.poke(context={}) is False
    assert [r.api_path for r in emu.requests] == ["/images/v1/not-there-yet"]


# -- failures ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "connection",
    [
        pytest.param({"password": "W" * 40}, id="unknown-token"),
        pytest.param({"password": "not a token"}, id="malformed-token"),
        pytest.param({"extra": {"account_id": "f" * 32}}, id="other-account"),
    ],
)
def test_auth_failure_fails_the_task_at_once(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, connection: dict[str, Any]
) -> None:
    conn = connect(monkeypatch, emulator, **connection)
    sensor = make_sensor(uploaded_after=utcnow(), timeout=60, poke_interval=5, soft_fail=True)

    started = time.monotonic()
    with pytest.raises(CloudflareImagesAPIError) as err:
        sensor.execute(context={})

    assert time.monotonic() - started < 3
    assert len(emulator.requests) == 1
    assert conn["password"] not in str(err.value)


def test_account_without_images_fails_at_once(emulator: EmulatorServer) -> None:
    emulator.backend.images_enabled = False
    with pytest.raises(CloudflareImagesAPIError, match="5403"):
        make_sensor(image_ids=["a"], timeout=60, poke_interval=5).execute(context={})


def test_malformed_account_id_fails_before_any_request(emulator: EmulatorServer) -> None:
    sensor = make_sensor(image_ids=["a"], account_id="my-account")
    with pytest.raises(CloudflareImagesConfigError, match="account_id"):
        sensor.execute(context={})
    assert emulator.requests == []


def test_server_errors_and_rate_limits_do_not_fail_a_poke(emulator: EmulatorServer) -> None:
    image = emulator.backend.upload("there.jpg")
    sensor = make_sensor(image_ids=[image["id"]])

    emulator.faults.fail_next(1, status=502)
    assert sensor.poke(context={}) is False
    emulator.faults.block_for(0.3, retry_after=1)
    assert sensor.poke(context={}) is False
    assert [r.status for r in emulator.requests] == [502, 429]
    # Retries exhausted mean "not yet", so the poke loop carries on to success.
    assert sensor.execute(context={}) == [compact(image)]


def test_soft_fail_turns_a_timeout_into_a_skip(emulator: EmulatorServer) -> None:
    with pytest.raises(AirflowSkipException):
        make_sensor(image_ids=["never"], timeout=0.3, soft_fail=True).execute(context={})
    with pytest.raises(AirflowSensorTimeout):
        make_sensor(image_ids=["never"], timeout=0.3).execute(context={})


class _FirstTryTaskInstance:
    def get_first_reschedule_date(self, context: Any) -> None:
        return None


def test_reschedule_mode_frees_the_worker_between_pokes(emulator: EmulatorServer) -> None:
    context: Any = {"ti": _FirstTryTaskInstance()}
    with pytest.raises(AirflowRescheduleException):
        make_sensor(image_ids=["soon"], mode="reschedule").execute(context=context)

    emulator.backend.upload("soon.jpg", id="soon")
    result = make_sensor(image_ids=["soon"], mode="reschedule").execute(context=context)
    assert [image["id"] for image in result] == ["soon"]


# -- XCom --------------------------------------------------------------------------------


def test_xcom_holds_compact_images_newest_first_capped(emulator: EmulatorServer) -> None:
    cutoff = utcnow() - timedelta(minutes=10)
    uploaded = [
        emulator.backend.upload(f"{n}.jpg", uploaded=cutoff + timedelta(seconds=n))
        for n in range(5)
    ]

    result = make_sensor(uploaded_after=cutoff, max_images_in_xcom=2).execute(context={})

    assert result == [compact(uploaded[4]), compact(uploaded[3])]


def test_an_image_found_by_id_and_by_search_is_returned_once(emulator: EmulatorServer) -> None:
    cutoff = utcnow() - timedelta(seconds=1)  # upload times have millisecond precision
    image = emulator.backend.upload("both.jpg")
    other = emulator.backend.upload("other.jpg")

    result = make_sensor(image_ids=[image["id"]], uploaded_after=cutoff).execute(context={})

    assert result == [compact(image), compact(other)]


# -- deferrable --------------------------------------------------------------------------


def test_deferrable_pokes_once_then_defers_to_the_trigger(emulator: EmulatorServer) -> None:
    cutoff = utcnow()
    sensor = make_sensor(
        image_ids="a,b",
        uploaded_after=cutoff,
        filename="*.png",
        deferrable=True,
        timeout=120,
        poke_interval=7,
        max_images_in_xcom=5,
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})

    assert len(emulator.requests) == 1
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=120)
    trigger = deferred.value.trigger
    assert isinstance(trigger, CloudflareImagesTrigger)
    assert trigger.serialize()[1] == {
        "cloudflare_images_conn_id": "cloudflare_images_default",
        "account_id": None,
        "image_ids": ["a", "b"],
        "filename": "*.png",
        "uploaded_after": cutoff.isoformat(),
        "min_count": 1,
        "creator": None,
        "per_page": 1000,
        "max_pages": 10,
        "max_images": 5,
        "poke_interval": 7.0,
        "meta_filters": None,
    }


def test_deferrable_returns_at_once_when_already_satisfied(emulator: EmulatorServer) -> None:
    image = emulator.backend.upload("ready.jpg")
    result = make_sensor(image_ids=[image["id"]], deferrable=True).execute(context={})
    assert result == [compact(image)]


def test_execute_complete_returns_the_trigger_images() -> None:
    images = [{"id": "a", "filename": "a.jpg", "uploaded": "2024-01-01T00:00:00Z"}]
    event = {"status": "success", "images": images, "message": "Condition met"}
    assert make_sensor(image_ids=["a"]).execute_complete({}, event) == images


def test_execute_complete_fails_with_the_trigger_message() -> None:
    event = {"status": "error", "message": "CloudflareImagesAPIError: HTTP 401"}
    with pytest.raises(CloudflareImagesError, match="HTTP 401"):
        make_sensor(image_ids=["a"]).execute_complete({}, event)


def test_soft_fail_skips_on_a_timeout_when_deferred_but_errors_fail_as_when_poking() -> None:
    sensor = make_sensor(image_ids=["a"], deferrable=True, soft_fail=True)
    # The trigger's error event: a wrong token fails the task, soft_fail or not (as a poke
    # does), instead of skipping every run without a word.
    error = {"event": {"status": "error", "message": "CloudflareImagesAPIError: HTTP 401"}}
    with pytest.raises(CloudflareImagesError, match="HTTP 401"):
        sensor.resume_execution("execute_complete", error, context={})
    lenient = make_sensor(image_ids=["a"], deferrable=True, never_fail=True)
    with pytest.raises(AirflowSkipException):
        lenient.resume_execution("execute_complete", error, context={})
    images = [{"id": "a", "filename": "a.jpg", "uploaded": "2024-01-01T00:00:00Z"}]
    success = {"event": {"status": "success", "images": images, "message": "ok"}}
    assert sensor.resume_execution("execute_complete", success, context={}) == images
    # What the task runner passes when the defer timeout expired (TriggerFailureReason).
    timeout = {"error": "Trigger timeout"}
    with pytest.raises(AirflowSkipException):
        sensor.resume_execution("__fail__", timeout, context={})
    strict = make_sensor(image_ids=["a"], deferrable=True)
    with pytest.raises(AirflowSensorTimeout):
        strict.resume_execution("__fail__", timeout, context={})


# -- a real DAG run ----------------------------------------------------------------------

DEFERRED_DAG = """
from airflow.sdk import DAG
from airflow_provider_cfimages.sensors.images import CloudflareImagesSensor

with DAG("cfimages_sensor_deferred", schedule=None) as dag:
    CloudflareImagesSensor(
        task_id="wait_for_batch",
        uploaded_after="{{ data_interval_start }}",
        filename="batch-7-*.jpg",
        deferrable=True,
        poke_interval=0.2,
        timeout=120,
    )
"""


def upload_after_first_listing(emu: EmulatorServer, filename: str) -> threading.Thread:
    """Upload once the worker's first poke has listed, so the trigger must find the image."""

    def run() -> None:
        deadline = time.monotonic() + 120
        while not requests_of(emu, "/images/v2") and time.monotonic() < deadline:
            time.sleep(0.05)
        emu.backend.upload(filename)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_deferred_sensor_resumes_in_a_dag_run_with_the_new_images(
    emulator: EmulatorServer, dag_runner: Any
) -> None:
    logical_date = utcnow()
    uploader = upload_after_first_listing(emulator, "batch-7-0001.jpg")

    dag_run = dag_runner.run(DEFERRED_DAG, "cfimages_sensor_deferred", logical_date=logical_date)
    uploader.join(timeout=5)

    assert dag_run.state == "success"
    [image] = dag_runner.xcoms(dag_run)["wait_for_batch"]
    assert image["filename"] == "batch-7-0001.jpg"
    assert set(image) == {"id", "filename", "uploaded"}
    # The worker's poke found nothing; the trigger's checks found the upload.
    assert len(requests_of(emulator, "/images/v2")) >= 2

"""The delete operator through the Images batch API, in parallel, against the emulator."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError, CloudflareImagesError
from airflow_provider_cfimages.hooks import transport
from airflow_provider_cfimages.operators.images import CloudflareImagesDeleteOperator
from tests.reconcile.conftest import emulator_connection, served

CONN_ENV = "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"
TOKEN_PATH = "/images/v1/batch_token"
AUTH_ERROR = (
    '{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],'
    '"messages":[],"result":null}'
)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "BACKOFF_INITIAL", 0.01)


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    """600 images of its own (deleted freely), as the default connection."""
    with EmulatorServer(images=600, seed=21) as server:
        monkeypatch.setenv(CONN_ENV, emulator_connection(server))
        yield server


def plain_ids(emu: EmulatorServer, count: int) -> list[str]:
    return [image_id for image_id in emu.backend.ids_sorted() if "/" not in image_id][:count]


def delete(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("task_id", "delete")
    return CloudflareImagesDeleteOperator(**kwargs).execute(context={})


def on_batch_host(record: Any) -> bool:
    return record.path.startswith("/batch/")


def most_at_once(records: list[Any]) -> int:
    """The most requests the emulator was handling at the same time."""
    events = sorted(
        [(r.started, 1) for r in records] + [(r.started + r.duration, -1) for r in records]
    )
    current = highest = 0
    for _, step in events:
        current += step
        highest = max(highest, current)
    return highest


def test_details_and_deletes_go_to_the_batch_host_in_parallel_with_exact_counts(
    emu: EmulatorServer,
) -> None:
    ids = plain_ids(emu, 300)
    uploaded = {image["id"]: image["uploaded"] for image in emu.backend.images_sorted()}
    cutoff = uploaded[ids[250]]
    protected = [image_id for image_id in ids if uploaded[image_id] >= cutoff]
    absent = ids[10:15]
    failing = [ids[20], ids[40], ids[60]]
    for image_id in absent:
        emu.backend.delete_image(image_id)
    for image_id in failing:
        emu.faults.fail_next(
            1, status=400, html=False, path=f"/images/v1/{image_id}", method="DELETE"
        )
    emu.faults.slow_next(None, seconds=0.02, path="/batch/")  # so calls overlap

    result = delete(
        image_ids=ids,
        max_deletes=300,
        older_than=cutoff,
        max_concurrency=8,
        fail_on_error=False,
        sample_size=1000,
    )

    deleted = [i for i in ids if i not in protected and i not in absent and i not in failing]
    assert result["deleted"] == len(deleted)
    assert result["deleted_ids"] == deleted  # in the order given, whatever finished first
    assert result["protected_ids"] == protected
    assert result["already_absent_ids"] == absent
    assert [failure["id"] for failure in result["failures"]] == failing
    assert (
        result["deleted"] + result["protected"] + result["already_absent"] + result["failed"] == 300
    )
    assert not any(image_id in emu.backend for image_id in deleted)
    assert all(image_id in emu.backend for image_id in protected + failing)
    records = served(emu)
    off_batch = [record for record in records if not on_batch_host(record)]
    assert [record.api_path for record in off_batch] == [TOKEN_PATH]  # nothing else global
    assert len([r for r in records if r.method == "GET" and on_batch_host(r)]) == 300
    assert 1 < most_at_once([r for r in records if on_batch_host(r)]) <= 8


def test_a_delete_whose_answer_was_lost_counts_as_deleted(emu: EmulatorServer) -> None:
    ids = plain_ids(emu, 30)
    emu.faults.lose_answer_next(2, method="DELETE", on_request=5)

    result = delete(image_ids=ids, max_deletes=30)

    assert (result["deleted"], result["already_absent"], result["failed"]) == (30, 0, 0)
    assert not any(image_id in emu.backend for image_id in ids)
    deletes = [record for record in served(emu) if record.method == "DELETE"]
    assert len(deletes) == 32
    assert [record.status for record in deletes].count(404) == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [(403, AUTH_ERROR), (401, AUTH_ERROR.replace("10000", "10001"))],
    ids=["403-no-permission", "401"],
)
def test_without_a_batch_token_it_falls_back_to_the_global_api_with_one_warning(
    emu: EmulatorServer, capsys: pytest.CaptureFixture[str], status: int, body: str
) -> None:
    ids = plain_ids(emu, 20)
    emu.faults.fail_next(None, status=status, html=False, body=body, path=TOKEN_PATH)

    result = delete(image_ids=ids, max_deletes=20, older_than="2999-01-01")

    assert result["deleted"] == 20
    output = capsys.readouterr()
    lines = (output.out + output.err).splitlines()
    warnings = [line for line in lines if "Could not get an Images batch token" in line]
    assert len(warnings) == 1
    assert f"HTTP {status}" in warnings[0]
    assert "Images Edit permission" in warnings[0]
    assert "global API" in warnings[0]
    records = served(emu)
    assert not any(on_batch_host(record) for record in records)
    assert len([r for r in records if r.method == "DELETE"]) == 20
    assert len([r for r in records if r.api_path == TOKEN_PATH]) == 1


def test_a_wrong_token_does_not_fall_back(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = json.loads(emulator_connection(emu, max_retries=0))
    connection["password"] = "W" * 40  # well formed, unknown: 9109
    monkeypatch.setenv(CONN_ENV, json.dumps(connection))

    with pytest.raises(CloudflareImagesError, match="9109"):
        delete(image_ids=plain_ids(emu, 5), max_deletes=5)

    assert len(served(emu)) == 1


def test_use_batch_api_off_sends_everything_to_the_global_api(emu: EmulatorServer) -> None:
    ids = plain_ids(emu, 12)

    result = delete(image_ids=ids, max_deletes=12, use_batch_api=False, max_concurrency=4)

    assert result["deleted_ids"] == ids
    records = served(emu)
    assert not any(on_batch_host(record) for record in records)
    assert not any(record.api_path == TOKEN_PATH for record in records)


def test_the_global_fallback_in_parallel_stays_under_the_rate_limit(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 8 threads against 10 requests a second with a lockout: the shared pacer holds them.
    monkeypatch.setenv(CONN_ENV, emulator_connection(emu, max_retries=0))
    emu.faults.rate_limit(requests=10, window_seconds=1, block_seconds=30)
    ids = plain_ids(emu, 30)

    result = delete(image_ids=ids, max_deletes=30, use_batch_api=False, max_concurrency=8)

    assert result["deleted"] == 30
    assert all(record.status == 200 for record in served(emu))


def test_an_account_wide_error_mid_run_stops_new_requests_and_counts_exactly(
    emu: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = plain_ids(emu, 400)
    emu.faults.fail_next(
        None, status=403, html=False, body=AUTH_ERROR, method="DELETE", on_request=41
    )

    with pytest.raises(CloudflareImagesError, match="HTTP 403"):
        delete(image_ids=ids, max_deletes=400, max_concurrency=8)

    deletes = [record for record in served(emu) if record.method == "DELETE"]
    gone = [image_id for image_id in ids if image_id not in emu.backend]
    assert len(gone) == 40
    assert len(deletes) <= 40 + 8 * 3  # what was in flight or queued, never the 400
    output = capsys.readouterr()
    (summary,) = [line for line in (output.out + output.err).splitlines() if "Stopped: " in line]
    deleted = int(re.search(r"(\d+) deleted", summary).group(1))  # type: ignore[union-attr]
    failed = int(re.search(r"(\d+) failed", summary).group(1))  # type: ignore[union-attr]
    assert deleted == len(gone)
    assert failed == len(deletes) - 40


def test_on_kill_stops_new_requests(emu: EmulatorServer) -> None:
    ids = plain_ids(emu, 500)
    emu.faults.slow_next(None, seconds=0.05, path="/batch/")
    operator = CloudflareImagesDeleteOperator(
        task_id="delete", image_ids=ids, max_deletes=500, max_concurrency=4
    )
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            operator.execute(context={})
        except CloudflareImagesError as err:
            outcome["error"] = err

    worker = threading.Thread(target=run)
    worker.start()
    threading.Timer(0.6, operator.on_kill).start()
    worker.join(timeout=60)

    assert not worker.is_alive()
    assert "Killed" in str(outcome["error"]) or "cancelled" in str(outcome["error"])
    deletes = [record for record in served(emu) if record.method == "DELETE"]
    assert 0 < len(deletes) < 500
    gone = [image_id for image_id in ids if image_id not in emu.backend]
    assert len(gone) == len([record for record in deletes if record.status == 200])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency must be a whole number from 1 to 64"),
        ({"max_concurrency": 65}, "max_concurrency must be a whole number from 1 to 64"),
        ({"max_concurrency": True}, "max_concurrency"),
        ({"max_concurrency": "8"}, "max_concurrency"),
        ({"use_batch_api": "yes"}, "use_batch_api must be True or False"),
        ({"use_batch_api": 1}, "use_batch_api must be True or False"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(CloudflareImagesConfigError, match=message):
        CloudflareImagesDeleteOperator(task_id="delete", image_ids=["a"], max_deletes=1, **kwargs)


def test_a_bad_connection_extra_fails_before_any_request(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONN_ENV, emulator_connection(emu, batch_base_url="http://batch.example"))
    with pytest.raises(CloudflareImagesConfigError, match="batch_base_url"):
        delete(image_ids=plain_ids(emu, 3), max_deletes=3)
    assert served(emu) == []


DELETE_DAG = '''
"""Delete old orphans through the batch API, 8 at a time.

Needs the ``cloudflare_images_default`` connection.
"""

import pendulum
from airflow.sdk import DAG

from airflow_provider_cfimages.operators.images import CloudflareImagesDeleteOperator

with DAG(
    "cfimages_bulk_delete",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
):
    CloudflareImagesDeleteOperator(
        task_id="delete",
        image_ids="IDS_FILE",
        max_deletes=200,
        older_than="{{ dag_run.run_after }}",
        max_concurrency=8,
    )
'''


def test_a_dag_run_deletes_through_the_batch_api(
    emu: EmulatorServer, dag_runner: Any, tmp_path: Path
) -> None:
    ids = plain_ids(emu, 150)
    ids_file = tmp_path / "orphans.txt"
    ids_file.write_text("".join(f"{image_id}\n" for image_id in ids))
    emu.faults.lose_answer_next(1, method="DELETE", on_request=3)

    dag_run = dag_runner.run(DELETE_DAG.replace("IDS_FILE", str(ids_file)), "cfimages_bulk_delete")

    assert dag_run.state == "success"
    result = dag_runner.xcoms(dag_run)["delete"]
    assert (result["requested"], result["deleted"], result["already_absent"]) == (150, 150, 0)
    assert not any(image_id in emu.backend for image_id in ids)
    records = served(emu)
    assert [r.api_path for r in records if not on_batch_host(r)] == [TOKEN_PATH]

"""CloudflareImagesDeleteOperator against the emulator: cap, dry run, older_than, re-runs."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
import responses

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError, CloudflareImagesError
from airflow_provider_cfimages.operators.images import (
    CloudflareImagesDeleteOperator,
    CloudflareImagesReconcileOperator,
)
from tests.conftest import TEST_TOKEN
from tests.reconcile.conftest import emulator_connection, served


def delete(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("task_id", "delete")
    return CloudflareImagesDeleteOperator(**kwargs).execute(context={})


def plain_ids(emu: EmulatorServer, count: int, *, skip: int = 0) -> list[str]:
    """The oldest images' ids; custom ids with '/' are left out (see the report)."""
    ids = [image_id for image_id in emu.backend.ids_sorted() if "/" not in image_id]
    return ids[skip : skip + count]


def requests_of(emu: EmulatorServer, method: str) -> list[Any]:
    """The image calls (details, delete) made with ``method``, on either host.

    The batch token the operator gets first is not an image call: it is counted on its own.
    """
    return [
        record
        for record in served(emu)
        if record.method == method and not record.path.endswith("/images/v1/batch_token")
    ]


def test_deletes_each_image_and_returns_counts(live: EmulatorServer) -> None:
    ids = plain_ids(live, 30)

    result = delete(image_ids=ids, max_deletes=30)

    assert result["deleted"] == 30
    assert result["already_absent"] == result["protected"] == result["failed"] == 0
    assert result["dry_run"] is False
    assert result["requested"] == 30
    assert result["deleted_ids"] == ids[:20]
    assert not any(image_id in live.backend for image_id in ids)
    assert len(live.backend) == 25_000 - 30
    assert len(requests_of(live, "DELETE")) == 30


def test_each_deletion_is_logged_by_id_without_the_token(
    live: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = plain_ids(live, 3)

    delete(image_ids=ids, max_deletes=3)

    output = capsys.readouterr()
    logs = output.out + output.err
    assert all(f"Deleted image {image_id}" in logs for image_id in ids)
    assert live.api_token not in logs
    assert TEST_TOKEN not in logs
    assert "older_than is not set" in logs


@pytest.mark.parametrize(
    "guard", [{"older_than": "2099-01-01T00:00:00Z"}, {"dry_run": True}], ids=["older_than", "dry"]
)
def test_no_warning_about_recent_uploads_when_guarded(
    live: EmulatorServer, capsys: pytest.CaptureFixture[str], guard: dict[str, Any]
) -> None:
    delete(image_ids=plain_ids(live, 2), max_deletes=2, **guard)

    output = capsys.readouterr()
    assert "older_than is not set" not in output.out + output.err


def test_above_the_cap_nothing_is_deleted(live: EmulatorServer) -> None:
    ids = plain_ids(live, 30)

    with pytest.raises(
        CloudflareImagesError, match="30 images to delete is more than max_deletes=29"
    ):
        delete(image_ids=ids, max_deletes=29)

    assert served(live) == []
    assert all(image_id in live.backend for image_id in ids)


def test_repeated_ids_count_once_against_the_cap(live: EmulatorServer) -> None:
    ids = plain_ids(live, 5)

    result = delete(image_ids=ids + ids, max_deletes=5)

    assert result["requested"] == 5
    assert result["deleted"] == 5


def test_max_deletes_is_required_and_checked() -> None:
    with pytest.raises(TypeError, match="max_deletes"):
        CloudflareImagesDeleteOperator(task_id="delete", image_ids=["a"])  # type: ignore[call-arg]
    for bad in (None, -1, "many", 2.5, True):
        with pytest.raises(CloudflareImagesConfigError, match="max_deletes is required"):
            CloudflareImagesDeleteOperator(task_id="delete", image_ids=["a"], max_deletes=bad)


def test_dry_run_deletes_nothing_and_says_what_would_go(live: EmulatorServer) -> None:
    ids = plain_ids(live, 12)

    result = delete(image_ids=ids, max_deletes=100, dry_run=True)

    assert result["dry_run"] is True
    assert result["would_delete"] == 12
    assert result["would_delete_ids"] == ids
    assert result["deleted"] == 0
    assert requests_of(live, "DELETE") == []
    assert all(image_id in live.backend for image_id in ids)


def test_dry_run_still_enforces_the_cap(live: EmulatorServer) -> None:
    with pytest.raises(CloudflareImagesError, match="more than max_deletes"):
        delete(image_ids=plain_ids(live, 3), max_deletes=2, dry_run="true")


def test_rerun_is_idempotent_404_counts_as_already_absent(live: EmulatorServer) -> None:
    ids = plain_ids(live, 10)
    live.backend.delete_image(ids[0])

    first = delete(image_ids=ids, max_deletes=10)
    second = delete(image_ids=ids, max_deletes=10)

    assert (first["deleted"], first["already_absent"]) == (9, 1)
    assert first["already_absent_ids"] == [ids[0]]
    assert (second["deleted"], second["already_absent"]) == (0, 10)
    assert second["failed"] == 0


# -- older_than ----------------------------------------------------------------------------


def unexpected_rows(emu: EmulatorServer, ids: list[str]) -> list[dict[str, Any]]:
    uploaded = {image["id"]: image["uploaded"] for image in emu.backend.images_sorted()}
    return [
        {"kind": "unexpected", "key": image_id, "id": image_id, "uploaded": uploaded[image_id]}
        for image_id in ids
    ]


def test_older_than_protects_images_uploaded_at_or_after_the_cutoff(live: EmulatorServer) -> None:
    ids = plain_ids(live, 20)
    rows = unexpected_rows(live, ids)
    cutoff = rows[10]["uploaded"]  # images are oldest first: the last 10 are not older
    newer = {row["id"] for row in rows if row["uploaded"] >= cutoff}

    result = delete(image_ids=rows, max_deletes=20, older_than=cutoff)

    assert result["protected"] == len(newer) >= 10
    assert set(result["protected_ids"]) == newer
    assert result["deleted"] == 20 - len(newer)
    assert all(image_id in live.backend for image_id in newer)


def test_older_than_reads_upload_times_live_not_from_the_report(live: EmulatorServer) -> None:
    # "product/42" was reported as an old orphan, then deleted and uploaded again under
    # the same custom id: the report's time is stale, and the new image must be kept.
    old = unexpected_rows(live, plain_ids(live, 1))[0]
    live.backend.upload("again.jpg", id="product/42")
    rows = [old, {**old, "key": "product/42", "id": "product/42"}]

    result = delete(
        image_ids=rows, max_deletes=2, older_than=live.backend.get_image("product/42")["uploaded"]
    )

    assert result["deleted_ids"] == [old["id"]]
    assert result["protected_ids"] == ["product/42"]
    assert "product/42" in live.backend
    assert len(requests_of(live, "GET")) == 2


def test_older_than_fetches_upload_times_for_bare_ids(live: EmulatorServer) -> None:
    ids = plain_ids(live, 8)
    cutoff = unexpected_rows(live, ids)[4]["uploaded"]
    live.backend.delete_image(ids[0])

    result = delete(image_ids=ids, max_deletes=8, older_than=cutoff)

    assert result["already_absent_ids"] == [ids[0]]
    assert result["deleted"] + result["protected"] == 7
    assert result["protected"] >= 4
    assert len(requests_of(live, "GET")) == 8
    assert len(requests_of(live, "DELETE")) == result["deleted"]


def test_older_than_in_the_far_past_protects_everything(live: EmulatorServer) -> None:
    result = delete(image_ids=plain_ids(live, 5), max_deletes=5, older_than="2000-01-01")

    assert result["protected"] == 5
    assert requests_of(live, "DELETE") == []


def test_older_than_must_be_a_date() -> None:
    with pytest.raises(ValueError, match="older_than must be a date-time"):
        CloudflareImagesDeleteOperator(
            task_id="delete", image_ids=["a"], max_deletes=1, older_than="last tuesday-ish"
        )


# -- errors --------------------------------------------------------------------------------


def test_a_failing_image_is_reported_and_the_rest_are_still_deleted(live: EmulatorServer) -> None:
    ids = plain_ids(live, 6)
    live.faults.fail_next(1, status=400, html=False, path=f"/images/v1/{ids[2]}", method="DELETE")

    with pytest.raises(CloudflareImagesError, match="1 of 6 image"):
        delete(image_ids=ids, max_deletes=6)

    assert ids[2] in live.backend
    assert not any(image_id in live.backend for image_id in ids[:2] + ids[3:])


def test_fail_on_error_off_returns_the_failures(live: EmulatorServer) -> None:
    ids = plain_ids(live, 4)
    live.faults.fail_next(1, status=400, html=False, path=f"/images/v1/{ids[1]}", method="DELETE")

    result = delete(image_ids=ids, max_deletes=4, fail_on_error=False)

    assert result["deleted"] == 3
    assert result["failed"] == 1
    assert result["failures"][0]["id"] == ids[1]
    assert "HTTP 400" in result["failures"][0]["error"]


@pytest.mark.parametrize(
    ("status", "html"),
    [
        pytest.param(403, False, id="account-wide"),
        # A proxy's or a wrong base URL's "not found": not proof that any image is gone.
        pytest.param(404, True, id="404-page-without-cloudflare-code"),
    ],
)
def test_an_error_about_every_image_stops_at_once(
    live: EmulatorServer, status: int, html: bool
) -> None:
    ids = plain_ids(live, 5)
    live.faults.fail_next(None, status=status, html=html, method="DELETE")

    with pytest.raises(CloudflareImagesError, match=f"HTTP {status}"):
        delete(image_ids=ids, max_deletes=5)

    assert len(requests_of(live, "DELETE")) == 1
    assert all(image_id in live.backend for image_id in ids)


def test_an_id_with_a_dot_segment_fails_alone_and_reaches_no_other_image(
    live: EmulatorServer,
) -> None:
    victim, other = plain_ids(live, 2)

    result = delete(image_ids=[f"tmp/../{victim}", other], max_deletes=2, fail_on_error=False)

    assert result["deleted"] == 1
    assert result["failures"][0]["id"] == f"tmp/../{victim}"
    assert "'..' path segment" in result["failures"][0]["error"]
    assert victim in live.backend
    assert other not in live.backend


@pytest.mark.parametrize("use_batch_api", [False, True], ids=["global-api", "batch-api"])
def test_a_redirect_stops_at_once_without_following_it(use_batch_api: bool) -> None:
    # The API never redirects: a 3xx means a wrong base URL, for every image alike.
    with responses.RequestsMock() as mocked:
        if use_batch_api:
            mocked.get(
                re.compile(r".*/images/v1/batch_token$"),
                json={
                    "success": True,
                    "errors": [],
                    "result": {"token": "b" * 40, "expiresAt": "2099-01-01T00:00:00Z"},
                },
            )
        host = "batch.imagedelivery.net" if use_batch_api else "api.cloudflare.com"
        moved = mocked.delete(
            re.compile(rf"https://{re.escape(host)}/.*images/v1/.*"),
            status=301,
            headers={"Location": "https://elsewhere.example/images"},
        )
        with pytest.raises(CloudflareImagesError, match="redirect"):
            delete(image_ids=["a", "b", "c"], max_deletes=3, use_batch_api=use_batch_api)

    assert moved.call_count == 1


def test_a_wrong_token_stops_at_once(live: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    connection = json.loads(emulator_connection(live, max_retries=0))
    connection["password"] = "wrong-token-0123456789"
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", json.dumps(connection))

    with pytest.raises(CloudflareImagesError) as raised:
        delete(image_ids=plain_ids(live, 3), max_deletes=3)

    assert "wrong-token-0123456789" not in str(raised.value)
    assert len(served(live)) == 1


# -- where the ids come from -----------------------------------------------------------------


def test_ids_from_a_reconcile_summary_and_its_report(live: EmulatorServer, tmp_path: Path) -> None:
    ids = live.backend.ids_sorted()
    orphans = plain_ids(live, 7, skip=100)
    expected = [image_id for image_id in ids if image_id not in orphans] + ["gone-1"]
    summary = CloudflareImagesReconcileOperator(
        task_id="reconcile", expected=expected, report_path=str(tmp_path / "r.jsonl")
    ).execute(context={})

    result = delete(image_ids=summary, max_deletes=7)

    assert result["deleted"] == 7
    assert set(result["deleted_ids"]) == set(orphans)
    assert not any(image_id in live.backend for image_id in orphans)
    # Only the unexpected rows were taken: the missing key was never requested.
    assert all("gone-1" not in record.path for record in served(live))


def test_a_report_overwritten_since_its_summary_deletes_nothing(
    live: EmulatorServer, tmp_path: Path
) -> None:
    ids = live.backend.ids_sorted()
    report_path = str(tmp_path / "r.jsonl")

    def reconcile(orphans: list[str]) -> dict[str, Any]:
        expected = [image_id for image_id in ids if image_id not in orphans]
        return CloudflareImagesReconcileOperator(
            task_id="reconcile", expected=expected, report_path=report_path
        ).execute(context={})

    first = reconcile(plain_ids(live, 2))
    reconcile(plain_ids(live, 10, skip=100))  # a later run writes the same report_path

    with pytest.raises(CloudflareImagesConfigError, match=r"holds 10 unexpected.*says 2"):
        delete(image_ids=first, max_deletes=100)

    assert requests_of(live, "DELETE") == []
    assert len(live.backend) == len(ids)


def test_ids_from_a_report_file_take_only_unexpected_rows(
    live: EmulatorServer, tmp_path: Path
) -> None:
    ids = plain_ids(live, 3)
    report = tmp_path / "report.jsonl.gz"
    rows = [
        {"kind": "missing", "key": "keep-me"},
        *unexpected_rows(live, ids),
        {"kind": "drifted", "key": ids[0], "id": "drifted-only"},
        {"kind": "duplicate_actual", "key": "x", "count": 2, "ids": ["a", "b"]},
    ]
    report.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))

    result = delete(image_ids=str(report), max_deletes=3, dry_run=True)

    assert result["would_delete_ids"] == ids


def test_ids_from_a_txt_file(live: EmulatorServer, tmp_path: Path) -> None:
    ids = plain_ids(live, 4)
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")

    result = delete(image_ids=str(tmp_path / "ids.txt"), max_deletes=4)

    assert result["deleted"] == 4


def test_a_summary_without_report_path_is_refused_unless_nothing_is_unexpected() -> None:
    with pytest.raises(CloudflareImagesConfigError, match="set report_path on the reconcile"):
        delete(image_ids={"unexpected_count": 3, "report_path": None}, max_deletes=3)

    result = delete(image_ids={"unexpected_count": 0, "report_path": None}, max_deletes=3)
    assert result["requested"] == 0


@pytest.mark.parametrize(
    ("image_ids", "message"),
    [
        (42, "image_ids must be a list of image ids"),
        ({"some": "dict"}, "must be the summary CloudflareImagesReconcileOperator returns"),
        (["ok", ""], "image_ids entry 2 is not an image id"),
        ([{"kind": "unexpected", "key": "a"}], "a record has no 'id' field"),
        ("relative/report.jsonl", "image_ids must be an absolute local path"),
    ],
)
def test_bad_image_ids_are_refused_before_any_request(
    live: EmulatorServer, image_ids: Any, message: str
) -> None:
    with pytest.raises(CloudflareImagesConfigError, match=message):
        delete(image_ids=image_ids, max_deletes=10)

    assert served(live) == []


def test_templated_arguments_are_rendered_values(live: EmulatorServer) -> None:
    operator = CloudflareImagesDeleteOperator(
        task_id="delete",
        image_ids="{{ ti.xcom_pull('reconcile') }}",
        max_deletes="{{ var.value.max_deletes }}",
        dry_run="{{ params.dry_run }}",
    )
    operator.image_ids = plain_ids(live, 2)
    operator.max_deletes = "2"
    operator.dry_run = "False"

    result = operator.execute(context={})

    assert result["deleted"] == 2

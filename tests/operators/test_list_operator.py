"""CloudflareImagesListOperator: argument checks, XCom mode, exports to files and S3, DAG runs.

Integration tests talk over real HTTP to the emulator (25,000 images, seed 7); the S3 tests
to a moto server started here; the DAG test runs real Airflow (``dag.test()``).
"""

from __future__ import annotations

import csv
import datetime as dt
import gc
import gzip
import hashlib
import io
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pendulum
import pytest
import responses

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.exceptions import (
    CloudflareImagesConfigError,
    CloudflareImagesError,
    CloudflareImagesPaginationError,
)
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook
from airflow_provider_cfimages.inventory import CSV_COLUMNS
from airflow_provider_cfimages.operators.images import (
    CloudflareImagesListOperator,
    ListingProgress,
)
from airflow_provider_cfimages.utils.timestamps import parse_uploaded

TOTAL = 25_000
S3_CONN_ID = "aws_cfimages_list_tests"
S3_BUCKET = "cf-exports"


# -- helpers --------------------------------------------------------------------------------


def make_operator(**kwargs: Any) -> CloudflareImagesListOperator:
    kwargs.setdefault("task_id", "list_images")
    return CloudflareImagesListOperator(**kwargs)


def run(**kwargs: Any) -> Any:
    return make_operator(**kwargs).execute(context={})


def point_at(emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    """Point the default connection at ``emu`` (with extra connection extras)."""
    connection = json.loads(emu.connection_json())
    connection["extra"].update(extra)
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", json.dumps(connection))


@pytest.fixture
def emu(emulator_25k: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    point_at(emulator_25k, monkeypatch)
    return emulator_25k


def list_requests(emu: EmulatorServer) -> int:
    """List requests the emulator served, once its log has settled.

    The emulator logs a request after sending the response, so a client that has its answer
    can be a moment ahead of the log.
    """

    def count() -> int:
        return sum(1 for record in emu.requests if "/images/v2" in record.path)

    seen, deadline = count(), time.monotonic() + 2
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = count()
        if now == seen:
            return now
        seen = now
    return seen


def stored_text(data: bytes, gzipped: bool) -> str:
    return (gzip.decompress(data) if gzipped else data).decode("utf-8")


def parse_export(text: str, fmt: str) -> list[Any]:
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines()]
    if fmt == "json":
        return json.loads(text)
    return list(csv.reader(io.StringIO(text, newline="")))


def csv_cell(value: Any) -> str:
    """A CSV cell as the README describes it: text as is, None empty, anything else JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def expected_rows(images: list[dict[str, Any]], fmt: str) -> list[Any]:
    if fmt != "csv":
        return images
    return [list(CSV_COLUMNS)] + [[csv_cell(i.get(c)) for c in CSV_COLUMNS] for i in images]


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# -- argument checks (no HTTP) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_page": 5}, "per_page must be a whole number from 10 to 10000"),
        ({"per_page": 20_000}, "per_page must be"),
        ({"sort_order": "newest"}, "sort_order must be 'asc'"),
        ({"uploaded_after": "yesterday-ish"}, "uploaded_after must be a date-time"),
        (
            {"uploaded_after": "2024-02-01", "uploaded_before": "2024-01-01"},
            "uploaded_after .* must be earlier than uploaded_before",
        ),
        ({"max_images": 0}, "max_images must be a whole number >= 1"),
        ({"creator": 42}, "creator must be a string"),
        ({"fields": []}, "fields must be a non-empty list"),
        ({"account_id": "not-an-account"}, "account_id must be the 32-character"),
        ({"cloudflare_images_conn_id": ""}, "cloudflare_images_conn_id must be"),
        ({"output_path": "exports/images.jsonl"}, "output_path must be an absolute"),
        ({"output_path": "/data/images.jsonl.bz2"}, "only gzip compression"),
        ({"output_path": "/d/i.jsonl", "output_format": "xml"}, "output_format must be one of"),
        ({"output_path": "/d/i.csv", "output_format": "json"}, "output_format is 'json' but"),
        ({"output_format": "csv"}, "output_format='csv' needs output_path"),
        ({"max_xcom_images": 0}, "max_xcom_images must be a whole number >= 1"),
        ({"log_every_seconds": -1}, "log_every_seconds must be"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_operator(**kwargs)


def rendered_operator(**params: Any) -> CloudflareImagesListOperator:
    """An operator whose arguments are all templates, rendered by Airflow with ``params``."""
    operator = make_operator(
        sort_order="{{ params.order }}",
        uploaded_after="{{ params.after }}",
        output_path="{{ params.out }}",
        output_format="{{ params.fmt }}",
        fields=["id", "{{ params.field }}"],
        max_images="{{ params.limit }}",
    )
    defaults = {"order": "asc", "after": "2024-01-01", "out": "/tmp/x.csv", "fmt": "csv"}
    operator.render_template_fields({"params": {**defaults, "field": "uploaded", **params}})
    return operator


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"order": "sideways"}, "sort_order must be 'asc'"),
        ({"after": "not a date"}, "uploaded_after must be a date-time"),
        ({"out": "relative/x.csv"}, "output_path must be an absolute"),
        ({"fmt": "xml"}, "output_format must be one of"),
        ({"field": ""}, "fields must hold only non-empty key names"),
        ({"limit": "-3"}, "max_images must be a whole number"),
    ],
)
def test_templated_arguments_are_checked_after_rendering_before_any_request(
    params: dict[str, str], message: str
) -> None:
    operator = rendered_operator(**params)  # unrendered templates pass the parse-time checks
    with responses.RequestsMock() as mocked:  # any request would fail: none is registered
        with pytest.raises(ValueError, match=message):
            operator.execute(context={})
        assert not mocked.calls


def test_rendered_arguments_reach_the_listing(emu: EmulatorServer, tmp_path: Path) -> None:
    out = tmp_path / "rendered.csv"
    operator = rendered_operator(out=str(out), limit="7", field="filename", order="asc")
    manifest = operator.execute(context={})
    assert (manifest["count"], manifest["format"], manifest["sort_order"]) == (7, "csv", "asc")
    assert manifest["fields"] == ["id", "filename"]
    assert out.read_text().splitlines()[0] == "id,filename"


def test_output_path_without_a_filesystem_fails_before_any_request() -> None:
    operator = make_operator(output_path="gs://bucket/cf/images.jsonl.gz")
    with responses.RequestsMock() as mocked:
        with pytest.raises(CloudflareImagesConfigError, match="output_path 'gs://bucket") as info:
            operator.execute(context={})
        assert not mocked.calls
    assert "install apache-airflow-providers-google" in str(info.value)


def test_progress_logs_the_first_page_then_at_most_every_n_seconds() -> None:
    lines: list[str] = []

    class Recorder:
        def info(self, message: str, *args: Any) -> None:
            lines.append(message % args)

    now = [100.0]
    progress = ListingProgress(Recorder(), every_seconds=10, clock=lambda: now[0])
    for page, seconds in enumerate([1, 2, 3, 9, 1, 11], start=1):
        now[0] += seconds
        progress.page(page, page * 1000)
    progress.summary(6000, 7, "/data/x.jsonl", nbytes=123)
    assert lines == [
        "Listed page 1: 1000 images so far (1000 images/s)",
        "Listed page 4: 4000 images so far (267 images/s)",
        "Listed page 6: 6000 images so far (222 images/s)",
        "Listed 6000 images with 7 requests in 27.0 s (222 images/s) into /data/x.jsonl, 123 bytes",
    ]


def test_a_listing_leaves_the_garbage_collector_alone(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Workers and the triggerer run other tasks' code in the same process: the provider must
    # not switch the collector for them.
    def refuse(*_args: Any) -> None:
        raise AssertionError("the provider switched the garbage collector")

    for name in ("disable", "enable", "freeze", "unfreeze"):
        monkeypatch.setattr(gc, name, refuse)
    images = run(max_images=30)
    assert len(images) == 30


# -- XCom mode against the emulator -----------------------------------------------------------


def test_without_output_path_returns_the_images_with_fields(emu: EmulatorServer) -> None:
    images = run(max_images=30, fields=["id", "uploaded", "notAKey"], sort_order="asc")
    oldest_30 = emu.backend.images_sorted()[:30]
    assert images == [{"id": i["id"], "uploaded": i["uploaded"]} for i in oldest_30]


def test_xcom_guard_fails_before_listing_further_and_names_output_path(
    emu: EmulatorServer,
) -> None:
    with pytest.raises(CloudflareImagesError, match="Set output_path") as info:
        run(per_page=1000, max_xcom_images=2500)
    assert "reached 3000 images after 3 page(s)" in str(info.value)
    assert list_requests(emu) == 3  # 3000 images seen: no fourth page was asked for


def test_max_images_stops_listing_early(emu: EmulatorServer) -> None:
    images = run(per_page=1000, max_images=2500, max_xcom_images=5000)
    assert len(images) == 2500
    assert list_requests(emu) == 3
    assert images == emu.backend.images_sorted()[::-1][:2500]


# -- exports against the emulator -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sort_order"),
    [
        ("images.jsonl", "desc"),
        ("images.csv", "asc"),
        ("images.json", "desc"),
        ("images.jsonl.gz", "asc"),
        ("images.csv.gz", "desc"),
        ("images.json.gz", "asc"),
    ],
)
def test_full_export_matches_the_inventory_exactly(
    emu: EmulatorServer, tmp_path: Path, name: str, sort_order: str
) -> None:
    emu.page_cap = 10_000  # pages as large as the API accepts
    path = tmp_path / "cf" / name
    manifest = run(output_path=str(path), per_page=10_000, sort_order=sort_order)

    fmt = name.split(".")[1]
    inventory = emu.backend.images_sorted()
    if sort_order == "desc":
        inventory.reverse()
    stored = path.read_bytes()
    rows = parse_export(stored_text(stored, name.endswith(".gz")), fmt)
    assert rows == expected_rows(inventory, fmt)
    assert manifest["count"] == TOTAL
    assert manifest["sha256"] == hashlib.sha256(stored).hexdigest()
    assert manifest["bytes"] == len(stored)
    assert manifest["pages"] == list_requests(emu) == 3
    assert (manifest["path"], manifest["format"]) == (str(path), fmt)
    assert manifest["compression"] == ("gzip" if name.endswith(".gz") else None)
    assert manifest["oldest_uploaded"] == min(inventory, key=uploaded)["uploaded"]
    assert manifest["newest_uploaded"] == max(inventory, key=uploaded)["uploaded"]
    assert manifest["account_id"] == emu.account_id
    assert manifest["sort_order"] == sort_order
    assert files_in(path.parent) == [name]
    json.dumps(manifest)  # an XCom value must be plain JSON


@pytest.mark.parametrize(
    ("name", "fields", "way"),
    [
        ("a.jsonl", None, "iter_json_pages"),
        ("a.json.gz", None, "iter_json_pages"),
        ("a.jsonl", ["id", "uploaded"], "iter_pages"),
        ("a.csv", None, "iter_pages"),
    ],
)
def test_exports_copy_the_api_json_unless_images_are_reshaped(
    emu: EmulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    fields: list[str] | None,
    way: str,
) -> None:
    called: list[str] = []

    def spying(method: str) -> Any:
        original = getattr(CloudflareImagesHook, method)

        def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
            called.append(method)
            return original(self, *args, **kwargs)

        return spy

    for method in ("iter_pages", "iter_json_pages"):
        monkeypatch.setattr(CloudflareImagesHook, method, spying(method))
    path = tmp_path / name
    manifest = run(output_path=str(path), per_page=5000, max_images=7000, fields=fields)
    assert called == [way]
    assert manifest["count"] == 7000
    if name == "a.jsonl" and fields is None:
        # Copied byte for byte: the emulator sends compact JSON, keys in the API's order.
        newest = emu.backend.images_sorted()[::-1][:7000]
        assert path.read_bytes() == b"".join(
            json.dumps(image, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
            for image in newest
        )


def uploaded(image: dict[str, Any]) -> dt.datetime:
    instant = parse_uploaded(image["uploaded"])
    assert instant is not None
    return instant


def test_incremental_windows_partition_the_inventory_at_their_edges(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    inventory = emu.backend.images_sorted()
    start, end = inventory[5000]["uploaded"], inventory[15000]["uploaded"]
    start_instant = uploaded(inventory[5000])
    windows = [(None, start, "asc"), (start, end, "desc"), (end, None, "desc")]
    exported: list[list[str]] = []
    for index, (after, before, order) in enumerate(windows):
        emu.reset_requests()
        path = tmp_path / f"window-{index}.jsonl"
        manifest = run(
            output_path=str(path), uploaded_after=after, uploaded_before=before, sort_order=order
        )
        ids = [json.loads(line)["id"] for line in path.read_text().splitlines()]
        assert manifest["count"] == len(ids)
        assert (manifest["uploaded_after"], manifest["uploaded_before"]) == (
            after and uploaded({"uploaded": after}).isoformat(),
            before and uploaded({"uploaded": before}).isoformat(),
        )
        exported.append(ids)
        if (after, before) == (start, end):
            # Newest first, listing stops at the first image older than uploaded_after.
            at_or_after_start = sum(1 for i in inventory if uploaded(i) >= start_instant)
            assert list_requests(emu) == at_or_after_start // 1000 + 1 < TOTAL // 1000

    every_id = [image_id for ids in exported for image_id in ids]
    assert sorted(every_id) == sorted(i["id"] for i in inventory)  # no gap, no overlap
    # uploaded_after is inclusive and uploaded_before exclusive: the edge images are in the
    # window that starts at them, not in the one that ends there.
    on_start_edge = {i["id"] for i in inventory if i["uploaded"] == start}
    assert on_start_edge <= set(exported[1])
    assert not on_start_edge & set(exported[0])
    on_end_edge = {i["id"] for i in inventory if i["uploaded"] == end}
    assert on_end_edge <= set(exported[2])


@pytest.mark.parametrize("name", ["images.csv.gz", "images.json", "images.jsonl.gz"])
def test_exports_read_back_through_the_inventory_reader(
    emu: EmulatorServer, tmp_path: Path, name: str
) -> None:
    from airflow_provider_cfimages.inventory.reader import InventoryReader, export_from_manifest

    manifest = run(output_path=str(tmp_path / name), max_images=3000, sort_order="asc")
    source, expected = export_from_manifest(manifest, parameter="manifest")
    images = list(InventoryReader(source).images(expected))  # checks count and sha256
    assert images == emu.backend.images_sorted()[:3000]


def test_awkward_filenames_round_trip_through_csv(
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    names = ["a, b.png", 'say "cheese".jpg', "two\nlines.gif", "naïve café 猫.webp", "=1+1.png"]
    for day, name in enumerate(names, start=1):
        emulator.backend.upload(
            name,
            metadata={"note": name},
            creator="ünï",
            uploaded=f"2024-01-0{day}T00:00:00Z",
            extra={"futureField": {"n": day}},
        )
    point_at(emulator, monkeypatch)
    path = tmp_path / "awkward.csv.gz"
    run(output_path=str(path), sort_order="asc")
    rows = list(
        csv.DictReader(io.StringIO(gzip.decompress(path.read_bytes()).decode(), newline=""))
    )
    assert [row["filename"] for row in rows] == names
    assert [json.loads(row["meta"]) for row in rows] == [{"note": name} for name in names]
    assert {row["creator"] for row in rows} == {"ünï"}
    # JSON Lines keeps keys the provider does not know.
    run(output_path=str(tmp_path / "awkward.jsonl"), sort_order="asc")
    lines = (tmp_path / "awkward.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["futureField"] for line in lines] == [{"n": d} for d in range(1, 6)]


@pytest.mark.parametrize("fault", ["repeated_token", "http_502"])
def test_a_fault_mid_export_leaves_the_previous_file_and_no_temp(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fault: str
) -> None:
    point_at(emu, monkeypatch, max_retries=0)
    path = tmp_path / "images.jsonl.gz"
    run(output_path=str(path), max_images=10)
    previous = path.read_bytes()
    if fault == "repeated_token":
        emu.faults.repeat_token(after_pages=2)
        expected: type[Exception] = CloudflareImagesPaginationError
    else:
        emu.faults.fail_next(None, status=502, path="/images/v2", on_request=3)
        expected = CloudflareImagesError
    emu.reset_requests()
    with pytest.raises(expected):
        run(output_path=str(path), per_page=1000)
    assert list_requests(emu) == 3  # two pages were written to the temporary file
    assert path.read_bytes() == previous
    assert files_in(tmp_path) == ["images.jsonl.gz"]


def test_rerunning_the_same_export_replaces_the_file_with_identical_bytes(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "daily.csv.gz"
    first = run(output_path=str(path), per_page=10_000, max_images=12_345)
    second = run(output_path=str(path), per_page=10_000, max_images=12_345)
    assert first["sha256"] == second["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    third = run(output_path=str(path), per_page=10_000, max_images=5)
    assert third["count"] == 5
    assert third["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert files_in(tmp_path) == ["daily.csv.gz"]


def test_on_kill_stops_paging_promptly_and_removes_the_temp(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emu.faults.slow_next(None, seconds=0.2, path="/images/v2")
    operator = make_operator(output_path=str(tmp_path / "killed.jsonl"), per_page=10)
    outcome: list[BaseException] = []

    def execute() -> None:
        try:
            operator.execute(context={})
        except BaseException as err:
            outcome.append(err)

    worker = threading.Thread(target=execute)
    worker.start()
    deadline = time.monotonic() + 10
    while list_requests(emu) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    operator.on_kill()
    killed_at = time.monotonic()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert time.monotonic() - killed_at < 1.5
    assert len(outcome) == 1
    assert "cancelled" in str(outcome[0])
    assert list_requests(emu) < 10  # out of 2,500 pages
    assert files_in(tmp_path) == []


# -- S3 (moto server) -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A local S3-compatible server (moto's server mode) for this module."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client on the moto server with an empty bucket, and the aws connection set."""
    import boto3

    connection = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{S3_CONN_ID.upper()}", json.dumps(connection))
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=S3_BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=S3_BUCKET).get("Contents", []):
        client.delete_object(Bucket=S3_BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=S3_BUCKET)


def s3_keys(client: Any) -> list[str]:
    return sorted(i["Key"] for i in client.list_objects_v2(Bucket=S3_BUCKET).get("Contents", []))


def test_export_to_s3_is_complete_and_leaves_no_temp_object(emu: EmulatorServer, s3: Any) -> None:
    uri = f"s3://{S3_CONN_ID}@{S3_BUCKET}/cf/export.jsonl.gz"
    manifest = run(output_path=uri, per_page=10_000)
    body = s3.get_object(Bucket=S3_BUCKET, Key="cf/export.jsonl.gz")["Body"].read()
    assert manifest["path"] == uri
    assert manifest["sha256"] == hashlib.sha256(body).hexdigest()
    assert manifest["bytes"] == len(body)
    lines = gzip.decompress(body).splitlines()
    assert manifest["count"] == len(lines) == TOTAL
    assert [json.loads(line)["id"] for line in lines] == emu.backend.ids_sorted()[::-1]
    assert s3_keys(s3) == ["cf/export.jsonl.gz"]


def test_a_fault_mid_export_to_s3_leaves_no_object(emu: EmulatorServer, s3: Any) -> None:
    emu.faults.repeat_token(after_pages=2)
    with pytest.raises(CloudflareImagesPaginationError):
        run(output_path=f"s3://{S3_CONN_ID}@{S3_BUCKET}/cf/broken.csv", per_page=1000)
    assert s3_keys(s3) == []


# -- a real DAG run -------------------------------------------------------------------------

DAG_SOURCE = '''
"""Daily export of the images uploaded before the end of the data interval."""

import hashlib

import pendulum
from airflow.sdk import DAG, ObjectStoragePath, task

from airflow_provider_cfimages.operators.images import CloudflareImagesListOperator

with DAG(
    "cfimages_list_export",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
):
    export = CloudflareImagesListOperator(
        task_id="export",
        output_path="{{ params.out_dir }}/images-{{ ds }}.jsonl.gz",
        uploaded_before="{{ data_interval_end }}",
        sort_order="asc",
        per_page=10000,
        params={"out_dir": "OUT_DIR"},
    )

    @task
    def verify(manifest: dict) -> dict:
        data = ObjectStoragePath(manifest["path"]).read_bytes()
        return {"sha256_matches": hashlib.sha256(data).hexdigest() == manifest["sha256"]}

    verify(export.output)
'''


def test_operator_in_a_dag_run_hands_its_manifest_through_xcom(
    emu: EmulatorServer, dag_runner: Any, tmp_path: Path
) -> None:
    dag_run = dag_runner.run(
        DAG_SOURCE.replace("OUT_DIR", str(tmp_path)),
        "cfimages_list_export",
        logical_date=pendulum.datetime(2024, 6, 1, tz="UTC"),
    )
    assert dag_run.state == "success"
    xcoms = dag_runner.xcoms(dag_run)
    manifest = xcoms["export"]
    cutoff = dag_run.data_interval_end
    expected = sum(1 for i in emu.backend.images_sorted() if uploaded(i) < cutoff)
    assert 0 < expected < TOTAL
    assert manifest["count"] == expected
    assert manifest["path"] == str(tmp_path / "images-2024-06-01.jsonl.gz")
    assert manifest["uploaded_before"] == cutoff.isoformat()
    assert xcoms["verify"] == {"sha256_matches": True}

"""CloudflareImagesReconcileOperator against the emulator (25,000 images, real HTTP)."""

from __future__ import annotations

import csv
import gzip
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError, CloudflareImagesError
from airflow_provider_cfimages.hooks.transport import ApiTransport
from airflow_provider_cfimages.inventory.reader import InventoryIntegrityError
from airflow_provider_cfimages.operators.images import (
    CloudflareImagesListOperator,
    CloudflareImagesReconcileOperator,
    ReconcileMismatchError,
)
from tests.reconcile.conftest import served

TOTAL = 25_000


class FakeTaskInstance:
    """Collects what the operator pushes to XCom."""

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


@dataclass
class Scenario:
    """The live ids with 250 dropped, 40 ids Cloudflare lacks added, and 5 repeated."""

    expected: list[str]
    dropped: set[str]
    fakes: set[str]
    repeated: set[str]


def make_scenario(emu: EmulatorServer) -> Scenario:
    rng = random.Random(3)
    ids = emu.backend.ids_sorted()
    dropped = set(rng.sample(ids, 250))
    kept = [image_id for image_id in ids if image_id not in dropped]
    fakes = {f"not-in-cloudflare-{n}" for n in range(40)}
    repeated = set(rng.sample(kept, 5))
    expected = kept + sorted(fakes) + sorted(repeated)
    rng.shuffle(expected)
    return Scenario(expected, dropped, fakes, repeated)


def reconcile(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("task_id", "reconcile")
    return CloudflareImagesReconcileOperator(**kwargs).execute(context={"ti": FakeTaskInstance()})


def read_report(path: str | Path) -> list[dict[str, Any]]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def assert_scenario_counts(result: dict[str, Any], scenario: Scenario) -> None:
    assert result["expected"] == TOTAL - 250 + 40 + 5
    assert result["actual"] == TOTAL
    assert result["matched"] == TOTAL - 250
    assert result["missing_count"] == 40
    assert result["unexpected_count"] == 250
    assert result["duplicate_expected_count"] == 5
    assert result["duplicate_actual_count"] == 0
    assert result["drifted_count"] == 0
    assert result["missing"] == sorted(scenario.fakes)[:20]
    assert result["unexpected"] == sorted(scenario.dropped)[:20]
    assert result["duplicate_expected"] == sorted(scenario.repeated)


# -- the 25,000-image reconcile ---------------------------------------------------------------


def test_reconcile_25k_reports_exact_counts_and_every_row(
    live: EmulatorServer, tmp_path: Path
) -> None:
    scenario = make_scenario(live)
    uploaded = {image["id"]: image["uploaded"] for image in live.backend.images_sorted()}
    report_path = tmp_path / "reports" / "reconcile.jsonl"

    result = reconcile(expected=scenario.expected, report_path=str(report_path))

    assert_scenario_counts(result, scenario)
    assert result["in_sync"] is False
    assert result["report_path"] == str(report_path)
    rows = read_report(report_path)
    assert result["report_rows"] == len(rows) == 40 + 250 + 5
    kinds = Counter(row["kind"] for row in rows)
    assert kinds == {"missing": 40, "unexpected": 250, "duplicate_expected": 5}
    assert {row["key"] for row in rows if row["kind"] == "missing"} == scenario.fakes
    unexpected = [row for row in rows if row["kind"] == "unexpected"]
    assert {row["id"] for row in unexpected} == scenario.dropped
    assert all(row["uploaded"] == uploaded[row["id"]] for row in unexpected)
    assert {(row["key"], row["count"]) for row in rows if row["kind"] == "duplicate_expected"} == {
        (key, 2) for key in scenario.repeated
    }
    assert list(report_path.parent.iterdir()) == [report_path]  # no temporary left behind
    list_requests = [r for r in served(live) if r.path.endswith("/images/v2")]
    # per_page defaults to 1000: what an API page holds.
    assert {r.query.get("per_page") for r in list_requests} == {"1000"}


def test_in_sync_inventory_gives_an_empty_report(live: EmulatorServer, tmp_path: Path) -> None:
    result = reconcile(
        expected=live.backend.ids_sorted(),
        report_path=str(tmp_path / "r.jsonl.gz"),
        fail_on_drift=True,
    )

    assert result["in_sync"] is True
    assert result["matched"] == TOTAL
    assert result["report_rows"] == 0
    assert read_report(tmp_path / "r.jsonl.gz") == []


def write_expected(path: Path, scenario: Scenario) -> None:
    name = path.name
    if name.startswith("keys.txt"):
        data = "".join(f"{key}\n" for key in scenario.expected).encode()
    elif name.startswith("keys.csv"):
        lines = [["owner", "image_id"], *[["shop", key] for key in scenario.expected]]
        with path.open("w", newline="") as out:
            csv.writer(out).writerows(lines)
        return
    elif name.startswith("keys.jsonl"):
        data = "".join(json.dumps({"image_id": key}) + "\n" for key in scenario.expected).encode()
    else:
        data = json.dumps(scenario.expected).encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("keys.txt", None),
        ("keys.txt.gz", None),
        ("keys.csv", "image_id"),
        ("keys.jsonl", "image_id"),
        ("keys.json.gz", None),
    ],
)
def test_expected_from_each_file_format(
    live: EmulatorServer, tmp_path: Path, name: str, field: str | None
) -> None:
    scenario = make_scenario(live)
    path = tmp_path / name
    write_expected(path, scenario)

    result = reconcile(expected=str(path), expected_field=field)

    assert_scenario_counts(result, scenario)


@pytest.mark.parametrize("shape", ["dicts", "sql_rows", "object_storage_path"])
def test_expected_as_records_rows_or_object_storage_path(
    live: EmulatorServer, tmp_path: Path, shape: str
) -> None:
    from airflow.sdk import ObjectStoragePath

    scenario = make_scenario(live)
    if shape == "dicts":
        expected: Any = [{"id": key, "sku": "x"} for key in scenario.expected]
    elif shape == "sql_rows":
        expected = [(key, "other column") for key in scenario.expected]
    else:
        write_expected(tmp_path / "keys.txt", scenario)
        expected = ObjectStoragePath(f"file://{tmp_path / 'keys.txt'}")

    assert_scenario_counts(reconcile(expected=expected), scenario)


def test_reconcile_by_filename_reports_images_sharing_a_filename(live: EmulatorServer) -> None:
    images = live.backend.images_sorted()
    filenames = Counter(image.get("filename", "") for image in images)
    rng = random.Random(5)
    dropped = set(rng.sample(sorted(filenames), 30))
    expected = [name for name in filenames if name not in dropped] + ["never-uploaded.png"]

    result = reconcile(expected=expected, key="filename", sample_size=5)

    assert result["key"] == "filename"
    assert result["matched"] == len(filenames) - 30
    assert result["missing"] == ["never-uploaded.png"]
    assert result["unexpected_count"] == sum(filenames[name] for name in dropped)
    assert result["duplicate_actual_count"] == sum(1 for count in filenames.values() if count > 1)
    assert result["duplicate_actual_count"] > 0  # the seeded inventory repeats filenames


# -- metadata drift -------------------------------------------------------------------------


def test_drift_against_an_expected_meta_mapping(live: EmulatorServer, tmp_path: Path) -> None:
    images = live.backend.images_sorted()
    with_meta = [image for image in images if image.get("meta")][:10]
    without_meta = [image for image in images if "meta" not in image][:3]
    expected_meta = {image["id"]: dict(image["meta"]) for image in with_meta}
    expected_meta.update({image["id"]: {} for image in without_meta})
    live.backend.update_image(with_meta[0]["id"], metadata={"changed": True})
    expected_meta[with_meta[1]["id"]] = {"sku": "what the database says"}
    live.backend.update_image(without_meta[0]["id"], metadata={"added": 1})

    result = reconcile(
        expected=[image["id"] for image in images],
        expected_meta=expected_meta,
        report_path=str(tmp_path / "drift.jsonl"),
    )

    drifted_ids = {with_meta[0]["id"], with_meta[1]["id"], without_meta[0]["id"]}
    assert result["drifted_count"] == 3
    assert set(result["drifted"]) == drifted_ids
    assert result["missing_count"] == result["unexpected_count"] == 0
    rows = {row["id"]: row for row in read_report(tmp_path / "drift.jsonl")}
    assert rows.keys() == drifted_ids
    assert rows[with_meta[0]["id"]]["actual_meta"] == {"changed": True}
    assert rows[with_meta[0]["id"]]["expected_meta"] == with_meta[0]["meta"]
    assert rows[without_meta[0]["id"]]["expected_meta"] == {}


def test_drift_against_a_meta_field_of_the_expected_file(
    live: EmulatorServer, tmp_path: Path
) -> None:
    images = live.backend.images_sorted()
    path = tmp_path / "expected.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "meta"])
        for number, image in enumerate(images):
            # Every 1000th image's stored meta is "wrong"; rows with no cell are not compared.
            meta = {"sku": number} if number % 1000 == 0 else image.get("meta")
            writer.writerow([image["id"], json.dumps(meta) if number % 3 else ""])
    drifted = {image["id"] for n, image in enumerate(images) if n % 1000 == 0 and n % 3}

    result = reconcile(expected=str(path), expected_meta="meta", sample_size=100)

    assert result["drifted_count"] == len(drifted) == 16
    assert set(result["drifted"]) == drifted


# -- the live side from the list operator -------------------------------------------------------


def export_inventory(path: Path, **kwargs: Any) -> dict[str, Any]:
    operator = CloudflareImagesListOperator(
        task_id="list", output_path=str(path), per_page=10_000, **kwargs
    )
    return operator.execute(context={})


@pytest.mark.parametrize("name", ["inventory.jsonl.gz", "inventory.csv", "inventory.json"])
def test_actual_from_a_list_export_manifest_sends_no_request(
    live: EmulatorServer, tmp_path: Path, name: str
) -> None:
    manifest = export_inventory(tmp_path / name)
    scenario = make_scenario(live)
    live.reset_requests()

    result = reconcile(expected=scenario.expected, actual_from=manifest)

    assert_scenario_counts(result, scenario)
    assert served(live) == []


def test_actual_from_an_export_path_and_from_listed_images(
    live: EmulatorServer, tmp_path: Path
) -> None:
    manifest = export_inventory(tmp_path / "inventory.jsonl")
    scenario = make_scenario(live)
    listed = live.backend.images_sorted()
    live.reset_requests()

    from_path = reconcile(expected=scenario.expected, actual_from=manifest["path"])
    from_images = reconcile(expected=scenario.expected, actual_from=listed)

    assert_scenario_counts(from_path, scenario)
    assert_scenario_counts(from_images, scenario)
    assert served(live) == []


def test_an_export_changed_after_its_manifest_fails_without_a_report(
    live: EmulatorServer, tmp_path: Path
) -> None:
    manifest = export_inventory(tmp_path / "inventory.jsonl")
    export = Path(manifest["path"])
    lines = export.read_bytes().splitlines(keepends=True)
    export.write_bytes(b"".join(lines[:-1]))
    report = tmp_path / "report.jsonl"

    with pytest.raises(InventoryIntegrityError, match="holds 24999 images"):
        reconcile(expected=["x"], actual_from=manifest, report_path=str(report))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["inventory.jsonl"]


def test_an_export_without_the_needed_fields_is_refused(
    live: EmulatorServer, tmp_path: Path
) -> None:
    manifest = export_inventory(tmp_path / "inventory.jsonl", fields=["id", "uploaded"])

    with pytest.raises(CloudflareImagesConfigError, match=r"needs \['filename', 'id'\]"):
        reconcile(expected=["a.jpg"], key="filename", actual_from=manifest)


# -- failure handling -------------------------------------------------------------------------


def test_a_failed_listing_leaves_the_previous_report_untouched(
    live: EmulatorServer, tmp_path: Path
) -> None:
    report = tmp_path / "report.jsonl"
    report.write_text('{"kind": "missing", "key": "from yesterday"}\n')
    live.faults.fail_next(1, status=400, path="/images/v2", on_request=2)

    with pytest.raises(CloudflareImagesError, match="HTTP 400"):
        reconcile(expected=["a"], report_path=str(report), per_page=1000)

    assert report.read_text() == '{"kind": "missing", "key": "from yesterday"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["report.jsonl"]


def test_fail_on_drift_fails_after_writing_the_report_and_pushing_the_summary(
    live: EmulatorServer, tmp_path: Path
) -> None:
    scenario = make_scenario(live)
    ti = FakeTaskInstance()
    operator = CloudflareImagesReconcileOperator(
        task_id="reconcile",
        expected=scenario.expected,
        report_path=str(tmp_path / "report.jsonl"),
        fail_on_drift=True,
    )

    with pytest.raises(ReconcileMismatchError, match=r"40 missing .* 250 unexpected"):
        operator.execute(context={"ti": ti})

    assert_scenario_counts(ti.xcoms["return_value"], scenario)
    assert len(read_report(tmp_path / "report.jsonl")) == 295


def test_an_empty_expected_side_fails_before_listing(live: EmulatorServer) -> None:
    with pytest.raises(CloudflareImagesConfigError, match="expected is empty"):
        reconcile(expected=[])

    assert served(live) == []
    result = reconcile(expected=[], allow_empty_expected=True)
    assert result["unexpected_count"] == TOTAL


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": "name"}, "key must be 'id' or 'filename'"),
        ({"sample_size": -1}, "sample_size must be a whole number >= 0"),
        ({"report_path": "/tmp/report.csv"}, "report_path is written as JSON Lines"),
        ({"report_path": "relative.jsonl"}, "report_path must be an absolute local path"),
        ({"expected": 42}, "expected must be a list of keys"),
        ({"expected": {"a": 1}}, "expected must be a list of keys"),
        ({"expected": "keys.txt"}, "expected must be an absolute local path"),
        ({"expected": "/data/keys.xlsx"}, "expected '/data/keys.xlsx': cannot tell"),
        ({"expected_meta": 3}, "expected_meta must be a mapping"),
        ({"actual_from": 3}, "actual_from must be a list operator's manifest"),
        ({"actual_from": "/data/inventory.txt"}, "actual_from '/data/inventory.txt'"),
        ({"per_page": 5}, "per_page must be a whole number from 10 to 10000"),
        ({"account_id": "nope"}, "account_id must be the 32-character"),
        ({"fail_on_drift": "yes"}, "fail_on_drift must be True or False"),
    ],
)
def test_bad_arguments_are_refused_when_the_dag_is_parsed(
    kwargs: dict[str, Any], message: str
) -> None:
    kwargs.setdefault("expected", ["a"])

    with pytest.raises(ValueError, match=message):
        CloudflareImagesReconcileOperator(task_id="reconcile", **kwargs)


def test_templated_arguments_are_checked_after_rendering(tmp_path: Path) -> None:
    operator = CloudflareImagesReconcileOperator(
        task_id="reconcile", expected="{{ params.keys }}", report_path="{{ params.report }}"
    )
    operator.expected = "not/absolute.txt"

    with pytest.raises(CloudflareImagesConfigError, match="expected must be an absolute"):
        operator.execute(context={"ti": FakeTaskInstance()})


def test_an_upload_while_it_lists_is_not_taken_for_an_orphan(
    live: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Listed newest first, an image uploaded mid-listing lands behind the cursor; oldest
    # first, it would turn up on the last page, look unexpected, and be deleted downstream.
    ids = live.backend.ids_sorted()
    fetch = ApiTransport.get_list_page
    pages: list[int] = []

    def fetch_then_upload(self: ApiTransport, *args: Any, **kwargs: Any) -> Any:
        body = fetch(self, *args, **kwargs)
        if not pages:
            live.backend.upload("fresh.jpg", id="fresh/upload")
        pages.append(len(body.images))
        return body

    monkeypatch.setattr(ApiTransport, "get_list_page", fetch_then_upload)

    summary = CloudflareImagesReconcileOperator(
        task_id="reconcile", expected=ids, per_page=1000
    ).execute(context={})

    assert len(pages) == 25  # the upload came before 24 of the 25 pages were read
    assert summary["unexpected_count"] == 0
    assert summary["matched"] == len(ids)

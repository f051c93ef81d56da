"""The list and reconcile operators' meta_filters, settle window and XCom cap."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.emulator.backend import ImagesBackend
from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError, CloudflareImagesError
from airflow_provider_cfimages.operators.images import (
    CloudflareImagesListOperator,
    CloudflareImagesReconcileOperator,
)

BASE = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)


def image(n: int) -> dict[str, Any]:
    """Image ``n``, uploaded ``n`` minutes after BASE; every tenth is tenant acme."""
    return {
        "id": f"img-{n:04d}",
        "filename": f"{n}.jpg",
        "uploaded": (BASE + dt.timedelta(minutes=n)).isoformat().replace("+00:00", "Z"),
        "meta": {"tenant": "acme" if n % 10 == 0 else "other", "n": n},
    }


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Any:
    backend = ImagesBackend("0" * 32)
    backend.load(image(n) for n in range(1500))
    with EmulatorServer(backend=backend) as server:
        monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", server.connection_json())
        yield server


def list_requests(emu: EmulatorServer) -> list[Any]:
    return [r for r in emu.requests if r.api_path.endswith("/images/v2")]


def test_meta_filters_are_sent_to_the_api_and_recorded_in_the_manifest(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    operator = CloudflareImagesListOperator(
        task_id="export",
        meta_filters={"tenant": "acme", "n": {"lt": 500}},
        output_path=str(tmp_path / "acme.jsonl"),
    )
    manifest = operator.execute(context={})
    ids = [json.loads(line)["id"] for line in (tmp_path / "acme.jsonl").read_text().splitlines()]
    assert ids == [f"img-{n:04d}" for n in range(490, -1, -10)]
    assert manifest["count"] == 50
    assert manifest["meta_filters"] == {"tenant": {"eq": "acme"}, "n": {"lt": 500}}
    (sent,) = list_requests(emu)
    assert sent.query["meta.tenant[eq:string]"] == "acme"
    assert sent.query["meta.n[lt:number]"] == "500"


def test_templated_meta_filters_are_checked_after_rendering_before_any_request(
    emu: EmulatorServer,
) -> None:
    operator = CloudflareImagesListOperator(task_id="x", meta_filters="{{ params.filters }}")
    operator.meta_filters = json.dumps({f"f{n}": n for n in range(6)})  # what rendering gives
    with pytest.raises(CloudflareImagesConfigError, match="meta_filters holds 6 filters"):
        operator.execute(context={})
    assert list_requests(emu) == []
    assert "meta_filters" in CloudflareImagesListOperator.template_fields


def test_a_literal_bad_filter_fails_when_the_dag_is_parsed() -> None:
    with pytest.raises(CloudflareImagesConfigError, match="meta_filters"):
        CloudflareImagesListOperator(task_id="x", meta_filters={"size": {"gt": "big"}})


def test_settle_holds_the_window_back_and_consecutive_runs_still_tile(
    emu: EmulatorServer,
) -> None:
    def window(start: int, end: int) -> list[str]:
        return [
            i["id"]
            for i in CloudflareImagesListOperator(
                task_id="x",
                sort_order="asc",
                uploaded_after=(BASE + dt.timedelta(minutes=start)).isoformat(),
                uploaded_before=(BASE + dt.timedelta(minutes=end)).isoformat(),
                settle=dt.timedelta(minutes=15),
            ).execute(context={})
        ]

    first, second = window(100, 160), window(160, 220)
    assert first == [f"img-{n:04d}" for n in range(85, 145)]
    assert second == [f"img-{n:04d}" for n in range(145, 205)]
    manifest_op = CloudflareImagesListOperator(
        task_id="x",
        uploaded_after=BASE.isoformat(),
        uploaded_before=(BASE + dt.timedelta(hours=1)).isoformat(),
        settle=900,
        output_path="/tmp/unused.jsonl",
    )
    assert manifest_op._plan(rendered=True).query.uploaded_before == BASE + dt.timedelta(minutes=45)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"settle": -1}, "settle must be"),
        ({"settle": "15m"}, "settle must be"),
        ({"settle": 60}, "there is no window"),
    ],
)
def test_bad_settle_fails_at_parse_time(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(CloudflareImagesConfigError, match=fragment):
        CloudflareImagesListOperator(task_id="x", **kwargs)


def test_a_templated_window_with_settle_is_checked_after_rendering() -> None:
    operator = CloudflareImagesListOperator(
        task_id="x", uploaded_after="{{ data_interval_start }}", settle=60
    )
    assert operator.settle == dt.timedelta(seconds=60)


def test_xcom_listing_stops_past_1000_images_by_default(emu: EmulatorServer) -> None:
    with pytest.raises(CloudflareImagesError, match="max_xcom_images=1000"):
        CloudflareImagesListOperator(task_id="x", per_page=100).execute(context={})
    # It stopped at the first page past the cap: 11 pages of 100, not all 15.
    assert len(list_requests(emu)) == 11


def test_reconcile_lists_only_what_meta_filters_match(emu: EmulatorServer) -> None:
    acme = [f"img-{n:04d}" for n in range(0, 1500, 10)]
    summary = CloudflareImagesReconcileOperator(
        task_id="r", expected=acme, meta_filters={"tenant": "acme"}
    ).execute(context={})
    assert summary["in_sync"] is True
    assert summary["actual"] == 150
    (sent,) = list_requests(emu)
    assert (sent.query["per_page"], sent.query["meta.tenant[eq:string]"]) == ("1000", "acme")

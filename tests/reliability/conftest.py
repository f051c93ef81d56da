"""Fixtures for the reliability tests: a 5,000-image emulator, fast retries, export checks."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.hooks import transport
from airflow_provider_cfimages.operators.images import CloudflareImagesListOperator

CONN_ENV = "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"
IMAGES = 5000
PER_PAGE = 1000
PAGES = IMAGES // PER_PAGE


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the backoff's shape but not its seconds (the transport reads it at call time)."""
    monkeypatch.setattr(transport, "BACKOFF_INITIAL", 0.01)


@pytest.fixture(scope="module")
def emulator_5k_server() -> Iterator[EmulatorServer]:
    """5,000 seeded images (seed 3): five pages at ``per_page=1000``."""
    with EmulatorServer(images=IMAGES, seed=3) as server:
        yield server


@pytest.fixture
def emu(
    emulator_5k_server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EmulatorServer]:
    """The module's 5,000-image emulator, reset, with the default connection pointing at it."""
    server = emulator_5k_server
    server.faults.clear()
    server.backend.reset()
    server.reset_requests()
    point_at(server, monkeypatch)
    yield server
    server.faults.clear()


def point_at(emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    """Point the default connection at ``emu``, with more connection extras."""
    connection = json.loads(emu.connection_json())
    connection["extra"].update(extra)
    monkeypatch.setenv(CONN_ENV, json.dumps(connection))


def export(path: Path, **kwargs: Any) -> dict[str, Any]:
    """Run the list operator's export to ``path`` (newest first, 1000 per page)."""
    kwargs.setdefault("per_page", PER_PAGE)
    operator = CloudflareImagesListOperator(task_id="export", output_path=str(path), **kwargs)
    return operator.execute(context={})


def expected_jsonl(emu: EmulatorServer, sort_order: str = "desc") -> bytes:
    """The exact bytes a JSON Lines export of the emulator's whole inventory must hold."""
    images = emu.backend.images_sorted()
    if sort_order == "desc":
        images.reverse()
    return msgspec.json.Encoder().encode_lines(images)


def assert_exact_export(emu: EmulatorServer, path: Path, manifest: dict[str, Any]) -> None:
    """The file at ``path`` is the whole inventory, newest first, each image exactly once."""
    data = path.read_bytes()
    expected = expected_jsonl(emu)
    assert manifest["count"] == len(emu.backend) == expected.count(b"\n")
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["bytes"] == len(data)
    ids = [json.loads(line)["id"] for line in data.splitlines()]
    assert ids == emu.backend.ids_sorted()[::-1]
    assert data == expected
    assert files_in(path.parent) == [path.name]


def files_in(directory: Path) -> list[str]:
    """The names in a directory, sorted (temporary exports included)."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def list_records(emu: EmulatorServer) -> list[Any]:
    """The List images V2 requests the emulator logged, oldest first."""
    return [record for record in emu.requests if record.api_path == "/images/v2"]

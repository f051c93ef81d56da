"""A small run of ``benchmarks/sql_expected.py`` against a real PostgreSQL server, so the
benchmark never rots, and a check that streaming memory does not grow with the row count.

The 1,000,000-row run is manual: ``python benchmarks/sql_expected.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest_postgres import REQUIRE_ENV
from tests.pg_server import PostgresNotInstalled, find_bin_dir

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sql_expected.py"


def test_streaming_memory_stays_flat_while_fetchall_grows(tmp_path: Path) -> None:
    try:
        find_bin_dir()
    except PostgresNotInstalled as err:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{err} ({REQUIRE_ENV}=1)")
        pytest.skip(f"{err}; set {REQUIRE_ENV}=1 to fail instead")
    out = tmp_path / "results.json"
    arguments = ["--rows", "20000", "300000", "--modes", "stream", "fetchall"]
    subprocess.run(
        [sys.executable, str(SCRIPT), *arguments, "--json-out", str(out)],
        check=True,
        timeout=600,
        capture_output=True,
    )

    results = {(r["mode"], r["rows"]): r for r in json.loads(out.read_text())}
    assert set(results) == {
        (mode, rows) for mode in ("stream", "fetchall") for rows in (20000, 300000)
    }
    assert {r["rows"] for r in results.values()} == {20000, 300000}

    def growth(mode: str, rows: int) -> float:
        return results[(mode, rows)]["peak_rss_mb"] - results[(mode, rows)]["baseline_rss_mb"]

    # Fifteen times the rows: one fetch batch either way when streamed, the whole result
    # (tens of MB of Python strings) when fetched at once.
    assert growth("stream", 300000) < growth("stream", 20000) + 8
    assert growth("fetchall", 300000) > growth("fetchall", 20000) + 30

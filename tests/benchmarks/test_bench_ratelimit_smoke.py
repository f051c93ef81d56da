"""A small run of ``benchmarks/bench_ratelimit.py`` (both scenarios), so it never rots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, *arguments: str) -> list[dict[str, Any]]:
    out = tmp_path / "results.json"
    subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "bench_ratelimit.py"),
            *arguments,
            f"--json-out={out}",
        ],
        check=True,
        timeout=300,
        cwd=REPO_ROOT,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "AIRFLOW_HOME": str(tmp_path)},
    )
    return json.loads(out.read_text())


def test_listing_scenario_paced_by_the_headers_is_never_refused(tmp_path: Path) -> None:
    (hook, no_headers) = run(
        tmp_path,
        "listing",
        "--images=5000",
        "--quota=3",
        "--window=1",
        "--lockout=2",
        "--contenders",
        "hook",
        "hook-no-headers",
    )
    assert (hook["images"], hook["requests"], hook["refused"], hook["lockouts"]) == (5000, 5, 0, 0)
    assert hook["ideal_paced_s"] == 1.0
    assert no_headers["images"] == 5000
    assert no_headers["lockouts"] >= 1


def test_delete_scenario_keeps_image_calls_off_the_global_quota(tmp_path: Path) -> None:
    sequential, batch = run(
        tmp_path, "delete", "--images=40", "--latency=0.01", "--max-concurrency=4"
    )
    assert sequential["deleted"] == batch["deleted"] == 40
    assert sequential["global_quota_image_calls"] == 80
    assert (batch["global_quota_requests"], batch["global_quota_image_calls"]) == (1, 0)
    assert batch["batch_requests"] == 80

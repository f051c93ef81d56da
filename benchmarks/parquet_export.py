"""Parquet next to JSON Lines: one export of the same inventory each, time and peak memory.

The emulator runs in its own process (pages of 1000 images, as the live API serves them),
and each export runs in a fresh Python process that reports its wall time and peak RSS,
so neither the server's memory nor an earlier export's is counted. Run::

    PYTHONPATH=. python benchmarks/parquet_export.py --images 1000000

Prints one JSON line per format and a last line comparing them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
from airflow_provider_cfimages.inventory import parquet
from airflow_provider_cfimages.operators.images import CloudflareImagesListOperator
path = sys.argv[1]
if len(sys.argv) > 2:
    parquet.ROW_GROUP_ROWS = int(sys.argv[2])
started = time.perf_counter()
manifest = CloudflareImagesListOperator(
    task_id="bench", output_path=path, log_every_seconds=3600
).execute(context={})
elapsed = time.perf_counter() - started
print(json.dumps({
    "format": manifest["format"], "images": manifest["count"], "requests": manifest["requests"],
    "seconds": round(elapsed, 2), "images_per_s": round(manifest["count"] / elapsed),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "file_mb": round(manifest["bytes"] / 1e6, 1),
}))
"""


def start_emulator(images: int) -> tuple[subprocess.Popen[str], str]:
    """Start the emulator CLI; return the process and the connection JSON it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_cfimages.emulator", "--images", str(images)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("export AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT="):
            value = line.split("=", 1)[1].strip()
            return process, json.loads(value.strip("'"))
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError("the emulator did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--row-group-rows", type=int, help="images per Parquet row group")
    args = parser.parse_args()
    emulator, connection = start_emulator(args.images)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="cfimages-parquet-bench-") as folder:
            env = {**os.environ, "AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT": json.dumps(connection)}
            for name in ("inventory.jsonl", "inventory.parquet"):
                path = Path(folder) / name
                extra = [str(args.row_group_rows)] if args.row_group_rows else []
                done = subprocess.run(
                    [sys.executable, "-c", CHILD, str(path), *extra],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(done.stdout.strip().splitlines()[-1])
                results.append(result)
                print(json.dumps(result), flush=True)
                path.unlink()
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    jsonl, parquet = results
    print(
        json.dumps(
            {
                "parquet_extra_rss_mb": round(parquet["peak_rss_mb"] - jsonl["peak_rss_mb"], 1),
                "parquet_time_ratio": round(parquet["seconds"] / jsonl["seconds"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()

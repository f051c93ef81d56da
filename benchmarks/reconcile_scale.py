"""How long and how much memory the reconcile engine needs at a million keys a side.

Generates ``--keys`` expected ids and as many live images (UUID-shaped ids, as Cloudflare
assigns them) that share all but ``--differ`` of them, with ``--duplicates`` keys repeated on
each side, feeds both to :class:`~airflow_provider_cfimages.reconcile.engine.Reconciler` as
generators (so the inputs themselves take no memory), and prints the wall time, the CPU
time, the peak RSS and the size of the engine's temporary SQLite database (``--temp-dir``
says where it goes). ``--meta`` also gives every record a meta object and compares them
(one image in a thousand drifted). ``--naive`` runs the obvious in-memory version instead
(a set per side), for comparison. ``--operator`` writes the expected ids to a gzipped
``.txt`` and the live side to a gzipped JSON Lines export (with the list operator's writer,
so it has a manifest), then times :class:`CloudflareImagesReconcileOperator` reading both,
checking the export's sha256, reconciling and writing the report: the whole task minus
the HTTP listing.

    python benchmarks/reconcile_scale.py                 # 1,000,000 vs 1,000,000
    python benchmarks/reconcile_scale.py --meta
    python benchmarks/reconcile_scale.py --naive
    python benchmarks/reconcile_scale.py --operator

Each mode should run in a fresh process: peak RSS is per process.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from airflow_provider_cfimages.reconcile.engine import (
    ActualRecord,
    ExpectedRecord,
    Reconciler,
    canonical_meta,
)

UPLOADED = "2024-05-01T12:00:00.000Z"


def uuid_text(number: int) -> str:
    """A UUID-shaped 36-character id (faster to make than ``str(uuid.UUID(int=...))``)."""
    h = f"{number:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def shared_numbers(keys: int, seed: int) -> Iterator[int]:
    rng = random.Random(seed)
    for _ in range(keys):
        yield rng.getrandbits(128)


def expected_side(args: argparse.Namespace) -> Iterator[ExpectedRecord]:
    """All shared keys but the last ``differ`` (missing), plus the first few repeated."""
    meta_of = _meta_maker(args.meta, drift=False)
    for index, number in enumerate(shared_numbers(args.keys, args.seed)):
        key = uuid_text(number)
        if index < args.keys - args.differ:
            yield key, meta_of(index)
        else:
            yield f"missing-{key}", meta_of(index)
        if index < args.duplicates:
            yield key, meta_of(index)


def actual_side(args: argparse.Namespace) -> Iterator[ActualRecord]:
    """The same shared keys, the last ``differ`` replaced by unexpected ones."""
    meta_of = _meta_maker(args.meta, drift=True)
    for index, number in enumerate(shared_numbers(args.keys, args.seed)):
        key = uuid_text(number)
        if index >= args.keys - args.differ:
            key = f"unexpected-{key}"
        yield key, None, UPLOADED, meta_of(index)
        if index < args.duplicates:
            yield key, None, UPLOADED, meta_of(index)


def _meta_maker(enabled: bool, *, drift: bool) -> Callable[[int], bytes | None]:
    if not enabled:
        return lambda index: None

    def meta_of(index: int) -> bytes:
        version = 2 if drift and index % 1000 == 0 else 1
        return canonical_meta({"sku": f"SKU-{index:08d}", "version": version, "tags": ["a"]})

    return meta_of


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux, bytes on macOS.
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def run_engine(args: argparse.Namespace) -> dict[str, object]:
    reconciler = Reconciler(compare_meta=args.meta, temp_dir=args.temp_dir)
    rows = 0

    def count_rows(batch: list[dict[str, object]]) -> None:
        nonlocal rows
        rows += len(batch)

    summary = reconciler.run(expected_side(args), actual_side(args), sink=count_rows)
    result = summary.to_dict()
    return {
        "temporary_db_mb": round(reconciler.disk_bytes / 1e6, 1),
        "rows": rows,
        **{k: result[k] for k in ("expected", "actual", "matched")},
        **{k: v for k, v in result.items() if k.endswith("_count")},
    }


def run_naive(args: argparse.Namespace) -> dict[str, object]:
    expected = [key for key, _ in expected_side(args)]
    actual = [record[0] for record in actual_side(args)]
    expected_set, actual_set = set(expected), set(actual)
    return {
        "expected": len(expected),
        "actual": len(actual),
        "matched": len(expected_set & actual_set),
        "missing_count": len(expected_set - actual_set),
        "unexpected_count": len(actual_set - expected_set),
    }


def write_operator_inputs(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    """The expected ids as .txt.gz and the live images as an export; returns its manifest."""
    from airflow_provider_cfimages.inventory.writer import InventoryTarget, InventoryWriter

    with gzip.open(directory / "expected.txt.gz", "wt", compresslevel=1) as out:
        for key, _ in expected_side(args):
            out.write(f"{key}\n")
    target = InventoryTarget.parse(str(directory / "inventory.jsonl.gz"))
    with InventoryWriter(target) as writer:
        for page in batched(actual_side(args), 10_000):
            writer.write_page(
                [
                    {
                        "id": key,
                        "filename": f"{key[:8]}.jpg",
                        "uploaded": uploaded,
                        "requireSignedURLs": False,
                        "variants": [f"https://imagedelivery.net/hash/{key}/public"],
                    }
                    for key, _, uploaded, _ in page
                ]
            )
        written = writer.commit()
    return dataclasses.asdict(written)  # the manifest fields a reader checks, and more


def batched(records: Iterator[ActualRecord], size: int) -> Iterator[list[ActualRecord]]:
    while batch := list(islice(records, size)):
        yield batch


def run_operator(manifest: dict[str, Any], directory: Path) -> dict[str, object]:
    from airflow_provider_cfimages.operators.images import CloudflareImagesReconcileOperator

    operator = CloudflareImagesReconcileOperator(
        task_id="reconcile",
        expected=str(directory / "expected.txt.gz"),
        actual_from=manifest,
        report_path=str(directory / "report.jsonl.gz"),
    )
    result = operator.execute(context={})
    return {k: v for k, v in result.items() if not isinstance(v, list)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys per side")
    parser.add_argument("--differ", type=int, default=10_000, help="missing and unexpected keys")
    parser.add_argument("--duplicates", type=int, default=1_000, help="repeated keys per side")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--temp-dir", default=None, dest="temp_dir", help="for the engine's SQLite file"
    )
    parser.add_argument("--meta", action="store_true", help="compare metas too")
    parser.add_argument("--naive", action="store_true", help="plain sets, everything in memory")
    parser.add_argument("--operator", action="store_true", help="the whole task, from files")
    args = parser.parse_args()
    if args.operator:
        main_operator(args)
        return

    baseline = peak_rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in expected_side(args):
        pass
    for _ in actual_side(args):
        pass
    generation = time.perf_counter() - started
    generation_cpu = time.process_time() - cpu_started

    started, cpu_started = time.perf_counter(), time.process_time()
    result = run_naive(args) if args.naive else run_engine(args)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    mode = "naive sets" if args.naive else "engine" + (" + meta" if args.meta else "")
    print(f"mode: {mode}; {args.keys:,} vs {args.keys:,} keys")
    print(f"result: {result}")
    print(
        f"input generation alone: {generation:.2f} s wall, {generation_cpu:.2f} s CPU "
        "(included in the times below)"
    )
    print(f"reconcile: {wall:.2f} s wall, {cpu:.2f} s CPU")
    print(f"peak RSS: {peak_rss_mb():.0f} MB (interpreter and imports: {baseline:.0f} MB)")


def main_operator(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="cfimages-reconcile-bench-") as name:
        directory = Path(name)
        started = time.perf_counter()
        manifest = write_operator_inputs(args, directory)
        print(f"wrote the inputs in {time.perf_counter() - started:.1f} s (not counted)")
        baseline = peak_rss_mb()
        started, cpu_started = time.perf_counter(), time.process_time()
        result = run_operator(manifest, directory)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        sizes = {p.name: p.stat().st_size // 1024 for p in directory.iterdir()}
    print(
        f"mode: operator; {args.keys:,} expected ids (.txt.gz) vs {args.keys:,} images "
        "(.jsonl.gz export)"
    )
    print(f"result: {result}")
    print(f"files (KiB): {sizes}")
    print(f"reconcile task: {wall:.2f} s wall, {cpu:.2f} s CPU")
    print(f"peak RSS: {peak_rss_mb():.0f} MB (before the task: {baseline:.0f} MB)")


if __name__ == "__main__":
    main()

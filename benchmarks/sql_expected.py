"""How long and how much memory the reconcile's SQL expected side needs, from PostgreSQL.

Starts a throwaway PostgreSQL server (Debian's ``postgresql``, see ``tests/pg_server.py``),
fills a table with UUID-shaped image ids (and a ``jsonb`` meta each) generated server side,
then, for each row count, reads it in a fresh process and prints the wall time, that
process's peak RSS, and how far it rose above the RSS before the first row (the interpreter
with Airflow and the driver imported, and a connection made):

- ``stream``: :class:`~airflow_provider_cfimages.reconcile.sql.ExpectedQuery` as the
  reconcile operator uses it (``fetchmany`` through a named, server-side cursor), every row
  turned into the engine's expected record;
- ``stream-meta``: the same with the meta column read and canonicalised (drift checks);
- ``fetchall``: the obvious ``DbApiHook.get_records(sql)``, for comparison: the driver holds
  the whole result in memory.

The reconcile engine itself is measured by ``reconcile_scale.py``. ::

    python benchmarks/sql_expected.py                          # 100,000 and 1,000,000 rows
    python benchmarks/sql_expected.py --rows 1000000 --modes stream

Peak RSS is per process, so every measurement runs in its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONN_ID = "bench_pg"
DATABASE = "cfimages_bench"
MODES = ("stream", "stream-meta", "fetchall")
_FILL = """
CREATE TABLE images_{rows} AS
SELECT md5(n::text)::uuid::text AS image_id,
       jsonb_build_object('sku', 'SKU-' || n, 'source', 'cms') AS meta
FROM generate_series(1, {rows}) AS n
"""


def peak_rss_mb() -> float:
    """This process's peak resident set size, in MB."""
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, else KB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def measure(mode: str, rows: int) -> dict[str, Any]:
    """Read the table once in this process (run it in a fresh one)."""
    from airflow_provider_cfimages.reconcile.sql import ExpectedQuery, db_api_hook

    table = f"images_{rows}"
    # The connection is looked up (and the driver imported) before the clock starts.
    hook = db_api_hook(CONN_ID)
    hook.get_conn().close()
    baseline = peak_rss_mb()
    started = time.perf_counter()
    if mode == "fetchall":
        count = len(hook.get_records(f"SELECT image_id FROM {table}"))
    else:
        with_meta = mode == "stream-meta"
        query = ExpectedQuery(
            conn_id=CONN_ID,
            sql=f"SELECT image_id{', meta' if with_meta else ''} FROM {table}",
            meta_column="meta" if with_meta else None,
        )
        query.check_connection()
        count = sum(1 for _ in query.records())
    seconds = time.perf_counter() - started
    return {
        "mode": mode,
        "rows": count,
        "seconds": round(seconds, 2),
        "rows_per_second": round(count / seconds),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "baseline_rss_mb": round(baseline, 1),
    }


def run_in_child(mode: str, rows: int, env: dict[str, str]) -> dict[str, Any]:
    finished = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(rows)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if finished.returncode != 0:
        raise RuntimeError(f"{mode} {rows}: {finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--json-out", type=Path, help="also write the results here")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]))))
        return

    sys.path.insert(0, str(REPO))
    from tests.pg_server import PostgresServer

    home = tempfile.mkdtemp(prefix="cfimages-bench-home-")
    results = []
    with PostgresServer.start() as server:
        server.create_database(DATABASE)
        for rows in args.rows:
            server.psql(_FILL.format(rows=rows), DATABASE)
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            f"AIRFLOW_CONN_{CONN_ID.upper()}": server.connection_json(DATABASE),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        print(
            f"{'mode':<12} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'peak RSS MB':>12} "
            f"{'over start MB':>14}"
        )
        for mode in args.modes:
            for rows in args.rows:
                result = run_in_child(mode, rows, env)
                results.append(result)
                print(
                    f"{mode:<12} {result['rows']:>10,} {result['seconds']:>8.2f} "
                    f"{result['rows_per_second']:>10,} {result['peak_rss_mb']:>12.1f} "
                    f"{result['peak_rss_mb'] - result['baseline_rss_mb']:>14.1f}",
                    flush=True,
                )
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

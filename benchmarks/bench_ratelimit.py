"""Living within Cloudflare's rate limit, and deleting at scale through the batch API.

Two scenarios, each against the emulator run by its CLI in a process of its own (so its
threads do not compete with the client's for one interpreter)::

    python benchmarks/bench_ratelimit.py listing --images 30000
    python benchmarks/bench_ratelimit.py delete --images 1000 --contenders sequential batch

``listing``: list the whole inventory at 1000 images a page against a scaled copy of
Cloudflare's rule (``--quota`` requests per ``--window`` seconds, then every call refused for
``--lockout`` seconds), with its ``Ratelimit`` headers. Contenders: ``hook`` (paced by the
headers), ``hook-no-headers`` (the same hook against a server without the headers: what a
client that does not read them goes through), ``sdk`` (the official ``cloudflare`` SDK, if
installed). Reported: wall time, requests, refused calls (429s), lockouts (runs of 429s),
and the ideal paced time ``(ceil(pages / usable quota) - 1) x window``.

``delete``: delete every image with ``older_than`` (so one details call and one delete per
image) with a ``--latency`` added to every answer. Contenders: ``sequential`` (the global
API, one call at a time: the operator before the batch API) and ``batch`` (the batch API,
``--max-concurrency`` calls in flight). Reported: wall time, images/s, requests/s against
the bound ``min(max_concurrency / round trip, 200 per token)``, and the calls charged to the
global quota.

Prints one ``BENCH-RESULT {json}`` line per run and a table at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

RESULT_PREFIX = "BENCH-RESULT "
REPO_ROOT = Path(__file__).resolve().parents[1]
PER_PAGE = 1000
TOKEN_RATE = 200


@dataclass(frozen=True)
class Emulator:
    """A running emulator CLI: where it is and the credentials it printed."""

    process: subprocess.Popen[str]
    printed: dict[str, str]

    @property
    def control(self) -> str:
        return self.printed["control"].rsplit("/", 1)[0]

    def requests_log(self) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.control}/requests", timeout=60)
        return answer.json()["result"]["requests"]

    def arm(self, **fault: Any) -> None:
        requests.post(f"{self.control}/faults", json=fault, timeout=10).raise_for_status()

    def connection(self) -> str:
        return self.printed["AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"]


@contextmanager
def emulator(*args: str) -> Iterator[Emulator]:
    """Run ``cfimages-emulator`` on a free port until the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_cfimages.emulator", "--port", "0", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    printed: dict[str, str] = {}
    try:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            if line.startswith("export "):
                name, _, value = line[len("export ") :].partition("=")
                printed[name] = json.dumps(json.loads(value.strip("'")))
            elif match := re.match(r"^(\w+): (.+)$", line):
                printed[match.group(1)] = match.group(2)
            if line.startswith("Press Ctrl-C"):
                break
        yield Emulator(process, printed)
    finally:
        process.terminate()
        process.wait(timeout=30)


def lockouts(statuses: list[int]) -> int:
    """How many runs of consecutive 429s (each one a lockout the client ran into)."""
    runs, previous = 0, 0
    for status in statuses:
        if status == 429 and previous != 429:
            runs += 1
        previous = status
    return runs


# --- listing ----------------------------------------------------------------------------------


def list_with_hook(emu: Emulator) -> int:
    os.environ["AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"] = emu.connection()
    from airflow_provider_cfimages.hooks.images import CloudflareImagesHook

    hook = CloudflareImagesHook()
    try:
        return sum(1 for _ in hook.iter_images(per_page=PER_PAGE))
    finally:
        hook.close()


def list_with_sdk(emu: Emulator) -> int:
    import cloudflare

    client = cloudflare.Cloudflare(
        api_token=emu.printed["api_token"], base_url=emu.printed["base_url"]
    )
    count, token = 0, None
    while True:
        kwargs = {"continuation_token": token} if token else {}
        page = client.images.v2.list(
            account_id=emu.printed["account_id"], per_page=PER_PAGE, **kwargs
        )
        count += len(page.images or [])
        token = page.continuation_token
        if not token:
            return count


def run_listing(args: argparse.Namespace, contender: str) -> dict[str, Any]:
    flags = [
        f"--images={args.images}",
        f"--rate-limit={args.quota}/{args.window:g}",
        f"--lockout={args.lockout:g}",
        f"--page-cap={PER_PAGE}",
    ]
    if contender == "hook-no-headers":
        flags.append("--no-ratelimit-headers")
    with emulator(*flags) as emu:
        started = time.perf_counter()
        error = None
        try:
            images = list_with_sdk(emu) if contender == "sdk" else list_with_hook(emu)
        except Exception as err:  # a client that gives up is a result too
            images, error = 0, f"{type(err).__name__}: {str(err)[:200]}"
        wall = time.perf_counter() - started
        statuses = [record["status"] for record in emu.requests_log()]
    pages = math.ceil(args.images / PER_PAGE)
    # The fastest schedule that never exceeds the quota, and the same leaving the hook's
    # default reserve (a tenth of the quota) unused.
    ideal = (math.ceil(pages / args.quota) - 1) * args.window
    usable = args.quota - math.floor(0.1 * args.quota)
    ideal_with_reserve = (math.ceil(pages / usable) - 1) * args.window
    return {
        "scenario": "listing",
        "contender": contender,
        "images": images,
        "pages": pages,
        "requests": len(statuses),
        "refused": statuses.count(429),
        "lockouts": lockouts(statuses),
        "wall_s": round(wall, 2),
        "ideal_paced_s": ideal,
        "ideal_with_reserve_s": ideal_with_reserve,
        "error": error,
    }


# --- delete ---------------------------------------------------------------------------------


def run_delete(args: argparse.Namespace, contender: str, images: int) -> dict[str, Any]:
    with emulator(f"--images={images}", f"--seed={images}") as emu:
        emu.arm(fault="slow_next", k=None, seconds=args.latency)
        os.environ["AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"] = emu.connection()
        from airflow_provider_cfimages.hooks.images import CloudflareImagesHook
        from airflow_provider_cfimages.operators.images import CloudflareImagesDeleteOperator

        ids = [image["id"] for image in CloudflareImagesHook().list_images(per_page=PER_PAGE)]
        listed = len(emu.requests_log())
        batch = contender == "batch"
        concurrency = args.max_concurrency if batch else 1
        operator = CloudflareImagesDeleteOperator(
            task_id="delete",
            image_ids=ids,
            max_deletes=len(ids),
            older_than="2999-01-01",
            use_batch_api=batch,
            max_concurrency=concurrency,
            sample_size=0,
        )
        started = time.perf_counter()
        result = operator.execute(context={})  # type: ignore[arg-type]
        wall = time.perf_counter() - started
        records = emu.requests_log()[listed:]
    on_batch = [r for r in records if r["path"].startswith("/batch/")]
    charged = [r for r in records if not r["path"].startswith("/batch/")]
    sent = len(records)
    bound = min(concurrency / args.latency, TOKEN_RATE) if batch else 1 / args.latency
    return {
        "scenario": "delete",
        "contender": contender,
        "images": images,
        "deleted": result["deleted"],
        "max_concurrency": concurrency,
        "latency_s": args.latency,
        "requests": sent,
        "batch_requests": len(on_batch),
        "global_quota_requests": len(charged),
        "global_quota_image_calls": len([r for r in charged if "batch_token" not in r["path"]]),
        "wall_s": round(wall, 2),
        "images_per_s": round(images / wall, 1),
        "requests_per_s": round(sent / wall, 1),
        "bound_requests_per_s": round(bound, 1),
        "of_bound": round(sent / wall / bound, 3),
    }


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["listing", "delete"])
    parser.add_argument("--images", type=int, nargs="+", default=None)
    parser.add_argument("--contenders", nargs="+", default=None)
    parser.add_argument("--quota", type=int, default=12)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--lockout", type=float, default=20.0)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--max-concurrency", type=int, default=16)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-ratelimit-"))
    results = []
    if args.scenario == "listing":
        args.images = (args.images or [30_000])[0]
        for contender in args.contenders or ["hook", "hook-no-headers", "sdk"]:
            if contender == "sdk" and not _installed("cloudflare"):
                print("skipping sdk: the cloudflare package is not installed (the bench extra)")
                continue
            results.append(run_listing(args, contender))
            print(RESULT_PREFIX + json.dumps(results[-1]), flush=True)
    else:
        for images in args.images or [1000]:
            for contender in args.contenders or ["sequential", "batch"]:
                results.append(run_delete(args, contender, images))
                print(RESULT_PREFIX + json.dumps(results[-1]), flush=True)
    for result in results:
        print("  ".join(f"{key}={value}" for key, value in result.items()))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


def _installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())

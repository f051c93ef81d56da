"""The contenders of ``bench_export.py``: one way each of fetching a whole inventory.

Each runs in a process of its own, so that its peak RSS is its own::

    python benchmarks/contenders.py hook --base-url http://127.0.0.1:8787/client/v4 \\
        --token TOKEN --account-id ACCOUNT --per-page 10000 --work-dir /tmp/bench

and prints one line, ``BENCH-RESULT {json}``, with ``images`` (how many it fetched),
``wall_s`` and ``cpu_s`` (user + system) of the listing alone, ``setup_s`` (imports and
construction, not timed with the listing: importing Airflow alone takes seconds),
``base_rss_mb`` (RSS once set up) and ``peak_rss_mb`` (``ru_maxrss`` of the whole process).
Exports also report ``stored``: the images counted back from the written file.

The contenders, all fetching the same inventory with the same ``per_page``:

- ``floor``: a bare ``requests.Session`` loop with ``json.loads``, images discarded;
- ``hook``: ``CloudflareImagesHook.iter_images()``, consumed;
- ``export-jsonl`` / ``export-jsonl-gz``: ``CloudflareImagesListOperator.execute()``
  exporting to a local ``.jsonl`` / ``.jsonl.gz``;
- ``export-json``, ``export-csv``, ``export-csv-gz``: the same, to the other formats. They
  run only when named (``--contenders``): the comparison with other clients does not need
  them, the table of export formats does;
- ``sdk``: the official ``cloudflare`` SDK, ``client.images.v2.list`` with its
  continuation token loop, images kept in a list;
- ``http-operator``: Airflow's ``HttpOperator`` with a ``pagination_function``, the stock
  way (every page's response kept until the end, then the images collected).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

RESULT_PREFIX = "BENCH-RESULT "
LIST_PATH = "accounts/{account_id}/images/v2"
HTTP_CONN_ID = "cf_http"
REQUEST_TIMEOUT = 120.0


@dataclass(frozen=True)
class Target:
    """Where the inventory is and how to page through it.

    :param base_url: the API base URL, ``http://HOST:PORT/client/v4``.
    :param api_token: the API token.
    :param account_id: the 32-hex account id.
    :param per_page: images per request.
    :param work_dir: a directory for Airflow's home and the exports.
    """

    base_url: str
    api_token: str
    account_id: str
    per_page: int
    work_dir: Path

    @property
    def list_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/{LIST_PATH.format(account_id=self.account_id)}"


class Contender:
    """Set up (untimed), list the inventory (timed), then count what was stored (untimed)."""

    #: the packages it needs beyond the provider's own dependencies
    requires: tuple[str, ...] = ()

    def __init__(self, target: Target) -> None:
        self.target = target

    def setup(self) -> None:
        """Import and build everything the listing needs."""

    def run(self) -> int:
        """Fetch the whole inventory; return how many images were fetched."""
        raise NotImplementedError

    def stored(self) -> int | None:
        """How many images the run left in its output (None when it writes nothing)."""
        return None

    def cleanup(self) -> None:
        """Remove whatever the run wrote."""


class Floor(Contender):
    """The least any client must do: GET each page, ``json.loads`` it, follow the token."""

    def setup(self) -> None:
        import requests

        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.target.api_token}"

    def run(self) -> int:
        count = 0
        token: str | None = None
        while True:
            params: dict[str, Any] = {"per_page": self.target.per_page}
            if token:
                params["continuation_token"] = token
            response = self.session.get(
                self.target.list_url, params=params, timeout=REQUEST_TIMEOUT
            )
            response.raise_for_status()
            result = json.loads(response.content)["result"]
            count += len(result["images"])
            token = result.get("continuation_token")
            if not token:
                return count


class Hook(Contender):
    """The provider's hook: ``iter_images()`` consumed one image at a time."""

    def setup(self) -> None:
        use_cloudflare_images_connection(self.target)
        from airflow_provider_cfimages.hooks.images import CloudflareImagesHook

        self.hook = CloudflareImagesHook()
        self.hook.transport  # noqa: B018 - reads the connection now, outside the timing

    def run(self) -> int:
        count = 0
        for _image in self.hook.iter_images(per_page=self.target.per_page):
            count += 1
        return count


class Export(Contender):
    """The provider's list operator exporting to a local file, run as a task would run it."""

    suffix = ".jsonl"

    def setup(self) -> None:
        use_cloudflare_images_connection(self.target)
        from airflow_provider_cfimages.operators.images import CloudflareImagesListOperator

        self.path = self.target.work_dir / f"inventory-{os.getpid()}{self.suffix}"
        self.operator = CloudflareImagesListOperator(
            task_id="export",
            per_page=self.target.per_page,
            output_path=str(self.path),
            log_every_seconds=3600,
        )
        self.operator.hook.transport  # noqa: B018 - reads the connection now

    def run(self) -> int:
        # The operator does not read the context when exporting: an empty one is enough.
        manifest = self.operator.execute(context={})  # type: ignore[arg-type]
        return int(manifest["count"])

    def stored(self) -> int | None:
        return count_lines(self.path, compressed=self.compressed)

    @property
    def compressed(self) -> bool:
        return self.suffix.endswith(".gz")

    def cleanup(self) -> None:
        self.path.unlink(missing_ok=True)


class ExportGzip(Export):
    suffix = ".jsonl.gz"


class ExportJson(Export):
    suffix = ".json"

    def stored(self) -> int | None:
        # One image per line between the "[" and "]" lines.
        return count_lines(self.path, compressed=self.compressed) - 2


class ExportCsv(Export):
    suffix = ".csv"

    def stored(self) -> int | None:
        # Records, not lines: a quoted filename may hold a line break.
        with open_export(self.path, "rt", compressed=self.compressed, newline="") as stream:
            return sum(1 for _ in csv.reader(stream)) - 1  # the header


class ExportCsvGzip(ExportCsv):
    suffix = ".csv.gz"


class Sdk(Contender):
    """The official ``cloudflare`` SDK; it does not auto-paginate v2, so loop on the token."""

    requires = ("cloudflare",)

    def setup(self) -> None:
        import cloudflare

        self.client = cloudflare.Cloudflare(
            api_token=self.target.api_token, base_url=self.target.base_url
        )

    def run(self) -> int:
        images: list[Any] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {}
            if token:
                kwargs["continuation_token"] = token
            page = self.client.images.v2.list(
                account_id=self.target.account_id, per_page=self.target.per_page, **kwargs
            )
            images.extend(page.images or [])
            token = page.continuation_token
            if not token:
                return len(images)


class HttpOperatorContender(Contender):
    """Airflow's ``HttpOperator`` paging with ``pagination_function``, as its docs show.

    ``paginate_sync`` keeps every ``Response`` until the last page, then
    ``response_filter`` gets the list and returns the images (what would go to XCom).
    The pagination function reads the token with ``response.json()``, as the provider's
    example does, so each page body is decoded twice.
    """

    requires = ("airflow.providers.http",)

    def setup(self) -> None:
        use_http_connection(self.target)
        from airflow.providers.http.operators.http import HttpOperator
        from airflow.sdk import BaseHook

        BaseHook.get_connection(HTTP_CONN_ID)  # warm the connection lookup, outside the timing
        parts = urlsplit(self.target.base_url)
        endpoint = f"{parts.path.strip('/')}/{LIST_PATH.format(account_id=self.target.account_id)}"
        self.operator = HttpOperator(
            task_id="list",
            http_conn_id=HTTP_CONN_ID,
            method="GET",
            endpoint=endpoint,
            data={"per_page": self.target.per_page},
            pagination_function=next_page_parameters,
            response_filter=images_of_responses,
            extra_options={"timeout": REQUEST_TIMEOUT},
        )

    def run(self) -> int:
        images = self.operator.execute(context={})  # type: ignore[arg-type]
        return len(images)


def next_page_parameters(response: Any) -> dict[str, Any] | None:
    """The HttpOperator ``pagination_function``: the next request's query, or None."""
    token = response.json()["result"].get("continuation_token")
    return {"data": {"continuation_token": token}} if token else None


def images_of_responses(responses: list[Any]) -> list[dict[str, Any]]:
    """The HttpOperator ``response_filter``: every page's images, in one list."""
    return [image for response in responses for image in response.json()["result"]["images"]]


CONTENDERS: dict[str, type[Contender]] = {
    "floor": Floor,
    "hook": Hook,
    "export-jsonl": Export,
    "export-jsonl-gz": ExportGzip,
    "sdk": Sdk,
    "http-operator": HttpOperatorContender,
    "export-json": ExportJson,
    "export-csv": ExportCsv,
    "export-csv-gz": ExportCsvGzip,
}
#: what ``bench_export.py`` runs unless told otherwise: the provider and the alternatives
DEFAULT_CONTENDERS = ("floor", "hook", "export-jsonl", "export-jsonl-gz", "sdk", "http-operator")


# -- Airflow connections ---------------------------------------------------------------------


def use_airflow_home(target: Target) -> None:
    """Give Airflow a private home (read at import time) with no example DAGs."""
    home = target.work_dir / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def use_cloudflare_images_connection(target: Target) -> None:
    """Point ``cloudflare_images_default`` at the target, as ``AIRFLOW_CONN_*`` does."""
    use_airflow_home(target)
    os.environ["AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"] = json.dumps(
        {
            "conn_type": "cloudflare_images",
            "host": target.base_url,
            "password": target.api_token,
            "extra": {"account_id": target.account_id},
        }
    )


def use_http_connection(target: Target) -> None:
    """An ``http`` connection to the target's host; the Bearer header rides in the extra."""
    use_airflow_home(target)
    parts = urlsplit(target.base_url)
    os.environ[f"AIRFLOW_CONN_{HTTP_CONN_ID.upper()}"] = json.dumps(
        {
            "conn_type": "http",
            "host": parts.hostname,
            "port": parts.port,
            "schema": parts.scheme,
            "extra": {"Authorization": f"Bearer {target.api_token}"},
        }
    )


# -- measuring -------------------------------------------------------------------------------


def open_export(path: Path, mode: str, *, compressed: bool, **kwargs: Any) -> Any:
    """Open an export, through gzip when it is compressed (text modes read UTF-8)."""
    if "t" in mode:
        kwargs.setdefault("encoding", "utf-8")
    return (gzip.open if compressed else open)(path, mode, **kwargs)


def count_lines(path: Path, *, compressed: bool) -> int:
    """Newlines in a (possibly gzipped) file: one per image in JSON Lines."""
    count = 0
    with open_export(path, "rb", compressed=compressed) as stream:
        while chunk := stream.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def measure(contender: Contender) -> dict[str, Any]:
    """Set up, time the listing, count what was stored, and clean up."""
    started = time.perf_counter()
    contender.setup()
    setup_s = time.perf_counter() - started
    base_rss = current_rss_mb()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    images = contender.run()
    wall_s = time.perf_counter() - started
    cpu_s = cpu_seconds() - cpu_before
    peak = peak_rss_mb()
    try:
        stored = contender.stored()
    finally:
        contender.cleanup()
    return {
        "images": images,
        "stored": stored,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "setup_s": setup_s,
        "base_rss_mb": base_rss,
        "peak_rss_mb": peak,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run one benchmark contender once.")
    parser.add_argument("contender", choices=sorted(CONTENDERS))
    parser.add_argument("--base-url", required=True, help="http://HOST:PORT/client/v4")
    parser.add_argument("--token", required=True, help="the API token")
    parser.add_argument("--account-id", required=True, help="the 32-hex account id")
    parser.add_argument("--per-page", type=int, required=True, help="images per request")
    parser.add_argument("--work-dir", type=Path, required=True, help="for Airflow and exports")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    target = Target(args.base_url, args.token, args.account_id, args.per_page, args.work_dir)
    result = {"contender": args.contender, **measure(CONTENDERS[args.contender](target))}
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Export throughput and memory: this provider against what a user would write instead.

Starts the emulator (``python -m airflow_provider_cfimages.emulator``) in a process of its
own with N seeded images, then runs each contender of ``contenders.py`` in a fresh process
(so its peak RSS is its own), against the same inventory, for each case (size, per_page,
latency), several times, and prints the medians as Markdown tables: images/s, wall s, CPU s,
peak RSS MB, requests made, the speed relative to the floor, the wall time as a ratio to
requests x latency (the round-trip floor, when there is a latency), and the emulator's CPU
time over the same run (to show it is not the bottleneck)::

    python benchmarks/bench_export.py              # the default matrix, DEFAULT_CASES
    python benchmarks/bench_export.py --images 100000 --per-page 1000 --latency-ms 100
    python benchmarks/bench_export.py --images 20000 --repeats 1 --contenders floor hook
    python benchmarks/bench_export.py --images 1000000 --per-page 10000 --contenders floor \\
        export-jsonl export-jsonl-gz export-json export-csv export-csv-gz   # the formats

Given any of ``--images``, ``--per-page``, ``--latency-ms``, the cases are their cross
product (an option left out: 100,000 images, per_page 1000, no latency). A latency is the
emulator waiting that long before answering each API request (its ``slow_next`` fault),
standing in for the network round trip to the real API.

Requests are counted from the emulator's own log (``GET /__emulator__/requests``, cleared
before each run), and every run must return exactly N images (and an export must hold N
images), or the benchmark stops with an error. ``sdk`` and ``http-operator`` need the
``bench`` extra (``pip install 'airflow-provider-cfimages[bench]'``); without it they are
skipped, with a line saying so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from bench_report import Case, Run, machine_info, render_report
from contenders import CONTENDERS, DEFAULT_CONTENDERS, RESULT_PREFIX

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
#: loopback at two sizes and two page sizes, and the real API's conditions: 1000-image
#: pages (its maximum) and a 100 ms round trip
DEFAULT_CASES = (
    Case(100_000, 10_000, 0.0),
    Case(100_000, 1_000, 0.0),
    Case(1_000_000, 10_000, 0.0),
    Case(1_000_000, 1_000, 0.0),
    Case(100_000, 1_000, 100.0),
)
#: a dimension the command line leaves out, when it names another
DEFAULT_IMAGES, DEFAULT_PER_PAGE, DEFAULT_LATENCY_MS = 100_000, 1_000, 0.0
# The packages (distribution names) a contender needs beyond the provider's own.
CONTENDER_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "sdk": ("cloudflare",),
    "http-operator": ("apache-airflow-providers-http",),
}
EMULATOR_START_SECONDS = 600.0
PYCACHE_DIR = Path(tempfile.gettempdir()) / "cfimages-bench-pycache"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class BenchmarkError(RuntimeError):
    """A run failed or fetched the wrong number of images: the table would be a lie."""


# -- the emulator, in its own process ----------------------------------------------------------


class EmulatorProcess:
    """``python -m airflow_provider_cfimages.emulator`` with N images, and its control API.

    :param images: how many images to seed.
    :param seed: the inventory's seed.
    :param log_path: where its stderr goes.
    """

    def __init__(self, images: int, seed: int, log_path: Path) -> None:
        self.images = images
        self.seed = seed
        self.log_path = log_path
        self.api_token = secrets.token_urlsafe(30)
        self.account_id = secrets.token_hex(16)
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    def __enter__(self) -> EmulatorProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start it and wait until it serves (seeding 1M images takes tens of seconds)."""
        command = [
            sys.executable,
            "-m",
            "airflow_provider_cfimages.emulator",
            f"--images={self.images}",
            f"--seed={self.seed}",
            "--port=0",
            f"--token={self.api_token}",
            f"--account-id={self.account_id}",
            # Serve what per_page asks (the emulator caps pages at 1000 by default).
            "--page-cap=10000",
        ]
        self._log = self.log_path.open("w")
        self._process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=child_environment(),
        )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(self._process.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + EMULATOR_START_SECONDS
        while not self.base_url:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchmarkError(
                    f"the emulator did not start within {EMULATOR_START_SECONDS:.0f} s"
                ) from None
            if line is None:
                raise BenchmarkError(
                    f"the emulator exited while starting: {self.log_path.read_text()[-2000:]}"
                )
            if line.startswith("base_url: "):
                self.base_url = line.removeprefix("base_url: ").strip()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def control_url(self) -> str:
        return self.base_url.removesuffix("/client/v4") + "/__emulator__"

    def cpu_seconds(self) -> float | None:
        """The emulator process's user + system CPU time so far (None off Linux)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        # Fields after the ")" closing the command name: utime and stime are the 12th and 13th.
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def set_latency(self, latency_ms: float) -> None:
        """Delay every API answer by ``latency_ms`` from now on (none when 0)."""
        # Clearing first: a latency replaces the previous one instead of adding to it.
        self._control("faults", "DELETE")
        if latency_ms:
            fault = {"fault": "slow_next", "k": None, "seconds": latency_ms / 1000}
            self._control("faults", "POST", json.dumps(fault).encode())

    def _control(self, path: str, method: str, body: bytes | None = None) -> None:
        request = urllib.request.Request(f"{self.control_url}/{path}", data=body, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def clear_requests(self) -> None:
        """Empty the emulator's request log."""
        self._control("requests", "DELETE")

    def served_requests(self) -> list[dict[str, Any]]:
        """The API requests served since the log was last cleared."""
        with urllib.request.urlopen(f"{self.control_url}/requests", timeout=60) as response:
            return json.loads(response.read())["result"]["requests"]


def _pump(stream: IO[str] | None, lines: queue.Queue[str | None]) -> None:
    """Forward a child's stdout lines (and keep its pipe drained); None at the end."""
    if stream is not None:
        for line in stream:
            lines.put(line)
    lines.put(None)


def child_environment() -> dict[str, str]:
    """The environment of the emulator and the contenders.

    This checkout comes first on the path, so it is the code measured. Bytecode is cached in
    a private directory (never in the virtualenv): with ``PYTHONDONTWRITEBYTECODE`` set,
    every process would otherwise compile Airflow's sources again, about 10 s of setup.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault(
        "PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "cfimages-bench-pycache")
    )
    return env


# -- running the contenders ---------------------------------------------------------------------


def run_contender(
    name: str,
    emulator: EmulatorProcess,
    *,
    case: Case,
    work_dir: Path,
    timeout: float,
) -> Run:
    """Run one contender once in a fresh process (the emulator's latency already set).

    Checks it fetched every image.
    """
    command = [
        sys.executable,
        str(BENCH_DIR / "contenders.py"),
        name,
        f"--base-url={emulator.base_url}",
        f"--token={emulator.api_token}",
        f"--account-id={emulator.account_id}",
        f"--per-page={case.per_page}",
        f"--work-dir={work_dir}",
    ]
    env = child_environment()
    env["AIRFLOW_HOME"] = str(work_dir / "airflow-home")
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    emulator.clear_requests()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    emulator_cpu_before = emulator.cpu_seconds()
    try:
        finished = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"{name} ({case.label}) ran over {timeout:.0f} s") from None
    emulator_cpu_after = emulator.cpu_seconds()
    if finished.returncode != 0:
        raise BenchmarkError(
            f"{name} ({case.label}) exited with {finished.returncode}:\n{finished.stderr[-3000:]}"
        )
    result = _result_line(name, finished.stdout)
    served = emulator.served_requests()
    run = Run(
        contender=name,
        images_expected=case.images,
        per_page=case.per_page,
        latency_ms=case.latency_ms,
        images=result["images"],
        stored=result["stored"],
        wall_s=result["wall_s"],
        cpu_s=result["cpu_s"],
        setup_s=result["setup_s"],
        base_rss_mb=result["base_rss_mb"],
        peak_rss_mb=result["peak_rss_mb"],
        # Every API request, not only the list pages: each is a round trip.
        requests=len(served),
        failed_requests=sum(1 for record in served if record["status"] != 200),
        bytes_served=sum(record["bytes_sent"] for record in served),
        emulator_cpu_s=(
            None
            if emulator_cpu_before is None or emulator_cpu_after is None
            else emulator_cpu_after - emulator_cpu_before
        ),
        load_average=load,
    )
    check_complete(run)
    return run


def _result_line(name: str, stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line.removeprefix(RESULT_PREFIX))
    raise BenchmarkError(f"{name} printed no result line; its output ended with: {stdout[-2000:]}")


def check_complete(run: Run) -> None:
    """Fail loudly unless the run fetched (and, for exports, stored) exactly N images."""
    expected = run.images_expected
    who = f"{run.contender} ({run.case.label})"
    if run.images != expected:
        raise BenchmarkError(f"{who} fetched {run.images} images, expected {expected}")
    if run.stored is not None and run.stored != expected:
        raise BenchmarkError(
            f"{who} reported {run.images} images but its file holds {run.stored} images, "
            f"expected {expected}"
        )
    if run.failed_requests:
        raise BenchmarkError(
            f"{who} got {run.failed_requests} failed responses from the emulator: "
            "the timing would include retries"
        )


def available_contenders(requested: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """The contenders to run, and a note for each one skipped because its package is missing."""
    names = list(requested or DEFAULT_CONTENDERS)
    chosen: list[str] = []
    skipped: list[str] = []
    for name in names:
        missing = [dist for dist in CONTENDER_DISTRIBUTIONS.get(name, ()) if not _installed(dist)]
        if not missing:
            chosen.append(name)
            continue
        note = (
            f"skipped {name}: {', '.join(missing)} is not installed "
            "(pip install 'airflow-provider-cfimages[bench]')"
        )
        if requested:
            raise BenchmarkError(note.replace("skipped", "cannot run", 1))
        skipped.append(note)
    if "floor" not in chosen:
        raise BenchmarkError("the floor contender is needed: the table is relative to it")
    return chosen, skipped


def _installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def cases_of(args: argparse.Namespace) -> list[Case]:
    """The cases the command line asks for: DEFAULT_CASES, or the product of its options."""
    if args.images is None and args.per_page is None and args.latency_ms is None:
        return list(DEFAULT_CASES)
    return [
        Case(images, per_page, latency_ms)
        for images in args.images or [DEFAULT_IMAGES]
        for per_page in args.per_page or [DEFAULT_PER_PAGE]
        for latency_ms in args.latency_ms or [DEFAULT_LATENCY_MS]
    ]


def by_size(cases: Sequence[Case]) -> Iterator[tuple[int, list[Case]]]:
    """The cases grouped by inventory size (one emulator each), sizes in first-seen order."""
    sizes = dict.fromkeys(case.images for case in cases)
    for images in sizes:
        yield images, [case for case in cases if case.images == images]


def run_benchmark(args: argparse.Namespace, work_dir: Path) -> list[Run]:
    """Every case x repeat x contender; contenders interleaved within a repeat."""
    contenders, skipped = available_contenders(args.contenders)
    for note in skipped:
        print(note, flush=True)
    runs: list[Run] = []
    for images, cases in by_size(cases_of(args)):
        log_path = work_dir / f"emulator-{images}.log"
        print(f"starting the emulator with {images:,} images ...", flush=True)
        with EmulatorProcess(images, args.seed, log_path) as emulator:
            for case in cases:
                emulator.set_latency(case.latency_ms)
                for repeat in range(1, args.repeats + 1):
                    for name in contenders:
                        run = run_contender(
                            name, emulator, case=case, work_dir=work_dir, timeout=args.timeout
                        )
                        runs.append(run)
                        print(
                            f"  {case.label:<46} run {repeat}  {name:<16} "
                            f"{run.wall_s:7.2f} s  {run.peak_rss_mb:6.0f} MB",
                            flush=True,
                        )
    return runs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=_count, nargs="+", help="inventory sizes")
    parser.add_argument("--per-page", type=_count, nargs="+", help="per_page values (10..10000)")
    parser.add_argument(
        "--latency-ms",
        type=_milliseconds,
        nargs="+",
        help="the emulator's delay before each answer, in ms (0: loopback)",
    )
    parser.add_argument("--repeats", type=_count, default=3, help="runs of each contender")
    parser.add_argument(
        "--contenders",
        nargs="+",
        choices=list(CONTENDERS),
        help=(
            "which contenders (default: all but the export formats other than JSON Lines, "
            "if their packages are installed)"
        ),
    )
    parser.add_argument("--seed", type=int, default=7, help="the inventory's seed")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds allowed to one contender run"
    )
    parser.add_argument("--json-out", type=Path, help="also write every run and median here")
    parser.add_argument("--markdown-out", type=Path, help="also write the report here")
    parser.add_argument(
        "--work-dir", type=Path, help="scratch directory (default: a new temporary one)"
    )
    return parser


def _count(text: str) -> int:
    value = int(text.replace(",", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1; got {text!r}")
    return value


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan  # rejected below, with the same message
    if not 0 <= value <= 60_000:
        raise argparse.ArgumentTypeError(f"expected milliseconds, 0 to 60000; got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if any(not 10 <= per_page <= 10_000 for per_page in args.per_page or ()):
        print("--per-page values must be between 10 and 10000", file=sys.stderr)
        return 2
    command = shlex.join(["python", "benchmarks/bench_export.py", *argv])
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="cfimages-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    machine_before = machine_info()
    try:
        runs = run_benchmark(args, work_dir)
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    machine = {**machine_before, "load_average_after": machine_info()["load_average"]}
    report, summary = render_report(runs, machine, command)
    print(report, flush=True)
    if args.markdown_out:
        args.markdown_out.write_text(report)
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

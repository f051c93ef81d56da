"""Small runs of ``benchmarks/bench_export.py``, so the benchmark never rots.

They run the real script end to end: the emulator in its own process, each contender in its
own process, the report. 20,000 images on loopback, and 2,000 images with 20 ms per
request. The large runs (100,000 and 1,000,000 images) are manual; see benchmarks/README.md.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO_ROOT / "benchmarks"
SMOKE_IMAGES = 20_000
SMOKE_PER_PAGE = 10_000
LATENCY_IMAGES = 2_000
LATENCY_PER_PAGE = 1_000
LATENCY_MS = 20
#: always run: they need nothing beyond the provider's own dependencies
CORE_CONTENDERS = ("floor", "hook", "export-jsonl", "export-jsonl-gz")
#: run only when named
FORMAT_CONTENDERS = ("export-json", "export-csv", "export-csv-gz")


@dataclass(frozen=True)
class SmokeRun:
    stdout: str
    summary: dict[str, Any]

    def run_of(self, contender: str) -> dict[str, Any]:
        runs = [run for run in self.summary["runs"] if run["contender"] == contender]
        assert len(runs) == 1, f"expected one {contender} run, got {len(runs)}"
        return runs[0]


def installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def run_benchmark(
    scratch: Path, *arguments: str, images: int = SMOKE_IMAGES, per_page: int = SMOKE_PER_PAGE
) -> SmokeRun:
    json_out = scratch / "bench.json"
    finished = subprocess.run(
        [
            sys.executable,
            str(BENCH_DIR / "bench_export.py"),
            f"--images={images}",
            f"--per-page={per_page}",
            "--repeats=1",
            "--timeout=120",
            f"--json-out={json_out}",
            f"--work-dir={scratch / 'work'}",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO_ROOT,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return SmokeRun(finished.stdout, json.loads(json_out.read_text()))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    return run_benchmark(tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="module")
def formats_run(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    return run_benchmark(
        tmp_path_factory.mktemp("bench-formats"), "--contenders", "floor", *FORMAT_CONTENDERS
    )


@pytest.fixture(scope="module")
def latency_run(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    return run_benchmark(
        tmp_path_factory.mktemp("bench-latency"),
        f"--latency-ms={LATENCY_MS}",
        "--contenders",
        *CORE_CONTENDERS,
        images=LATENCY_IMAGES,
        per_page=LATENCY_PER_PAGE,
    )


@pytest.mark.parametrize("contender", CORE_CONTENDERS)
def test_core_contender_fetches_every_image(smoke_run: SmokeRun, contender: str) -> None:
    run = smoke_run.run_of(contender)
    assert run["images"] == SMOKE_IMAGES
    # 20,000 images at 10,000 a page: two requests, as counted by the emulator itself.
    assert run["requests"] == SMOKE_IMAGES // SMOKE_PER_PAGE
    assert run["wall_s"] > 0
    assert run["peak_rss_mb"] > 0


@pytest.mark.parametrize("contender", ["export-jsonl", "export-jsonl-gz"])
def test_export_contender_file_holds_every_image(smoke_run: SmokeRun, contender: str) -> None:
    assert smoke_run.run_of(contender)["stored"] == SMOKE_IMAGES


@pytest.mark.parametrize(
    ("contender", "distribution"),
    [("sdk", "cloudflare"), ("http-operator", "apache-airflow-providers-http")],
)
def test_optional_contender_fetches_every_image(
    smoke_run: SmokeRun, contender: str, distribution: str
) -> None:
    if not installed(distribution):
        pytest.skip(
            f"{distribution} is not installed (the 'bench' extra), so the benchmark skipped "
            f"the {contender} contender"
        )
    run = smoke_run.run_of(contender)
    assert run["images"] == SMOKE_IMAGES
    assert run["requests"] == SMOKE_IMAGES // SMOKE_PER_PAGE


def test_the_export_formats_run_only_when_named(smoke_run: SmokeRun) -> None:
    assert not {run["contender"] for run in smoke_run.summary["runs"]} & set(FORMAT_CONTENDERS)


@pytest.mark.parametrize("contender", FORMAT_CONTENDERS)
def test_format_contender_file_holds_every_image(formats_run: SmokeRun, contender: str) -> None:
    run = formats_run.run_of(contender)
    assert run["images"] == run["stored"] == SMOKE_IMAGES
    assert run["requests"] == SMOKE_IMAGES // SMOKE_PER_PAGE


def test_report_has_a_row_per_contender_and_the_targets(smoke_run: SmokeRun) -> None:
    assert "| contender | images/s | wall s | CPU s | peak RSS MB | requests |" in smoke_run.stdout
    for run in smoke_run.summary["runs"]:
        assert f"\n| {run['contender']} | " in smoke_run.stdout
    assert "#### Targets (measured, not asserted)" in smoke_run.stdout
    floor = next(row for row in smoke_run.summary["medians"] if row["contender"] == "floor")
    assert floor["images_per_s"] == pytest.approx(SMOKE_IMAGES / floor["wall_s"])


def test_latency_run_reports_wall_time_over_requests_times_latency(
    latency_run: SmokeRun,
) -> None:
    assert "| wall / (requests x latency) |" in latency_run.stdout
    assert f"{LATENCY_IMAGES:,} images, per_page {LATENCY_PER_PAGE:,}, {LATENCY_MS} ms" in (
        latency_run.stdout
    )
    rows = latency_run.summary["medians"]
    assert {row["contender"] for row in rows} == set(CORE_CONTENDERS)
    for row in rows:
        assert row["latency_ms"] == LATENCY_MS
        assert row["requests"] == LATENCY_IMAGES // LATENCY_PER_PAGE
        # Each request waited LATENCY_MS at the emulator, one after the other: the wall
        # time cannot be below requests x latency.
        assert row["latency_ratio"] >= 1
        assert f"\n| {row['contender']} | " in latency_run.stdout


def test_loopback_runs_have_no_latency_ratio(smoke_run: SmokeRun) -> None:
    for row in smoke_run.summary["medians"]:
        assert row["latency_ms"] == 0
        assert row["latency_ratio"] is None


def test_default_matrix_has_the_real_api_case_next_to_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    from bench_export import build_parser, cases_of
    from bench_report import Case

    defaults = cases_of(build_parser().parse_args([]))
    assert Case(100_000, 1_000, 100.0) in defaults
    assert Case(100_000, 1_000, 0.0) in defaults
    named = cases_of(build_parser().parse_args(["--latency-ms", "0", "100"]))
    assert named == [Case(100_000, 1_000, 0.0), Case(100_000, 1_000, 100.0)]


@pytest.mark.parametrize("latency", ["-1", "abc", "nan", "60001"])
def test_a_bad_latency_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], latency: str
) -> None:
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    from bench_export import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--latency-ms", latency])
    assert "--latency-ms: expected milliseconds, 0 to 60000" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"images": SMOKE_IMAGES - 1}, "fetched 19999 images, expected 20000"),
        ({"stored": SMOKE_IMAGES - 1}, "its file holds 19999 images, expected 20000"),
        ({"failed_requests": 1}, "got 1 failed responses"),
    ],
)
def test_an_incomplete_run_stops_the_benchmark(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, int], message: str
) -> None:
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    from bench_export import BenchmarkError, check_complete
    from bench_report import Run

    complete = Run(
        contender="export-jsonl",
        images_expected=SMOKE_IMAGES,
        per_page=SMOKE_PER_PAGE,
        latency_ms=0.0,
        images=SMOKE_IMAGES,
        stored=SMOKE_IMAGES,
        wall_s=1.0,
        cpu_s=1.0,
        setup_s=1.0,
        base_rss_mb=None,
        peak_rss_mb=100.0,
        requests=2,
        failed_requests=0,
        bytes_served=0,
        emulator_cpu_s=None,
        load_average=None,
    )
    check_complete(complete)
    with pytest.raises(BenchmarkError, match=message):
        check_complete(dataclasses.replace(complete, **changes))


def test_a_contender_without_its_package_is_skipped_with_a_note(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    import bench_export

    monkeypatch.setattr(
        bench_export, "_installed", lambda distribution: distribution != "cloudflare"
    )
    chosen, notes = bench_export.available_contenders(None)
    assert "sdk" not in chosen
    assert "floor" in chosen
    assert notes == [
        "skipped sdk: cloudflare is not installed (pip install 'airflow-provider-cfimages[bench]')"
    ]
    with pytest.raises(bench_export.BenchmarkError, match="cannot run sdk: cloudflare"):
        bench_export.available_contenders(["floor", "sdk"])

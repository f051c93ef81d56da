"""The report of ``bench_export.py``: medians, Markdown tables, the targets, the machine."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

#: contenders that are this provider (checked against the targets)
PROVIDER_CONTENDERS = ("hook", "export-jsonl", "export-jsonl-gz")
#: the issue's targets: on loopback at least this many times the official SDK's speed ...
SDK_SPEEDUP_TARGET = 2.0
#: ... and under latency, a wall time within this factor of requests x latency
LATENCY_RATIO_TARGET = 1.10
VERSIONED = (
    "apache-airflow",
    "airflow-provider-cfimages",
    "requests",
    "msgspec",
    "cloudflare",
    "httpx",
    "pydantic",
    "apache-airflow-providers-http",
)


@dataclass(frozen=True)
class Case:
    """What one set of runs measures: the inventory size, per_page and the round trip.

    :param images: how many images the emulator holds.
    :param per_page: images per list request.
    :param latency_ms: how long the emulator waits before each answer (0: loopback).
    """

    images: int
    per_page: int
    latency_ms: float

    @property
    def label(self) -> str:
        latency = f"{self.latency_ms:g} ms latency" if self.latency_ms else "loopback"
        return f"{self.images:,} images, per_page {self.per_page:,}, {latency}"

    @property
    def sort_key(self) -> tuple[float, int, int]:
        """Loopback first, then by latency; sizes ascending; the larger per_page first."""
        return (self.latency_ms, self.images, -self.per_page)


@dataclass(frozen=True)
class Run:
    """One contender run, as measured by the contender and by the emulator."""

    contender: str
    images_expected: int
    per_page: int
    latency_ms: float
    images: int
    stored: int | None
    wall_s: float
    cpu_s: float
    setup_s: float
    base_rss_mb: float | None
    peak_rss_mb: float
    requests: int
    failed_requests: int
    bytes_served: int
    emulator_cpu_s: float | None
    load_average: float | None

    @property
    def case(self) -> Case:
        return Case(self.images_expected, self.per_page, self.latency_ms)


@dataclass(frozen=True)
class Median:
    """The medians of one contender's runs in one case."""

    contender: str
    images: int
    per_page: int
    latency_ms: float
    runs: int
    wall_s: float
    cpu_s: float
    setup_s: float
    peak_rss_mb: float
    base_rss_mb: float | None
    requests: int
    mb_served: float
    emulator_cpu_s: float | None

    @property
    def case(self) -> Case:
        return Case(self.images, self.per_page, self.latency_ms)

    @property
    def images_per_s(self) -> float:
        return self.images / self.wall_s

    @property
    def emulator_share(self) -> float | None:
        return None if self.emulator_cpu_s is None else self.emulator_cpu_s / self.wall_s

    @property
    def latency_ratio(self) -> float | None:
        """Wall time over requests x latency, the round-trip floor (None on loopback)."""
        if not self.latency_ms or not self.requests:
            return None
        return self.wall_s / (self.requests * self.latency_ms / 1000)


def medians(runs: Iterable[Run]) -> list[Median]:
    """One :class:`Median` per (case, contender), in the order first run."""
    groups: dict[tuple[Case, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.case, run.contender), []).append(run)
    return [
        Median(
            contender=name,
            images=case.images,
            per_page=case.per_page,
            latency_ms=case.latency_ms,
            runs=len(group),
            wall_s=statistics.median(r.wall_s for r in group),
            cpu_s=statistics.median(r.cpu_s for r in group),
            setup_s=statistics.median(r.setup_s for r in group),
            peak_rss_mb=statistics.median(r.peak_rss_mb for r in group),
            base_rss_mb=_median_or_none(r.base_rss_mb for r in group),
            requests=round(statistics.median(r.requests for r in group)),
            mb_served=statistics.median(r.bytes_served for r in group) / 1e6,
            emulator_cpu_s=_median_or_none(r.emulator_cpu_s for r in group),
        )
        for (case, name), group in groups.items()
    ]


def _median_or_none(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


# -- tables ------------------------------------------------------------------------------------


def _cases(rows: Sequence[Median]) -> list[Case]:
    return sorted({row.case for row in rows}, key=lambda case: case.sort_key)


def _find(rows: Sequence[Median], contender: str, case: Case) -> Median | None:
    return next((r for r in rows if r.contender == contender and r.case == case), None)


def results_table(rows: Sequence[Median], case: Case) -> str:
    """One Markdown table: every contender in one case."""
    floor = _find(rows, "floor", case)
    in_case = [row for row in rows if row.case == case]
    runs = in_case[0].runs
    lines = [
        f"#### {case.label} ({'median of ' + str(runs) + ' runs' if runs > 1 else '1 run'})",
        "",
        "| contender | images/s | wall s | CPU s | peak RSS MB | requests | vs floor "
        "| wall / (requests x latency) | emulator CPU s (share of wall) | setup s (untimed) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in in_case:
        speed = f"{floor.wall_s / row.wall_s:.2f}x" if floor else "n/a"
        ratio = "n/a" if row.latency_ratio is None else f"{row.latency_ratio:.3f}"
        emulator = (
            "n/a"
            if row.emulator_cpu_s is None or row.emulator_share is None
            else f"{row.emulator_cpu_s:.2f} ({row.emulator_share:.0%})"
        )
        lines.append(
            f"| {row.contender} | {row.images_per_s:,.0f} | {row.wall_s:.2f} | {row.cpu_s:.2f} "
            f"| {row.peak_rss_mb:.0f} | {row.requests:,} | {speed} | {ratio} | {emulator} "
            f"| {row.setup_s:.1f} |"
        )
    return "\n".join(lines)


def growth_table(rows: Sequence[Median]) -> str | None:
    """How wall time and peak RSS grow from the smallest size to the largest."""
    sizes = sorted({row.images for row in rows})
    if len(sizes) < 2:
        return None
    small, large = sizes[0], sizes[-1]
    lines = [
        f"#### Growth from {small:,} to {large:,} images ({large / small:g}x the images)",
        "",
        f"| contender | per_page | latency ms | wall s {small:,} -> {large:,} "
        f"| peak RSS MB {small:,} -> {large:,} | RSS growth |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        big = _find(rows, row.contender, replace(row.case, images=large))
        if row.images != small or big is None:
            continue
        lines.append(
            f"| {row.contender} | {row.per_page:,} | {row.latency_ms:g} "
            f"| {row.wall_s:.2f} -> {big.wall_s:.2f} ({big.wall_s / row.wall_s:.1f}x) "
            f"| {row.peak_rss_mb:.0f} -> {big.peak_rss_mb:.0f} "
            f"| {big.peak_rss_mb / row.peak_rss_mb - 1:+.0%} |"
        )
    return "\n".join(lines)


def target_lines(rows: Sequence[Median]) -> list[str]:
    """The issue's targets for the provider's contenders, each measured: met or missed.

    On loopback: at least SDK_SPEEDUP_TARGET times the SDK's speed. Under latency: a wall
    time within LATENCY_RATIO_TARGET of requests x latency.
    """
    lines = ["| contender | case | target | measured |", "|---|---|---|---:|"]
    for case in _cases(rows):
        sdk = _find(rows, "sdk", case)
        for name in PROVIDER_CONTENDERS:
            row = _find(rows, name, case)
            if row is None:
                continue
            if row.latency_ratio is not None:
                target = f"wall <= {LATENCY_RATIO_TARGET:.2f} x requests x latency"
                measured = f"{row.latency_ratio:.3f}x"
                met = row.latency_ratio <= LATENCY_RATIO_TARGET
            elif sdk is not None:
                target = f">= {SDK_SPEEDUP_TARGET:g}x the SDK's speed"
                measured = f"{sdk.wall_s / row.wall_s:.2f}x"
                met = sdk.wall_s / row.wall_s >= SDK_SPEEDUP_TARGET
            else:
                continue
            verdict = "met" if met else "MISSED"
            lines.append(f"| {name} | {case.label} | {target} | {measured} {verdict} |")
    return lines if len(lines) > 2 else ["- n/a: no case has both a target and its reference"]


# -- the machine ------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: cores, CPU, RAM, Python, package versions, load."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gb": _ram_gb(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in VERSIONED},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine_lines(machine: dict[str, Any], runs: Sequence[Run]) -> list[str]:
    versions = ", ".join(f"{name} {v}" for name, v in machine["versions"].items() if v)
    loads = [run.load_average for run in runs if run.load_average is not None]
    load = f"{min(loads):.2f}..{max(loads):.2f} (1-minute, at each run's start)" if loads else "n/a"
    return [
        f"- machine: {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"{machine['ram_gb']} GB RAM, {machine['platform']}",
        f"- Python {machine['python']}; {versions}",
        f"- load average during the runs: {load}",
    ]


# -- the whole report --------------------------------------------------------------------------


def render_report(
    runs: Sequence[Run], machine: dict[str, Any], command: str
) -> tuple[str, dict[str, Any]]:
    """The Markdown report, and the same data as JSON-friendly values."""
    rows = medians(runs)
    parts = ["### Export benchmark", f"`{command}`", "\n".join(machine_lines(machine, runs))]
    parts.extend(results_table(rows, case) for case in _cases(rows))
    growth = growth_table(rows)
    if growth:
        parts.append(growth)
    parts.append("#### Targets (measured, not asserted)\n\n" + "\n".join(target_lines(rows)))
    summary = {
        "command": command,
        "machine": machine,
        "runs": [asdict(run) for run in runs],
        "medians": [
            {
                **asdict(row),
                "images_per_s": row.images_per_s,
                "emulator_share": row.emulator_share,
                "latency_ratio": row.latency_ratio,
            }
            for row in rows
        ],
    }
    return "\n\n".join(parts) + "\n", summary

"""The report of ``bench_export.py``: medians, Markdown tables, the targets, the machine."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

#: contenders that are this provider (checked against the targets)
PROVIDER_CONTENDERS = ("hook", "export-jsonl", "export-jsonl-gz")
EXPORT_CONTENDERS = ("export-jsonl", "export-jsonl-gz")
#: targets from the issue: faster than the floor, 3x the SDK, flat export memory
SDK_SPEEDUP_TARGET = 3.0
RSS_GROWTH_TARGET = 0.15
RSS_CEILING_MB = 200.0
#: past this share of a run's wall time the emulator would be what is being measured
EMULATOR_BOTTLENECK_SHARE = 0.9
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
class Run:
    """One contender run, as measured by the contender and by the emulator."""

    contender: str
    images_expected: int
    per_page: int
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


@dataclass(frozen=True)
class Median:
    """The medians of one contender's runs at one size and per_page."""

    contender: str
    images: int
    per_page: int
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
    def images_per_s(self) -> float:
        return self.images / self.wall_s

    @property
    def emulator_share(self) -> float | None:
        return None if self.emulator_cpu_s is None else self.emulator_cpu_s / self.wall_s


def medians(runs: Iterable[Run]) -> list[Median]:
    """One :class:`Median` per (size, per_page, contender), in the order first run."""
    groups: dict[tuple[int, int, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.images_expected, run.per_page, run.contender), []).append(run)
    return [
        Median(
            contender=name,
            images=images,
            per_page=per_page,
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
        for (images, per_page, name), group in groups.items()
    ]


def _median_or_none(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


# -- tables ------------------------------------------------------------------------------------


def _cases(rows: Sequence[Median]) -> list[tuple[int, int]]:
    """(size, per_page) pairs: sizes ascending, the larger per_page first within a size."""
    return sorted({(row.images, row.per_page) for row in rows}, key=lambda c: (c[0], -c[1]))


def _find(rows: Sequence[Median], contender: str, images: int, per_page: int) -> Median | None:
    for row in rows:
        if (row.contender, row.images, row.per_page) == (contender, images, per_page):
            return row
    return None


def results_table(rows: Sequence[Median], images: int, per_page: int) -> str:
    """One Markdown table: every contender at one size and per_page."""
    floor = _find(rows, "floor", images, per_page)
    runs = next(row.runs for row in rows if (row.images, row.per_page) == (images, per_page))
    lines = [
        f"#### {images:,} images, per_page {per_page:,} "
        f"({'median of ' + str(runs) + ' runs' if runs > 1 else '1 run'})",
        "",
        "| contender | images/s | wall s | CPU s | peak RSS MB | requests | vs floor "
        "| emulator CPU s (share of wall) | setup s (untimed) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if (row.images, row.per_page) != (images, per_page):
            continue
        ratio = f"{floor.wall_s / row.wall_s:.2f}x" if floor else "n/a"
        emulator = (
            "n/a"
            if row.emulator_cpu_s is None or row.emulator_share is None
            else f"{row.emulator_cpu_s:.2f} ({row.emulator_share:.0%})"
        )
        lines.append(
            f"| {row.contender} | {row.images_per_s:,.0f} | {row.wall_s:.2f} | {row.cpu_s:.2f} "
            f"| {row.peak_rss_mb:.0f} | {row.requests:,} | {ratio} | {emulator} "
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
        f"| contender | per_page | wall s {small:,} -> {large:,} | peak RSS MB "
        f"{small:,} -> {large:,} | RSS growth |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.images != small:
            continue
        big = _find(rows, row.contender, large, row.per_page)
        if big is None:
            continue
        lines.append(
            f"| {row.contender} | {row.per_page:,} | {row.wall_s:.2f} -> {big.wall_s:.2f} "
            f"({big.wall_s / row.wall_s:.1f}x) | {row.peak_rss_mb:.0f} -> {big.peak_rss_mb:.0f} "
            f"| {big.peak_rss_mb / row.peak_rss_mb - 1:+.0%} |"
        )
    return "\n".join(lines)


# -- targets ------------------------------------------------------------------------------------


def target_lines(rows: Sequence[Median]) -> list[str]:
    """The issue's targets, each measured: met or missed, with the numbers."""
    lines = _speed_table(rows)
    if lines:
        lines.append("")
    lines.extend(_export_memory_lines(rows))
    lines.extend(_emulator_lines(rows))
    return lines


def _speed_table(rows: Sequence[Median]) -> list[str]:
    """The provider's contenders against the floor (>= 1x) and the SDK (>= 3x)."""
    lines = [
        f"| contender | images | per_page | speed vs floor (>= 1x) "
        f"| speed vs SDK (>= {SDK_SPEEDUP_TARGET:g}x) |",
        "|---|---:|---:|---:|---:|",
    ]
    for images, per_page in _cases(rows):
        floor = _find(rows, "floor", images, per_page)
        sdk = _find(rows, "sdk", images, per_page)
        for name in PROVIDER_CONTENDERS:
            row = _find(rows, name, images, per_page)
            if row is None:
                continue
            vs_floor = _ratio_cell(floor, row, 1.0)
            vs_sdk = _ratio_cell(sdk, row, SDK_SPEEDUP_TARGET)
            lines.append(f"| {name} | {images:,} | {per_page:,} | {vs_floor} | {vs_sdk} |")
    return lines if len(lines) > 2 else []


def _ratio_cell(reference: Median | None, row: Median, target: float) -> str:
    if reference is None:
        return "n/a"
    speed = reference.wall_s / row.wall_s
    return f"{speed:.2f}x {'met' if speed >= target else 'MISSED'}"


def _export_memory_lines(rows: Sequence[Median]) -> list[str]:
    lines: list[str] = []
    sizes = sorted({row.images for row in rows})
    for name in EXPORT_CONTENDERS:
        for per_page in sorted({row.per_page for row in rows}, reverse=True):
            found = [_find(rows, name, size, per_page) for size in sizes]
            measured = [row for row in found if row is not None]
            if not measured:
                continue
            peak = max(row.peak_rss_mb for row in measured)
            text = (
                f"{name} per_page {per_page:,}: peak RSS "
                + " -> ".join(f"{row.peak_rss_mb:.0f} MB" for row in measured)
                + f" (under {RSS_CEILING_MB:.0f} MB"
            )
            met = peak < RSS_CEILING_MB
            if len(measured) >= 2:
                growth = measured[-1].peak_rss_mb / measured[0].peak_rss_mb - 1
                text += f"; {growth:+.0%} from {measured[0].images:,} to {measured[-1].images:,}"
                text += f", within {RSS_GROWTH_TARGET:.0%}"
                met = met and abs(growth) <= RSS_GROWTH_TARGET
            lines.append(f"- {_verdict(met)} {text})")
    return lines


def _emulator_lines(rows: Sequence[Median]) -> list[str]:
    shares = [(row.emulator_share, row) for row in rows if row.emulator_share is not None]
    if not shares:
        return ["- n/a the emulator's CPU time (read from /proc) is only measured on Linux"]
    share, row = max(shares, key=lambda pair: pair[0] or 0.0)
    assert share is not None
    return [
        f"- {_verdict(share < EMULATOR_BOTTLENECK_SHARE)} the emulator is not the bottleneck: "
        f"its CPU time is at most {share:.0%} of a run's wall time ({row.contender}, "
        f"{row.images:,} images, per_page {row.per_page:,}); "
        f"below {EMULATOR_BOTTLENECK_SHARE:.0%} it still had idle time to spare"
    ]


def _verdict(met: bool) -> str:
    return "met:" if met else "MISSED:"


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
    cases = _cases(rows)
    parts = ["### Export benchmark", f"`{command}`", "\n".join(machine_lines(machine, runs))]
    parts.extend(results_table(rows, images, per_page) for images, per_page in cases)
    growth = growth_table(rows)
    if growth:
        parts.append(growth)
    parts.append("#### Targets (measured, not asserted)\n\n" + "\n".join(target_lines(rows)))
    summary = {
        "command": command,
        "machine": machine,
        "runs": [asdict(run) for run in runs],
        "medians": [
            {**asdict(row), "images_per_s": row.images_per_s, "emulator_share": row.emulator_share}
            for row in rows
        ],
    }
    return "\n\n".join(parts) + "\n", summary
